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
