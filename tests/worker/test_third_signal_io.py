"""The third SIGINT/SIGTERM exits whatever the process's output does (found by review, FAILS on
main): ``_hard_exit`` logs and flushes stdout before ``os._exit``; when that raises (stdout a
pipe whose reader is gone, or the signal arriving while the main thread is blocked writing to a
full pipe: "reentrant call inside BufferedWriter"), the exception goes into whatever the main
thread runs (a hook that catches it) and the process runs on. Its one line goes to stderr
only if that does not block (stderr a full pipe too)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_PRELUDE = """
import asyncio, os, signal, subprocess, sys, time
from errands.worker.runner import _StopSignals
_StopSignals(asyncio.new_event_loop(), lambda *a: None)
"""

_BROKEN_PIPE = """
r, w = os.pipe()
os.close(r)  # the reader of the worker's stdout went away
sys.stdout = open(w, "w", buffering=1 << 16)
print("a line a handler printed")  # still buffered
for _ in range(3):
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # an on_shutdown hook blocking the loop (call_hooks catches Exception)
    except Exception:
        pass
"""

_FULL_PIPE = """
r, w = os.pipe()  # nobody reads: the supervisor's log pipe is full
sys.stdout = open(w, "w", buffering=1 << 16)
kills = f"sleep 0.3; for i in 1 2 3; do kill -TERM {os.getpid()}; sleep 0.2; done"
subprocess.Popen(["sh", "-c", kills])
try:
    print("x" * (1 << 20), flush=True)  # a handler's print blocks
except BaseException:
    pass
"""

_FULL_STDERR = """
r, w = os.pipe()  # nobody reads stderr either: the line said at the exit must not block it
os.set_blocking(w, False)
try:
    while True:
        os.write(w, b"x" * 4096)
except BlockingIOError:
    pass
os.set_blocking(w, True)
os.dup2(w, 2)
os.dup2(w, 1)
for _ in range(3):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
"""


@pytest.mark.parametrize(
    "body",
    [_BROKEN_PIPE, _FULL_PIPE, _FULL_STDERR],
    ids=["broken-pipe", "full-pipe", "full-stderr"],
)
def test_a_third_signal_exits_whatever_stdout_does(body: str) -> None:
    script = textwrap.dedent(_PRELUDE) + textwrap.dedent(body) + "\nos._exit(0)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=20)
    assert done.returncode == 128 + 15, done.stderr.decode()
