"""The admin side: the ``Client`` (job lookup, cancel, retry, sets, pools, results, events) and
the read models it returns. Imports ``store``, ``periodic`` and the top-level modules; never
``worker``, ``cli`` or ``web``."""
