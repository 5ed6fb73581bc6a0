"""Training data: chunk labels, values, demo sets and LeRobot exports from ``ramp-bag export``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ramp_hilr_teleop.core.export import ExportConfig, export_lerobot
from ramp_hilr_teleop.core.synthetic import synthetic_episode
from ramp_training.dataset import (
    DatasetError,
    EpisodeData,
    build_samples,
    chunk_labels,
    dataset_kind,
    load_episodes,
    save_demo_set,
    success_values,
)

JOINTS = ("joint1", "joint2", "gripper")


def test_chunk_labels_interpolate_and_hold() -> None:
    action = np.arange(5, dtype=float)[:, None] * np.array([[1.0, 2.0]])  # frames at 10 Hz
    labels = chunk_labels(action, fps=10.0, horizon=3, step_dt=0.05)
    assert labels.shape == (5, 3, 2)
    assert np.allclose(labels[0, :, 0], [0.5, 1.0, 1.5])  # t + 0.05, 0.10, 0.15
    assert np.allclose(labels[4, :, 0], 4.0)  # past the end: the last action holds
    assert np.allclose(labels[..., 1], 2 * labels[..., 0])


def test_success_values() -> None:
    values = success_values(4, fps=2.0, success=True, gamma_per_s=0.5)
    assert np.allclose(values, [0.5**1.5, 0.5**1.0, 0.5**0.5, 1.0])
    assert not success_values(4, 2.0, False, 0.5).any()


def _episode(frames: int, success: bool, intervention: slice | None = None) -> EpisodeData:
    rng = np.random.default_rng(frames)
    inter = np.zeros(frames, bool)
    if intervention is not None:
        inter[intervention] = True
    return EpisodeData(
        name=f"ep{frames}",
        fps=10.0,
        state=rng.normal(size=(frames, 3)),
        action=rng.normal(size=(frames, 3)),
        images={c: rng.integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8) for c in ("a", "b")},
        intervention=inter,
        success=success,
        positive=None,
        env_state=None,
    )


def test_samples_mark_corrections_and_successes_positive() -> None:
    episodes = [_episode(6, True), _episode(5, False, slice(1, 3)), _episode(4, True, slice(3, 4))]
    samples = build_samples(episodes, ("a", "b"), 4, 0.1, (1, 3), 0.8, pre_takeover_s=0.2)
    assert samples.count == 15
    assert samples.images.shape == (15, 2, 8, 8, 3)
    # Successful without help: positive. Corrected frames: positive. The 0.2 s (2 frames) of
    # autonomy before a takeover: negative. The rest is left to the advantage estimate.
    assert samples.positive.tolist() == (
        [True] * 6 + [False, True, True, False, False] + [False, False, False, True]
    )
    assert samples.negative.tolist() == (
        [False] * 6 + [True, False, False, False, False] + [False, True, True, False]
    )
    assert samples.future[0].tolist() == [1, 3] and samples.future[5].tolist() == [5, 5]
    assert samples.future[6].tolist() == [7, 9] and samples.future[10].tolist() == [10, 10]
    assert samples.value_target[5] == pytest.approx(1.0) and samples.value_target[6:11].max() == 0
    assert np.isnan(samples.env_target).all()


def test_demo_set_round_trip(tmp_path: Path) -> None:
    episodes = [_episode(6, True), _episode(5, False, slice(1, 3))]
    episodes[0].positive = np.array([True, False, True, True, True, True])
    save_demo_set(tmp_path / "demos", episodes, JOINTS, ("a", "b"))
    assert dataset_kind(tmp_path / "demos") == "demos"
    with pytest.raises(DatasetError, match="already"):
        save_demo_set(tmp_path / "demos", episodes, JOINTS, ("a", "b"))
    loaded, infos = load_episodes([tmp_path / "demos"], (4, 4), ("b",), JOINTS)
    assert infos[0].episodes == 2 and infos[0].frames == 11
    assert loaded[0].images["b"].shape == (6, 4, 4, 3)
    assert np.allclose(loaded[1].state, episodes[1].state.astype(np.float32))
    assert loaded[1].intervention.tolist() == episodes[1].intervention.tolist()
    assert loaded[0].positive.tolist() == episodes[0].positive.tolist()
    with pytest.raises(DatasetError, match="joints"):
        load_episodes([tmp_path / "demos"], (4, 4), ("b",), ("x", "y", "z"))
    with pytest.raises(DatasetError, match="cameras"):
        load_episodes([tmp_path / "demos"], (4, 4), ("c",), JOINTS)


def test_reads_a_ramp_bag_export(tmp_path: Path) -> None:
    bags = tmp_path / "bags"
    synthetic_episode(bags / "ep1", duration_s=2.0, interventions=[(0.5, 1.2)], success=True)
    synthetic_episode(bags / "ep2", duration_s=1.5, success=False, t0_ns=1_800_000_000 * 10**9)
    export_lerobot([bags], tmp_path / "ds", ExportConfig(fps=10, cameras=["front", "wrist"]))
    assert dataset_kind(tmp_path / "ds") == "lerobot"
    episodes, infos = load_episodes([tmp_path / "ds"], (16, 16), ("front", "wrist"), JOINTS)
    assert infos[0].kind == "lerobot" and infos[0].fps == 10.0
    first, second = episodes
    assert first.success and not second.success
    assert first.length >= 19 and second.length >= 14
    # Intervention flags cover 0.5-1.2 s of the first episode only.
    t = np.arange(first.length) / 10.0
    assert first.intervention[(t > 0.55) & (t < 1.15)].all()
    assert not first.intervention[t < 0.45].any() and not second.intervention.any()
    # The synthetic camera shows its frame number as the pixel value (30 Hz camera, 10 Hz data).
    pixels = first.images["front"][:, 8, 8, 0].astype(int)
    assert np.all(np.abs(np.diff(pixels) - 3) <= 2)
    # Joints follow 0.1 (j + 1) sin(t): the state matches at the frame times.
    assert np.allclose(first.state[:, 0], 0.1 * np.sin(t), atol=0.01)
