"""TriggeredWorker: runs on poke, rate-limited, survives exceptions, stops."""

import itertools
import threading
import time

from ramp_common.worker import TriggeredWorker


def test_poke_runs_body_promptly_and_rate_limits():
    calls: list[float] = []
    ran = threading.Event()

    def body() -> bool:
        calls.append(time.monotonic())
        ran.set()
        return True

    worker = TriggeredWorker(body, min_period_s=0.1, max_wait_s=10.0, name="t")
    worker.start()
    worker.poke()
    assert ran.wait(1.0)
    for _ in range(20):  # a burst of pokes within one period runs the body at most twice
        worker.poke()
        time.sleep(0.005)
    time.sleep(0.15)
    worker.stop()
    assert 2 <= len(calls) <= 3
    assert all(b - a >= 0.099 for a, b in itertools.pairwise(calls))


def test_without_poke_body_runs_every_max_wait():
    count = [0]

    def body() -> bool:
        count[0] += 1
        return True

    worker = TriggeredWorker(body, 0.0, 0.02, "t")
    worker.start()
    time.sleep(0.3)
    worker.stop()
    assert count[0] >= 5


def test_exceptions_are_counted_and_the_worker_goes_on():
    count = [0]

    def body() -> bool:
        count[0] += 1
        raise ValueError("bad input")

    worker = TriggeredWorker(body, 0.0, 0.01, "t")
    worker.start()
    time.sleep(0.2)
    worker.stop()
    assert worker.errors == count[0] >= 3
    assert "bad input" in worker.last_error


def test_a_wake_up_without_work_leaves_the_rate_slot_free():
    """A poll that found nothing to do must not delay the next input by a period (10 s here)."""
    results = iter([False, True, True])
    calls: list[bool] = []
    events = [threading.Event() for _ in range(3)]

    def body() -> bool:
        did_work = next(results)
        events[len(calls)].set()
        calls.append(did_work)
        return did_work

    worker = TriggeredWorker(body, min_period_s=10.0, max_wait_s=60.0, name="t")
    worker.start()
    try:
        worker.poke()
        assert events[0].wait(2.0)  # nothing to do
        worker.poke()
        assert events[1].wait(2.0), "work after a no-op run waited for the rate slot"
        worker.poke()
        assert not events[2].wait(0.5), "second run with work ignored the 10 s rate slot"
    finally:
        worker.stop(timeout_s=0.5)
    assert calls == [False, True]
