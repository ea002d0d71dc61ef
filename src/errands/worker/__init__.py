"""The worker pool and its parts: registration, the fetch/run loop, acking and settling, the
requeuer, the reaper, heartbeats, cancellation, wake-ups and the process runner. Imports
``store``, ``periodic`` and the top-level modules; never ``admin``, ``cli`` or ``web``."""
