"""Message <-> numpy conversions: round trips and the errors that name the problem."""

import re

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

from ramp_common.conversions import (
    MessageError,
    image_to_numpy,
    joint_state_positions,
    numpy_to_image,
    numpy_to_trajectory,
    sec_to_stamp,
    stamp_to_sec,
    trajectory_to_numpy,
)


def test_stamp_round_trip_keeps_nanoseconds():
    t = 1764000000.123456789
    assert stamp_to_sec(sec_to_stamp(t)) == pytest.approx(t, abs=1e-6)
    assert sec_to_stamp(2.5).sec == 2 and sec_to_stamp(2.5).nanosec == 500_000_000


def test_rgb_image_round_trip_is_exact():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    msg = numpy_to_image(img, "rgb8", sec_to_stamp(1.0), "front")
    assert (msg.height, msg.width, msg.step) == (48, 64, 192)
    np.testing.assert_array_equal(image_to_numpy(msg), img)


def test_float_latent_round_trip():
    latent = np.arange(8 * 32, dtype=np.float32).reshape(8, 32) / 7.0
    msg = numpy_to_image(latent, "32FC1", sec_to_stamp(1.0), "wm-1")
    np.testing.assert_array_equal(image_to_numpy(msg), latent)


def test_image_with_row_padding_is_cropped():
    msg = Image(height=2, width=2, encoding="mono8", step=4)
    msg.data = bytes([1, 2, 99, 99, 3, 4, 99, 99])
    np.testing.assert_array_equal(image_to_numpy(msg), [[1, 2], [3, 4]])


@pytest.mark.parametrize(
    ("encoding", "payload", "step", "reason"),
    [
        ("yuv422", 12, 6, "unsupported image encoding"),
        ("rgb8", 11, 6, "payload 11 bytes != height*step 12"),
        ("rgb8", 12, 4, "step 4 < width*channels*itemsize 6"),
    ],
)
def test_malformed_images_are_refused_with_reason(encoding, payload, step, reason):
    msg = Image(height=2, width=2, encoding=encoding, step=step)
    msg.data = bytes(payload)
    with pytest.raises(MessageError, match=re.escape(reason)):
        image_to_numpy(msg)


def test_joint_state_reordered_by_name():
    msg = JointState(name=["b", "a", "c"], position=[2.0, 1.0, 3.0])
    np.testing.assert_array_equal(joint_state_positions(msg, ["a", "b"]), [1.0, 2.0])


def test_joint_state_missing_joint_named():
    msg = JointState(name=["a"], position=[1.0])
    with pytest.raises(MessageError, match=r"lacks joints \['b'\]"):
        joint_state_positions(msg, ["a", "b"])


def test_joint_state_nan_refused():
    msg = JointState(name=["a"], position=[float("nan")])
    with pytest.raises(MessageError, match="non-finite"):
        joint_state_positions(msg, ["a"])


def test_trajectory_round_trip_and_reorder():
    times = np.array([0.02, 0.04, 0.06])
    pos = np.arange(6, dtype=float).reshape(3, 2)
    msg = numpy_to_trajectory(["a", "b"], times, pos, sec_to_stamp(10.0), "policy-1")
    t, p = trajectory_to_numpy(msg, ["b", "a"])
    np.testing.assert_allclose(t, times)
    np.testing.assert_array_equal(p, pos[:, ::-1])


def test_trajectory_errors_named():
    msg = numpy_to_trajectory(["a"], np.array([0.1]), np.zeros((1, 1)), sec_to_stamp(0.0))
    with pytest.raises(MessageError, match="lacks joints"):
        trajectory_to_numpy(msg, ["a", "b"])
    msg.points = []
    with pytest.raises(MessageError, match="no points"):
        trajectory_to_numpy(msg, ["a"])


def test_stamp_read_from_serialized_bytes_matches_header():
    from rclpy.serialization import serialize_message

    from ramp_common.conversions import stamp_from_cdr

    img = numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8", sec_to_stamp(1764000000.25), "x")
    assert stamp_from_cdr(serialize_message(img)) == pytest.approx(1764000000.25)
    with pytest.raises(MessageError, match="no header"):
        stamp_from_cdr(b"\x00\x01")
