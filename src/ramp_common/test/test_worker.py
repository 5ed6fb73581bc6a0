"""TriggeredWorker: runs on poke, rate-limited, survives exceptions, stops."""

import itertools
import threading
import time

from ramp_common.worker import TriggeredWorker


def test_poke_runs_body_promptly_and_rate_limits():
    calls: list[float] = []
    ran = threading.Event()

    def body() -> None:
        calls.append(time.monotonic())
        ran.set()

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
    worker = TriggeredWorker(lambda: count.__setitem__(0, count[0] + 1), 0.0, 0.02, "t")
    worker.start()
    time.sleep(0.3)
    worker.stop()
    assert count[0] >= 5


def test_exceptions_are_counted_and_the_worker_goes_on():
    count = [0]

    def body() -> None:
        count[0] += 1
        raise ValueError("bad input")

    worker = TriggeredWorker(body, 0.0, 0.01, "t")
    worker.start()
    time.sleep(0.2)
    worker.stop()
    assert worker.errors == count[0] >= 3
    assert "bad input" in worker.last_error
