"""Everything that speaks Redis: key names (``keys``), the Lua scripts (``lua/``) and their typed
wrappers (``scripts``), connections and topologies (standalone, cluster, sentinel, TLS), replica
waits, and a private server for tests and demos. Imports only the top-level primitives (errors,
clock); never ``worker``, ``admin``, ``periodic``, ``cli`` or ``web``."""
