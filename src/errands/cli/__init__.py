"""The command line: ``python -m errands worker|inspect|dead|schedules|dashboard ...``. The top of
the stack: may import anything in the package; nothing imports it but ``__main__`` and
``testing``."""

from .commands import load_pool, main

__all__ = ["load_pool", "main"]
