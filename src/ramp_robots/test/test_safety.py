"""Tests of ramp_robots.core.safety.SafetyFilter: limits, no jumps, rejection, watchdog, e-stop."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ramp_common.limits import JointLimits
from ramp_robots.core.safety import SafetyFilter, SafetyMode

DT = 0.005
TIMEOUT = 0.2
LIMITS = JointLimits.from_lists(
    ["shoulder", "elbow", "gripper"],
    [-1.0, -2.0, 0.0],
    [1.0, 0.5, 0.07],
    [2.0, 1.0, 0.2],
    [10.0, 5.0, 2.0],
)
REST = np.array([0.1, -0.5, 0.03])


def make_filter() -> SafetyFilter:
    return SafetyFilter(LIMITS, DT, command_timeout_s=TIMEOUT)


def drive(safety: SafetyFilter, target: np.ndarray, ticks: int) -> list[np.ndarray]:
    """Command ``target`` and take one output per tick for ``ticks`` ticks from t = 0."""
    outputs = []
    for k in range(ticks):
        safety.command(target, k * DT)
        outputs.append(safety.output(k * DT, REST))
    return outputs


def assert_feasible(outputs: np.ndarray, start: np.ndarray) -> None:
    """Within the range, and finite differences (starting at rest at ``start``) within limits."""
    assert np.all(outputs >= LIMITS.lower - 1e-12)
    assert np.all(outputs <= LIMITS.upper + 1e-12)
    path = np.vstack([start, start, outputs])
    velocity = np.diff(path, axis=0) / DT
    acceleration = np.diff(velocity, axis=0) / DT
    assert np.all(np.abs(velocity) <= LIMITS.max_velocity * (1 + 1e-9) + 1e-12)
    assert np.all(np.abs(acceleration) <= LIMITS.max_acceleration * (1 + 1e-6) + 1e-9)


def assert_brakes_without_reversing(outputs: np.ndarray, velocity: np.ndarray) -> None:
    """Each joint slows down to rest without ever moving against its initial ``velocity``."""
    steps = np.diff(outputs, axis=0)
    assert np.all(steps * np.sign(velocity) >= -1e-12), "a joint turned back while braking"


def run(safety: SafetyFilter, ticks: int, t0: float = 0.0, measured=REST) -> np.ndarray:
    return np.array([safety.output(t0 + k * DT, measured) for k in range(ticks)])


def test_holds_the_measured_pose_before_any_command() -> None:
    safety = make_filter()
    outputs = run(safety, 20)
    np.testing.assert_allclose(outputs, np.tile(REST, (20, 1)))
    assert safety.mode is SafetyMode.IDLE


def test_first_command_starts_from_the_measured_pose_without_a_jump() -> None:
    safety = make_filter()
    assert safety.command(np.array([0.9, 0.4, 0.07]), now=0.0) is None
    outputs = []
    for k in range(400):
        now = k * DT
        if k % 20 == 0:
            safety.command(np.array([0.9, 0.4, 0.07]), now)  # keep it fresh
        outputs.append(safety.output(now, REST))
    outputs = np.array(outputs)
    assert_feasible(outputs, REST)
    np.testing.assert_allclose(outputs[-1], [0.9, 0.4, 0.07], atol=1e-9)
    assert safety.counters.clamped > 0
    assert safety.mode is SafetyMode.TRACKING


def test_targets_outside_the_range_are_clipped() -> None:
    safety = make_filter()
    outputs = drive(safety, np.array([5.0, -9.0, 1.0]), 600)
    outputs = np.array(outputs)
    assert_feasible(outputs, REST)
    np.testing.assert_allclose(outputs[-1], [1.0, -2.0, 0.07], atol=1e-9)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (np.array([0.2, np.nan, 0.03]), "not finite for joints \\['elbow'\\]"),
        (np.array([np.inf, 0.0, 0.0]), "not finite for joints \\['shoulder'\\]"),
        (np.array([0.2, 0.0]), "expected 3"),
        (np.zeros((3, 1)), "expected 3"),
    ],
)
def test_bad_commands_are_rejected_and_the_filter_keeps_holding(bad, reason) -> None:
    safety = make_filter()
    good = np.array([0.3, -0.3, 0.05])
    safety.command(good, 0.0)
    run(safety, 10)
    result = safety.command(bad, 10 * DT)
    assert result is not None
    assert re.search(reason, result), result
    outputs = []
    for k in range(10, 300):
        safety.command(good, k * DT)
        outputs.append(safety.output(k * DT, REST))
    assert np.all(np.isfinite(outputs))
    np.testing.assert_allclose(outputs[-1], good, atol=1e-9)
    counters = safety.counters
    assert counters.rejected == 1 and counters.accepted == 291


def test_stale_command_decelerates_and_holds_without_a_jump() -> None:
    safety = make_filter()
    far = np.array([0.9, 0.4, 0.0])
    outputs = drive(safety, far, 40)  # commands for 0.2 s, then silence
    moving_velocity = (outputs[-1] - outputs[-2]) / DT
    assert np.any(np.abs(moving_velocity) > 0.3), "should be moving when the stream stops"
    for k in range(40, 400):
        outputs.append(safety.output(k * DT, REST))
    outputs = np.array(outputs)
    assert_feasible(outputs, REST)
    assert safety.mode is SafetyMode.STALE_HOLD
    assert safety.counters.stale_holds == 1
    # Came to rest and holds (short of the far target it no longer follows).
    np.testing.assert_allclose(outputs[-1], outputs[-50], atol=1e-12)
    assert not np.allclose(outputs[-1], far, atol=1e-3)
    assert_brakes_without_reversing(outputs[39:], moving_velocity)


def test_expired_command_holds_at_once_and_a_new_sender_resumes() -> None:
    """The sender's process exited (announced): brake on the next tick, not after the timeout;
    a command from the restarted sender is followed again; never a jump."""
    safety = make_filter()
    far = np.array([0.9, 0.4, 0.0])
    outputs = drive(safety, far, 20)
    moving_velocity = (outputs[-1] - outputs[-2]) / DT
    safety.expire_command()
    outputs.append(safety.output(20 * DT, REST))  # well inside the 0.2 s timeout
    assert safety.mode is SafetyMode.STALE_HOLD
    assert safety.counters.stale_holds == 1
    for k in range(21, 200):
        outputs.append(safety.output(k * DT, REST))
    assert_brakes_without_reversing(np.array(outputs[19:]), moving_velocity)
    held = outputs[-1]
    np.testing.assert_allclose(outputs[-1], outputs[-20], atol=1e-12)
    for k in range(200, 700):
        safety.command(np.array([-0.5, -1.0, 0.02]), k * DT)
        outputs.append(safety.output(k * DT, REST))
    assert safety.mode is SafetyMode.TRACKING
    assert_feasible(np.array(outputs), REST)
    assert not np.allclose(held, outputs[-1], atol=1e-3)
    np.testing.assert_allclose(outputs[-1], [-0.5, -1.0, 0.02], atol=1e-9)


def test_expire_command_without_a_command_is_a_no_op() -> None:
    safety = make_filter()
    safety.expire_command()
    run(safety, 3)
    assert safety.mode is SafetyMode.IDLE and safety.counters.stale_holds == 0


def test_a_new_command_after_a_watchdog_hold_ramps_from_the_held_pose() -> None:
    safety = make_filter()
    safety.command(np.array([0.5, 0.0, 0.05]), 0.0)
    outputs = list(run(safety, 200))  # goes stale at 0.2 s, holds
    assert safety.mode is SafetyMode.STALE_HOLD
    held = outputs[-1]
    for k in range(200, 600):
        safety.command(np.array([-0.8, -1.5, 0.01]), k * DT)
        outputs.append(safety.output(k * DT, REST))
    outputs = np.array(outputs)
    assert_feasible(outputs, REST)
    assert np.max(np.abs(outputs[200] - held)) <= np.max(LIMITS.max_acceleration) * DT * DT + 1e-12
    np.testing.assert_allclose(outputs[-1], [-0.8, -1.5, 0.01], atol=1e-9)


def test_estop_holds_rejects_commands_and_release_ramps_from_the_measured_pose() -> None:
    safety = make_filter()
    target = np.array([0.9, 0.4, 0.07])
    outputs = drive(safety, target, 50)
    moving_velocity = (outputs[-1] - outputs[-2]) / DT
    safety.engage_estop()
    safety.engage_estop()  # latched: no second count
    assert safety.command(target, 50 * DT) == "e-stop engaged"
    for k in range(50, 250):
        outputs.append(safety.output(k * DT, REST))
    outputs = np.array(outputs)
    assert_feasible(outputs, REST)
    assert safety.mode is SafetyMode.ESTOP and safety.estop_engaged
    np.testing.assert_allclose(outputs[-1], outputs[-20], atol=1e-12)  # holding
    assert_brakes_without_reversing(outputs[49:], moving_velocity)
    counters = safety.counters
    assert counters.estops == 1 and counters.rejected == 1

    # The robot sagged while stopped: after release the filter starts from where it really is.
    measured = outputs[-1] + np.array([-0.01, 0.02, -0.001])
    safety.release_estop()
    assert not safety.estop_engaged and safety.mode is SafetyMode.IDLE
    after = run(safety, 50, t0=250 * DT, measured=measured)
    np.testing.assert_allclose(after, np.tile(measured, (50, 1)))  # holds until a new command
    for k in range(300, 600):
        safety.command(np.array([0.0, 0.0, 0.0]), k * DT)
        after = np.vstack([after, safety.output(k * DT, measured)])
    assert_feasible(after, measured)
    np.testing.assert_allclose(after[-1], [0.0, 0.0, 0.0], atol=1e-9)


def test_a_command_from_before_the_estop_is_not_resumed_after_release() -> None:
    safety = make_filter()
    safety.command(np.array([0.9, 0.4, 0.07]), 0.0)
    safety.engage_estop()
    safety.release_estop()
    outputs = run(safety, 20, t0=0.01)
    np.testing.assert_allclose(outputs, np.tile(REST, (20, 1)))


def test_resync_starts_again_from_the_measured_pose() -> None:
    safety = make_filter()
    for k in range(100):
        safety.command(np.array([0.8, 0.0, 0.0]), k * DT)
        safety.output(k * DT, REST)
    home = np.array([-0.2, -1.0, 0.04])
    safety.resync()
    assert safety.last_output is None
    outputs = run(safety, 30, t0=0.5, measured=home)
    np.testing.assert_allclose(outputs, np.tile(home, (30, 1)))


def test_a_feasible_stream_is_followed_without_lag() -> None:
    """A 200 Hz stream moving at up to 1.6 rad/s, sampled half a period out of phase."""
    safety = make_filter()
    amplitude, omega = np.array([0.8, 0.4, 0.02]), 2.0

    def trajectory(t: float) -> np.ndarray:
        return REST + amplitude * np.sin(omega * t) * np.array([1.0, 1.0, 1.0])

    errors, outputs = [], []
    for k in range(800):
        t_cmd = k * DT
        safety.command(trajectory(t_cmd), now=t_cmd, sent_at=1000.0 + t_cmd)
        t_out = t_cmd + 0.5 * DT
        outputs.append(safety.output(t_out, REST))
        if k > 100:
            errors.append(np.abs(outputs[-1] - trajectory(t_out)))
    # The stream itself is within limits, so the output neither lags nor clamps.
    assert np.max(errors) < 2e-3, np.max(errors, axis=0)
    assert_feasible(np.array(outputs), REST)


def _follow_jittered(
    jitter_s: float, skipped: set[int], playout_s: float = 0.01
) -> tuple[np.ndarray, list[int]]:
    """The filter's outputs and their tick numbers, following a 200 Hz sine stream of which a
    fifth is delivered ``jitter_s`` late (in order: the ones behind wait for it), its own
    ticks listed in ``skipped`` skipped."""
    rng = np.random.default_rng(7)
    safety = SafetyFilter(LIMITS, DT, command_timeout_s=TIMEOUT, playout_delay_s=playout_s)
    amplitude, omega = np.array([0.8, 0.4, 0.02]), 2.0
    events = []
    delivered = 0.0
    for k in range(600):
        late = jitter_s if rng.random() < 0.2 else 0.0
        delivered = max(k * DT + late, delivered)
        command = REST + amplitude * np.sin(omega * k * DT)
        events.append((delivered, 0, command, k * DT))
        if k not in skipped:
            events.append((k * DT + 0.5 * DT, 1, None, None))
    outputs = {}
    for t, kind, command, stamp in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            safety.command(command, now=t, sent_at=1000.0 + stamp)
        else:
            outputs[int(t / DT)] = safety.output(t, REST)
    return np.array([outputs[k] for k in sorted(outputs)]), sorted(outputs)


def test_delivery_jitter_within_the_playout_delay_changes_nothing() -> None:
    """Deliveries 6 ms late, in bursts: with a 10 ms playout delay the output is exactly the
    same as with none (Finding 11: a follower that tracked the newest command braked at every
    late one and raced after the burst behind it); without one, it is not."""
    smooth, _ = _follow_jittered(0.0, set())
    jittered, _ = _follow_jittered(0.006, set())
    np.testing.assert_allclose(jittered, smooth, atol=1e-12)
    smooth_0, _ = _follow_jittered(0.0, set(), playout_s=0.0)
    jittered_0, _ = _follow_jittered(0.006, set(), playout_s=0.0)
    assert np.abs(jittered_0 - smooth_0).max() > 1e-5


def test_a_skipped_tick_is_computed_and_the_output_stays_on_time() -> None:
    """Ticks 200 and 300-301 are skipped: the ticks after them send what the filter would
    have sent anyway (the skipped ticks were computed), not a period behind."""
    every, _ = _follow_jittered(0.0, set())
    skipping, kept = _follow_jittered(0.0, {200, 300, 301})
    np.testing.assert_allclose(skipping, every[kept], atol=1e-12)


@st.composite
def scenarios(draw):
    """Random command streams with junk, gaps (watchdog), e-stops and measured-pose jumps."""
    events = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["command", "command", "junk", "gap", "estop", "release"]))
        target = draw(
            st.lists(st.floats(-3.0, 3.0, allow_nan=False), min_size=3, max_size=3).map(np.array)
        )
        ticks = draw(st.integers(1, 80))
        events.append((kind, target, ticks))
    return events


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_property_output_is_always_feasible_and_never_jumps(events) -> None:
    safety = make_filter()
    measured = REST.copy()
    segment_start, segment = measured.copy(), []
    k = 0
    for kind, target, ticks in events:
        if kind == "estop":
            safety.engage_estop()
        elif kind == "release" and safety.estop_engaged:
            # A new segment: the filter restarts from the measured pose (here: the last output).
            if segment:
                assert_feasible(np.array(segment), segment_start)
                measured = segment[-1]
            safety.release_estop()
            segment_start, segment = measured.copy(), []
        for _ in range(ticks):
            now = k * DT
            if kind == "command":
                safety.command(target, now)
            elif kind == "junk":
                assert safety.command(np.array([target[0], np.nan, 0.0]), now) is not None
            out = safety.output(now, measured)
            assert out.shape == (3,) and np.all(np.isfinite(out))
            segment.append(out)
            k += 1
    assert_feasible(np.array(segment), segment_start)


def test_invalid_construction_and_measured_pose_are_refused() -> None:
    with pytest.raises(ValueError, match="period_s"):
        SafetyFilter(LIMITS, 0.0)
    with pytest.raises(ValueError, match="command_timeout_s"):
        SafetyFilter(LIMITS, DT, command_timeout_s=0.0)
    with pytest.raises(ValueError, match="playout_delay_s"):
        SafetyFilter(LIMITS, DT, playout_delay_s=-0.01)
    with pytest.raises(ValueError, match="max_playout_delay_s"):
        SafetyFilter(LIMITS, DT, max_playout_delay_s=float("nan"))
    with pytest.raises(ValueError, match="unusable"):
        make_filter().output(0.0, np.array([0.0, np.nan, 0.0]))


@pytest.mark.parametrize("scale", [1e6, 1e200, np.finfo(np.float64).max])
def test_huge_finite_targets_streamed_are_clipped_and_never_break_the_filter(scale) -> None:
    # Found by bench/faults.py (malformed joint_command): finite but huge targets streamed
    # 5 ms apart made the stream's velocity estimate overflow to inf; the output went NaN and
    # the sim bridge's state loop died ("target is not finite"), the node process still alive.
    safety = make_filter()
    outputs = []
    for k in range(400):
        sign = 1.0 if k % 2 else -1.0
        safety.command(np.array([sign * scale, -sign * scale, sign * scale]), k * DT, k * DT)
        outputs.append(safety.output(k * DT, REST))
    outputs = np.array(outputs)
    assert np.all(np.isfinite(outputs))
    assert_feasible(outputs, REST)
    safety.command(np.array([0.2, -0.4, 0.05]), 400 * DT, 400 * DT)
    assert np.all(np.isfinite(run(safety, 200, 400 * DT)))
