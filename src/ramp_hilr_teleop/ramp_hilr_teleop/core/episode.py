"""Episode metadata: what one recorded episode is, derived from its messages and its labels.

An episode is one rosbag2 folder (MCAP storage) written by the episode recorder. Next to the
bag's own ``metadata.yaml`` it holds ``episode.yaml`` (:class:`EpisodeMetadata`, documented in
docs/episodes.md); the same document is stored inside the bag as the rosbag2 ``custom_data``
entry ``ramp_episode`` (JSON), so a bag copied without its folder still carries its labels.

Times: ``*_ns`` are bag (log) times, integer nanoseconds since the Unix epoch on the recorder's
wall clock (the receive time of each message); ``*_s`` are seconds since the episode start;
``*_wall`` are the same instants as ISO 8601 strings with the local UTC offset. Header stamps
inside the messages are never changed.

No ROS import: messages are handled as serialized CDR bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

EPISODE_FILE = "episode.yaml"
"""Episode metadata file inside each bag folder."""
LOCK_FILE = ".recording.lock"
"""Held (flock) by the recorder while it writes the bag; a crash releases it."""
CUSTOM_DATA_KEY = "ramp_episode"
"""rosbag2 custom_data key that carries the episode metadata (JSON) inside the bag."""
FORMAT = "ramp_episode/1"

STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"
STATUS_CANCELLED = "cancelled"
STATUS_ENDED_ON_ERROR = "ended_on_error"
STATUS_RECOVERED = "recovered"

INTERVENTION_TOPIC = "ramp/intervention"
TASK_TOPIC = "ramp/task"
WM_STATE_TOPIC = "ramp/wm_state"
ACTION_CHUNK_TOPIC = "ramp/action_chunk"
DIAGNOSTICS_TOPIC = "diagnostics"

_NAME_RE = re.compile(r"^(?P<prefix>.+)_(?P<stamp>\d{8}-\d{6})_(?P<counter>\d{4,})$")


class EpisodeError(RuntimeError):
    """An episode folder or file that cannot be used; the text names the file and the reason."""


# --------------------------------------------------------------------------------------------
# CDR helpers: read the few fields the metadata needs straight from serialized bytes.
# --------------------------------------------------------------------------------------------


def _order(raw: bytes | memoryview) -> str:
    if len(raw) < 4:
        raise ValueError(f"serialized message of {len(raw)} bytes has no CDR header")
    return "<" if raw[1] & 1 else ">"


def cdr_bool(raw: bytes | memoryview) -> bool:
    """std_msgs/Bool.data from serialized CDR."""
    if len(raw) < 5:
        raise ValueError(f"serialized std_msgs/Bool of {len(raw)} bytes is too short")
    return raw[4] != 0


def cdr_string(raw: bytes | memoryview, offset: int = 4) -> str:
    """A CDR string at ``offset`` (std_msgs/String.data at the default offset)."""
    order = _order(raw)
    if len(raw) < offset + 4:
        raise ValueError("serialized string is truncated")
    (length,) = struct.unpack_from(order + "I", raw, offset)
    end = offset + 4 + length
    if length == 0 or end > len(raw):
        raise ValueError(f"serialized string length {length} does not fit in {len(raw)} bytes")
    return bytes(raw[offset + 4 : end - 1]).decode("utf-8", errors="replace")


def cdr_header(raw: bytes | memoryview) -> tuple[int, str]:
    """(header.stamp in ns, header.frame_id) of a message whose first field is a Header."""
    order = _order(raw)
    if len(raw) < 16:
        raise ValueError(f"serialized message of {len(raw)} bytes has no std_msgs/Header")
    sec, nanosec = struct.unpack_from(order + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec, cdr_string(raw, 12)


def restamp_header(raw: bytes | memoryview, stamp_ns: int) -> bytes:
    """Copy of a serialized header-first message with header.stamp set to ``stamp_ns``."""
    order = _order(raw)
    if len(raw) < 12:
        raise ValueError(f"serialized message of {len(raw)} bytes has no std_msgs/Header")
    out = bytearray(raw)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    struct.pack_into(order + "iI", out, 4, sec, nanosec)
    return bytes(out)


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def wall_iso(time_ns: int) -> str:
    """Nanoseconds since the epoch -> local ISO 8601 string with UTC offset (ms resolution)."""
    return datetime.fromtimestamp(time_ns / 1e9).astimezone().isoformat(timespec="milliseconds")


@dataclass
class InterventionSegment:
    """One stretch of operator control: ``ramp/intervention`` true until it turned false."""

    start_ns: int
    end_ns: int
    start_s: float
    end_s: float
    start_wall: str
    end_wall: str
    duration_s: float


@dataclass
class TopicStats:
    """Per-topic message count, queue drops, and the first/last log time (ns)."""

    type: str
    count: int = 0
    dropped: int = 0
    first_ns: int | None = None
    last_ns: int | None = None


@dataclass
class EpisodeMetadata:
    """The episode document stored as ``episode.yaml`` and in the bag's custom_data."""

    name: str
    robot: str
    operator: str
    namespace: str = "/"
    format: str = FORMAT
    status: str = STATUS_RECORDING
    end_reason: str | None = None
    error: str | None = None
    success: bool | None = None
    cancelled: bool = False
    task: str = ""
    tasks: list[str] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int | None = None
    start_wall: str = ""
    end_wall: str | None = None
    duration_s: float = 0.0
    model_ids: dict[str, Any] = field(default_factory=dict)
    interventions: list[InterventionSegment] = field(default_factory=list)
    intervention_ratio: float = 0.0
    topics: dict[str, TopicStats] = field(default_factory=dict)
    message_count: int = 0
    dropped_count: int = 0
    bag_file: str = ""
    repair: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "episode metadata") -> EpisodeMetadata:
        """Build from a dict (yaml/json); raises EpisodeError naming ``source`` and the field."""
        if not isinstance(data, dict):
            raise EpisodeError(f"{source}: expected a mapping, got {type(data).__name__}")
        for key in ("name", "robot", "operator"):
            if key not in data:
                raise EpisodeError(f"{source}: missing field '{key}'")
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["interventions"] = [
                InterventionSegment(**seg) for seg in data.get("interventions") or []
            ]
            values["topics"] = {
                name: TopicStats(**stats) for name, stats in (data.get("topics") or {}).items()
            }
            return cls(**values)
        except TypeError as exc:
            raise EpisodeError(f"{source}: malformed field ({exc})") from None


def write_metadata(bag_dir: Path, meta: EpisodeMetadata) -> Path:
    """Write ``episode.yaml`` atomically (temp file + rename) and return its path."""
    path = bag_dir / EPISODE_FILE
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(meta.to_dict(), sort_keys=False, allow_unicode=True))
    tmp.replace(path)
    return path


def read_metadata(bag_dir: Path) -> EpisodeMetadata:
    """Read ``episode.yaml`` of a bag folder; raises EpisodeError naming the file."""
    path = bag_dir / EPISODE_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EpisodeError(f"{path}: no episode metadata (not a RAMP episode folder?)") from None
    except yaml.YAMLError as exc:
        raise EpisodeError(f"{path}: invalid YAML ({exc})") from None
    return EpisodeMetadata.from_dict(data, str(path))


# --------------------------------------------------------------------------------------------
# Tracker: derives counts, task, model ids and intervention segments from the message stream
# --------------------------------------------------------------------------------------------


class EpisodeTracker:
    """Follows the messages written to one episode and fills its :class:`EpisodeMetadata`.

    Fed with (relative topic, log time ns, serialized bytes) in write order, by the recorder while
    it records and by the repair scan when it rebuilds a crashed episode. Not thread-safe: one
    writer thread owns it.
    """

    def __init__(
        self, meta: EpisodeMetadata, topic_types: dict[str, str], typestore: Any = None
    ) -> None:
        """``topic_types`` maps relative topic names to their ROS type (``pkg/msg/Name``)."""
        self.meta = meta
        self._typestore = typestore
        for topic, msgtype in topic_types.items():
            meta.topics.setdefault(topic, TopicStats(type=msgtype))
        self._intervention_on: int | None = None
        self._world_models: list[str] = list(meta.model_ids.get("world_model", []))
        self._policies: list[str] = list(meta.model_ids.get("policy", []))
        self._node_models: dict[str, str] = dict(meta.model_ids.get("nodes", {}))
        self._segments: list[InterventionSegment] = list(meta.interventions)
        self._tasks: list[str] = list(meta.tasks)

    def on_message(self, topic: str, log_ns: int, raw: bytes | memoryview) -> None:
        """Account one written message."""
        stats = self.meta.topics.get(topic)
        if stats is None:
            stats = self.meta.topics[topic] = TopicStats(type="")
        stats.count += 1
        if stats.first_ns is None:
            stats.first_ns = log_ns
        stats.last_ns = log_ns
        self.meta.message_count += 1
        key = topic.lstrip("/")
        try:
            if key == INTERVENTION_TOPIC:
                self._on_intervention(log_ns, cdr_bool(raw))
            elif key == TASK_TOPIC:
                task = cdr_string(raw)
                if task and (not self._tasks or self._tasks[-1] != task):
                    self._tasks.append(task)
            elif key == WM_STATE_TOPIC:
                _add_unique(self._world_models, cdr_header(raw)[1])
            elif key == ACTION_CHUNK_TOPIC:
                _add_unique(self._policies, cdr_header(raw)[1])
            elif key == DIAGNOSTICS_TOPIC and self._typestore is not None:
                self._on_diagnostics(raw)
        except (ValueError, struct.error, KeyError):
            pass  # malformed content only costs its metadata, never the recording

    def on_drop(self, topic: str, n: int = 1) -> None:
        """Count ``n`` messages of ``topic`` lost before they reached the bag."""
        stats = self.meta.topics.setdefault(topic, TopicStats(type=""))
        stats.dropped += n
        self.meta.dropped_count += n

    def _on_intervention(self, log_ns: int, active: bool) -> None:
        if active and self._intervention_on is None:
            self._intervention_on = log_ns
        elif not active and self._intervention_on is not None:
            self._segments.append(self._segment(self._intervention_on, log_ns))
            self._intervention_on = None

    def _on_diagnostics(self, raw: bytes | memoryview) -> None:
        msg = self._typestore.deserialize_cdr(bytes(raw), "diagnostic_msgs/msg/DiagnosticArray")
        for status in msg.status:
            for kv in status.values:
                if kv.key == "model_id" and kv.value:
                    self._node_models[status.name] = kv.value

    def _segment(self, start_ns: int, end_ns: int) -> InterventionSegment:
        t0 = self.meta.start_ns
        return InterventionSegment(
            start_ns=start_ns,
            end_ns=end_ns,
            start_s=round((start_ns - t0) / 1e9, 6),
            end_s=round((end_ns - t0) / 1e9, 6),
            start_wall=wall_iso(start_ns),
            end_wall=wall_iso(end_ns),
            duration_s=round((end_ns - start_ns) / 1e9, 6),
        )

    def snapshot(self, now_ns: int) -> EpisodeMetadata:
        """Metadata as of ``now_ns`` (an open intervention counts up to now); for periodic saves."""
        segments = list(self._segments)
        if self._intervention_on is not None:
            segments.append(self._segment(self._intervention_on, now_ns))
        self._fill(segments, now_ns)
        return self.meta

    def finish(self, end_ns: int) -> EpisodeMetadata:
        """Close an open intervention at ``end_ns`` and fill the end fields."""
        if self._intervention_on is not None:
            self._segments.append(self._segment(self._intervention_on, end_ns))
            self._intervention_on = None
        self._fill(list(self._segments), end_ns)
        self.meta.end_ns = end_ns
        self.meta.end_wall = wall_iso(end_ns)
        return self.meta

    def _fill(self, segments: list[InterventionSegment], now_ns: int) -> None:
        meta = self.meta
        meta.interventions = segments
        meta.tasks = list(self._tasks)
        meta.task = self._tasks[-1] if self._tasks else meta.task
        meta.model_ids = {
            "world_model": list(self._world_models),
            "policy": list(self._policies),
            "nodes": dict(sorted(self._node_models.items())),
        }
        duration_ns = max(0, now_ns - meta.start_ns)
        meta.duration_s = round(duration_ns / 1e9, 6)
        total = sum(s.end_ns - s.start_ns for s in segments)
        meta.intervention_ratio = round(total / duration_ns, 6) if duration_ns else 0.0


def _add_unique(items: list[str], value: str) -> None:
    if value and value not in items:
        items.append(value)


# --------------------------------------------------------------------------------------------
# Episode folders: names, locks, discovery
# --------------------------------------------------------------------------------------------


def episode_prefix(robot: str) -> str:
    """File-name-safe prefix from the robot name ('episode' when empty)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", robot).strip("-.")
    return cleaned or "episode"


def next_episode_name(output_dir: Path, robot: str, now_ns: int | None = None) -> str:
    """``<robot>_<YYYYmmdd-HHMMSS>_<counter>``; the counter is one above any in ``output_dir``.

    The caller creates the folder exclusively and asks again on a collision, so two recorders
    sharing a folder never write into the same episode.
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    counter = 0
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = _NAME_RE.match(child.name)
            if match:
                counter = max(counter, int(match.group("counter")))
    stamp = datetime.fromtimestamp(now_ns / 1e9).strftime("%Y%m%d-%H%M%S")
    return f"{episode_prefix(robot)}_{stamp}_{counter + 1:04d}"


class RecordingLock:
    """An exclusive flock on ``<bag>/.recording.lock``: held while recording, freed by a crash."""

    def __init__(self, bag_dir: Path) -> None:
        self.path = bag_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock without waiting; False when another live process holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self, remove: bool = True) -> None:
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(OSError):
                self.path.unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def is_locked(bag_dir: Path) -> bool:
    """True while a live process holds the recording lock of ``bag_dir``."""
    path = bag_dir / LOCK_FILE
    if not path.exists():
        return False
    lock = RecordingLock(bag_dir)
    try:
        if lock.acquire():
            lock.release(remove=False)
            return False
    except OSError:
        return False
    return True


def find_unfinished(output_dir: Path) -> list[Path]:
    """Episode folders left in status 'recording' by a recorder that is no longer running."""
    found = []
    if not output_dir.is_dir():
        return found
    for child in sorted(output_dir.iterdir()):
        if not (child / EPISODE_FILE).is_file():
            continue
        try:
            meta = read_metadata(child)
        except EpisodeError:
            continue
        if meta.status == STATUS_RECORDING and not is_locked(child):
            found.append(child)
    return found


def iter_episode_dirs(paths: list[Path]) -> Iterator[Path]:
    """Expand paths to episode/bag folders: a bag folder itself, or a folder of bag folders."""
    for path in paths:
        if not path.exists():
            raise EpisodeError(f"{path}: no such file or folder")
        if path.is_file() and path.suffix == ".mcap":
            yield path.parent
        elif (path / EPISODE_FILE).is_file() or (path / "metadata.yaml").is_file():
            yield path
        elif path.is_dir():
            children = sorted(
                c
                for c in path.iterdir()
                if (c / EPISODE_FILE).is_file() or (c / "metadata.yaml").is_file()
            )
            if not children:
                raise EpisodeError(f"{path}: holds no episode bag folders")
            yield from children
        else:
            raise EpisodeError(f"{path}: not a bag folder, an .mcap file or a folder of bags")
