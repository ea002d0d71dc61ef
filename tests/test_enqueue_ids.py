"""Random job ids (building.random_id): drawn ahead, never handed out twice, not even by a
forked child or by threads drawing at once."""

from __future__ import annotations

import os
import threading
import warnings

from errands import building


def test_threads_drawing_at_once_never_get_the_same_id() -> None:
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        for _ in range(5000):
            out.append(building.random_id())

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for out in drawn for i in out]
    assert len(set(ids)) == len(ids) == 40000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_draws_ids_of_its_own() -> None:
    building._IDS.clear()  # (else the ids earlier tests drew may end with this one: none ahead)
    building.random_id()  # the parent holds ids drawn ahead: a fresh batch less this one
    ahead = list(building._IDS)
    assert ahead
    read, write = os.pipe()
    with warnings.catch_warnings():  # (Python 3.12+ warns of a fork beside other threads)
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: its first id, then out (no test machinery runs here)
        try:
            os.write(write, building.random_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 32 and child not in ahead
