"""Training data: episodes from exported datasets and simulated demonstrations (no torch here).

Two on-disk sources, both read into ``EpisodeData`` (images already at the model's input size):

- a LeRobot v3.0 dataset as ``ramp-bag export`` writes it (``meta/info.json``,
  ``data/chunk-000/file-000.parquet`` with ``observation.state``, ``action``, ``episode_index``,
  ``frame_index``, ``intervention``, ``success``; videos ``videos/observation.images.<cam>/
  chunk-000/file-000.mp4`` with all episodes back to back, located through
  ``meta/episodes/chunk-000/file-000.parquet``);
- a demonstration set written by ``save_demo_set`` (``ramp_demos.json`` + one ``.npz`` per
  episode, no pickle), which also keeps ground truth the export cannot have (which frames were
  deliberate perturbations, where the cube was).

``build_samples`` turns episodes into training samples: the chunk label of frame t is the
executed action at t + (k + 1) * step_dt (linear interpolation between frames, held after the
episode's end), plus future-frame indices for the world model's prediction heads, discounted
success values, and the positive/other split that the advantage indicator is trained from.

Units: joint positions rad (m for the gripper) in the dataset's joint order; times s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

DEMO_INDEX = "ramp_demos.json"
DEMO_FORMAT = "ramp-demos/1"
LEROBOT_INFO = "meta/info.json"
LEROBOT_EPISODES = "meta/episodes/chunk-000/file-000.parquet"


class DatasetError(ValueError):
    """A dataset that cannot be used; the text names the folder or file and the problem."""


@dataclass
class EpisodeData:
    """One episode, frames at ``fps``; images (F, h, w, 3) uint8 RGB at the model's size."""

    name: str
    fps: float
    state: np.ndarray
    """(F, D) measured joint positions."""
    action: np.ndarray
    """(F, D) executed joint targets (whoever was in control)."""
    images: dict[str, np.ndarray]
    intervention: np.ndarray
    """(F,) bool: an operator was in control."""
    success: bool
    positive: np.ndarray | None = None
    """(F,) bool, known-good frames (expert data); None when only labels decide."""
    env_state: np.ndarray | None = None
    """(F, 4) cube x, y and goal x, y (m, world frame) where known (simulated demos)."""
    meta: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.state.shape[0])


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset folder holds."""

    path: Path
    kind: str
    """'lerobot' or 'demos'."""
    fps: float
    joint_names: tuple[str, ...]
    cameras: tuple[str, ...]
    episodes: int
    frames: int


# --------------------------------------------------------------------------- demo sets
def save_demo_set(
    out_dir: str | os.PathLike[str],
    episodes: Sequence[EpisodeData],
    joint_names: Sequence[str],
    cameras: Sequence[str],
    extra: dict | None = None,
) -> Path:
    """Write episodes as a demo set (``ramp_demos.json`` + ``episodes/*.npz``); -> index path.

    Refuses a folder that already holds a demo set (nothing is overwritten).
    """
    out = Path(out_dir)
    index_path = out / DEMO_INDEX
    if index_path.exists():
        raise DatasetError(f"{index_path}: a demo set is already there; choose another folder")
    if not episodes:
        raise DatasetError(f"{out}: no episodes to write")
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, ep in enumerate(episodes):
        name = f"episodes/episode_{i:06d}.npz"
        arrays = {
            "state": ep.state.astype(np.float32),
            "action": ep.action.astype(np.float32),
            "intervention": ep.intervention.astype(bool),
        }
        if ep.positive is not None:
            arrays["positive"] = ep.positive.astype(bool)
        if ep.env_state is not None:
            arrays["env_state"] = ep.env_state.astype(np.float32)
        for cam in cameras:
            arrays[f"image_{cam}"] = ep.images[cam]
        np.savez_compressed(out / name, **arrays)
        entries.append({"file": name, "success": bool(ep.success), "frames": ep.length, **ep.meta})
    index = {
        "format": DEMO_FORMAT,
        "fps": float(episodes[0].fps),
        "joint_names": list(joint_names),
        "cameras": list(cameras),
        "image_size": list(episodes[0].images[cameras[0]].shape[1:3]) if cameras else [],
        "episodes": entries,
        **(extra or {}),
    }
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index, indent=2))
    os.replace(tmp, index_path)
    return index_path


def _read_demo_set(
    path: Path, image_size: tuple[int, int], cameras: Sequence[str]
) -> tuple[list[EpisodeData], DatasetInfo]:
    index_path = path / DEMO_INDEX
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{index_path}: cannot read: {exc}") from exc
    if index.get("format") != DEMO_FORMAT:
        raise DatasetError(f"{index_path}: field 'format' is {index.get('format')!r}")
    missing = [c for c in cameras if c not in index.get("cameras", [])]
    if missing:
        raise DatasetError(f"{index_path}: no images of cameras {missing}")
    episodes = []
    for entry in index["episodes"]:
        file = path / entry["file"]
        try:
            with np.load(file, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{file}: cannot read: {exc}") from exc
        images = {c: _resize_all(arrays[f"image_{c}"], image_size) for c in cameras}
        meta = {k: v for k, v in entry.items() if k not in ("file", "success", "frames")}
        episodes.append(
            EpisodeData(
                name=f"{path.name}/{file.stem}",
                fps=float(index["fps"]),
                state=arrays["state"].astype(np.float64),
                action=arrays["action"].astype(np.float64),
                images=images,
                intervention=arrays["intervention"].astype(bool),
                success=bool(entry["success"]),
                positive=arrays.get("positive"),
                env_state=arrays.get("env_state"),
                meta=meta,
            )
        )
    info = DatasetInfo(
        path,
        "demos",
        float(index["fps"]),
        tuple(index["joint_names"]),
        tuple(index["cameras"]),
        len(episodes),
        sum(e.length for e in episodes),
    )
    return episodes, info


# --------------------------------------------------------------------------- LeRobot v3
def _column(table, name: str, where: str) -> np.ndarray:
    import pyarrow as pa

    if name not in table.column_names:
        raise DatasetError(f"{where}: no column {name!r} (columns: {table.column_names})")
    col = table.column(name).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(col), -1)
    return col.to_numpy(zero_copy_only=False)


def _read_lerobot(
    path: Path,
    image_size: tuple[int, int],
    cameras: Sequence[str],
    progress: Callable[[str], None] | None,
) -> tuple[list[EpisodeData], DatasetInfo]:
    import pyarrow.parquet as pq

    info_path = path / LEROBOT_INFO
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{info_path}: cannot read: {exc}") from exc
    features = info.get("features", {})
    for key in ("observation.state", "action"):
        if key not in features:
            raise DatasetError(f"{info_path}: features lack {key!r}")
    fps = float(info["fps"])
    joint_names = tuple(features["observation.state"].get("names") or ())
    have = tuple(
        k.removeprefix("observation.images.")
        for k in features
        if k.startswith("observation.images.")
    )
    missing = [c for c in cameras if c not in have]
    if missing:
        raise DatasetError(f"{info_path}: no video features for cameras {missing} (has {have})")
    data_file = path / info["data_path"].format(chunk_index=0, file_index=0)
    where = str(data_file)
    try:
        table = pq.read_table(data_file)
    except OSError as exc:
        raise DatasetError(f"{data_file}: cannot read: {exc}") from exc
    state = _column(table, "observation.state", where).astype(np.float64)
    action = _column(table, "action", where).astype(np.float64)
    episode_index = _column(table, "episode_index", where).astype(np.int64)
    frame_index = _column(table, "frame_index", where).astype(np.int64)
    intervention = (
        _column(table, "intervention", where).astype(bool)
        if "intervention" in table.column_names
        else np.zeros(len(state), bool)
    )
    frame_success = (
        _column(table, "success", where).astype(bool) if "success" in table.column_names else None
    )
    episodes_table = None
    episodes_file = path / LEROBOT_EPISODES
    if episodes_file.is_file():
        episodes_table = pq.read_table(episodes_file).to_pydict()

    video_frames: dict[str, np.ndarray] = {}
    for cam in cameras:
        key = f"observation.images.{cam}"
        video = path / info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
        if progress is not None:
            progress(f"decoding {video}")
        video_frames[cam] = _decode_video(video, image_size)

    episodes = []
    for ep in np.unique(episode_index):
        rows = np.flatnonzero(episode_index == ep)
        rows = rows[np.argsort(frame_index[rows], kind="stable")]
        success = bool(frame_success[rows[0]]) if frame_success is not None else False
        ep_row = None
        if episodes_table is not None:
            ep_row = episodes_table["episode_index"].index(int(ep))
            if frame_success is None and "success" in episodes_table:
                success = bool(episodes_table["success"][ep_row])
        images = {}
        for cam in cameras:
            start = int(rows[0])
            column = f"videos/observation.images.{cam}/from_timestamp"
            if ep_row is not None and episodes_table is not None and column in episodes_table:
                start = round(float(episodes_table[column][ep_row]) * fps)
            idx = start + frame_index[rows] - frame_index[rows[0]]
            if idx.max() >= len(video_frames[cam]):
                raise DatasetError(
                    f"{path}: episode {ep} needs video frame {idx.max()} of camera {cam}, "
                    f"the video has {len(video_frames[cam])}"
                )
            images[cam] = video_frames[cam][idx]
        episodes.append(
            EpisodeData(
                name=f"{path.name}/episode_{int(ep):06d}",
                fps=fps,
                state=state[rows],
                action=action[rows],
                images=images,
                intervention=intervention[rows],
                success=success,
            )
        )
    return episodes, DatasetInfo(path, "lerobot", fps, joint_names, have, len(episodes), len(state))


def _decode_video(path: Path, image_size: tuple[int, int]) -> np.ndarray:
    """Every frame of a video, resized to (h, w) with INTER_AREA (as the nodes do)."""
    import av

    if not path.is_file():
        raise DatasetError(f"{path}: video file missing")
    frames = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                frames.append(_resize(frame.to_ndarray(format="rgb24"), image_size))
    except av.error.FFmpegError as exc:  # type: ignore[attr-defined]
        raise DatasetError(f"{path}: cannot decode: {exc}") from exc
    if not frames:
        raise DatasetError(f"{path}: no video frames")
    return np.stack(frames)


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if frame.shape[:2] == (h, w):
        return np.ascontiguousarray(frame)
    return cv2.resize(np.ascontiguousarray(frame), (w, h), interpolation=cv2.INTER_AREA)


def _resize_all(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frames.shape[1:3] == tuple(size):
        return frames
    return np.stack([_resize(f, size) for f in frames])


# --------------------------------------------------------------------------- loading
def dataset_kind(path: str | os.PathLike[str]) -> str:
    """'lerobot' or 'demos' for a dataset folder; DatasetError when it is neither."""
    p = Path(path)
    if (p / LEROBOT_INFO).is_file():
        return "lerobot"
    if (p / DEMO_INDEX).is_file():
        return "demos"
    raise DatasetError(
        f"{p}: not a dataset (no {LEROBOT_INFO} of a LeRobot export, no {DEMO_INDEX} demo set)"
    )


def load_episodes(
    paths: Sequence[str | os.PathLike[str]],
    image_size: tuple[int, int],
    cameras: Sequence[str],
    joint_names: Sequence[str],
    progress: Callable[[str], None] | None = None,
) -> tuple[list[EpisodeData], list[DatasetInfo]]:
    """Episodes of every dataset folder in ``paths``, images resized to ``image_size`` (h, w).

    Raises DatasetError naming the folder when a dataset lacks a camera, has other joints or fps
    different from the first one.
    """
    episodes: list[EpisodeData] = []
    infos: list[DatasetInfo] = []
    for raw in paths:
        path = Path(raw)
        kind = dataset_kind(path)
        if kind == "lerobot":
            eps, info = _read_lerobot(path, image_size, cameras, progress)
        else:
            eps, info = _read_demo_set(path, image_size, cameras)
        if info.joint_names and tuple(info.joint_names) != tuple(joint_names):
            raise DatasetError(
                f"{path}: joints {list(info.joint_names)} differ from the model's "
                f"{list(joint_names)}"
            )
        if infos and info.fps != infos[0].fps:
            raise DatasetError(f"{path}: fps {info.fps} differs from {infos[0].path}'s")
        episodes += eps
        infos.append(info)
        if progress is not None:
            progress(
                f"{path}: {info.kind}, {info.episodes} episodes, {info.frames} frames, "
                f"{sum(e.success for e in eps)} successful, "
                f"{sum(int(e.intervention.sum()) for e in eps)} intervention frames"
            )
    if not episodes:
        raise DatasetError(f"no episodes in {[str(p) for p in paths]}")
    return episodes, infos


# --------------------------------------------------------------------------- samples
@dataclass
class Samples:
    """Training samples over the concatenated frames of a list of episodes.

    Frame arrays are indexed by global frame number; sample i is frame ``frame[i]``.
    """

    images: np.ndarray
    """(F, N_cam, h, w, 3) uint8."""
    state: np.ndarray
    """(F, D) float32."""
    chunks: np.ndarray
    """(F, H, D) float32 chunk labels."""
    future: np.ndarray
    """(F, n_horizons) int64: global frame of t + horizon (clamped to the episode's end)."""
    value_target: np.ndarray
    """(F,) float32 discounted success return."""
    positive: np.ndarray
    """(F,) bool: known-good behaviour (expert, intervention, successful episode)."""
    episode: np.ndarray
    """(F,) int64 episode number."""
    env_target: np.ndarray
    """(F, 2) float32 cube xy (m), NaN where unknown."""
    intervention: np.ndarray
    """(F,) bool."""
    negative: np.ndarray
    """(F,) bool: known-bad behaviour (autonomous, just before an operator took over)."""

    @property
    def count(self) -> int:
        return int(self.state.shape[0])


def chunk_labels(action: np.ndarray, fps: float, horizon: int, step_dt: float) -> np.ndarray:
    """(F, H, D): for frame t, the executed actions at t + (k + 1) * step_dt, k < H.

    Linear interpolation between frames; after the last frame the last action holds.
    """
    frames = action.shape[0]
    t = np.arange(frames) / fps
    query = t[:, None] + step_dt * np.arange(1, horizon + 1)[None]
    query = np.minimum(query, t[-1])
    pos = query * fps
    lo = np.clip(np.floor(pos).astype(np.int64), 0, frames - 1)
    hi = np.clip(lo + 1, 0, frames - 1)
    w = (pos - lo)[..., None]
    return (1 - w) * action[lo] + w * action[hi]


def success_values(length: int, fps: float, success: bool, gamma_per_s: float) -> np.ndarray:
    """Discounted success return per frame: gamma^(time to the episode's end) if it succeeded."""
    if not success:
        return np.zeros(length, dtype=np.float32)
    remaining = (length - 1 - np.arange(length)) / fps
    return (gamma_per_s**remaining).astype(np.float32)


def build_samples(
    episodes: Sequence[EpisodeData],
    cameras: Sequence[str],
    horizon: int,
    step_dt: float,
    future_horizons: Sequence[int],
    gamma_per_s: float,
    pre_takeover_s: float = 2.0,
) -> Samples:
    """Samples of every frame of ``episodes`` (see ``Samples``).

    Positive frames: operator corrections, every frame of an episode that succeeded without
    one, and the frames a demo set marks positive (expert, not perturbed). Negative frames: the
    autonomous ``pre_takeover_s`` before each takeover (the operator judged them off track).
    The rest is left to the advantage estimate (``train.advantage_indicators``).
    """
    images, state, chunks, future, values, positive, episode, env, inter = ([] for _ in range(9))
    negative = []
    offset = 0
    for n, ep in enumerate(episodes):
        f = ep.length
        images.append(np.stack([ep.images[c] for c in cameras], axis=1))
        state.append(ep.state.astype(np.float32))
        chunks.append(chunk_labels(ep.action, ep.fps, horizon, step_dt).astype(np.float32))
        idx = np.arange(f)
        future.append(
            np.stack([offset + np.minimum(idx + h, f - 1) for h in future_horizons], axis=1)
        )
        values.append(success_values(f, ep.fps, ep.success, gamma_per_s))
        corrected = ep.intervention.astype(bool)
        good = corrected.copy()
        if ep.positive is not None:
            good |= ep.positive.astype(bool)
        elif ep.success and not corrected.any():
            good[:] = True
        bad = np.zeros(f, dtype=bool)
        lead = max(1, round(pre_takeover_s * ep.fps))
        for start in np.flatnonzero(corrected[1:] & ~corrected[:-1]) + 1:
            bad[max(0, start - lead) : start] = True
        bad &= ~corrected
        positive.append(good & ~bad)
        negative.append(bad)
        episode.append(np.full(f, n, dtype=np.int64))
        if ep.env_state is not None:
            env.append(ep.env_state[:, :2].astype(np.float32))
        else:
            env.append(np.full((f, 2), np.nan, dtype=np.float32))
        inter.append(ep.intervention.astype(bool))
        offset += f
    return Samples(
        images=np.concatenate(images),
        state=np.concatenate(state),
        chunks=np.concatenate(chunks),
        future=np.concatenate(future).astype(np.int64),
        value_target=np.concatenate(values),
        positive=np.concatenate(positive),
        episode=np.concatenate(episode),
        env_target=np.concatenate(env),
        intervention=np.concatenate(inter),
        negative=np.concatenate(negative),
    )


def episode_from_record(record, name: str, source: str) -> EpisodeData:
    """An ``EpisodeData`` from a ``simloop.EpisodeRecord`` (images already at the stored size)."""
    return EpisodeData(
        name=name,
        fps=record.fps,
        state=record.state,
        action=record.action,
        images=record.images,
        intervention=record.intervention,
        success=record.success,
        positive=record.positive if source == "expert" else None,
        env_state=record.env_state,
        meta={
            "seed": int(record.seed),
            "source": source,
            "time_to_success": record.time_to_success,
        },
    )
