"""Long and bulk work: iterable (resumable) jobs that checkpoint a cursor and resume after a
stop or a crash (``iterable.py``), and the Lua calls they make (``store.py``)."""
