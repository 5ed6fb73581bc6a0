"""ramp-bag export on synthetic episodes written with the core writer: LeRobot v3.0 layout."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from ramp_hilr_teleop.core.episode import EpisodeError
from ramp_hilr_teleop.core.export import ExportConfig, export_lerobot
from ramp_hilr_teleop.core.synthetic import synthetic_episode

FPS = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("export")
    episodes = [
        synthetic_episode(root / "bags" / "ep_a", duration_s=3.0, interventions=[(1.0, 1.5)]),
        synthetic_episode(root / "bags" / "ep_b", duration_s=2.0, success=False,
                          task="open the drawer", t0_ns=1_700_000_100_000_000_000),
        synthetic_episode(root / "bags" / "ep_c", duration_s=1.0, cancelled=True,
                          t0_ns=1_700_000_200_000_000_000),
    ]  # fmt: skip
    out = root / "dataset"
    report = export_lerobot([root / "bags"], out, ExportConfig(fps=FPS))
    assert report.episodes == 2 and report.skipped == ["ep_c: cancelled"]
    return out, episodes


def test_layout_and_info(dataset: tuple[Path, list]) -> None:
    out, _ = dataset
    for rel in ("meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                "meta/episodes/chunk-000/file-000.parquet", "data/chunk-000/file-000.parquet",
                "videos/observation.images.front/chunk-000/file-000.mp4",
                "videos/observation.images.wrist/chunk-000/file-000.mp4"):  # fmt: skip
        assert (out / rel).is_file(), rel
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["total_episodes"] == 2 and info["total_tasks"] == 2
    assert (
        info["data_path"].format(chunk_index=0, file_index=0) == "data/chunk-000/file-000.parquet"
    )
    assert (
        info["video_path"].format(video_key="observation.images.front", chunk_index=0, file_index=0)
        == "videos/observation.images.front/chunk-000/file-000.mp4"
    )
    feats = info["features"]
    assert feats["observation.state"] == {
        "dtype": "float32", "shape": [3], "names": ["joint1", "joint2", "gripper"]
    }  # fmt: skip
    assert feats["action"]["shape"] == [3]
    assert feats["observation.images.front"]["dtype"] == "video"
    assert feats["observation.images.front"]["shape"] == [48, 64, 3]
    assert feats["intervention"]["dtype"] == "bool"
    stats = json.loads((out / "meta/stats.json").read_text())
    assert len(stats["action"]["mean"]) == 3
    assert np.array(stats["observation.images.front"]["mean"]).shape == (3, 1, 1)


def test_frames_state_action_and_flags(dataset: tuple[Path, list]) -> None:
    out, episodes = dataset
    data = pq.read_table(out / "data/chunk-000/file-000.parquet").to_pydict()
    # frames k/FPS from the first complete instant to the last joint_command stamp
    assert len(data["index"]) == 30 + 20
    assert data["episode_index"] == [0] * 30 + [1] * 20
    assert data["frame_index"][:3] == [0, 1, 2] and data["frame_index"][30] == 0
    assert data["timestamp"][5] == pytest.approx(0.5)
    flags = data["intervention"][:30]
    assert [i for i, f in enumerate(flags) if f] == [10, 11, 12, 13, 14]  # t in [1.0, 1.5)
    assert not any(data["intervention"][30:])
    assert set(data["success"][:30]) == {True} and set(data["success"][30:]) == {False}
    assert data["next.done"][29] and data["next.done"][49] and sum(data["next.done"]) == 2
    assert data["task_index"][0] == 0 and data["task_index"][30] == 1

    gains = 0.1 * np.arange(1, 4)
    t = np.array(data["timestamp"][:30], dtype=np.float64)
    state = np.array(data["observation.state"][:30])
    action = np.array(data["action"][:30])
    np.testing.assert_allclose(state, gains * np.sin(t)[:, None], atol=1e-6)
    # the executed target at/after t: the command at t leads the state by 10 ms
    np.testing.assert_allclose(action, gains * np.sin(t + 0.01)[:, None], atol=1e-6)
    assert episodes[0].meta.interventions[0].start_s == 1.0


def test_episodes_tasks_and_videos(dataset: tuple[Path, list]) -> None:
    out, _ = dataset
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert eps["episode_index"] == [0, 1] and eps["length"] == [30, 20]
    assert eps["dataset_from_index"] == [0, 30] and eps["dataset_to_index"] == [30, 50]
    assert eps["tasks"] == [["pick the red cube"], ["open the drawer"]]
    assert eps["videos/observation.images.front/from_timestamp"] == [0.0, 3.0]
    assert eps["videos/observation.images.front/to_timestamp"] == [3.0, 5.0]
    assert eps["success"] == [True, False]
    tasks = pq.read_table(out / "meta/tasks.parquet").to_pydict()
    assert tasks == {"task_index": [0, 1], "task": ["pick the red cube", "open the drawer"]}

    with av.open(str(out / "videos/observation.images.front/chunk-000/file-000.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 50 and frames[0].shape == (48, 64, 3)
    # synthetic pixels = camera frame number (30 Hz): export frame k shows camera frame 3k
    means = np.array([f.mean() for f in frames[:30]])
    np.testing.assert_allclose(means, 3 * np.arange(30), atol=3.0)


def test_export_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="no such file"):
        export_lerobot([tmp_path / "missing"], tmp_path / "out")
    ep = synthetic_episode(tmp_path / "bags" / "e", duration_s=0.5)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(EpisodeError, match="not empty"):
        export_lerobot([ep.path], tmp_path / "full")
    with pytest.raises(EpisodeError, match="lacks joints"):
        export_lerobot([ep.path], tmp_path / "o2", ExportConfig(joint_names=["joint1", "elbow"]))
