"""Kinematics, the scripted push expert and the scripted operator's off-track rules."""

from __future__ import annotations

import numpy as np
import pytest

from ramp_training.expert import ExpertConfig, ExpertNoise, PushExpert, SceneState
from ramp_training.kinematics import ArmKinematics, tool_rotation
from ramp_training.operator import OffTrackMonitor, OperatorConfig
from ramp_training.simloop import ExpertSource, SimEpisodeRunner, make_expert
from ramp_training.task import TaskDistribution

HOME = np.array([0.0, 1.3, -1.45, 0.0, 1.0, 0.0, 0.04])
GOAL = np.array([0.36, -0.14])
HALF = np.array([0.05, 0.05])


@pytest.fixture(scope="module")
def kinematics() -> ArmKinematics:
    return ArmKinematics()


def test_ik_reaches_a_pose_the_arm_can_take(kinematics: ArmKinematics) -> None:
    target_q = HOME + np.array([0.3, -0.2, 0.2, 0.1, -0.2, 0.4, 0.0])
    target = kinematics.tool_pose(target_q)
    q = HOME.copy()
    for _ in range(20):
        q = kinematics.solve(q, target.position, target.rotation, rotation_weight=1.0)
    reached = kinematics.tool_pose(q)
    assert np.linalg.norm(reached.position - target.position) < 1e-3
    assert np.allclose(reached.rotation, target.rotation, atol=1e-2)
    assert q[6] == HOME[6]  # the gripper is passed through


def test_ik_steps_are_bounded_and_inside_the_ranges(kinematics: ArmKinematics) -> None:
    far = np.array([0.2, 0.3, 0.3])
    q = kinematics.solve(HOME, far, max_step=0.05)
    assert np.max(np.abs(q - HOME)) <= 0.05 + 1e-12
    q = HOME.copy()
    for _ in range(200):
        q = kinematics.solve(q, np.array([2.0, 2.0, -1.0]))  # unreachable
    assert np.all(q[:6] >= kinematics.lower - 1e-12) and np.all(q[:6] <= kinematics.upper + 1e-12)


def test_tool_rotation_is_a_rotation_across_the_push() -> None:
    rotation = tool_rotation(np.array([0.0, -1.0]), np.array([0.36, 0.1, 0.02]), tilt=0.3)
    assert np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-9)
    assert np.isclose(np.linalg.det(rotation), 1.0)
    assert rotation[2, 0] < -0.9  # fingers point down
    assert abs(rotation[:, 1] @ np.array([0.0, -1.0, 0.0])) < 1e-9  # they open across the push
    flipped = tool_rotation(np.array([0.0, -1.0]), np.array([0.36, 0.1, 0.0]), 0.3, -rotation[:, 1])
    assert np.allclose(flipped[:, 1], -rotation[:, 1])


def test_plan_moves_within_the_speed_bound(kinematics: ArmKinematics) -> None:
    config = ExpertConfig()
    expert = PushExpert(config, ExpertNoise.none(), kinematics)
    scene = SceneState(np.array([0.36, 0.11]), GOAL, HALF)
    plan = expert.plan(HOME, scene, 0.0)
    assert plan.chunk.shape == (config.horizon, 7) and plan.phase == "travel"
    steps = np.abs(np.diff(np.vstack([HOME, plan.chunk]), axis=0))[:, :6]
    assert np.all(steps <= config.max_joint_speed * config.step_dt + 1e-9)
    assert np.allclose(plan.chunk[:, 6], config.gripper_opening)
    assert not plan.perturbed


def test_remaining_path_is_zero_at_the_goal(kinematics: ArmKinematics) -> None:
    expert = PushExpert(noise=ExpertNoise.none(), kinematics=kinematics)
    far = expert.remaining_path(HOME, SceneState(np.array([0.36, 0.11]), GOAL, HALF))
    near = expert.remaining_path(HOME, SceneState(np.array([0.36, 0.0]), GOAL, HALF))
    assert far > near > 0.0
    assert expert.remaining_path(HOME, SceneState(GOAL.copy(), GOAL, HALF)) == 0.0


def test_expert_pushes_the_cube_in_from_wide_starts() -> None:
    runner = SimEpisodeRunner(max_duration_s=15.0, task=TaskDistribution())
    try:
        source = ExpertSource(make_expert(noisy=True))
        episodes = [runner.run(source, seed, record=False) for seed in (11, 12)]
    finally:
        runner.close()
    for ep in episodes:
        assert ep.success, f"seed {ep.seed}: cube ended at {ep.env_state[-1, :2]}"
        assert ep.time_to_success is not None and ep.time_to_success < 15.0
        start = ep.env_state[0, :2]
        assert np.all((start >= [0.30, 0.06]) & (start <= [0.42, 0.16]))


def test_off_track_monitor() -> None:
    config = OperatorConfig(regress_m=0.05, progress_m=0.01, stall_s=2.0)
    monitor = OffTrackMonitor(config)
    monitor.reset(0.0)
    t = 0.0
    for remaining in np.linspace(0.5, 0.3, 20):  # steady progress
        t += 0.1
        assert not monitor.off_track(t, float(remaining))
    assert monitor.off_track(t + 0.1, 0.36)  # backwards by more than regress_m
    assert "backwards" in monitor.reason
    monitor.reset(10.0)
    assert not monitor.off_track(10.0, 0.3)
    assert not monitor.off_track(11.9, 0.295)  # less than progress_m: no new mark
    assert monitor.off_track(12.1, 0.295)
    assert "no progress" in monitor.reason
