"""Property-based tests of InterventionArbiter: whatever the sequence of takeovers, handbacks,
pauses, resumes, e-stops and executor resets, and whatever the sources send (smooth, jumping,
random, beyond the range, masked, silent, with odd stamps), the output stays in the position
range, its finite-difference velocity and acceleration stay within the limits (it never jumps),
a hold never speeds up, and the intervention flag and segments stay consistent with the state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramp_common.limits import JointLimits, limit_step, stop_position
from ramp_hilr_teleop.core.arbiter import ArbiterState, InterventionArbiter

LIMITS = JointLimits.from_lists(
    ["shoulder", "elbow", "gripper"],
    [-1.0, -2.0, 0.0],
    [1.5, 0.5, 0.08],
    [2.0, 1.0, 0.1],
    [10.0, 4.0, 1.0],
)
DT = 0.01
VELOCITY_TOL = LIMITS.max_velocity * 1e-9 + 1e-12
ACCEL_TOL = LIMITS.max_acceleration * DT * 1e-9 + 1e-9
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

REQUESTS = (
    "none",
    "takeover",
    "handback",
    "pause",
    "resume",
    "estop",
    "release",
    "reset_done",
    "stale_reset",
)
SOURCE_MODES = ("silent", "smooth", "jump", "random", "beyond", "masked", "sparse")


@dataclass(frozen=True)
class Phase:
    ticks: int
    request: str
    policy: str
    operator: str


phases = st.lists(
    st.builds(
        Phase,
        ticks=st.integers(1, 60),
        request=st.sampled_from(REQUESTS),
        policy=st.sampled_from(SOURCE_MODES),
        operator=st.sampled_from(SOURCE_MODES),
    ),
    min_size=1,
    max_size=25,
)


class SourceSim:
    """Produces one source's command (or None) per tick in a given mode."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.base = rng.uniform(LIMITS.lower, LIMITS.upper)
        self.stamp = 0.0

    def command(self, mode: str, t: float) -> tuple[np.ndarray, np.ndarray | None] | None:
        span = LIMITS.upper - LIMITS.lower
        rng = self.rng
        if mode == "silent" or (mode == "sparse" and rng.random() < 0.8):
            return None
        if mode in ("smooth", "sparse"):
            q = self.base + 0.3 * span * np.sin(np.array([1.0, 2.3, 0.7]) * t)
            return q, None
        if mode == "jump":
            if rng.random() < 0.05:
                self.base = rng.uniform(LIMITS.lower, LIMITS.upper)
            return self.base.copy(), None
        if mode == "random":
            return rng.uniform(LIMITS.lower - 0.3 * span, LIMITS.upper + 0.3 * span), None
        if mode == "beyond":
            return LIMITS.upper + span * rng.uniform(-3.0, 3.0, 3), None
        mask = rng.random(3) < 0.5  # "masked": some joints only
        mask[rng.integers(3)] = True
        return rng.uniform(LIMITS.lower, LIMITS.upper), mask

    def sent_at(self, t: float) -> float | None:
        """Sender stamps: mostly on time, sometimes jittered, repeated or missing."""
        r = self.rng.random()
        if r < 0.1:
            return None
        if r < 0.2:
            return self.stamp  # repeated stamp
        self.stamp = t + float(self.rng.normal(0.0, 0.003))
        return self.stamp


def apply_request(arbiter: InterventionArbiter, request: str, now: float, measured) -> None:
    if request == "takeover":
        arbiter.takeover(now, "test")
    elif request == "handback":
        arbiter.handback(now, "test")
    elif request == "pause":
        arbiter.pause(now, "test")
    elif request == "resume":
        arbiter.resume(now, "test")
    elif request == "estop":
        arbiter.set_estop(True, now)
    elif request == "release":
        arbiter.update_measured(measured, now)
        arbiter.set_estop(False, now)
    elif request in ("reset_done", "stale_reset"):
        token = arbiter.executor_reset_token()
        if token is not None:
            offset = 0 if request == "reset_done" else -1
            accepted = arbiter.executor_reset_done(token + offset, now)
            assert accepted == (offset == 0)


@PROPERTY_SETTINGS
@given(
    plan=phases,
    seed=st.integers(0, 2**31 - 1),
    blend_s=st.sampled_from([0.0, 0.05, 0.3]),
    timeout_s=st.sampled_from([0.02, 0.1]),
    threshold=st.sampled_from([0.0, 0.05, 0.4]),
)
def test_output_never_exceeds_the_limits_or_jumps(
    plan: list[Phase], seed: int, blend_s: float, timeout_s: float, threshold: float
) -> None:
    rng = np.random.default_rng(seed)
    arbiter = InterventionArbiter(
        LIMITS,
        DT,
        blend_time_s=blend_s,
        source_timeout_s=timeout_s,
        auto_takeover_threshold=threshold,
    )
    policy, operator = SourceSim(rng), SourceSim(rng)
    measured = rng.uniform(LIMITS.lower, LIMITS.upper)
    arbiter.update_measured(measured, 0.0)
    previous: np.ndarray | None = measured  # the output starts from the measurement at rest
    velocity = np.zeros(3)
    now = 0.0
    bridge_stop, bridge_velocity = measured, velocity
    for phase in plan:
        apply_request(arbiter, phase.request, now, measured)
        if previous is None and arbiter.state is not ArbiterState.ESTOP:
            previous, velocity = measured.copy(), np.zeros(3)  # released: restart at rest
        for _ in range(phase.ticks):
            now += DT
            for sim, mode, offer in (
                (policy, phase.policy, arbiter.policy_command),
                (operator, phase.operator, arbiter.operator_command),
            ):
                produced = sim.command(mode, now)
                if produced is None:
                    continue
                q, mask = produced
                if mask is None:
                    offer(q, now, sent_at=sim.sent_at(now))
                else:
                    arbiter.operator_command(q, now, mask=mask, sent_at=sim.sent_at(now))
            holding_before = arbiter.status().following is None
            out = arbiter.step(now)
            state = arbiter.state
            assert arbiter.intervening == (state is ArbiterState.CORRECTING)
            if state is ArbiterState.ESTOP:
                assert out is None
                if previous is not None:  # the bridge brakes on its own to where it stops
                    bridge_stop = stop_position(previous, velocity, DT, LIMITS)
                    bridge_velocity = velocity
                    previous = None
                measured, bridge_velocity, _ = limit_step(
                    measured, bridge_velocity, bridge_stop, DT, LIMITS
                )
                continue
            assert out is not None and previous is not None
            assert np.all(out >= LIMITS.lower - 1e-12) and np.all(out <= LIMITS.upper + 1e-12)
            v = (out - previous) / DT
            assert np.all(np.abs(v) <= LIMITS.max_velocity + VELOCITY_TOL), (v, state)
            assert np.all(np.abs(v - velocity) <= LIMITS.max_acceleration * DT + ACCEL_TOL)
            if holding_before and arbiter.status().following is None:
                assert np.all(np.abs(v) <= np.abs(velocity) + 1e-9), "a hold sped up"
            previous, velocity = out, v
            measured = out

    segments = arbiter.segments()
    for earlier, later in itertools.pairwise(segments):
        assert earlier.end_s is not None and earlier.end_s <= later.start_s
    if segments and segments[-1].end_s is None:
        assert segments[-1].state is arbiter.state
    else:
        assert arbiter.state is ArbiterState.AUTONOMOUS


@PROPERTY_SETTINGS
@given(seed=st.integers(0, 2**31 - 1), blend_s=st.sampled_from([0.0, 0.1, 0.5]))
def test_a_steady_source_is_reached_after_any_handover(seed: int, blend_s: float) -> None:
    """Whatever state the robot is in, a takeover toward a steady operator pose ends exactly
    there, and a handback toward a steady policy pose ends exactly there."""
    rng = np.random.default_rng(seed)
    arbiter = InterventionArbiter(LIMITS, DT, blend_time_s=blend_s, source_timeout_s=0.05)
    arbiter.update_measured(rng.uniform(LIMITS.lower, LIMITS.upper), 0.0)
    policy = SourceSim(rng)
    now = 0.0
    for _ in range(int(rng.integers(1, 100))):
        now += DT
        produced = policy.command("random", now)
        assert produced is not None
        arbiter.policy_command(produced[0], now)
        arbiter.step(now)
    operator_pose = rng.uniform(LIMITS.lower, LIMITS.upper)
    policy_pose = rng.uniform(LIMITS.lower, LIMITS.upper)
    arbiter.takeover(now)
    out = None
    for _ in range(400):  # longest move: 2.5 rad at 1 rad/s plus braking and the blend
        now += DT
        arbiter.operator_command(operator_pose, now)
        out = arbiter.step(now)
    np.testing.assert_allclose(out, operator_pose, atol=1e-9)
    arbiter.handback(now)
    token = arbiter.executor_reset_token()
    assert token is not None and arbiter.executor_reset_done(token, now)
    for _ in range(400):
        now += DT
        arbiter.policy_command(policy_pose, now)
        out = arbiter.step(now)
    np.testing.assert_allclose(out, policy_pose, atol=1e-9)
