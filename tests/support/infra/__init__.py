"""Real Redis topologies for the scale-out tests, started from ``redis-server`` (or the bundled
``valkey-server``) on loopback: a cluster with replicas, a master/replica pair watched by three
sentinels, a TLS server with a throw-away CA, and servers with ACL users.

Every process is started in its own directory under a temporary dir and killed by ``close()``.
"""

from .cluster import ClusterInfra
from .nodes import Node, free_port
from .sentinel import SentinelInfra
from .tls import TLSFiles, make_tls_files

__all__ = [
    "ClusterInfra",
    "Node",
    "SentinelInfra",
    "TLSFiles",
    "free_port",
    "make_tls_files",
]
