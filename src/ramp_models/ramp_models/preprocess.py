"""Camera frames -> the model's images tensor, as the card's ``image`` section says (ROS-free).

Input frames are H x W x 3 uint8 in RGB channel order (any size, one per camera in the card's
camera order). Output is float32 (1, N, 3, H, W) for layout NCHW or (1, N, H, W, 3) for NHWC,
with ``x = (pixel * scale - mean[c]) / std[c]`` in the card's channel order.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ramp_models.model_card import ImageSpec


class FrameError(ValueError):
    """A camera frame that cannot be preprocessed; the text names the camera and the problem."""


class ImagePreprocessor:
    """Resize (cv2 INTER_AREA), reorder channels and normalise a set of camera frames.

    ``camera_names`` (optional) fixes the expected number of frames and names them in errors.
    """

    def __init__(self, image_spec: ImageSpec, camera_names: Sequence[str] | None = None) -> None:
        self.spec = image_spec
        self.camera_names = tuple(camera_names) if camera_names is not None else None
        mean = np.asarray(image_spec.mean, dtype=np.float32)
        std = np.asarray(image_spec.std, dtype=np.float32)
        # x = pixel * gain + offset, per channel: one multiply-add over the whole batch.
        self._gain = (np.float32(image_spec.scale) / std).reshape(1, 1, 1, 3)
        self._offset = (-mean / std).reshape(1, 1, 1, 3)
        self._size = (image_spec.width, image_spec.height)

    def output_shape(self, num_cameras: int) -> tuple[int, ...]:
        h, w = self.spec.height, self.spec.width
        if self.spec.layout == "NCHW":
            return (1, num_cameras, 3, h, w)
        return (1, num_cameras, h, w, 3)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames (RGB uint8, H x W x 3, any size) -> float32 images tensor for the model."""
        n = len(frames)
        if n == 0:
            raise FrameError("no camera frames given")
        if self.camera_names is not None and n != len(self.camera_names):
            raise FrameError(
                f"got {n} frames, the model takes {len(self.camera_names)} cameras "
                f"{list(self.camera_names)}"
            )
        h, w = self.spec.height, self.spec.width
        batch = np.empty((n, h, w, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            self._check(i, frame)
            if frame.shape[0] == h and frame.shape[1] == w:
                batch[i] = frame
            else:
                batch[i] = cv2.resize(
                    np.ascontiguousarray(frame), self._size, interpolation=cv2.INTER_AREA
                )
        if self.spec.color == "BGR":
            batch = batch[..., ::-1]
        x = batch.astype(np.float32)
        x *= self._gain
        x += self._offset
        if self.spec.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)[np.newaxis]

    def _check(self, index: int, frame: np.ndarray) -> None:
        name = self.camera_names[index] if self.camera_names is not None else f"#{index}"
        if not isinstance(frame, np.ndarray):
            raise FrameError(f"camera {name}: expected a numpy array, got {type(frame).__name__}")
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise FrameError(
                f"camera {name}: expected an H x W x 3 RGB frame, got shape {list(frame.shape)}"
            )
        if frame.dtype != np.uint8:
            raise FrameError(f"camera {name}: expected uint8 pixels, got {frame.dtype}")
        if frame.shape[0] == 0 or frame.shape[1] == 0:
            raise FrameError(f"camera {name}: empty frame {list(frame.shape)}")
