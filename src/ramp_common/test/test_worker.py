"""TriggeredWorker: runs on poke, rate-limited, survives exceptions, stops."""

import itertools
import threading
import time

import numpy as np

from ramp_common.worker import TriggeredWorker


def test_poke_runs_body_promptly_and_rate_limits():
    calls: list[float] = []
    ran = threading.Event()

    def body() -> bool:
        calls.append(time.monotonic())
        ran.set()
        return True

    worker = TriggeredWorker(body, min_period_s=0.1, max_wait_s=10.0, name="t", slack=0.25)
    worker.start()
    worker.poke()
    assert ran.wait(1.0)
    for _ in range(20):  # a burst of pokes within one period runs the body at most twice
        worker.poke()
        time.sleep(0.005)
    time.sleep(0.15)
    worker.stop()
    assert 2 <= len(calls) <= 3
    # runs may start up to the slack (25 %) before their slot, never closer
    assert all(b - a >= 0.074 for a, b in itertools.pairwise(calls))


def test_the_rate_limit_holds_on_average_under_a_flood_of_pokes():
    calls: list[float] = []

    def body() -> bool:
        calls.append(time.monotonic())
        return True

    worker = TriggeredWorker(body, min_period_s=0.05, max_wait_s=10.0, name="t", slack=0.25)
    worker.start()
    start = time.monotonic()
    while time.monotonic() - start < 1.0:  # inputs at ~1 kHz for 1 s
        worker.poke()
        time.sleep(0.001)
    worker.stop()
    span = calls[-1] - calls[0]
    # the grid advances one period per run: n runs need (n - 1) periods minus one slack at most
    assert (len(calls) - 1) * 0.05 - 0.0125 <= span + 1e-3, (len(calls), span)


def test_inputs_at_the_capped_rate_do_not_wait_for_a_drifting_slot():
    """Inputs every period; one run overruns, so the next starts late. Counted from the start
    times, every later slot moved back by that delay for good and each input waited for it; on
    the arrival grid the inputs after it start at once again."""
    period = 0.1
    poked: list[float] = []
    waits: list[float] = []

    def body() -> bool:
        waits.append(time.monotonic() - poked[-1])
        if len(waits) == 3:
            time.sleep(0.14)  # an overrun: the next input arrives while this run is busy
        return True

    worker = TriggeredWorker(body, min_period_s=period, max_wait_s=10.0, name="t", slack=0.25)
    worker.start()
    t0 = time.monotonic()
    try:
        for k in range(12):
            time.sleep(max(0.0, t0 + k * period - time.monotonic()))
            poked.append(time.monotonic())
            worker.poke()
        time.sleep(0.1)
    finally:
        worker.stop()
    assert len(waits) >= 10, waits
    # counted from the start times every input after the overrun waited ~40 ms; the median
    # keeps one late wake-up of a loaded machine from deciding
    assert float(np.median(waits[5:])) < 0.02, waits


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
