"""Tests of the chunk container, its timed trajectory and the splice references (no executor)."""

import math

import numpy as np
import pytest

from ramp_policy_node.core.chunk import ActionChunk, TimedTrajectory
from ramp_policy_node.core.splice import (
    AnchoredReference,
    ChunkReference,
    CrossfadeReference,
    EnsembleReference,
    RtcReference,
    SpliceParams,
    cosine_ramp,
    ensemble_weights,
    resume,
    splice,
)

NO_GRIPPER = np.zeros(2, dtype=bool)


def constant_chunk(stamp: float, value: list[float], horizon: int = 20) -> ActionChunk:
    return ActionChunk.from_step_dt(stamp, np.tile(value, (horizon, 1)), 0.02)


def trajectory(chunk: ActionChunk, arrival: float, pose: list[float]) -> TimedTrajectory:
    return TimedTrajectory.from_chunk(chunk, arrival, np.array(pose))[0]


def params(strategy: str, **kwargs) -> SpliceParams:
    values = {
        "strategy": strategy,
        "crossfade_steps": 10,
        "ensemble_decay": 0.1,
        "inference_delay_s": 0.05,
        "switch_mask": NO_GRIPPER,
    }
    values.update(kwargs)
    return SpliceParams(**values)


# ------------------------------------------------------------------ ActionChunk


def test_from_step_dt_follows_the_model_card_rule() -> None:
    chunk = ActionChunk.from_step_dt(10.0, np.zeros((4, 2)), 0.02)
    np.testing.assert_allclose(chunk.t_from_start, [0.02, 0.04, 0.06, 0.08])
    np.testing.assert_allclose(chunk.step_times, 10.0 + chunk.t_from_start)
    assert chunk.horizon == 4
    assert chunk.validate(2) is None


def test_chunk_arrays_are_copied_and_read_only() -> None:
    positions = np.zeros((3, 2))
    chunk = ActionChunk.from_step_dt(0.0, positions, 0.02)
    positions[0, 0] = 9.0
    assert chunk.positions[0, 0] == 0.0
    with pytest.raises(ValueError):
        chunk.positions[0, 0] = 1.0


@pytest.mark.parametrize(
    ("chunk", "key", "detail"),
    [
        (
            ActionChunk(0.0, [0.02, 0.04], [[0.0, float("nan")], [0, 0]]),
            "non-finite position",
            "step 0 joint 1",
        ),
        (
            ActionChunk(0.0, [0.02, 0.04], [[0.0, float("inf")], [0, 0]]),
            "non-finite position",
            "inf",
        ),
        (ActionChunk(0.0, [0.02, 0.04], np.zeros((2, 3))), "wrong dof", "3 joints"),
        (ActionChunk(0.0, [0.02, 0.04], np.zeros(2)), "bad shape", "(H, D)"),
        (ActionChunk(0.0, [0.02, 0.04, 0.06], np.zeros((2, 2))), "bad shape", "(2,)"),
        (ActionChunk(0.0, [0.04, 0.02], np.zeros((2, 2))), "bad time", "step 1"),
        (ActionChunk(0.0, [0.02, 0.02], np.zeros((2, 2))), "bad time", "strictly increasing"),
        (ActionChunk(0.0, [0.0, 0.02], np.zeros((2, 2))), "bad time", "must be > 0"),
        (ActionChunk(0.0, [0.02, float("nan")], np.zeros((2, 2))), "non-finite time", "nan"),
        (ActionChunk(float("inf"), [0.02, 0.04], np.zeros((2, 2))), "bad stamp", "inf"),
        (ActionChunk(0.0, np.zeros(0), np.zeros((0, 2))), "empty", "no steps"),
    ],
)
def test_validate_names_the_problem(chunk: ActionChunk, key: str, detail: str) -> None:
    reason = chunk.validate(2)
    assert reason is not None
    assert reason.startswith(key + ":")
    assert detail in reason


# ------------------------------------------------------------------ TimedTrajectory


def test_trajectory_starts_at_the_arrival_pose_when_the_first_step_is_ahead() -> None:
    chunk = constant_chunk(1.0, [1.0, 2.0], horizon=3)
    traj, dropped = TimedTrajectory.from_chunk(chunk, 1.005, np.array([0.0, 0.0]))
    assert dropped == 0
    np.testing.assert_allclose(traj.sample(1.005), [0.0, 0.0])
    # Halfway between arrival (1.005) and the first step (1.02).
    np.testing.assert_allclose(traj.sample(1.0125), [0.5, 1.0])
    np.testing.assert_allclose(traj.sample(1.02), [1.0, 2.0])
    assert traj.step_dt == pytest.approx(0.02)
    assert traj.end_time == pytest.approx(1.06)


def test_trajectory_skips_past_steps_and_interpolates_linearly() -> None:
    positions = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    chunk = ActionChunk.from_step_dt(0.0, positions, 0.02)
    traj, dropped = TimedTrajectory.from_chunk(chunk, 0.05, np.array([9.0]))
    assert dropped == 2  # steps at 0.02 and 0.04 were past at 0.05
    np.testing.assert_allclose(traj.sample(0.05), [1.5])
    np.testing.assert_allclose(traj.sample(0.07), [2.5])
    np.testing.assert_allclose(traj.sample(0.2), [4.0])  # holds the last target


# ------------------------------------------------------------------ weights


def test_cosine_ramp_is_flat_at_both_ends() -> None:
    assert cosine_ramp(-1.0) == 0.0 and cosine_ramp(0.0) == 0.0
    assert cosine_ramp(0.5) == pytest.approx(0.5)
    assert cosine_ramp(1.0) == 1.0 and cosine_ramp(2.0) == 1.0
    eps = 1e-4
    assert cosine_ramp(eps) / eps < 1e-3
    assert (1.0 - cosine_ramp(1.0 - eps)) / eps < 1e-3


def test_ensemble_weights_follow_act() -> None:
    weights = ensemble_weights(4, 0.1)
    assert weights.sum() == pytest.approx(1.0)
    expected = np.exp(-0.1 * np.arange(4))
    np.testing.assert_allclose(weights, expected / expected.sum())
    assert weights[0] == weights.max()  # oldest weighs most, as in ACT
    np.testing.assert_allclose(ensemble_weights(3, 0.0), [1 / 3] * 3)


# ------------------------------------------------------------------ references


def test_anchored_reference_starts_at_the_pose_and_fades_into_the_chunk() -> None:
    inner = ChunkReference(trajectory(constant_chunk(0.0, [1.0, 1.0]), 0.1, [0, 0]))
    anchored = AnchoredReference(inner, np.array([-0.5, 0.5]), t0=0.1, duration=0.2)
    np.testing.assert_allclose(anchored.sample(0.1), [0.5, 1.5])
    np.testing.assert_allclose(anchored.sample(0.2), [0.75, 1.25])
    np.testing.assert_allclose(anchored.sample(0.3), [1.0, 1.0])
    assert anchored.settled(0.29) is anchored
    assert anchored.settled(0.31) is inner


def test_crossfade_reference_blends_with_a_cosine_and_switches_grippers() -> None:
    old = ChunkReference(trajectory(constant_chunk(0.0, [0.0, 0.0]), 0.0, [0, 0]))
    new = ChunkReference(trajectory(constant_chunk(0.1, [1.0, 0.08]), 0.1, [0, 0]))
    gripper = np.array([False, True])
    blend = CrossfadeReference(old, new, t0=0.15, duration=0.1, switch_mask=gripper)
    np.testing.assert_allclose(blend.sample(0.15), [0.0, 0.08])
    np.testing.assert_allclose(blend.sample(0.2), [0.5, 0.08])
    np.testing.assert_allclose(blend.sample(0.25), [1.0, 0.08])
    assert blend.depth == 2
    assert blend.settled(0.25) is new


def test_rtc_reference_commits_then_decays_linearly() -> None:
    old = ChunkReference(trajectory(constant_chunk(0.0, [0.0, 0.0]), 0.0, [0, 0]))
    new = ChunkReference(trajectory(constant_chunk(0.1, [1.0, 0.08]), 0.1, [0, 0]))
    blend = RtcReference(old, new, t_commit=0.15, t_end=0.35, switch_mask=np.array([0, 1], bool))
    np.testing.assert_allclose(blend.sample(0.14), [0.0, 0.0])  # grippers committed too
    np.testing.assert_allclose(blend.sample(0.2), [0.25, 0.08])
    np.testing.assert_allclose(blend.sample(0.3), [0.75, 0.08])
    np.testing.assert_allclose(blend.sample(0.36), [1.0, 0.08])
    assert blend.old_weight(0.25) == pytest.approx(0.5)


def test_ensemble_reference_averages_covering_chunks_only() -> None:
    a = ChunkReference(trajectory(constant_chunk(0.0, [0.0, 0.0], horizon=5), 0.0, [0, 0]))
    b = ChunkReference(trajectory(constant_chunk(0.05, [1.0, 0.08]), 0.05, [0, 0]))
    ensemble = EnsembleReference((a, b), 0.1, np.array([False, True]))
    w = ensemble_weights(2, 0.1)
    np.testing.assert_allclose(ensemble.sample(0.08), [w[1] * 1.0, 0.08])
    # a ends at 0.1: afterwards only b covers.
    np.testing.assert_allclose(ensemble.sample(0.12), [1.0, 0.08])
    assert ensemble.settled(0.12).depth == 1


def test_splice_builds_each_strategy() -> None:
    first = trajectory(constant_chunk(0.0, [0.0, 0.0]), 0.05, [0, 0])
    second_chunk = constant_chunk(0.1, [1.0, 1.0])
    second = trajectory(second_chunk, 0.16, [0, 0])
    pose = np.zeros(2)
    for strategy, kind in [
        ("replace", ChunkReference),
        ("ensemble", EnsembleReference),
        ("crossfade", CrossfadeReference),
        ("rtc", RtcReference),
    ]:
        current = resume(first, 0.05, pose, params(strategy))
        spliced = splice(current, second, 0.1, 0.16, pose, params(strategy))
        assert isinstance(spliced, kind), strategy
    with pytest.raises(ValueError, match="unknown splice strategy"):
        splice(current, second, 0.1, 0.16, pose, params("average"))


def test_rtc_splice_commits_for_the_inference_delay() -> None:
    first = trajectory(constant_chunk(0.0, [0.0, 0.0]), 0.0, [0, 0])
    second = trajectory(constant_chunk(0.1, [1.0, 1.0]), 0.12, [0, 0])
    spliced = splice(ChunkReference(first), second, 0.1, 0.12, np.zeros(2), params("rtc"))
    assert isinstance(spliced, RtcReference)
    assert spliced.t_commit == pytest.approx(0.15)  # stamp 0.1 + inference delay 0.05
    assert spliced.t_end == pytest.approx(0.4)  # end of the old chunk
    # A late chunk: the prefix is already past, the blend starts at arrival.
    late = trajectory(constant_chunk(0.1, [1.0, 1.0]), 0.2, [0, 0])
    spliced = splice(ChunkReference(first), late, 0.1, 0.2, np.zeros(2), params("rtc"))
    assert spliced.t_commit == pytest.approx(0.2)


def test_crossfade_splice_reanchors_the_new_chunk_to_the_commanded_pose() -> None:
    first = trajectory(constant_chunk(0.0, [0.0, 0.0]), 0.0, [0, 0])
    second = trajectory(constant_chunk(0.1, [1.0, 1.0]), 0.15, [0, 0])
    pose = np.array([0.0, 0.0])
    spliced = splice(ChunkReference(first), second, 0.1, 0.15, pose, params("crossfade"))
    duration = 10 * 0.02
    np.testing.assert_allclose(spliced.sample(0.15), [0.0, 0.0])
    # s = 0.5: 0.5 * old + 0.5 * (new + 0.5 * (pose - new)) = 0.25
    np.testing.assert_allclose(spliced.sample(0.15 + duration / 2), [0.25, 0.25])
    np.testing.assert_allclose(spliced.sample(0.15 + duration), [1.0, 1.0])
    # Continuous velocity at the splice: the blend starts flat.
    slope = (spliced.sample(0.1501) - spliced.sample(0.15)) / 1e-4
    assert np.all(np.abs(slope) < 1e-2)
    assert math.isclose(spliced.end_time, 0.5)
