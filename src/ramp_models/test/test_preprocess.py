"""Camera frames -> images tensor per the card's image section."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ramp_models.model_card import ImageSpec
from ramp_models.preprocess import FrameError, ImagePreprocessor

SPEC = ImageSpec(height=48, width=64)


def _solid(h: int, w: int, rgb: tuple[int, int, int]) -> np.ndarray:
    frame = np.empty((h, w, 3), np.uint8)
    frame[:] = rgb
    return frame


def test_shape_dtype_and_values_for_any_frame_size() -> None:
    pre = ImagePreprocessor(SPEC, ("front", "wrist"))
    frames = [_solid(480, 640, (255, 0, 128)), _solid(30, 20, (0, 255, 255))]
    x = pre(frames)
    assert x.shape == (1, 2, 3, 48, 64) == pre.output_shape(2)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    # x = (pixel / 255 - 0.5) / 0.5 per channel, RGB order.
    np.testing.assert_allclose(x[0, 0, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 0, 1], -1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 0, 2], 128 / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 1, 0], -1.0, atol=1e-6)
    np.testing.assert_allclose(x[0, 1, 1:], 1.0, atol=1e-6)


def test_matches_reference_resize_and_normalisation() -> None:
    spec = ImageSpec(
        height=24, width=32, scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    x = ImagePreprocessor(spec)([frame])
    small = cv2.resize(frame, (32, 24), interpolation=cv2.INTER_AREA).astype(np.float64)
    expected = (small / 255 - np.array(spec.mean)) / np.array(spec.std)
    np.testing.assert_allclose(x[0, 0], expected.transpose(2, 0, 1), atol=1e-5)


def test_bgr_card_flips_channels_and_nhwc_layout() -> None:
    red = _solid(48, 64, (255, 0, 0))
    bgr = ImagePreprocessor(ImageSpec(height=48, width=64, color="BGR"))([red])
    assert bgr[0, 0, 2].min() == pytest.approx(1.0) and bgr[0, 0, 0].max() == pytest.approx(-1.0)
    nhwc = ImagePreprocessor(ImageSpec(height=48, width=64, layout="NHWC"))([red, red])
    assert nhwc.shape == (1, 2, 48, 64, 3)
    np.testing.assert_allclose(nhwc[0, 1, 5, 7], [1.0, -1.0, -1.0], atol=1e-6)


def test_non_contiguous_frame_is_accepted() -> None:
    frame = np.random.default_rng(2).integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    flipped = frame[:, ::-1]
    x = ImagePreprocessor(SPEC)([flipped])
    y = ImagePreprocessor(SPEC)([np.ascontiguousarray(flipped)])
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (np.zeros((48, 64), np.uint8), "H x W x 3"),
        (np.zeros((48, 64, 4), np.uint8), "[48, 64, 4]"),
        (np.zeros((48, 64, 3), np.float32), "uint8"),
        (np.zeros((0, 64, 3), np.uint8), "empty"),
    ],
)
def test_rejects_bad_frames(frame: np.ndarray, words: str) -> None:
    pre = ImagePreprocessor(SPEC, ("front", "wrist"))
    good = _solid(48, 64, (0, 0, 0))
    with pytest.raises(FrameError, match="camera wrist") as err:
        pre([good, frame])
    assert words in str(err.value)


def test_rejects_wrong_frame_count() -> None:
    pre = ImagePreprocessor(SPEC, ("front", "wrist"))
    with pytest.raises(FrameError, match=r"got 1 frames.*'front', 'wrist'"):
        pre([_solid(48, 64, (0, 0, 0))])
    with pytest.raises(FrameError, match="no camera frames"):
        pre([])
