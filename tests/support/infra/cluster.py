"""A Redis Cluster on loopback: N masters with R replicas each, made with cluster commands sent
by redis-py (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE), so no ``redis-cli`` is needed."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from redis.crc import key_slot

from .nodes import Node, free_port, wait_for

__all__ = ["ClusterInfra"]


class ClusterInfra:
    """``with ClusterInfra(masters=3, replicas=1) as cluster: cluster.url``.

    ``node_timeout_ms`` is the cluster's failure-detection time: a master unreachable for that
    long is replaced by its replica (short here so failover tests stay fast)."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        args: tuple[str, ...] = (),
        root: Path | None = None,
    ) -> None:
        self._own_root = root is None  # removed on close()
        self.root = root or Path(tempfile.mkdtemp(prefix="errands-cluster-"))
        self.masters = masters
        self.replicas = replicas
        # replicas show in CLUSTER SLOTS once their offset moved: ping them every second
        config = "--cluster-enabled yes --cluster-config-file nodes.conf"
        config += f" --repl-ping-replica-period 1 --cluster-node-timeout {node_timeout_ms}"
        self.bus_ports = [free_port() for _ in range(masters * (1 + replicas))]
        self.nodes = [
            Node(self.root, f"node{i}", [*config.split(), "--cluster-port", str(bus), *args])
            for i, bus in enumerate(self.bus_ports)
        ]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL listing every node as a startup node."""
        return "redis+cluster://" + ",".join(n.addr for n in self.nodes)

    def start(self) -> ClusterInfra:
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self.wait_healthy()
        except BaseException:
            self.close()
            raise
        return self

    def _create(self) -> None:
        """Masters first, each given an equal share of the 16384 slots; every node meets the
        first; then each replica follows its master (round robin)."""
        masters, replicas = self.nodes[: self.masters], self.nodes[self.masters :]
        share = 16384 // self.masters
        for i, master in enumerate(masters):
            last = 16383 if i == self.masters - 1 else (i + 1) * share - 1
            master.call("CLUSTER", "ADDSLOTSRANGE", i * share, last)
        first = self.nodes[0]
        for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            first.call("CLUSTER", "MEET", "127.0.0.1", node.port, bus)
        everyone = len(self.nodes)

        def all_met() -> bool:
            return all(len(n.call("CLUSTER", "NODES").splitlines()) == everyone for n in self.nodes)

        wait_for("every node knows every other", all_met, 30.0)
        ids = [m.call("CLUSTER", "MYID") for m in masters]
        for j, replica in enumerate(replicas):
            replica.call("CLUSTER", "REPLICATE", ids[j % self.masters])

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every live node says the cluster is ok and every master has its replicas in sync."""

        def healthy() -> bool:
            live = [n for n in self.nodes if n.alive]
            for node in live:
                if b"cluster_state:ok" not in node.call("CLUSTER", "INFO"):
                    return False
            shards = self.shards()
            if len(shards) != self.masters:
                return False
            return all(len(replicas) >= min(self.replicas, 1) for _m, replicas in shards)

        wait_for("cluster state ok", healthy, timeout)

    def _live(self) -> Node:
        return next(n for n in self.nodes if n.alive and n.ping())

    def _by_port(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def slots(self) -> list[tuple[int, int, Node, list[Node]]]:
        """(first slot, last slot, master, replicas) as a live node sees it now."""
        out: list[tuple[int, int, Node, list[Node]]] = []
        for entry in self._live().call("CLUSTER", "SLOTS"):
            first, last, master, *replicas = entry
            out.append(
                (
                    int(first),
                    int(last),
                    self._by_port(int(master[1])),
                    [self._by_port(int(r[1])) for r in replicas],
                )
            )
        return out

    def shards(self) -> list[tuple[Node, list[Node]]]:
        seen: dict[str, tuple[Node, list[Node]]] = {}
        for _f, _l, master, replicas in self.slots():
            seen.setdefault(master.name, (master, replicas))
        return list(seen.values())

    def master_of(self, key: str) -> Node:
        """The node serving ``key``'s slot now."""
        slot = key_slot(key.encode())
        for first, last, master, _replicas in self.slots():
            if first <= slot <= last:
                return master
        raise LookupError(f"slot {slot} is not served")

    def replicas_of(self, key: str) -> list[Node]:
        slot = key_slot(key.encode())
        for first, last, _master, replicas in self.slots():
            if first <= slot <= last:
                return replicas
        raise LookupError(f"slot {slot} is not served")

    def close(self) -> None:
        for node in self.nodes:
            node.kill()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ClusterInfra:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
