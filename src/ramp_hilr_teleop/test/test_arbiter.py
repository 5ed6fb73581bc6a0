"""InterventionArbiter (ROS-free): states, smooth handovers, executor reset gate, staleness hold,
auto-takeover, e-stop, operator joint masks, segments and input validation.
"""

from __future__ import annotations

import numpy as np
import pytest

from ramp_common.limits import JointLimits
from ramp_hilr_teleop.core.arbiter import (
    ArbiterState,
    InterventionArbiter,
    Source,
    cosine_blend,
    select_joints,
)

LIMITS = JointLimits.from_lists(
    ["shoulder", "elbow", "gripper"],
    [-2.0, -2.0, 0.0],
    [2.0, 2.0, 0.08],
    [1.0, 1.5, 0.1],
    [8.0, 10.0, 1.0],
)
DT = 0.01
BLEND_S = 0.2
TIMEOUT_S = 0.05
HOME = np.array([0.1, -0.2, 0.04])


class Rig:
    """Drives an arbiter tick by tick on a simulated clock and checks every output's limits."""

    def __init__(self, threshold: float = 0.0, blend_s: float = BLEND_S) -> None:
        self.arbiter = InterventionArbiter(
            LIMITS,
            DT,
            blend_time_s=blend_s,
            source_timeout_s=TIMEOUT_S,
            auto_takeover_threshold=threshold,
        )
        self.now = 0.0
        self.outputs: list[np.ndarray] = []
        self.prev: np.ndarray | None = None
        self.prev_velocity = np.zeros(3)
        self.arbiter.update_measured(HOME, self.now)

    def tick(self, policy=None, operator=None, operator_mask=None) -> np.ndarray | None:
        """One control period: offer the sources' commands (if any), step, check limits."""
        self.now += DT
        if policy is not None:
            self.arbiter.policy_command(np.asarray(policy, float), self.now, sent_at=self.now)
        if operator is not None:
            self.arbiter.operator_command(
                np.asarray(operator, float), self.now, mask=operator_mask, sent_at=self.now
            )
        out = self.arbiter.step(self.now)
        if out is not None:
            self.check(out)
            self.outputs.append(out)
        return out

    def run(self, seconds: float, policy=None, operator=None, operator_mask=None) -> np.ndarray:
        """Ticks for ``seconds``; ``policy``/``operator`` are callables of time or None."""
        out = None
        for _ in range(round(seconds / DT)):
            p = policy(self.now + DT) if policy is not None else None
            o = operator(self.now + DT) if operator is not None else None
            out = self.tick(p, o, operator_mask)
        return out

    def check(self, out: np.ndarray) -> None:
        assert np.all(out >= LIMITS.lower - 1e-12) and np.all(out <= LIMITS.upper + 1e-12)
        if self.prev is not None:
            velocity = (out - self.prev) / DT
            assert np.all(np.abs(velocity) <= LIMITS.max_velocity * (1 + 1e-9) + 1e-12)
            dv = np.abs(velocity - self.prev_velocity)
            assert np.all(dv <= LIMITS.max_acceleration * DT * (1 + 1e-9) + 1e-9)
            self.prev_velocity = velocity
        self.prev = out

    def complete_reset(self) -> None:
        token = self.arbiter.executor_reset_token()
        assert token is not None
        assert self.arbiter.executor_reset_done(token, self.now)


def policy_ramp(t: float) -> np.ndarray:
    """A feasible policy trajectory: slow sines around HOME."""
    return HOME + np.array([0.3 * np.sin(0.8 * t), 0.2 * np.sin(0.6 * t), 0.01 * np.sin(t)])


def test_no_output_before_a_measured_pose_then_starts_there_at_rest() -> None:
    arbiter = InterventionArbiter(LIMITS, DT)
    assert arbiter.step(0.0) is None
    arbiter.update_measured(HOME, 0.0)
    np.testing.assert_allclose(arbiter.step(DT), HOME)  # no source: hold the measured pose
    assert arbiter.state is ArbiterState.AUTONOMOUS


def test_follows_the_policy_after_the_start_blend() -> None:
    rig = Rig()
    rig.run(1.0, policy=policy_ramp)
    # Fed forward with the stream's own velocity, a feasible policy is tracked exactly.
    np.testing.assert_allclose(rig.outputs[-1], policy_ramp(rig.now), atol=1e-6)
    assert rig.arbiter.status().following is Source.POLICY


def test_takeover_blends_into_the_operator_without_a_jump() -> None:
    rig = Rig()
    rig.run(1.0, policy=policy_ramp)
    operator = HOME + np.array([0.6, 0.4, 0.02])
    assert rig.arbiter.takeover(rig.now, "test").accepted
    assert rig.arbiter.intervening
    start = rig.outputs[-1].copy()
    rig.run(BLEND_S / 2, policy=policy_ramp, operator=lambda t: operator)
    halfway = rig.outputs[-1]
    assert np.all(np.abs(halfway - operator)[:2] > 0.05), "reached the operator before the blend"
    assert np.linalg.norm(halfway - start) > 0.01, "did not move toward the operator"
    rig.run(1.5, policy=policy_ramp, operator=lambda t: operator)
    np.testing.assert_allclose(rig.outputs[-1], operator, atol=1e-9)
    # A moving operator is followed too.
    moving = lambda t: operator + np.array([0.2 * np.sin(t), 0.0, 0.0])  # noqa: E731
    rig.run(1.0, policy=policy_ramp, operator=moving)
    np.testing.assert_allclose(rig.outputs[-1], moving(rig.now), atol=1e-6)


def test_handback_waits_for_the_executor_reset_then_blends_into_fresh_policy_commands() -> None:
    rig = Rig()
    operator = HOME + np.array([0.5, 0.0, 0.0])
    rig.arbiter.takeover(rig.now)
    rig.run(1.0, operator=lambda t: operator)
    np.testing.assert_allclose(rig.outputs[-1], operator, atol=1e-9)

    result = rig.arbiter.handback(rig.now, "test")
    assert result.accepted and not rig.arbiter.intervening
    assert rig.arbiter.status().awaiting_executor_reset
    far_policy = HOME - np.array([0.5, 0.3, 0.0])
    rig.run(0.5, policy=lambda t: far_policy)  # stale policy: ignored, the robot holds
    np.testing.assert_allclose(rig.outputs[-1], operator, atol=1e-9)

    token = rig.arbiter.executor_reset_token()
    assert token is not None
    assert not rig.arbiter.executor_reset_done(token + 1, rig.now), "foreign token accepted"
    assert rig.arbiter.executor_reset_done(token, rig.now)
    assert rig.arbiter.executor_reset_token() is None
    # The executor resumes from the measured pose: its first commands start at the operator pose.
    rig.run(0.3, policy=lambda t: operator)
    np.testing.assert_allclose(rig.outputs[-1], operator, atol=1e-9)
    rig.run(2.0, policy=lambda t: far_policy)
    np.testing.assert_allclose(rig.outputs[-1], far_policy, atol=1e-9)
    assert rig.arbiter.status().following is Source.POLICY


def test_a_reset_answer_for_an_older_handback_does_not_open_the_gate() -> None:
    rig = Rig()
    rig.arbiter.takeover(rig.now)
    rig.arbiter.handback(rig.now)
    old = rig.arbiter.executor_reset_token()
    rig.arbiter.takeover(rig.now)
    rig.arbiter.handback(rig.now)
    assert old is not None and not rig.arbiter.executor_reset_done(old, rig.now)
    assert rig.arbiter.status().awaiting_executor_reset


def test_pause_holds_and_resume_returns_to_the_previous_state() -> None:
    rig = Rig()
    rig.run(0.5, policy=policy_ramp)
    assert rig.arbiter.pause(rig.now, "test").accepted
    assert rig.arbiter.state is ArbiterState.PAUSED
    rig.run(0.5, policy=policy_ramp)
    held = rig.outputs[-1]
    rig.run(0.2, policy=policy_ramp)
    np.testing.assert_array_equal(rig.outputs[-1], held)
    result = rig.arbiter.resume(rig.now, "test")
    assert result.accepted and rig.arbiter.state is ArbiterState.AUTONOMOUS
    assert rig.arbiter.status().awaiting_executor_reset  # the policy ran on: stale chunks
    rig.complete_reset()
    rig.run(1.5, policy=policy_ramp)
    np.testing.assert_allclose(rig.outputs[-1], policy_ramp(rig.now), atol=1e-6)

    rig.arbiter.takeover(rig.now)
    rig.arbiter.pause(rig.now)
    rig.arbiter.resume(rig.now)
    assert rig.arbiter.state is ArbiterState.CORRECTING


def test_a_silent_source_makes_it_decelerate_and_hold_then_blend_back_in() -> None:
    rig = Rig(blend_s=0.0)
    velocity = np.array([0.9, -1.2, 0.0])
    rig.run(1.0, policy=lambda t: HOME + velocity * (t - 0.5) * (t > 0.5))
    assert np.any(np.abs(rig.prev_velocity) > 0.5), "not moving before the silence"
    rig.run(1.0)  # silence: brake within the limits and stop
    np.testing.assert_allclose(rig.prev_velocity, 0.0, atol=1e-12)
    stopped = rig.outputs[-1]
    assert rig.arbiter.status().following is None
    assert rig.arbiter.stats()["stale_holds"] == 1
    target = stopped + np.array([0.2, 0.2, 0.0])
    rig.run(1.0, policy=lambda t: target)
    np.testing.assert_allclose(rig.outputs[-1], target, atol=1e-9)


def test_a_lost_source_holds_on_the_next_tick_not_after_the_timeout() -> None:
    """The executor's process exited (announced): brake at once; its restart blends back in."""
    rig = Rig(blend_s=0.0)
    velocity = np.array([0.9, -1.2, 0.0])
    rig.run(1.0, policy=lambda t: HOME + velocity * (t - 0.5) * (t > 0.5))
    assert rig.arbiter.status().following is Source.POLICY
    before = rig.prev_velocity.copy()
    rig.arbiter.source_lost(Source.POLICY)
    rig.tick()  # one tick later (10 ms, inside the 50 ms timeout): already braking
    assert rig.arbiter.status().following is None
    moving = np.abs(before) > 0.1
    assert np.all(np.abs(rig.prev_velocity[moving]) < np.abs(before[moving]) - 1e-3)
    assert rig.arbiter.stats()["source_exits"] == 1
    rig.run(1.0)
    np.testing.assert_allclose(rig.prev_velocity, 0.0, atol=1e-12)
    target = rig.outputs[-1] + np.array([0.2, 0.2, 0.0])
    rig.run(1.0, policy=lambda t: target)
    np.testing.assert_allclose(rig.outputs[-1], target, atol=1e-9)


def test_an_upstream_exit_holds_at_once_and_drives_again_after_a_reset_at_rest() -> None:
    """The policy's pipeline died (announced): the arbiter brakes from its own output at once,
    ignores the executor's stream (still braking one stream behind), asks for the executor
    reset only once it is at rest, and drives again on commands after the reset."""
    rig = Rig(blend_s=0.0)
    velocity = np.array([0.9, -1.2, 0.0])
    rig.run(1.0, policy=lambda t: HOME + velocity * (t - 0.5) * (t > 0.5))
    before = rig.prev_velocity.copy()
    assert rig.arbiter.upstream_lost(rig.now, "policy_node exited")
    status = rig.arbiter.status()
    assert status.reason == "holding: policy_node exited" and status.awaiting_executor_reset
    assert rig.arbiter.executor_reset_token() is None  # still moving: no reset yet
    rig.tick(policy=HOME + velocity * (rig.now + DT - 0.5))  # the stream goes on: not followed
    moving = np.abs(before) > 0.1
    assert np.all(np.abs(rig.prev_velocity[moving]) < np.abs(before[moving]) - 1e-3)
    rig.run(0.5, policy=lambda t: HOME + velocity * (t - 0.5))
    np.testing.assert_allclose(rig.prev_velocity, 0.0, atol=1e-12)
    held = rig.outputs[-1].copy()
    token = rig.arbiter.executor_reset_token()
    assert token is not None and rig.arbiter.executor_reset_done(token, rig.now)
    rig.run(0.3, policy=lambda t: held)  # the reset executor holds the measured pose
    np.testing.assert_allclose(rig.outputs[-1], held, atol=1e-9)
    target = held + np.array([0.2, 0.2, 0.0])
    rig.run(1.0, policy=lambda t: target)  # the restarted pipeline's chunks drive
    np.testing.assert_allclose(rig.outputs[-1], target, atol=1e-9)
    assert rig.arbiter.stats()["upstream_holds"] == 1
    rig.arbiter.takeover(rig.now)
    assert not rig.arbiter.upstream_lost(rig.now, "policy_node exited")  # the operator drives


def test_a_skipped_tick_is_computed_and_the_output_stays_on_time() -> None:
    """The arbiter's loop skipped two ticks while following a moving policy stream: the tick
    after them sends what it would have sent anyway, not a period behind its stream."""
    every, skipping = Rig(blend_s=0.0), Rig(blend_s=0.0)
    velocity = np.array([0.9, -1.2, 0.0])
    for k in range(1, 80):
        now = k * DT
        command = HOME + velocity * max(now - 0.2, 0.0)
        for rig in (every, skipping):
            rig.arbiter.policy_command(command, now, sent_at=now)
        expected = every.arbiter.step(now)
        if k in (40, 41):
            continue  # the skipping loop ran late past these ticks
        np.testing.assert_allclose(skipping.arbiter.step(now), expected, atol=1e-12)


def test_operator_mask_holds_the_joints_the_operator_does_not_drive() -> None:
    rig = Rig()
    rig.run(0.5, policy=policy_ramp)
    rig.arbiter.takeover(rig.now)
    at_takeover = rig.outputs[-1].copy()
    mask = np.array([True, False, False])
    operator = np.array([0.8, 99.0, 99.0])  # values outside the mask are ignored
    rig.run(1.5, policy=policy_ramp, operator=lambda t: operator, operator_mask=mask)
    out = rig.outputs[-1]
    assert out[0] == pytest.approx(0.8)
    # The others come to rest where braking from the takeover takes them (close by).
    np.testing.assert_allclose(out[1:], at_takeover[1:], atol=0.05)
    np.testing.assert_allclose(rig.prev_velocity, 0.0, atol=1e-12)


def test_auto_takeover_when_the_operator_moves_beyond_the_threshold() -> None:
    rig = Rig(threshold=0.1)
    leader = HOME + np.array([0.3, 0.0, 0.0])
    rig.run(0.5, policy=policy_ramp, operator=lambda t: leader)
    assert rig.arbiter.state is ArbiterState.AUTONOMOUS  # the leader rests: no takeover
    nudged = leader + np.array([0.0, 0.09, 0.0])
    rig.run(0.2, policy=policy_ramp, operator=lambda t: nudged)
    assert rig.arbiter.state is ArbiterState.AUTONOMOUS  # below the threshold
    moved = leader + np.array([0.0, 0.15, 0.0])
    rig.tick(policy_ramp(rig.now + DT), moved)
    assert rig.arbiter.state is ArbiterState.CORRECTING
    status = rig.arbiter.status()
    assert "auto" in status.reason and "elbow" in status.reason
    assert rig.arbiter.stats()["auto_takeovers"] == 1
    rig.run(1.5, operator=lambda t: moved)
    np.testing.assert_allclose(rig.outputs[-1], moved, atol=1e-9)

    # Handback re-syncs the reference: the leader resting where the operator left it is fine.
    rig.arbiter.handback(rig.now)
    rig.complete_reset()
    rig.run(0.5, policy=policy_ramp, operator=lambda t: moved)
    assert rig.arbiter.state is ArbiterState.AUTONOMOUS


def test_auto_takeover_off_with_a_zero_threshold() -> None:
    rig = Rig(threshold=0.0)
    rig.run(0.3, policy=policy_ramp, operator=lambda t: HOME + np.array([t, 0.0, 0.0]))
    assert rig.arbiter.state is ArbiterState.AUTONOMOUS


def test_estop_stops_output_refuses_requests_and_release_resyncs_into_paused() -> None:
    rig = Rig()
    rig.arbiter.takeover(rig.now)
    operator = HOME + np.array([0.4, 0.0, 0.0])
    rig.run(0.5, operator=lambda t: operator)
    rig.arbiter.set_estop(True, rig.now)
    assert rig.arbiter.state is ArbiterState.ESTOP
    assert not rig.arbiter.intervening
    assert rig.tick(operator=operator) is None
    for request in (rig.arbiter.takeover, rig.arbiter.handback, rig.arbiter.pause):
        result = request(rig.now)
        assert not result.accepted and "e-stop" in result.message
    stopped_at = HOME + np.array([0.25, 0.0, 0.0])  # where the bridge brought it to rest
    rig.arbiter.update_measured(stopped_at, rig.now)
    rig.arbiter.set_estop(False, rig.now)
    assert rig.arbiter.state is ArbiterState.PAUSED
    rig.prev, rig.prev_velocity = stopped_at, np.zeros(3)  # restart at rest from the measurement
    rig.run(0.3, operator=lambda t: operator)
    np.testing.assert_array_equal(rig.outputs[-1], stopped_at)  # paused: holds
    assert rig.arbiter.resume(rig.now).message == "resumed: CORRECTING"
    rig.run(1.0, operator=lambda t: operator)
    np.testing.assert_allclose(rig.outputs[-1], operator, atol=1e-9)


def test_segments_record_every_period_outside_autonomous() -> None:
    rig = Rig()
    rig.run(0.1, policy=policy_ramp)
    rig.arbiter.takeover(1.0, "key")
    rig.arbiter.pause(2.0, "service")
    rig.arbiter.resume(3.0, "service")
    rig.arbiter.handback(4.0, "gamepad button")
    rig.arbiter.set_estop(True, 5.0)
    segments = [s.as_dict() for s in rig.arbiter.segments()]
    assert segments == [
        {
            "state": "CORRECTING",
            "start_s": 1.0,
            "end_s": 2.0,
            "start_reason": "takeover: key",
            "end_reason": "pause: service",
        },
        {
            "state": "PAUSED",
            "start_s": 2.0,
            "end_s": 3.0,
            "start_reason": "pause: service",
            "end_reason": "resume: service",
        },
        {
            "state": "CORRECTING",
            "start_s": 3.0,
            "end_s": 4.0,
            "start_reason": "resume: service",
            "end_reason": "handback: gamepad button",
        },
        {
            "state": "ESTOP",
            "start_s": 5.0,
            "end_s": None,
            "start_reason": "e-stop engaged",
            "end_reason": "",
        },
    ]
    assert rig.arbiter.status().version == 5


def test_redundant_requests_are_accepted_without_a_transition() -> None:
    arbiter = InterventionArbiter(LIMITS, DT)
    assert arbiter.handback(0.0).message == "policy already in control"
    assert arbiter.resume(0.0).message == "not paused (AUTONOMOUS)"
    arbiter.takeover(0.0)
    assert arbiter.takeover(0.1).message == "operator already in control"
    arbiter.pause(0.2)
    assert arbiter.pause(0.3).message == "already paused"
    assert arbiter.status().version == 2
    assert arbiter.stats()["takeovers"] == 1


def test_bad_commands_are_rejected_with_the_joint_named_and_counted() -> None:
    arbiter = InterventionArbiter(LIMITS, DT)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        arbiter.policy_command(np.zeros(2), 0.0)
    with pytest.raises(ValueError, match="elbow"):
        arbiter.policy_command(np.array([0.0, np.nan, 0.0]), 0.0)
    with pytest.raises(ValueError, match="gripper"):
        arbiter.operator_command(np.array([0.0, 0.0, np.inf]), 0.0)
    # A non-finite value outside the mask is irrelevant.
    arbiter.operator_command(np.array([0.0, 0.0, np.inf]), 0.0, mask=np.array([1, 1, 0], bool))
    with pytest.raises(ValueError, match="mask"):
        arbiter.operator_command(np.zeros(3), 0.0, mask=np.zeros(3, bool))
    with pytest.raises(ValueError, match="measured positions"):
        arbiter.update_measured(np.array([np.nan, 0.0, 0.0]), 0.0)
    assert arbiter.stats()["rejected_commands"] == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"control_period_s": 0.0}, "control_period_s"),
        ({"blend_time_s": -1.0}, "blend_time_s"),
        ({"source_timeout_s": 0.0}, "source_timeout_s"),
        ({"auto_takeover_threshold": -0.1}, "auto_takeover_threshold"),
    ],
)
def test_invalid_configuration_names_the_parameter(kwargs: dict, match: str) -> None:
    args = {"control_period_s": DT, **kwargs}
    with pytest.raises(ValueError, match=match):
        InterventionArbiter(LIMITS, **args)


def test_select_joints_maps_names_and_reports_problems() -> None:
    values, mask = select_joints(LIMITS.names, ["gripper", "shoulder"], [0.05, 0.3])
    np.testing.assert_array_equal(values, [0.3, 0.0, 0.05])
    np.testing.assert_array_equal(mask, [True, False, True])
    with pytest.raises(ValueError, match="unknown joints"):
        select_joints(LIMITS.names, ["wrist"], [0.0])
    with pytest.raises(ValueError, match="duplicate"):
        select_joints(LIMITS.names, ["elbow", "elbow"], [0.0, 0.1])
    with pytest.raises(ValueError, match="2 joint names but 1"):
        select_joints(LIMITS.names, ["elbow", "gripper"], [0.0])
    with pytest.raises(ValueError, match=r"non-finite.*elbow"):
        select_joints(LIMITS.names, ["elbow"], [float("nan")])
    with pytest.raises(ValueError, match="no joints"):
        select_joints(LIMITS.names, [], [])


def test_cosine_blend_is_smooth_at_both_ends() -> None:
    assert cosine_blend(0.0) == (0.0, 0.0)
    assert cosine_blend(1.0) == (1.0, 0.0)
    w, dw = cosine_blend(0.5)
    assert w == pytest.approx(0.5) and dw == pytest.approx(np.pi / 2)
    grid = np.linspace(0, 1, 101)
    weights = [cosine_blend(p)[0] for p in grid]
    assert np.all(np.diff(weights) >= 0)
