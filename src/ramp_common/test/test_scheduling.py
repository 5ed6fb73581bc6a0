"""reset_realtime_threads puts real-time threads of this process back to SCHED_OTHER."""

from __future__ import annotations

import os
import threading

import pytest

from ramp_common.scheduling import is_realtime, reset_realtime_threads


def test_a_fifo_thread_goes_back_to_normal() -> None:
    ready, done = threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def worker() -> None:
        seen["tid"] = threading.get_native_id()
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except PermissionError as exc:  # not root and no CAP_SYS_NICE
            seen["error"] = exc
        seen["realtime"] = is_realtime()
        ready.set()
        done.wait(10.0)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert ready.wait(10.0)
        if "error" in seen:
            pytest.skip(f"cannot set SCHED_FIFO here: {seen['error']}")
        assert seen["realtime"]
        assert reset_realtime_threads() >= 1
        assert os.sched_getscheduler(int(seen["tid"])) == os.SCHED_OTHER
        assert reset_realtime_threads() == 0
    finally:
        done.set()
        thread.join(10.0)
    assert not is_realtime()


def test_lower_process_priority_renices_every_thread_and_new_ones_inherit_it() -> None:
    """In a child process (the test process keeps its priority): threads that existed before
    the call and a thread started after it all run at +5."""
    import subprocess
    import sys

    code = """
import os, threading
from ramp_common.scheduling import lower_process_priority
def nice(tid): return os.getpriority(os.PRIO_PROCESS, tid)
hold = threading.Event(); tids = []
def worker():
    tids.append(threading.get_native_id()); hold.wait(10)
before = threading.Thread(target=worker); before.start()
while not tids: pass
base = nice(threading.get_native_id())
changed = lower_process_priority(5)
after = threading.Thread(target=worker); after.start()
while len(tids) < 2: pass
print(changed, nice(threading.get_native_id()) - base, nice(tids[0]) - base, nice(tids[1]) - base)
hold.set(); before.join(); after.join()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    changed, main, existing, new = (int(v) for v in out.stdout.split())
    assert changed >= 2
    assert (main, existing, new) == (5, 5, 5)
