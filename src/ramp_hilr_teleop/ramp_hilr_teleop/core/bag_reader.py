"""Reading episode bags: metadata, per-topic message streams, decoded arrays, and ``info``.

:class:`EpisodeBag` opens one bag folder with ``rosbags`` and gives messages by relative topic
name (the recorder's namespace stripped), serialized or decoded with the rosbags type store.
Its metadata comes from ``episode.yaml``, else from the ``ramp_episode`` custom_data inside the
bag, else (a bag not written by the recorder) from the bag itself.

No ROS import.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError

from ramp_common.image_wire import PIXEL_ENCODINGS, MessageError, pixels_view

from .bag_writer import make_typestore
from .episode import (
    CUSTOM_DATA_KEY,
    EPISODE_FILE,
    EpisodeError,
    EpisodeMetadata,
    cdr_header,
    read_metadata,
    wall_iso,
)
from .repair import needs_repair


@dataclass
class JointSeries:
    """Joint positions over time: ``stamps_ns`` (N,) and ``positions`` (N, D) in ``names`` order.

    Stamps are header stamps (ns since the epoch; log times where a stamp is zero).
    """

    names: list[str]
    stamps_ns: np.ndarray
    positions: np.ndarray


class EpisodeBag:
    """One episode bag folder opened for reading (use as a context manager)."""

    def __init__(self, path: Path, typestore: Any = None) -> None:
        """Open ``path`` (a bag folder); raises EpisodeError with the reason."""
        self.path = Path(path)
        if not self.path.is_dir():
            raise EpisodeError(f"{self.path}: not a bag folder")
        if needs_repair(self.path):
            raise EpisodeError(
                f"{self.path}: bag was never closed (recorder crashed?); "
                f"run 'ramp-bag repair {self.path}' first"
            )
        self.typestore = typestore or make_typestore()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except ReaderError as exc:
            raise EpisodeError(f"{self.path}: cannot read bag ({exc})") from None
        self.meta = self._load_meta()
        ns = self.meta.namespace.rstrip("/") + "/"
        self._by_topic = {}
        for conn in self._reader.connections:
            rel = conn.topic[len(ns) :] if conn.topic.startswith(ns) else conn.topic.lstrip("/")
            self._by_topic.setdefault(rel, []).append(conn)

    def __enter__(self) -> EpisodeBag:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._reader.close()

    def _load_meta(self) -> EpisodeMetadata:
        if (self.path / EPISODE_FILE).is_file():
            return read_metadata(self.path)
        custom = self._reader.storage.metadata.custom or {}
        if CUSTOM_DATA_KEY in custom:
            try:
                data = json.loads(custom[CUSTOM_DATA_KEY])
            except json.JSONDecodeError as exc:
                raise EpisodeError(f"{self.path}: custom_data {CUSTOM_DATA_KEY} ({exc})") from None
            return EpisodeMetadata.from_dict(data, f"{self.path} custom_data")
        start = self._reader.start_time
        end = self._reader.end_time
        return EpisodeMetadata(
            name=self.path.name,
            robot="",
            operator="",
            status="unknown",
            start_ns=start,
            end_ns=end,
            start_wall=wall_iso(start),
            end_wall=wall_iso(end),
            duration_s=(end - start) / 1e9,
        )

    # -- topics and messages ------------------------------------------------------------------

    @property
    def topics(self) -> dict[str, tuple[str, int]]:
        """Relative topic -> (type, message count)."""
        return {
            topic: (conns[0].msgtype, sum(c.msgcount for c in conns))
            for topic, conns in sorted(self._by_topic.items())
        }

    def has(self, topic: str) -> bool:
        return topic in self._by_topic

    def msgtype(self, topic: str) -> str:
        return self._conns([topic])[0].msgtype

    def _conns(self, topics: Sequence[str]) -> list[Any]:
        missing = [t for t in topics if t not in self._by_topic]
        if missing:
            raise EpisodeError(
                f"{self.path}: bag has no topic {missing} (has {sorted(self._by_topic)})"
            )
        return [c for t in topics for c in self._by_topic[t]]

    def raw_messages(self, topics: Sequence[str]) -> Iterator[tuple[str, int, bytes]]:
        """(relative topic, log time ns, serialized bytes) of ``topics`` in log-time order."""
        conns = self._conns(topics)
        rel = {c.id: t for t in topics for c in self._by_topic[t]}
        for conn, log_ns, raw in self._reader.messages(connections=conns):
            yield rel[conn.id], log_ns, raw

    def decode(self, raw: bytes, msgtype: str) -> Any:
        return self.typestore.deserialize_cdr(raw, msgtype)

    def joint_series(self, topic: str, names: Sequence[str] | None = None) -> JointSeries:
        """JointState positions of ``topic``; ``names`` default to the first message's order.

        Raises EpisodeError naming the topic and the joints a message lacks.
        """
        stamps: list[int] = []
        rows: list[np.ndarray] = []
        order: list[int] | None = None
        last_names: tuple[str, ...] = ()
        for _, log_ns, raw in self.raw_messages([topic]):
            msg = self.decode(raw, "sensor_msgs/msg/JointState")
            msg_names = tuple(msg.name)
            if names is None:
                names = list(msg_names)
            if msg_names != last_names:
                index = {n: i for i, n in enumerate(msg_names)}
                missing = [n for n in names if n not in index]
                if missing:
                    raise EpisodeError(
                        f"{self.path}: {topic} lacks joints {missing} (has {list(msg_names)})"
                    )
                order = [index[n] for n in names]
                last_names = msg_names
            pos = np.asarray(msg.position, dtype=np.float64)
            if pos.size != len(msg_names):
                raise EpisodeError(
                    f"{self.path}: {topic} message has {len(msg_names)} names but "
                    f"{pos.size} positions"
                )
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            stamps.append(stamp or log_ns)
            rows.append(pos[order])
        if names is None:
            raise EpisodeError(f"{self.path}: {topic} has no messages")
        return JointSeries(
            list(names),
            np.asarray(stamps, dtype=np.int64),
            np.asarray(rows, dtype=np.float64).reshape(len(rows), len(names)),
        )

    def header_stamps(self, topic: str) -> np.ndarray:
        """Header stamps (ns) of a stamped topic in log order (log time where a stamp is 0)."""
        out = []
        for _, log_ns, raw in self.raw_messages([topic]):
            stamp, _ = cdr_header(raw)
            out.append(stamp or log_ns)
        return np.asarray(out, dtype=np.int64)

    def bool_series(self, topic: str) -> tuple[np.ndarray, np.ndarray]:
        """(log times ns, values) of a std_msgs/Bool topic (empty arrays when absent)."""
        if not self.has(topic):
            return np.zeros(0, np.int64), np.zeros(0, bool)
        times, values = [], []
        for _, log_ns, raw in self.raw_messages([topic]):
            times.append(log_ns)
            values.append(raw[4] != 0)
        return np.asarray(times, np.int64), np.asarray(values, bool)


def image_to_rgb(msg: Any, where: str) -> np.ndarray:
    """Decoded sensor_msgs/Image (rosbags) -> (H, W, 3) uint8 RGB; EpisodeError on bad data."""
    enc = msg.encoding
    if enc not in PIXEL_ENCODINGS:
        raise EpisodeError(f"{where}: image encoding {enc!r} not supported for export")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    try:
        img = pixels_view(data, h, w, step, enc, bool(msg.is_bigendian))
    except MessageError:
        raise EpisodeError(
            f"{where}: image payload {data.size} B does not match {w}x{h} {enc}"
        ) from None
    if enc == "mono8":
        return np.repeat(img[:, :, np.newaxis], 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(img[:, :, 2::-1])
    return np.ascontiguousarray(img[:, :, :3])


def episode_info(path: Path, typestore: Any = None) -> dict[str, Any]:
    """Summary of one episode: duration, topics (count, rate Hz), interventions, labels."""
    with EpisodeBag(path, typestore) as bag:
        meta = bag.meta
        topics = {}
        for topic, (msgtype, count) in bag.topics.items():
            stats = meta.topics.get(topic)
            span = None
            if stats and stats.first_ns is not None and stats.last_ns is not None:
                span = (stats.last_ns - stats.first_ns) / 1e9
            rate = (count - 1) / span if span and count > 1 else 0.0
            topics[topic] = {
                "type": msgtype,
                "count": count,
                "rate_hz": round(rate, 2),
                "dropped": stats.dropped if stats else 0,
            }
        return {
            "path": str(bag.path),
            "name": meta.name,
            "status": meta.status,
            "robot": meta.robot,
            "operator": meta.operator,
            "task": meta.task,
            "success": meta.success,
            "cancelled": meta.cancelled,
            "start": meta.start_wall,
            "duration_s": meta.duration_s,
            "intervention_ratio": meta.intervention_ratio,
            "interventions": len(meta.interventions),
            "model_ids": meta.model_ids,
            "messages": sum(t["count"] for t in topics.values()),
            "dropped": meta.dropped_count,
            "error": meta.error,
            "topics": topics,
        }


def format_info(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`episode_info`."""
    models = info["model_ids"] or {}
    model_text = ", ".join(
        f"{k}={','.join(v) if isinstance(v, list) else v}"
        for k, v in models.items()
        if v and k != "nodes"
    )
    lines = [
        f"{info['name']}  ({info['path']})",
        f"  status {info['status']}, success {info['success']}, cancelled {info['cancelled']}"
        + (f", error: {info['error']}" if info["error"] else ""),
        f"  robot {info['robot'] or '-'}, operator {info['operator'] or '-'}, "
        f"task {info['task']!r}",
        f"  start {info['start']}, duration {info['duration_s']:.2f} s, "
        f"{info['messages']} messages, {info['dropped']} dropped",
        f"  interventions {info['interventions']}, intervention ratio "
        f"{info['intervention_ratio']:.1%}",
        f"  models {model_text or '-'}",
        f"  {'topic':40s} {'type':38s} {'count':>7s} {'rate Hz':>8s} {'dropped':>7s}",
    ]
    for topic, t in info["topics"].items():
        lines.append(
            f"  {topic:40s} {t['type']:38s} {t['count']:7d} {t['rate_hz']:8.1f} {t['dropped']:7d}"
        )
    return "\n".join(lines)
