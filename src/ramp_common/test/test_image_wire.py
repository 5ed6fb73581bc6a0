"""Serialized images (ramp_common.image_wire): the same bytes rclpy writes and reads, exact
round trips, zero-copy views, and errors that name the problem."""

import re

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from ramp_common.conversions import image_to_numpy, numpy_to_image, sec_to_stamp
from ramp_common.image_wire import MessageError, decode_image, encode_image, split_stamp


def test_rgb_round_trip_is_exact_and_a_read_only_view() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    raw = encode_image(frame, "rgb8", 1764000000.123456789, "front")
    image = decode_image(raw)
    np.testing.assert_array_equal(image.pixels, frame)
    assert image.pixels.base is not None and not image.pixels.flags.writeable  # no copy
    assert (image.frame_id, image.encoding, image.raw) == ("front", "rgb8", raw)
    assert (image.sec, image.nanosec) == split_stamp(1764000000.123456789)


def image_cdr_padding(frame_id: str, encoding: str) -> set[int]:
    """Byte positions of the CDR alignment padding in a serialized sensor_msgs/Image (after the
    4-byte encapsulation header, fields aligned to their size from there)."""
    padding: set[int] = set()
    offset = 0

    def field(size: int, align: int) -> None:
        nonlocal offset
        pad = -offset % align
        padding.update(range(4 + offset, 4 + offset + pad))
        offset += pad + size

    field(4, 4)  # header.stamp.sec
    field(4, 4)  # header.stamp.nanosec
    field(4 + len(frame_id) + 1, 4)  # header.frame_id: length, characters, NUL
    field(4, 4)  # height
    field(4, 4)  # width
    field(4 + len(encoding) + 1, 4)  # encoding
    field(1, 1)  # is_bigendian
    field(4, 4)  # step
    field(4, 4)  # data length (the bytes follow unaligned)
    return padding


def test_the_bytes_are_what_rclpy_writes_and_reads() -> None:
    """Same wire format both ways: C++ nodes, rosbag2 and `ros2 topic echo` see no change.

    Only the CDR alignment padding may differ: we write zeros there, rclpy's serializer leaves
    whatever its buffer held (seen: b"A" after ``is_bigendian``)."""
    frame = np.random.default_rng(1).integers(0, 255, (6, 10, 3), dtype=np.uint8)
    stamp = sec_to_stamp(12.25)
    ours = encode_image(frame, "rgb8", (stamp.sec, stamp.nanosec), "wrist")
    theirs = serialize_message(numpy_to_image(frame, "rgb8", stamp, "wrist"))
    assert len(ours) == len(theirs)
    padding = image_cdr_padding("wrist", "rgb8")
    assert padding == {22, 23, 42, 43}
    assert {i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b} <= padding
    assert all(ours[i] == 0 for i in padding)
    msg = deserialize_message(ours, Image)
    np.testing.assert_array_equal(image_to_numpy(msg), frame)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
        12,
        250_000_000,
        "wrist",
    )


@pytest.mark.parametrize(
    ("array", "encoding"),
    [
        (np.arange(12, dtype=np.uint8).reshape(3, 4), "mono8"),
        (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "bgra8"),
        (np.linspace(-1, 1, 8 * 64, dtype=np.float32).reshape(8, 64), "32FC1"),
    ],
)
def test_other_encodings_round_trip(array: np.ndarray, encoding: str) -> None:
    np.testing.assert_array_equal(decode_image(encode_image(array, encoding, 0.0)).pixels, array)


def test_a_non_contiguous_array_is_encoded_by_value() -> None:
    frame = np.random.default_rng(2).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    flipped = frame[:, :, ::-1]
    np.testing.assert_array_equal(decode_image(encode_image(flipped, "bgr8", 0.0)).pixels, flipped)


def test_padded_rows_from_other_publishers_are_cropped() -> None:
    msg = Image(height=2, width=2, encoding="mono8", step=4)
    msg.data = bytes([1, 2, 99, 99, 3, 4, 99, 99])
    np.testing.assert_array_equal(decode_image(serialize_message(msg)).pixels, [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("array", "encoding", "reason"),
    [
        (np.zeros((4, 4), np.uint8), "rgb8", "shape (4, 4) is no rgb8 image"),
        (np.zeros((4, 4, 3), np.float32), "rgb8", "float32 array"),
        (np.zeros((4, 4), np.float64), "32FC1", "float64 array"),
        (np.zeros((4, 4, 3), np.uint8), "yuv422", "unsupported image encoding 'yuv422'"),
    ],
)
def test_encode_refuses_an_array_that_does_not_fit(array, encoding, reason) -> None:
    with pytest.raises(MessageError, match=re.escape(reason)):
        encode_image(array, encoding, 0.0)


def test_decode_names_what_is_wrong() -> None:
    good = encode_image(np.zeros((2, 2, 3), np.uint8), "rgb8", 0.0)
    with pytest.raises(MessageError, match="malformed sensor_msgs/Image"):
        decode_image(good[:-3])  # truncated payload
    with pytest.raises(MessageError, match="malformed sensor_msgs/Image"):
        decode_image(b"")
    bad = Image(height=2, width=2, encoding="rgb8", step=6)
    bad.data = bytes(11)
    with pytest.raises(MessageError, match=re.escape("payload 11 bytes != height*step 12")):
        decode_image(serialize_message(bad))
