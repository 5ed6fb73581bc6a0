"""Episode bags -> a training dataset in the LeRobot v3.0 layout (pyarrow + PyAV, no lerobot).

Frames are aligned at the policy rate ``fps`` on the header-stamp clock of each episode:
frame k is at ``t_k = t_first + k / fps``, where ``t_first`` is the first instant at which every
camera and the joint state have delivered. Per frame:

- ``observation.images.<camera>``: the newest frame of that camera with stamp <= t_k (video);
- ``observation.state``: the newest ``joint_states`` positions with stamp <= t_k;
- ``action``: the executed target, the first ``joint_command`` with stamp >= t_k (what the
  robot was told to do next, whoever was in control);
- ``intervention``: ``ramp/intervention`` at t_k (bag/log time; true = operator in control);
- ``success``: the episode's success label (false when unlabeled), ``next.done`` on the last
  frame, plus LeRobot's ``timestamp`` (= k / fps), ``frame_index``, ``episode_index``,
  ``index``, ``task_index``.

The last frames stop where no later joint_command exists. Layout written (LeRobot v3.0):
``meta/info.json``, ``meta/stats.json``, ``meta/tasks.parquet``,
``meta/episodes/chunk-000/file-000.parquet``, ``data/chunk-000/file-000.parquet``,
``videos/<key>/chunk-000/file-000.mp4`` (all episodes back to back), and
``meta/ramp_export.json`` (source bags and settings). Video: AV1 (libsvtav1) when PyAV has it,
else H.264, else MPEG-4 Part 2; yuv420p, so odd image sizes lose their last row/column.

No ROS import.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ramp_common.scheduling import is_realtime, reset_realtime_threads

from .bag_reader import EpisodeBag, image_to_rgb
from .episode import EpisodeError, iter_episode_dirs

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
CODEC_PREFERENCE = (("libsvtav1", "av1"), ("libx264", "h264"), ("h264", "h264"), ("mpeg4", "mpeg4"))
"""(PyAV encoder, codec name stored in info.json), best first."""
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
IMAGE_STATS_STRIDE = 4
"""Image stats use every 4th pixel in each direction of every exported frame."""


@dataclass
class ExportConfig:
    """What to export and how."""

    fps: int = 10
    cameras: Sequence[str] | None = None
    """Camera names (camera/<name>/image_raw); None = every camera topic in the first bag."""
    state_topic: str = "joint_states"
    action_topic: str = "joint_command"
    intervention_topic: str = "ramp/intervention"
    joint_names: Sequence[str] | None = None
    """State/action joint order; None = the first joint_states message's order."""
    include_cancelled: bool = False
    codec: str | None = None
    """PyAV encoder name; None = the first of CODEC_PREFERENCE PyAV can open."""
    crf: int = 30
    gop: int = 2
    """Key frame every N frames (small = fast random access for training loaders)."""
    robot_type: str | None = None


@dataclass
class ExportReport:
    """What was exported."""

    out_dir: Path
    episodes: int = 0
    frames: int = 0
    skipped: list[str] = field(default_factory=list)
    codec: str = ""
    seconds: float = 0.0
    video_frames: int = 0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def pick_codec(preferred: str | None = None) -> tuple[str, str]:
    """(PyAV encoder, info.json codec name) of the first encoder PyAV can open here."""
    import av

    choices = [(preferred, preferred)] if preferred else list(CODEC_PREFERENCE)
    for encoder, name in choices:
        try:
            av.codec.Codec(encoder, "w")
        except Exception:  # not built into this PyAV
            continue
        if preferred:
            name = {"libsvtav1": "av1", "libx264": "h264"}.get(encoder, encoder)
        return encoder, name
    raise EpisodeError(f"no usable video encoder in PyAV (tried {[c[0] for c in choices]})")


class _VideoStream:
    """One camera's mp4 file: every exported frame of every episode, back to back."""

    def __init__(self, path: Path, fps: int, encoder: str, crf: int, gop: int) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._av = av
        self._container = av.open(str(path), "w")
        self._fps = fps
        self._encoder = encoder
        self._crf = crf
        self._gop = gop
        self._stream: Any = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        stream = self._container.add_stream(self._encoder, rate=Fraction(self._fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, self._fps)
        options = {"g": str(self._gop)}
        if self._encoder == "libsvtav1":
            options.update({"crf": str(self._crf), "preset": "10"})
        elif self._encoder in ("libx264", "h264"):
            options.update({"crf": str(self._crf), "preset": "veryfast"})
        else:
            options.update({"qscale": "3"})
        stream.options = options
        self._stream = stream
        self.size = (width, height)

    def add(self, rgb: np.ndarray, where: str) -> None:
        height, width = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
        if self._stream is None:
            self._open(width, height)
        elif (width, height) != self.size:
            raise EpisodeError(
                f"{where}: image size {rgb.shape[1]}x{rgb.shape[0]} differs from the first "
                f"exported frame of this camera ({self.size[0]}x{self.size[1]})"
            )
        frame = self._av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[:height, :width]), format="rgb24"
        )
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()


@dataclass
class _EpisodeFrames:
    index: int
    name: str
    task: str
    success: bool
    timestamps: np.ndarray
    state: np.ndarray
    action: np.ndarray
    intervention: np.ndarray
    image_stats: dict[str, list[np.ndarray]] = field(default_factory=dict)


def export_lerobot(
    paths: Sequence[Path],
    out_dir: Path,
    config: ExportConfig | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export episode bags (folders, or folders of bag folders) to ``out_dir``.

    ``out_dir`` must not exist or be empty. Raises EpisodeError naming the bag and the problem.
    """
    config = config or ExportConfig()
    if config.fps <= 0:
        raise EpisodeError(f"fps must be > 0, got {config.fps}")
    progress = progress or (lambda text: None)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EpisodeError(f"{out_dir}: output folder exists and is not empty")
    bags = list(iter_episode_dirs([Path(p) for p in paths]))
    if not bags:
        raise EpisodeError("no episode bags given")
    started = time.monotonic()
    encoder, codec_name = pick_codec(config.codec)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only on stderr
    report = ExportReport(out_dir, codec=codec_name)
    out_dir.mkdir(parents=True, exist_ok=True)

    cameras: list[str] | None = list(config.cameras) if config.cameras is not None else None
    joint_names: list[str] | None = list(config.joint_names) if config.joint_names else None
    videos: dict[str, _VideoStream] = {}
    episodes: list[_EpisodeFrames] = []
    tasks: dict[str, int] = {}
    robot_type = config.robot_type
    was_normal = not is_realtime()
    try:
        for n, bag_path in enumerate(bags, 1):
            with EpisodeBag(bag_path) as bag:
                if bag.meta.cancelled and not config.include_cancelled:
                    report.skipped.append(f"{bag.path.name}: cancelled")
                    progress(f"[{n}/{len(bags)}] {bag.path.name}: skipped (cancelled)")
                    continue
                if cameras is None:
                    cameras = sorted(
                        t.split("/")[1]
                        for t in bag.topics
                        if t.startswith("camera/") and t.endswith("/image_raw")
                    )
                for cam in cameras:
                    if cam not in videos:
                        key = f"observation.images.{cam}"
                        path = out_dir / VIDEO_PATH.format(
                            video_key=key, chunk_index=0, file_index=0
                        )
                        videos[cam] = _VideoStream(
                            path, config.fps, encoder, config.crf, config.gop
                        )
                robot_type = robot_type or bag.meta.robot or None
                t0 = time.monotonic()
                frames = _export_episode(bag, len(episodes), cameras, joint_names, videos, config)
                if frames is None:
                    report.skipped.append(f"{bag.path.name}: no frame where all inputs exist")
                    progress(f"[{n}/{len(bags)}] {bag.path.name}: skipped (no complete frame)")
                    continue
                joint_names = joint_names or frames.pop("names")  # type: ignore[assignment]
                ep: _EpisodeFrames = frames["episode"]  # type: ignore[assignment]
                tasks.setdefault(ep.task, len(tasks))
                episodes.append(ep)
                progress(
                    f"[{n}/{len(bags)}] {bag.path.name}: {len(ep.timestamps)} frames "
                    f"in {time.monotonic() - t0:.1f} s"
                )
    finally:
        for video in videos.values():
            video.close()
        if was_normal:  # SVT-AV1 switched its threads to SCHED_FIFO 99 (ramp_common.scheduling)
            reset_realtime_threads()
    if not episodes:
        raise EpisodeError(f"nothing to export ({'; '.join(report.skipped) or 'no episodes'})")
    assert cameras is not None and joint_names is not None
    _write_dataset(
        out_dir, episodes, tasks, cameras, joint_names, videos, config, codec_name, robot_type
    )
    _write_provenance(out_dir, bags, report, config, encoder)
    report.episodes = len(episodes)
    report.frames = sum(len(e.timestamps) for e in episodes)
    report.video_frames = sum(v.frames for v in videos.values())
    report.seconds = time.monotonic() - started
    return report


def _export_episode(
    bag: EpisodeBag,
    episode_index: int,
    cameras: list[str],
    joint_names: list[str] | None,
    videos: dict[str, _VideoStream],
    config: ExportConfig,
) -> dict[str, Any] | None:
    """Align one episode and feed its frames to the videos; None when no frame is complete."""
    state = bag.joint_series(config.state_topic, joint_names)
    names = state.names
    action = bag.joint_series(config.action_topic, names)
    cam_topics = [f"camera/{c}/image_raw" for c in cameras]
    cam_stamps = {c: bag.header_stamps(t) for c, t in zip(cameras, cam_topics, strict=True)}
    for cam, stamps in cam_stamps.items():
        if stamps.size == 0:
            raise EpisodeError(f"{bag.path}: camera/{cam}/image_raw has no messages")
    if state.stamps_ns.size == 0 or action.stamps_ns.size == 0:
        return None
    starts = [state.stamps_ns.min(), *(s.min() for s in cam_stamps.values())]
    t_first = int(max(starts))
    t_last = int(action.stamps_ns.max())
    if t_last < t_first:
        return None
    count = int((t_last - t_first) * config.fps // 1_000_000_000) + 1
    k = np.arange(count, dtype=np.int64)
    t_k = t_first + (k * 1_000_000_000) // config.fps

    s_order = np.argsort(state.stamps_ns, kind="stable")
    s_idx = np.searchsorted(state.stamps_ns[s_order], t_k, side="right") - 1
    a_order = np.argsort(action.stamps_ns, kind="stable")
    a_idx = np.searchsorted(action.stamps_ns[a_order], t_k, side="left")
    int_t, int_v = bag.bool_series(config.intervention_topic)
    i_idx = np.searchsorted(int_t, t_k, side="right") - 1
    intervention = (
        np.where(i_idx >= 0, int_v[np.clip(i_idx, 0, None)], False)
        if int_v.size
        else (np.zeros(count, bool))
    )

    # Which recorded image (index in log order) each frame shows, per camera.
    wanted: dict[str, np.ndarray] = {}
    for cam, stamps in cam_stamps.items():
        order = np.argsort(stamps, kind="stable")
        pos = np.searchsorted(stamps[order], t_k, side="right") - 1
        wanted[cam] = order[pos]
    ep = _EpisodeFrames(
        index=episode_index,
        name=bag.path.name,
        task=bag.meta.task,
        success=bool(bag.meta.success),
        timestamps=(k / config.fps).astype(np.float32),
        state=state.positions[s_order[s_idx]].astype(np.float32),
        action=action.positions[a_order[a_idx]].astype(np.float32),
        intervention=np.asarray(intervention, bool),
        image_stats={c: [] for c in cameras},
    )
    _encode_frames(bag, cameras, cam_topics, wanted, videos, ep)
    return {"episode": ep, "names": names}


def _encode_frames(
    bag: EpisodeBag,
    cameras: list[str],
    cam_topics: list[str],
    wanted: dict[str, np.ndarray],
    videos: dict[str, _VideoStream],
    ep: _EpisodeFrames,
) -> None:
    """One pass over the camera topics, encoding each frame's image in frame order."""
    topic_cam = dict(zip(cam_topics, cameras, strict=True))
    seen = dict.fromkeys(cameras, -1)
    next_frame = dict.fromkeys(cameras, 0)
    count = len(ep.timestamps)
    pending: dict[str, dict[int, np.ndarray]] = {c: {} for c in cameras}
    needed = {c: set(wanted[c].tolist()) for c in cameras}
    for topic, _, raw in bag.raw_messages(cam_topics):
        cam = topic_cam[topic]
        seen[cam] += 1
        i = seen[cam]
        if i not in needed[cam] or next_frame[cam] >= count:
            continue
        where = f"{bag.path.name} {topic} message {i}"
        pending[cam][i] = image_to_rgb(bag.decode(raw, "sensor_msgs/msg/Image"), where)
        while next_frame[cam] < count and int(wanted[cam][next_frame[cam]]) in pending[cam]:
            j = int(wanted[cam][next_frame[cam]])
            rgb = pending[cam][j]
            videos[cam].add(rgb, where)
            sub = rgb[::IMAGE_STATS_STRIDE, ::IMAGE_STATS_STRIDE].reshape(-1, 3)
            ep.image_stats[cam].append(sub)
            next_frame[cam] += 1
            later = wanted[cam][next_frame[cam] :]
            if j not in later:
                del pending[cam][j]
    for cam in cameras:
        if next_frame[cam] != count:
            raise EpisodeError(
                f"{bag.path}: camera/{cam}/image_raw gave {next_frame[cam]} of {count} frames"
            )


# --------------------------------------------------------------------------------------------
# Writing the layout
# --------------------------------------------------------------------------------------------


def _numeric_stats(values: np.ndarray) -> dict[str, Any]:
    """LeRobot-style stats over axis 0 (min, max, mean, std, count, quantiles)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    stats: dict[str, Any] = {
        "min": values.min(axis=0).tolist(),
        "max": values.max(axis=0).tolist(),
        "mean": values.mean(axis=0).tolist(),
        "std": values.std(axis=0).tolist(),
        "count": [int(values.shape[0])],
    }
    for q in QUANTILES:
        stats[f"q{round(q * 100):02d}"] = np.quantile(values, q, axis=0).tolist()
    return stats


def _image_stats(samples: list[np.ndarray]) -> dict[str, Any]:
    """Per-channel stats of RGB samples in [0, 1], shaped (3, 1, 1) like LeRobot's."""
    pixels = np.concatenate(samples).astype(np.float64) / 255.0
    stats = _numeric_stats(pixels)
    count = stats.pop("count")
    out = {k: [[[v]] for v in vals] for k, vals in stats.items()}
    out["count"] = [len(samples)]
    del count
    return out


_SCALAR_FEATURES = (
    ("timestamp", "float32"),
    ("frame_index", "int64"),
    ("episode_index", "int64"),
    ("index", "int64"),
    ("task_index", "int64"),
    ("intervention", "bool"),
    ("success", "bool"),
    ("next.done", "bool"),
)
"""The per-frame scalar columns of the data file and their dtypes, in file order."""


def _write_dataset(
    out_dir: Path,
    episodes: list[_EpisodeFrames],
    tasks: dict[str, int],
    cameras: list[str],
    joint_names: list[str],
    videos: dict[str, _VideoStream],
    config: ExportConfig,
    codec_name: str,
    robot_type: str | None,
) -> None:
    """Write the LeRobot v3 layout (videos are written by their streams): the data file and
    ``meta/`` (info, stats, tasks, episodes)."""
    offsets = np.cumsum([0] + [len(e.timestamps) for e in episodes])
    columns = _frame_columns(episodes, tasks)
    _write_data(out_dir, columns, len(joint_names))
    meta = out_dir / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    features = _features(cameras, joint_names, videos, config.fps, codec_name)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": int(offsets[-1]),
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": config.fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cameras else None,
        "features": features,
    }
    (meta / "info.json").write_text(json.dumps(info, indent=4))
    (meta / "stats.json").write_text(
        json.dumps(_dataset_stats(columns, episodes, cameras), indent=4)
    )
    _write_tasks(meta / "tasks.parquet", tasks)
    _write_episodes(out_dir / EPISODES_PATH, episodes, offsets, cameras, config.fps)


def _frame_columns(episodes: list[_EpisodeFrames], tasks: dict[str, int]) -> dict[str, np.ndarray]:
    """Every per-frame column of the dataset, all episodes concatenated in order."""

    def col(name: str) -> np.ndarray:
        return np.concatenate([getattr(e, name) for e in episodes])

    def per_episode(value: Any) -> np.ndarray:
        return np.concatenate([np.full(len(e.timestamps), value(e)) for e in episodes])

    total = sum(len(e.timestamps) for e in episodes)
    return {
        "observation.state": col("state"),
        "action": col("action"),
        "timestamp": col("timestamps"),
        "frame_index": np.concatenate([np.arange(len(e.timestamps)) for e in episodes]),
        "episode_index": per_episode(lambda e: e.index),
        "index": np.arange(total),
        "task_index": per_episode(lambda e: tasks[e.task]),
        "intervention": col("intervention"),
        "success": per_episode(lambda e: e.success),
        "next.done": np.concatenate(
            [np.arange(len(e.timestamps)) == len(e.timestamps) - 1 for e in episodes]
        ),
    }


def _write_data(out_dir: Path, columns: dict[str, np.ndarray], dim: int) -> None:
    """The frame table (``data/chunk-000/file-000.parquet``): state and action as fixed-size
    float32 lists of ``dim`` joints, then the scalar columns."""
    pa_types = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}
    table: dict[str, Any] = {
        key: pa.FixedSizeListArray.from_arrays(pa.array(columns[key].ravel()), dim)
        for key in ("observation.state", "action")
    }
    for name, dtype in _SCALAR_FEATURES:
        table[name] = pa.array(columns[name], pa_types[dtype])
    data = pa.table(table)
    assert data.schema.field("action").type == pa.list_(pa.float32(), dim)
    data_path = out_dir / DATA_PATH.format(chunk_index=0, file_index=0)
    data_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(data, data_path, compression="snappy")


def _features(
    cameras: list[str],
    joint_names: list[str],
    videos: dict[str, _VideoStream],
    fps: float,
    codec_name: str,
) -> dict[str, Any]:
    """``info.json`` features: state, action, one video per camera, the scalar columns."""
    dim = len(joint_names)
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [dim], "names": list(joint_names)},
        "action": {"dtype": "float32", "shape": [dim], "names": list(joint_names)},
    }
    for cam in cameras:
        width, height = videos[cam].size or (0, 0)
        features[f"observation.images.{cam}"] = {
            "dtype": "video",
            "shape": [height, width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": height,
                "video.width": width,
                "video.codec": codec_name,
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    for name, dtype in _SCALAR_FEATURES:
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _dataset_stats(
    columns: dict[str, np.ndarray], episodes: list[_EpisodeFrames], cameras: list[str]
) -> dict[str, Any]:
    """``stats.json``: numeric stats of the state, action and index columns, per-channel image
    stats per camera."""
    stats: dict[str, Any] = {
        key: _numeric_stats(columns[key])
        for key in (
            "observation.state",
            "action",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
            "intervention",
        )
    }
    for cam in cameras:
        stats[f"observation.images.{cam}"] = _image_stats(
            [s for e in episodes for s in e.image_stats[cam]]
        )
    return stats


def _write_tasks(path: Path, tasks: dict[str, int]) -> None:
    """``meta/tasks.parquet``: task_index and task text, indexed by task like pandas writes it."""
    task_names = sorted(tasks, key=tasks.get)
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "pandas_version": "2.2.3",
    }  # fmt: skip
    task_table = pa.table(
        {
            "task_index": pa.array([tasks[t] for t in task_names], pa.int64()),
            "task": pa.array(task_names, pa.string()),
        }
    ).replace_schema_metadata({"pandas": json.dumps(pandas_meta)})
    pq.write_table(task_table, path)


def _write_episodes(
    path: Path,
    episodes: list[_EpisodeFrames],
    offsets: np.ndarray,
    cameras: list[str],
    fps: float,
) -> None:
    """``meta/episodes/chunk-000/file-000.parquet``: one row per episode (length, where its
    frames and video spans are, success, intervention ratio, source bag, per-episode stats)."""
    n = len(episodes)
    rows: dict[str, list[Any]] = {
        "episode_index": [e.index for e in episodes],
        "tasks": [[e.task] for e in episodes],
        "length": [len(e.timestamps) for e in episodes],
        "data/chunk_index": [0] * n,
        "data/file_index": [0] * n,
        "dataset_from_index": [int(offsets[i]) for i in range(n)],
        "dataset_to_index": [int(offsets[i + 1]) for i in range(n)],
    }
    for cam in cameras:
        key = f"videos/observation.images.{cam}"
        rows[f"{key}/chunk_index"] = [0] * n
        rows[f"{key}/file_index"] = [0] * n
        rows[f"{key}/from_timestamp"] = [float(offsets[i]) / fps for i in range(n)]
        rows[f"{key}/to_timestamp"] = [float(offsets[i + 1]) / fps for i in range(n)]
    rows["meta/episodes/chunk_index"] = [0] * n
    rows["meta/episodes/file_index"] = [0] * n
    rows["success"] = [e.success for e in episodes]
    rows["intervention_ratio"] = [float(e.intervention.mean()) for e in episodes]
    rows["source_bag"] = [e.name for e in episodes]
    for feature, attr in (("observation.state", "state"), ("action", "action")):
        per_episode = [_numeric_stats(getattr(e, attr)) for e in episodes]
        for stat in per_episode[0]:
            rows[f"stats/{feature}/{stat}"] = [s[stat] for s in per_episode]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)


def _write_provenance(
    out_dir: Path, bags: list[Path], report: ExportReport, config: ExportConfig, encoder: str
) -> None:
    doc = {
        "tool": "ramp-bag export",
        "source_bags": [str(b) for b in bags],
        "skipped": report.skipped,
        "fps": config.fps,
        "state_topic": config.state_topic,
        "action_topic": config.action_topic,
        "intervention_topic": config.intervention_topic,
        "video_encoder": encoder,
        "crf": config.crf,
        "gop": config.gop,
    }
    (out_dir / "meta" / "ramp_export.json").write_text(json.dumps(doc, indent=2))
