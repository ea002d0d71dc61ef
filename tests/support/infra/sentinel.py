"""A master, a replica and three sentinels on loopback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from .nodes import Node, wait_for

__all__ = ["SentinelInfra"]


class SentinelInfra:
    """``with SentinelInfra() as s: s.url`` -> ``redis+sentinel://h:p,h:p,h:p/<service>``:
    a master with ``replicas`` replicas, watched by three sentinels.

    Sentinels take a master for down after ``down_after_ms`` without a reply and fail over to
    the replica (quorum 2 of 3)."""

    def __init__(
        self,
        service: str = "errands-main",
        replicas: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
        root: Path | None = None,
    ) -> None:
        self._own_root = root is None  # removed on close()
        self.root = root or Path(tempfile.mkdtemp(prefix="errands-sentinel-"))
        self.service = service
        self.master = Node(self.root, "data0")
        replicaof = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replicas = [Node(self.root, f"data{i + 1}", replicaof) for i in range(replicas)]
        conf = (
            f"sentinel monitor {service} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {service} {down_after_ms}\n"
            f"sentinel failover-timeout {service} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        self.sentinels = [
            Node(self.root, f"sentinel{i}", conf=conf, sentinel=True) for i in range(3)
        ]

    @property
    def data_nodes(self) -> list[Node]:
        return [self.master, *self.replicas]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(s.addr for s in self.sentinels) + "/" + self.service

    def start(self) -> SentinelInfra:
        try:
            for node in self.data_nodes:
                node.start()
            wait_for("replica in sync", self._replica_synced)
            for s in self.sentinels:
                s.start()
            wait_for("sentinels ready", self._sentinels_ready, timeout=30.0)
        except BaseException:
            self.close()
            raise
        return self

    def _replica_synced(self) -> bool:
        for replica in self.replicas:
            with replica.client() as c:
                if c.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _sentinels_ready(self) -> bool:
        """Every sentinel knows the replica and the two other sentinels (needed to elect a
        leader for a failover)."""
        for s in self.sentinels:
            if len(s.call("SENTINEL", "REPLICAS", self.service)) < len(self.replicas):
                return False
            if len(s.call("SENTINEL", "SENTINELS", self.service)) < 2:
                return False
        return True

    def master_port(self) -> int:
        """The port of the master as the sentinels name it now."""
        for s in self.sentinels:
            if s.alive:
                _host, port = s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return int(port)
        raise LookupError("no sentinel alive")

    def current_master(self) -> Node:
        port = self.master_port()
        return next(n for n in self.data_nodes if n.port == port)

    def close(self) -> None:
        for node in [*self.sentinels, *self.data_nodes]:
            node.kill()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SentinelInfra:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
