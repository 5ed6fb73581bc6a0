"""Property-based tests of ChunkExecutor: whatever the chunks, timing and gaps, for every
strategy the command stream stays within the position, velocity and acceleration limits (finite
differences at the control period, so a splice never jumps), and a long gap ends in a hold.
"""

import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramp_common.limits import JointLimits
from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import ChunkExecutor
from ramp_policy_node.core.splice import SPLICE_STRATEGIES

LIMITS = JointLimits.from_lists(
    ["shoulder", "elbow", "gripper"],
    [-1.0, -2.0, 0.0],
    [1.5, 0.5, 0.08],
    [2.0, 1.0, 0.1],
    [10.0, 4.0, 1.0],
)
GRIPPER = 2
WATCHDOG_S = 0.3
SETTLE_S = 0.4  # longest stop after the watchdog: 2 rad/s at 10 rad/s^2 is 0.2 s
PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@dataclass
class Arrival:
    time: float
    chunk: ActionChunk


@dataclass
class Event:
    time: float
    kind: str  # "estop", "release", "reset"


def chunk_positions(rng: np.random.Generator, kind: str, times: np.ndarray) -> np.ndarray:
    low, high = LIMITS.lower, LIMITS.upper
    span = high - low
    if kind == "smooth":
        base = rng.uniform(low, high)
        amplitude = rng.uniform(0, 0.5, 3) * span
        freq = rng.uniform(0.2, 3.0, 3)
        return base + amplitude * np.sin(2 * np.pi * freq * times[:, None])
    if kind == "random":  # not smooth at all, partly beyond the limits
        return rng.uniform(low - 0.3 * span, high + 0.3 * span, (len(times), 3))
    if kind == "beyond":  # far outside the range
        return np.tile(rng.uniform(low - 2 * span, high + 2 * span), (len(times), 1))
    positions = rng.uniform(low, high, (len(times), 3))  # "nan": must be refused
    positions[rng.integers(len(times)), rng.integers(3)] = np.nan
    return positions


@st.composite
def chunk_streams(draw) -> tuple[float, list[Arrival], list[Event]]:
    period = draw(st.sampled_from([0.002, 0.005]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arrivals: list[Arrival] = []
    events: list[Event] = []
    stamp = draw(st.floats(0.0, 0.1))
    for _ in range(draw(st.integers(1, 8))):
        step_dt = draw(st.sampled_from([0.01, 0.02, 0.033]))
        horizon = draw(st.integers(1, 25))
        latency = draw(st.floats(0.0, 0.2))
        kind = draw(st.sampled_from(["smooth", "smooth", "random", "beyond", "nan"]))
        offsets = (np.arange(horizon) + 1) * step_dt
        chunk = ActionChunk(stamp, offsets, chunk_positions(rng, kind, stamp + offsets))
        arrival = stamp + latency
        arrivals.append(Arrival(arrival, chunk))
        if draw(st.integers(0, 9)) == 0:
            events.append(
                Event(
                    arrival + draw(st.floats(0.0, 0.2)), draw(st.sampled_from(["estop", "reset"]))
                )
            )
            if events[-1].kind == "estop":
                events.append(Event(events[-1].time + draw(st.floats(0.0, 0.5)), "release"))
        # Gaps: back-to-back, typical (~0.1 s) and long ones (beyond the watchdog).
        stamp += draw(st.sampled_from([0.0, 0.05, 0.1, 0.1, 0.15, 1.2]))
    arrivals.sort(key=lambda a: a.time)
    events.sort(key=lambda e: e.time)
    return period, arrivals, events


def replay(strategy: str, period: float, arrivals: list[Arrival], events: list[Event]):
    """Run until well after the last input. Returns (times, commands, restart ticks, accepted)."""
    executor = ChunkExecutor(
        LIMITS,
        period,
        strategy=strategy,
        gripper_indices=[GRIPPER],
        watchdog_timeout_s=WATCHDOG_S,
        crossfade_steps=3,
    )
    start_pose = np.array([0.2, -0.5, 0.04])
    executor.update_measured(start_pose, 0.0)
    end = max([a.time for a in arrivals] + [e.time for e in events]) + WATCHDOG_S + SETTLE_S + 0.3
    times = np.arange(int(end / period) + 1) * period
    commands = np.empty((len(times), 3))
    restarts = [0]
    accepted: list[float] = []
    pending_a, pending_e = list(arrivals), list(events)
    measured = start_pose
    for k, now in enumerate(times):
        while pending_e and pending_e[0].time <= now:
            event = pending_e.pop(0)
            if event.kind == "estop":
                executor.set_estop(True, now)
            elif event.kind == "release":
                executor.set_estop(False, now)
                restarts.append(k)
            else:
                # A handover while e-stopped changes nothing (the e-stop keeps braking/holding);
                # otherwise it restarts from the measured pose at rest.
                if executor.state != "ESTOP":
                    restarts.append(k)
                executor.reset_to_measured(now)
        while pending_a and pending_a[0].time <= now:
            if executor.submit(pending_a.pop(0).chunk, now) is None:
                accepted.append(now)
        command = executor.step(now)
        assert command is not None
        commands[k] = command
        measured = command
        executor.update_measured(measured, now)
    assert executor.state in ("HOLDING", "ESTOP")
    return times, commands, restarts, accepted


def assert_within_limits(commands: np.ndarray, period: float, start: np.ndarray) -> None:
    """The segment starts at rest at ``start`` (the measured pose)."""
    stream = np.vstack([start, start, commands])
    velocity = np.diff(stream, axis=0) / period
    acceleration = np.diff(velocity, axis=0) / period
    assert np.all(stream >= LIMITS.lower - 1e-9), "below a position limit"
    assert np.all(stream <= LIMITS.upper + 1e-9), "above a position limit"
    excess_v = np.abs(velocity) - LIMITS.max_velocity
    assert excess_v.max() <= 1e-6, f"velocity limit exceeded by {excess_v.max()}"
    excess_a = np.abs(acceleration) - LIMITS.max_acceleration
    assert excess_a.max() <= 1e-5, f"acceleration limit exceeded by {excess_a.max()}"


@pytest.mark.parametrize("strategy", SPLICE_STRATEGIES)
@PROPERTY_SETTINGS
@given(stream=chunk_streams())
def test_commands_never_exceed_the_limits_and_long_gaps_end_in_a_hold(
    strategy: str, stream
) -> None:
    period, arrivals, _ = stream
    times, commands, _, accepted = replay(strategy, period, arrivals, [])
    assert_within_limits(commands, period, np.array([0.2, -0.5, 0.04]))
    # Every gap longer than the watchdog (plus the time to stop) ends in a hold: zero velocity,
    # a constant command, until the next accepted chunk; and so does the end of the stream.
    ends = [*accepted[1:], times[-1] + period][: len(accepted)]
    for last, following in zip(accepted, ends, strict=True):
        settled = (times >= last + WATCHDOG_S + SETTLE_S) & (times < following)
        if settled.sum() >= 2:
            segment = commands[settled]
            np.testing.assert_array_equal(segment, np.tile(segment[0], (len(segment), 1)))
    tail = commands[-int(0.1 / period) :]
    np.testing.assert_array_equal(tail, np.tile(tail[-1], (len(tail), 1)))


@pytest.mark.parametrize("strategy", SPLICE_STRATEGIES)
@PROPERTY_SETTINGS
@given(stream=chunk_streams())
def test_estop_and_handover_keep_the_limits_between_restarts(strategy: str, stream) -> None:
    period, arrivals, events = stream
    _, commands, restarts, _ = replay(strategy, period, arrivals, events)
    # A restart (e-stop release, handover) begins at rest from the measured pose, which here
    # is the last command: every segment between restarts must be within the limits.
    bounds = [*restarts, len(commands)]
    start = np.array([0.2, -0.5, 0.04])
    for begin, stop in itertools.pairwise(bounds):
        if stop > begin:
            assert_within_limits(commands[begin:stop], period, start)
            start = commands[stop - 1]
