"""sensor_msgs/Image as serialized CDR, to and from numpy, without rclpy message objects (ROS-free).

Why: a 640x480 rgb8 frame built as an rclpy ``Image`` is copied four times before it reaches
the subscriber's callback: into the Python message (``array.array``), into the C message when
``publish()`` converts it, into the CDR buffer when rmw serializes it, and back through the C
message into a new ``array.array`` on the other side. Each copy of 0.92 MB, and each Python
object built around it, takes 0.1-0.7 ms on a busy 2-core computer: together more than the 2 ms
that issue #11 allows a transport hop. The image path of the stack therefore publishes
serialized messages (``Publisher.publish(bytes)``) and subscribes with ``raw=True``:

- :func:`encode_image` writes the CDR bytes with ``rosbags`` (its serializer copies the pixels
  once, with numpy) and one ``bytes`` copy for ``publish``;
- :func:`decode_image` parses them with ``rosbags`` and returns the pixels as a read-only view on
  the received bytes (no copy).

On the wire nothing changes: it is the standard ``sensor_msgs/msg/Image`` (same CDR as every
rmw writes), so C++ nodes, ``ros2 topic echo``, rviz and rosbag2 read it as before. The type
definition is the same in Humble and Jazzy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, get_typestore

IMAGE_TYPE = "sensor_msgs/msg/Image"
PIXEL_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
"""The 8-bit pixel encodings the stack reads, with their channels (32FC1 is the latent's)."""
_TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
_Image = _TYPESTORE.types[IMAGE_TYPE]
_Header = _TYPESTORE.types["std_msgs/msg/Header"]
_Time = _TYPESTORE.types["builtin_interfaces/msg/Time"]


class MessageError(ValueError):
    """A message that cannot be used as it is; the text names the reason."""


@dataclass(frozen=True)
class WireImage:
    """A decoded serialized image.

    ``sec``/``nanosec``: ``header.stamp`` as sent (capture time on the sender's clock).
    ``pixels``: (H, W, C) uint8 view, (H, W) for mono8, (H, W) float32 for 32FC1; read-only,
    backed by ``raw``. ``raw``: the serialized message it was decoded from.
    """

    sec: int
    nanosec: int
    frame_id: str
    encoding: str
    pixels: np.ndarray
    raw: bytes

    @property
    def stamp_s(self) -> float:
        """``header.stamp`` in float seconds."""
        return self.sec + self.nanosec * 1e-9


def split_stamp(stamp_s: float) -> tuple[int, int]:
    """Float seconds -> (sec, nanosec), rounded to the nanosecond."""
    ns = round(stamp_s * 1e9)
    return ns // 1_000_000_000, ns % 1_000_000_000


def encode_image(
    array: np.ndarray, encoding: str, stamp: float | tuple[int, int], frame_id: str = ""
) -> bytes:
    """Numpy image -> serialized sensor_msgs/Image (little-endian CDR), for ``publish(bytes)``.

    ``array``: (H, W, C) uint8 for rgb8/bgr8/rgba8/bgra8, (H, W) uint8 for mono8, (H, W)
    float32 for 32FC1. ``stamp``: float seconds or an exact (sec, nanosec) pair. Raises
    MessageError when the array does not fit the encoding.
    """
    channels = 1 if encoding == "32FC1" else PIXEL_ENCODINGS.get(encoding)
    if channels is None:
        raise MessageError(f"unsupported image encoding {encoding!r}")
    dtype = np.float32 if encoding == "32FC1" else np.uint8
    shape_ok = array.ndim == 2 if channels == 1 else array.ndim == 3 and array.shape[2] == channels
    if not shape_ok or array.dtype != dtype:
        raise MessageError(f"a {array.dtype} array of shape {array.shape} is no {encoding} image")
    array = np.ascontiguousarray(array)
    sec, nanosec = stamp if isinstance(stamp, tuple) else split_stamp(stamp)
    msg = _Image(
        header=_Header(stamp=_Time(sec=int(sec), nanosec=int(nanosec)), frame_id=frame_id),
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=int(array.strides[0]),
        data=array.reshape(-1).view(np.uint8),
    )
    return bytes(_TYPESTORE.serialize_cdr(msg, IMAGE_TYPE))


def decode_image(raw: bytes) -> WireImage:
    """Serialized sensor_msgs/Image -> :class:`WireImage` with a zero-copy pixel view.

    Raises MessageError when the bytes are no Image, or the encoding, size or step is wrong.
    """
    try:
        msg = _TYPESTORE.deserialize_cdr(raw, IMAGE_TYPE)
    except SerdeError as exc:
        raise MessageError(f"malformed sensor_msgs/Image ({len(raw)} bytes): {exc}") from None
    pixels = pixels_view(
        msg.data, msg.height, msg.width, msg.step, msg.encoding, bool(msg.is_bigendian)
    )
    stamp = msg.header.stamp
    return WireImage(stamp.sec, stamp.nanosec, msg.header.frame_id, msg.encoding, pixels, raw)


def pixels_view(
    payload: np.ndarray, height: int, width: int, step: int, encoding: str, is_bigendian: bool
) -> np.ndarray:
    """An Image's ``data`` (uint8, flat) -> array view (H, W, C), (H, W) for mono8 and 32FC1.

    Checks the encoding, the size and the row step (bytes per row, padding allowed) against the
    payload; raises MessageError naming the mismatch. No copy, except for 32FC1 rows with padding.
    """
    h, w = height, width
    if encoding == "32FC1":
        channels, itemsize = 1, 4
    elif encoding in PIXEL_ENCODINGS:
        channels, itemsize = PIXEL_ENCODINGS[encoding], 1
    else:
        raise MessageError(f"unsupported image encoding {encoding!r}")
    if h <= 0 or w <= 0:
        raise MessageError(f"empty image {w}x{h}")
    if step < w * channels * itemsize:
        raise MessageError(f"step {step} < width*channels*itemsize {w * channels * itemsize}")
    if payload.size != h * step:
        raise MessageError(f"payload {payload.size} bytes != height*step {h * step}")
    rows = payload.reshape(h, step)[:, : w * channels * itemsize]
    if encoding == "32FC1":
        if is_bigendian:
            raise MessageError("big-endian 32FC1 is not supported")
        return np.ascontiguousarray(rows).view(np.float32).reshape(h, w)
    arr = rows.reshape(h, w, channels)
    if channels == 1:
        return arr[:, :, 0]
    return arr
