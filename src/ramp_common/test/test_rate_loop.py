"""RateLoop: absolute deadlines, overrun skipping, errors contained."""

import itertools
import threading
import time

import pytest

from ramp_common.rate_loop import RateLoop, first_grid_deadline


def test_loop_runs_without_drift_and_stops():
    ticks: list[float] = []
    loop = RateLoop(0.01, lambda now: ticks.append(time.monotonic()), "t")
    loop.start()
    time.sleep(0.5)
    loop.stop()
    n = len(ticks)
    time.sleep(0.05)
    assert len(ticks) == n  # stopped
    # absolute deadlines: the count follows elapsed time, not the sum of sleeps
    span = ticks[-1] - ticks[0]
    assert abs((n - 1) - span / 0.01) <= 2 + loop.overruns


def test_slow_body_skips_missed_ticks_instead_of_bursting():
    calls: list[float] = []

    def slow(now: float) -> None:
        calls.append(time.monotonic())
        if len(calls) == 3:
            time.sleep(0.1)  # misses ~10 deadlines

    loop = RateLoop(0.01, slow, "t")
    loop.start()
    time.sleep(0.3)
    loop.stop()
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert loop.overruns >= 5
    assert min(gaps[3:]) > 0.003  # no burst of catch-up calls after the stall


def test_exception_in_body_is_counted_not_fatal():
    done = threading.Event()
    count = [0]

    def body(now: float) -> None:
        count[0] += 1
        if count[0] == 2:
            raise RuntimeError("boom")
        if count[0] > 5:
            done.set()

    loop = RateLoop(0.005, body, "t")
    loop.start()
    assert done.wait(2.0)
    loop.stop()
    assert loop.errors == 1 and "boom" in loop.last_error


def test_realtime_priority_is_granted_or_refused_with_a_reason():
    """SCHED_FIFO where allowed (root / rtprio limit), else normal priority and a reason."""
    import os
    import threading

    import pytest

    seen: list[int] = []
    ticked = threading.Event()

    def body(_now: float) -> None:
        seen.append(os.sched_getscheduler(0))
        ticked.set()

    loop = RateLoop(0.01, body, "rt_test", realtime_priority=10)
    loop.start()
    try:
        assert ticked.wait(2.0)
    finally:
        assert loop.stop()
    if loop.realtime:
        assert seen[0] == os.SCHED_FIFO and loop.realtime_error == ""
    else:
        assert seen[0] == os.SCHED_OTHER and "SCHED_FIFO 10 refused" in loop.realtime_error
    with pytest.raises(ValueError, match="realtime_priority"):
        RateLoop(0.01, body, "bad", realtime_priority=120)


def test_without_a_priority_the_loop_keeps_normal_scheduling():
    import os
    import threading

    seen: list[int] = []
    ticked = threading.Event()
    loop = RateLoop(0.01, lambda _n: (seen.append(os.sched_getscheduler(0)), ticked.set()), "n")
    loop.start()
    try:
        assert ticked.wait(2.0)
    finally:
        assert loop.stop()
    assert seen[0] == os.SCHED_OTHER and not loop.realtime and loop.realtime_error == ""


def test_due_wall_is_the_schedule_not_the_late_call_time():
    """Ticks n apart read as n periods by ``due_wall``, even when one of them ran late."""
    dues: list[float] = []
    calls: list[float] = []
    loop: RateLoop

    def body(now: float) -> None:
        calls.append(now)
        dues.append(loop.due_wall)
        if len(calls) == 5:
            time.sleep(0.006)  # the next tick runs 6 ms late (within one period: not skipped)

    loop = RateLoop(0.01, body, "t")
    loop.start()
    time.sleep(0.2)
    loop.stop()
    steps = [b - a for a, b in itertools.pairwise(dues)]
    assert loop.overruns == 0 or max(steps) > 0.015  # a skip reads as whole periods too
    periods = [s / 0.01 for s in steps]
    # the late tick read by its call time would be 0.6 periods off; the due time is on the grid
    # (0.25: room for a preemption between the two clock reads on a loaded machine)
    assert all(abs(p - round(p)) < 0.25 for p in periods), periods
    assert all(c >= d for c, d in zip(calls, dues, strict=True))  # due never after the call


def test_first_grid_deadline_lies_on_the_period_grid_plus_the_phase():
    assert first_grid_deadline(10.0021, 0.005, 0.001) == pytest.approx(10.006)
    assert first_grid_deadline(10.006, 0.005, 0.001) == pytest.approx(10.006)  # on the grid
    assert first_grid_deadline(10.0061, 0.005, 0.0) == pytest.approx(10.010)


def test_loops_with_phases_tick_on_one_grid_their_phase_apart():
    """Two loops of one machine started at arbitrary times: every deadline of each is
    n * period + its phase on the monotonic clock, so the follower's ticks are 1 ms after the
    sender's whatever their start times (deadlines, not call times: no timing asserted)."""
    period = 0.005
    due: dict[str, list[float]] = {"sender": [], "follower": []}
    loops = {}
    for name, phase in (("sender", 0.0), ("follower", 0.001)):
        loops[name] = RateLoop(
            period, lambda _now, n=name: due[n].append(loops[n].due_mono), name, phase_s=phase
        )
        loops[name].start()
        time.sleep(0.0123)  # started at unrelated times
    time.sleep(0.1)
    for loop in loops.values():
        loop.stop()
    for name, phase in (("sender", 0.0), ("follower", 0.001)):
        assert len(due[name]) > 5
        for t in due[name]:
            offset = (t - phase) % period
            assert min(offset, period - offset) < 1e-6, (name, t)
    assert loops["sender"]._phase == 0.0 and loops["follower"]._phase == pytest.approx(0.001)


def test_a_phase_beyond_the_period_is_taken_modulo_and_a_bad_one_refused():
    assert RateLoop(0.005, lambda _now: None, "t", phase_s=0.012)._phase == pytest.approx(0.002)
    with pytest.raises(ValueError, match="phase"):
        RateLoop(0.005, lambda _now: None, "t", phase_s=float("nan"))
