"""Message <-> numpy conversions shared by every node.

All conversions are vectorised: image payloads go through ``numpy.frombuffer`` (one copy at most),
never a per-pixel Python loop. Times are float seconds on the ROS clock the stamps came from.
"""

from __future__ import annotations

import array as pyarray
import struct
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# MessageError is defined beside the ROS-free image wire format; the nodes import it from here.
from ramp_common.image_wire import MessageError as MessageError
from ramp_common.image_wire import pixels_view


def stamp_to_sec(stamp: Time) -> float:
    """ROS ``builtin_interfaces/Time`` -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def sec_to_stamp(t: float) -> Time:
    """Float seconds -> ROS ``builtin_interfaces/Time`` (rounded to the nanosecond)."""
    ns = round(t * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def sec_to_duration(t: float) -> Duration:
    """Float seconds (>= 0) -> ROS ``builtin_interfaces/Duration``."""
    ns = round(t * 1e9)
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def duration_to_sec(d: Duration) -> float:
    """ROS ``builtin_interfaces/Duration`` -> float seconds."""
    return d.sec + d.nanosec * 1e-9


def stamp_from_cdr(raw: bytes) -> float:
    """header.stamp (s) of a serialized message whose first field is a std_msgs/Header.

    Reads the two stamp integers right after the 4-byte CDR encapsulation header, without
    deserializing the message (an image stays untouched). Raises MessageError if too short.
    """
    if len(raw) < 12:
        raise MessageError(f"serialized message of {len(raw)} bytes has no header")
    order = "<" if raw[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(order + "iI", raw, 4)
    return sec + nanosec * 1e-9


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8/bgr8/mono8/rgba8/bgra8, or 32FC1) -> array view (H, W, C) or (H, W).

    Raises MessageError for an unknown encoding or a payload whose size does not match
    ``height * step``. The result is a read-only view on the message buffer where possible.
    """
    return pixels_view(
        np.frombuffer(msg.data, dtype=np.uint8),
        int(msg.height),
        int(msg.width),
        int(msg.step),
        msg.encoding,
        bool(msg.is_bigendian),
    )


def numpy_to_image(array: np.ndarray, encoding: str, stamp: Time, frame_id: str = "") -> Image:
    """Numpy array -> sensor_msgs/Image with one copy and no per-pixel Python.

    ``array`` is (H, W, C) uint8 for rgb8/bgr8/rgba8/bgra8, (H, W) uint8 for mono8, or (H, W)
    float32 for 32FC1.

    The payload is handed over as an ``array.array('B')``: the generated ``data`` setter takes
    that as it is. Given ``bytes`` instead, the setter of Humble's messages (and Jazzy's with
    ``ROS_PYTHON_CHECK_FIELDS=1``) checks every byte in a Python loop: ~2 x 921,600 iterations
    for one 640x480 RGB frame.
    """
    array = np.ascontiguousarray(array)
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(array.strides[0])
    payload = pyarray.array("B")
    payload.frombytes(array.reshape(-1).view(np.uint8).data)
    msg.data = payload
    return msg


def joint_state_positions(msg: JointState, joint_names: Sequence[str]) -> np.ndarray:
    """Positions of ``joint_names`` (in that order) from a JointState, float64.

    Raises MessageError naming the missing joints, or when positions are missing or not finite.
    """
    if len(msg.position) != len(msg.name):
        raise MessageError(f"{len(msg.name)} names but {len(msg.position)} positions")
    index = {name: i for i, name in enumerate(msg.name)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise MessageError(f"joint state lacks joints {missing} (has {list(msg.name)})")
    pos = np.asarray(msg.position, dtype=np.float64)[[index[n] for n in joint_names]]
    if not np.all(np.isfinite(pos)):
        raise MessageError("joint state holds non-finite positions")
    return pos


def make_joint_state(
    joint_names: Sequence[str],
    positions: np.ndarray,
    stamp: Time,
    velocities: np.ndarray | None = None,
    efforts: np.ndarray | None = None,
) -> JointState:
    """Build a JointState (positions in rad for revolute joints, m for the gripper)."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(joint_names)
    msg.position = np.asarray(positions, dtype=np.float64).tolist()
    if velocities is not None:
        msg.velocity = np.asarray(velocities, dtype=np.float64).tolist()
    if efforts is not None:
        msg.effort = np.asarray(efforts, dtype=np.float64).tolist()
    return msg


def trajectory_to_numpy(
    msg: JointTrajectory, joint_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """JointTrajectory -> (t_from_start (H,), positions (H, D)) in ``joint_names`` order.

    Raises MessageError on wrong joint names, ragged points or an empty trajectory.
    """
    if not msg.points:
        raise MessageError("trajectory has no points")
    index = {name: i for i, name in enumerate(msg.joint_names)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise MessageError(f"trajectory lacks joints {missing} (has {list(msg.joint_names)})")
    width = len(msg.joint_names)
    if any(len(p.positions) != width for p in msg.points):
        raise MessageError(f"trajectory points do not all have {width} positions")
    order = [index[n] for n in joint_names]
    positions = np.array([p.positions for p in msg.points], dtype=np.float64)[:, order]
    times = np.array([duration_to_sec(p.time_from_start) for p in msg.points], dtype=np.float64)
    return times, positions


def numpy_to_trajectory(
    joint_names: Sequence[str],
    t_from_start: np.ndarray,
    positions: np.ndarray,
    stamp: Time,
    frame_id: str = "",
) -> JointTrajectory:
    """(H,) times and (H, D) positions -> JointTrajectory with header.stamp = ``stamp``."""
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.joint_names = list(joint_names)
    points = []
    for t, row in zip(t_from_start.tolist(), positions.tolist(), strict=True):
        point = JointTrajectoryPoint()
        point.positions = row
        point.time_from_start = sec_to_duration(t)
        points.append(point)
    msg.points = points
    return msg
