"""rosbag2 (MCAP) writing through ``rosbags``: the recorded topics and a writer flushed in chunks.

:class:`BagWriter` wraps ``rosbags.rosbag2.Writer`` (storage MCAP, rosbag2 metadata version 9).
The library closes an MCAP chunk when it exceeds 1 MiB; :meth:`BagWriter.flush` also closes the
pending chunk and hands the file to the OS (optionally fsync), so a recorder killed at any
moment leaves a file that reads back up to its last flush (see ``core/repair.py``).

No ROS import: messages are written as serialized CDR bytes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime as _QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

ROSBAG2_VERSION = 9
"""rosbag2 metadata version written (Jazzy); see docs/episodes.md for Humble playback."""

QOS_NAMES = ("sensor", "state", "command", "latched", "default")
"""QoS classes a recorded topic can have (what its publisher offers; see ramp_common.qos)."""

DEFAULT_TOPIC_TYPES: dict[str, tuple[str, str]] = {
    "joint_states": ("sensor_msgs/msg/JointState", "state"),
    "ramp/wm_state": ("sensor_msgs/msg/Image", "state"),
    "ramp/action_chunk": ("trajectory_msgs/msg/JointTrajectory", "command"),
    "ramp/policy_command": ("sensor_msgs/msg/JointState", "command"),
    "ramp/operator_command": ("sensor_msgs/msg/JointState", "command"),
    "joint_command": ("sensor_msgs/msg/JointState", "command"),
    "ramp/intervention": ("std_msgs/msg/Bool", "latched"),
    "ramp/task": ("std_msgs/msg/String", "latched"),
    "diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", "default"),
}
"""The loop's topics (docs/design.md) -> (type, QoS class); cameras are added per camera name."""

_CAMERA_RE = re.compile(r"^camera/[^/]+/image_raw$")
_TYPE_RE = re.compile(r"^[A-Za-z0-9_]+/msg/[A-Za-z0-9_]+$")


class TopicSpecError(ValueError):
    """A topic entry that cannot be recorded; the text names the entry."""


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic: relative name, ROS type (``pkg/msg/Name``) and QoS class."""

    topic: str
    msgtype: str
    qos: str

    @property
    def latched(self) -> bool:
        return self.qos == "latched"


def default_topics(camera_names: Sequence[str]) -> list[str]:
    """The loop's topic list: one image topic per camera, then the docs/design.md topics."""
    return [f"camera/{name}/image_raw" for name in camera_names if name] + list(DEFAULT_TOPIC_TYPES)


def parse_topic_specs(entries: Sequence[str]) -> list[TopicSpec]:
    """Parse ``topic``, ``topic:type`` or ``topic:type:qos`` entries.

    A bare topic must be one of the loop's topics (its type and QoS are known); other topics
    need their type, e.g. ``sim/task_success:std_msgs/msg/Bool:latched``. QoS defaults to
    'default' (reliable, volatile). Raises TopicSpecError naming the bad entry.
    """
    specs: list[TopicSpec] = []
    seen: set[str] = set()
    for entry in entries:
        parts = [p.strip() for p in str(entry).split(":")]
        topic = parts[0]
        if not topic or len(parts) > 3:
            raise TopicSpecError(f"topic entry {entry!r}: expected 'topic[:pkg/msg/Type[:qos]]'")
        if _CAMERA_RE.match(topic.lstrip("/")):
            known: tuple[str, str] | None = ("sensor_msgs/msg/Image", "sensor")
        else:
            known = DEFAULT_TOPIC_TYPES.get(topic.lstrip("/"))
        if len(parts) == 1:
            if known is None:
                raise TopicSpecError(
                    f"topic entry {entry!r}: type unknown; write it as "
                    f"'{topic}:pkg/msg/Type' (optionally ':qos' with qos in {list(QOS_NAMES)})"
                )
            msgtype, qos = known
        else:
            msgtype = parts[1]
            if not _TYPE_RE.match(msgtype):
                raise TopicSpecError(
                    f"topic entry {entry!r}: type {msgtype!r} is not of the form pkg/msg/Name"
                )
            qos = parts[2] if len(parts) == 3 else (known[1] if known else "default")
        if qos not in QOS_NAMES:
            raise TopicSpecError(f"topic entry {entry!r}: qos {qos!r} not in {list(QOS_NAMES)}")
        if topic in seen:
            raise TopicSpecError(f"topic entry {entry!r}: topic listed twice")
        seen.add(topic)
        specs.append(TopicSpec(topic, msgtype, qos))
    return specs


def make_typestore(distro: str | None = None) -> Any:
    """The rosbags type store of ``distro`` (humble | jazzy; default $ROS_DISTRO, else jazzy)."""
    distro = (distro or os.environ.get("ROS_DISTRO") or "jazzy").lower()
    stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f"ROS distro {distro!r} not supported for bags (use {sorted(stores)})")
    return get_typestore(stores[distro])


def check_types(specs: Sequence[TopicSpec], typestore: Any) -> None:
    """Raise TopicSpecError naming each topic whose type the typestore does not know."""
    unknown = [f"{s.topic} ({s.msgtype})" for s in specs if s.msgtype not in typestore.fielddefs]
    if unknown:
        raise TopicSpecError(f"message types unknown to the bag type store: {unknown}")


def offered_qos(qos: str) -> Qos:
    """The rosbag2 offered QoS for a QoS class: latched topics replay as transient local."""
    zero = _QosTime(0, 0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if qos == "latched" else 10,
        reliability=QosReliability.BEST_EFFORT if qos == "sensor" else QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if qos == "latched" else QosDurability.VOLATILE,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def absolute_topic(topic: str, namespace: str) -> str:
    """Relative topic name -> the absolute name a node in ``namespace`` uses."""
    if topic.startswith("/"):
        return topic
    ns = namespace.rstrip("/")
    return f"{ns}/{topic}"


class BagWriter:
    """One rosbag2 bag (MCAP storage) written through rosbags, flushed chunk by chunk.

    ``path`` is the bag folder; it must not exist (rosbags never overwrites). The MCAP file is
    ``<path>/<path.name>.mcap``; ``metadata.yaml`` appears on :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        topics: Sequence[TopicSpec],
        typestore: Any,
        namespace: str = "/",
        fsync: bool = False,
    ) -> None:
        """Create the folder and the MCAP file; raises rosbags WriterError if ``path`` exists."""
        self.path = Path(path)
        self._fsync = fsync
        self._writer = Writer(self.path, version=ROSBAG2_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {
            spec.topic: self._writer.add_connection(
                absolute_topic(spec.topic, namespace),
                spec.msgtype,
                typestore=typestore,
                serialization_format="cdr",
                offered_qos_profiles=[offered_qos(spec.qos)],
            )
            for spec in topics
        }
        self.bytes_written = 0
        self.mcap_path = self.path / f"{self.path.name}.mcap"

    def write(self, topic: str, log_time_ns: int, raw: bytes | memoryview) -> None:
        """Append one serialized message of the relative ``topic`` at bag time ``log_time_ns``."""
        self._writer.write(self._connections[topic], int(log_time_ns), raw)
        self.bytes_written += len(raw)

    def flush(self) -> None:
        """Close the pending MCAP chunk and push the file to the OS (fsync if configured).

        rosbags exposes no public flush; its MCAP storage keeps the open chunk in memory until
        it passes 1 MiB, so a slow topic would stay unwritten for long. ``close_chunk`` and the
        file object are the storage's own (rosbags 0.11.9, pinned).
        """
        storage = self._writer.storage
        if storage is None:
            return
        chunk = getattr(storage, "chunk", None)
        if chunk is not None and chunk.msgs and hasattr(storage, "close_chunk"):
            storage.close_chunk()
        bio = getattr(storage, "bio", None)
        if bio is not None:
            bio.flush()
            if self._fsync:
                os.fsync(bio.fileno())

    def close(self, custom_data: dict[str, str] | None = None) -> None:
        """Write the MCAP summary, footer and ``metadata.yaml`` (custom_data goes in both)."""
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(key, value)
        self._writer.close()

    def abort(self) -> None:
        """Close the file without summary (what a crash leaves; ``repair_bag`` fixes it)."""
        self._writer.abort()
