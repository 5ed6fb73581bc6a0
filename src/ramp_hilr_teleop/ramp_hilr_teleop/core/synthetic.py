"""Synthetic episodes without ROS: serialized loop messages and a complete episode bag.

Used by tests, benchmarks and docs examples: messages are built and CDR-serialized with the
``rosbags`` type store, so the bytes are what an rclpy publisher would send.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bag_writer import BagWriter, TopicSpec, make_typestore, parse_topic_specs
from .episode import (
    CUSTOM_DATA_KEY,
    STATUS_CANCELLED,
    STATUS_COMPLETE,
    EpisodeMetadata,
    EpisodeTracker,
    wall_iso,
    write_metadata,
)


class MessageFactory:
    """Builds serialized (CDR) loop messages with the rosbags type store."""

    def __init__(self, typestore: Any = None) -> None:
        self.ts = typestore or make_typestore()
        t = self.ts.types
        self._time = t["builtin_interfaces/msg/Time"]
        self._duration = t["builtin_interfaces/msg/Duration"]
        self._header = t["std_msgs/msg/Header"]
        self._image = t["sensor_msgs/msg/Image"]
        self._joint_state = t["sensor_msgs/msg/JointState"]
        self._traj = t["trajectory_msgs/msg/JointTrajectory"]
        self._point = t["trajectory_msgs/msg/JointTrajectoryPoint"]
        self._bool = t["std_msgs/msg/Bool"]
        self._string = t["std_msgs/msg/String"]
        self._diag = t["diagnostic_msgs/msg/DiagnosticArray"]
        self._status = t["diagnostic_msgs/msg/DiagnosticStatus"]
        self._kv = t["diagnostic_msgs/msg/KeyValue"]

    def header(self, stamp_ns: int, frame_id: str = "") -> Any:
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        return self._header(stamp=self._time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def image(
        self, stamp_ns: int, pixels: np.ndarray, encoding: str = "rgb8", frame_id: str = ""
    ) -> bytes:
        """(H, W, 3) uint8 -> rgb8/bgr8 Image; (H, W) float32 -> 32FC1 (world-model state)."""
        pixels = np.ascontiguousarray(pixels)
        height, width = pixels.shape[:2]
        msg = self._image(
            header=self.header(stamp_ns, frame_id),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=0,
            step=int(pixels.strides[0]),
            data=pixels.reshape(-1).view(np.uint8),
        )
        return bytes(self.ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))

    def joint_state(self, stamp_ns: int, names: Sequence[str], positions: Sequence[float]) -> bytes:
        msg = self._joint_state(
            header=self.header(stamp_ns),
            name=list(names),
            position=np.asarray(positions, dtype=np.float64),
            velocity=np.zeros(0, np.float64),
            effort=np.zeros(0, np.float64),
        )
        return bytes(self.ts.serialize_cdr(msg, "sensor_msgs/msg/JointState"))

    def trajectory(
        self,
        stamp_ns: int,
        names: Sequence[str],
        t_from_start_s: Sequence[float],
        positions: np.ndarray,
        frame_id: str = "",
    ) -> bytes:
        points = []
        for t, row in zip(t_from_start_s, np.asarray(positions, np.float64), strict=True):
            sec, nanosec = divmod(round(t * 1e9), 1_000_000_000)
            empty = np.zeros(0, np.float64)
            points.append(
                self._point(
                    positions=row,
                    velocities=empty,
                    accelerations=empty,
                    effort=empty,
                    time_from_start=self._duration(sec=sec, nanosec=nanosec),
                )
            )
        msg = self._traj(
            header=self.header(stamp_ns, frame_id), joint_names=list(names), points=points
        )
        return bytes(self.ts.serialize_cdr(msg, "trajectory_msgs/msg/JointTrajectory"))

    def boolean(self, value: bool) -> bytes:
        return bytes(self.ts.serialize_cdr(self._bool(data=bool(value)), "std_msgs/msg/Bool"))

    def string(self, value: str) -> bytes:
        return bytes(self.ts.serialize_cdr(self._string(data=value), "std_msgs/msg/String"))

    def diagnostics(self, stamp_ns: int, node: str, values: dict[str, str]) -> bytes:
        status = self._status(
            level=0,
            name=node,
            message="ok",
            hardware_id=node,
            values=[self._kv(key=k, value=v) for k, v in values.items()],
        )
        msg = self._diag(header=self.header(stamp_ns), status=[status])
        return bytes(self.ts.serialize_cdr(msg, "diagnostic_msgs/msg/DiagnosticArray"))


def write_episode(
    bag_dir: Path,
    topics: Sequence[TopicSpec],
    messages: Iterable[tuple[str, int, bytes]],
    meta: EpisodeMetadata,
    typestore: Any = None,
) -> EpisodeMetadata:
    """Write a complete episode folder from (topic, log time ns, raw) in time order.

    ``meta`` holds the labels (name, robot, operator, start_ns, success, cancelled); counts,
    task, model ids and intervention segments are derived from the messages as the recorder does.
    """
    typestore = typestore or make_typestore()
    writer = BagWriter(bag_dir, topics, typestore, meta.namespace)
    tracker = EpisodeTracker(meta, {s.topic: s.msgtype for s in topics}, typestore)
    meta.start_wall = meta.start_wall or wall_iso(meta.start_ns)
    last = meta.start_ns
    for topic, log_ns, raw in messages:
        writer.write(topic, log_ns, raw)
        tracker.on_message(topic, log_ns, raw)
        last = max(last, log_ns)
    tracker.finish(last)
    meta.status = STATUS_CANCELLED if meta.cancelled else STATUS_COMPLETE
    meta.end_reason = "cancelled" if meta.cancelled else "stopped"
    meta.bag_file = writer.mcap_path.name
    writer.close({CUSTOM_DATA_KEY: meta.to_json()})
    write_metadata(bag_dir, meta)
    return meta


@dataclass
class SyntheticEpisode:
    """What :func:`synthetic_episode` wrote, for checks."""

    path: Path
    meta: EpisodeMetadata
    joint_names: list[str]
    t0_ns: int
    duration_s: float


def synthetic_episode(
    bag_dir: Path,
    *,
    duration_s: float = 3.0,
    t0_ns: int = 1_700_000_000_000_000_000,
    cameras: Sequence[str] = ("front", "wrist"),
    image_size: tuple[int, int] = (64, 48),
    camera_hz: float = 30.0,
    state_hz: float = 200.0,
    command_hz: float = 200.0,
    chunk_hz: float = 10.0,
    interventions: Sequence[tuple[float, float]] = (),
    task: str = "pick the red cube",
    success: bool | None = True,
    cancelled: bool = False,
    robot: str = "sim",
    operator: str = "tester",
    joint_names: Sequence[str] = ("joint1", "joint2", "gripper"),
    latency_s: float = 0.002,
) -> SyntheticEpisode:
    """A deterministic episode: joints follow sines, commands lead them by 10 ms.

    Positions: joint j at time t (s since t0) is ``0.1 * (j + 1) * sin(t)``; the command at t is
    the position at t + 0.01. Image pixel value = frame number modulo 256 (all channels), so an
    export can be checked frame by frame. ``interventions`` are (start_s, end_s) stretches with
    ``ramp/intervention`` true. Log time = stamp + ``latency_s``.
    """
    f = MessageFactory()
    names = list(joint_names)
    width, height = image_size
    gains = 0.1 * (np.arange(len(names)) + 1)
    lat = int(latency_s * 1e9)
    msgs: list[tuple[str, int, bytes]] = []

    def ns(t: float) -> int:
        return t0_ns + round(t * 1e9)

    msgs.append(("ramp/task", ns(0.0), f.string(task)))
    msgs.append(("ramp/intervention", ns(0.0), f.boolean(False)))
    for start, end in interventions:
        msgs.append(("ramp/intervention", ns(start), f.boolean(True)))
        msgs.append(("ramp/intervention", ns(end), f.boolean(False)))
    for cam_i, cam in enumerate(cameras):
        for k in range(int(duration_s * camera_hz)):
            t = k / camera_hz
            pixels = np.full((height, width, 3), (k + 40 * cam_i) % 256, np.uint8)
            msgs.append(
                (f"camera/{cam}/image_raw", ns(t) + lat, f.image(ns(t), pixels, frame_id=cam))
            )
    for k in range(int(duration_s * state_hz)):
        t = k / state_hz
        msgs.append(("joint_states", ns(t) + lat, f.joint_state(ns(t), names, gains * np.sin(t))))
    for k in range(int(duration_s * command_hz)):
        t = k / command_hz
        pos = gains * np.sin(t + 0.01)
        msgs.append(("joint_command", ns(t) + lat, f.joint_state(ns(t), names, pos)))
        msgs.append(("ramp/policy_command", ns(t) + lat, f.joint_state(ns(t), names, pos)))
    for k in range(int(duration_s * chunk_hz)):
        t = k / chunk_hz
        steps = np.arange(1, 11) * 0.02
        chunk = gains[None, :] * np.sin(t + steps[:, None])
        msgs.append(
            (
                "ramp/action_chunk",
                ns(t) + 5 * lat,
                f.trajectory(ns(t), names, steps, chunk, "policy-v1"),
            )
        )
        wm = np.zeros((4, 8), np.float32)
        msgs.append(("ramp/wm_state", ns(t) + 3 * lat, f.image(ns(t), wm, "32FC1", "wm-v1")))
    msgs.append(
        ("diagnostics", ns(0.5), f.diagnostics(ns(0.5), "/policy_node", {"model_id": "policy-v1"}))
    )
    msgs.sort(key=lambda m: m[1])
    topics = parse_topic_specs([f"camera/{c}/image_raw" for c in cameras] + [
        "joint_states", "ramp/wm_state", "ramp/action_chunk", "ramp/policy_command",
        "joint_command", "ramp/intervention", "ramp/task", "diagnostics",
    ])  # fmt: skip
    meta = EpisodeMetadata(
        name=Path(bag_dir).name,
        robot=robot,
        operator=operator,
        start_ns=t0_ns,
        success=None if cancelled else success,
        cancelled=cancelled,
    )
    meta = write_episode(Path(bag_dir), topics, msgs, meta, f.ts)
    return SyntheticEpisode(Path(bag_dir), meta, names, t0_ns, duration_s)
