"""Periodic jobs: the schedule spec (cron, intervals, DST policy), the stored runtime schedules,
the periodic enqueuer that pools run, and the schedules' admin. Imports ``store`` and the
top-level modules; never ``worker``, ``admin``, ``cli`` or ``web``."""
