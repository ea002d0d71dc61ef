"""The fault-injection suite (issue 8): real worker processes, real redis-server, kill -9,
Redis restarts and stalls, and a TCP proxy that resets or black-holes connections.

Run with ``make test-faults`` (``pytest -m faults``)."""
