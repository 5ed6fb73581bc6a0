"""Camera frames for the console: serialized sensor_msgs/Image -> JPEG, once per frame (ROS-free).

The console subscribes to the cameras with ``raw=True``: a frame arrives as serialized CDR bytes
and is only kept (a reference, no copy). It is parsed and encoded only when some viewer is due a
frame, and at most once per frame whatever the number of viewers (:class:`FrameStore`). Parsing
is ``ramp_common.image_wire`` (rosbags' CDR reader; the pixels stay a view of the received
bytes, no per-pixel Python); OpenCV converts and encodes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ramp_common.image_wire import PIXEL_ENCODINGS, MessageError, decode_image


class FrameError(ValueError):
    """A serialized image the console cannot show; the text names the reason."""


@dataclass(frozen=True)
class RawImage:
    """A parsed sensor_msgs/Image: stamp (s, capture time), encoding and a pixel view (H, W, C)."""

    stamp_s: float
    frame_id: str
    encoding: str
    pixels: np.ndarray


def parse_image_cdr(raw: bytes) -> RawImage:
    """Serialized sensor_msgs/Image (CDR) -> :class:`RawImage` with a zero-copy pixel view.

    Parsed by ``ramp_common.image_wire`` (rosbags). Supports rgb8, bgr8, mono8, rgba8, bgra8.
    Raises FrameError for other encodings, malformed bytes, empty images or a payload that does
    not match ``height * step``.
    """
    try:
        image = decode_image(raw)
    except MessageError as exc:
        raise FrameError(str(exc)) from None
    if image.encoding not in PIXEL_ENCODINGS:
        raise FrameError(f"unsupported image encoding {image.encoding!r}")
    pixels = image.pixels if image.pixels.ndim == 3 else image.pixels[:, :, np.newaxis]
    return RawImage(image.stamp_s, image.frame_id, image.encoding, pixels)


def encode_jpeg(image: RawImage, quality: int = 80, max_width: int = 0) -> bytes:
    """JPEG bytes of ``image`` (OpenCV; ``max_width`` > 0 shrinks wider frames, aspect kept)."""
    pixels = image.pixels
    conversion = {
        "rgb8": cv2.COLOR_RGB2BGR,
        "rgba8": cv2.COLOR_RGBA2BGR,
        "bgra8": cv2.COLOR_BGRA2BGR,
    }.get(image.encoding)
    if conversion is not None:
        pixels = cv2.cvtColor(pixels, conversion)
    elif image.encoding == "mono8":
        pixels = pixels[:, :, 0]
    if max_width > 0 and pixels.shape[1] > max_width:
        height = max(1, round(pixels.shape[0] * max_width / pixels.shape[1]))
        pixels = cv2.resize(pixels, (max_width, height), interpolation=cv2.INTER_AREA)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(pixels), params)
    if not ok:
        raise FrameError("JPEG encoding failed")
    return buf.tobytes()


@dataclass(frozen=True)
class EncodedFrame:
    """One camera frame as JPEG: ``seq`` counts received frames per camera from 1."""

    camera: str
    seq: int
    stamp_s: float
    jpeg: bytes


class FrameStore:
    """Latest serialized frame per camera, encoded lazily and at most once per frame.

    ``offer`` runs in the ROS callback (stores a reference and counts: no parsing, no copy);
    ``encoded`` runs on the web side when a viewer is due a frame. Thread-safe.
    """

    def __init__(self, cameras: list[str], quality: int = 80, max_width: int = 0) -> None:
        self.cameras = list(cameras)
        self.quality = int(quality)
        self.max_width = int(max_width)
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[int, bytes | None]] = {c: (0, None) for c in self.cameras}
        self._cache: dict[str, EncodedFrame] = {}
        self._encode_locks = {c: threading.Lock() for c in self.cameras}
        self.received = dict.fromkeys(self.cameras, 0)
        self.encoded_count = 0
        self.encode_errors = 0
        self.last_error = ""
        self.encode_s_total = 0.0

    def offer(self, camera: str, raw: bytes) -> None:
        """Keep ``raw`` (serialized Image) as the camera's latest frame."""
        with self._lock:
            seq = self._latest[camera][0] + 1
            self._latest[camera] = (seq, raw)
            self.received[camera] = seq

    def drop_latest(self) -> None:
        """Forget the latest frames (nobody watches; the next viewer must not get old ones)."""
        with self._lock:
            self._latest = {c: (seq, None) for c, (seq, _raw) in self._latest.items()}
            self._cache.clear()

    def latest_seq(self, camera: str) -> int:
        """Sequence number of the camera's latest received frame (0 = none yet)."""
        with self._lock:
            return self._latest[camera][0]

    def encoded(self, camera: str) -> EncodedFrame | None:
        """The camera's latest frame as JPEG (encoded now unless already cached); None if none.

        A frame that cannot be parsed is counted in ``encode_errors`` and returns None.
        """
        with self._encode_locks[camera]:
            with self._lock:
                seq, raw = self._latest[camera]
                cached = self._cache.get(camera)
            if cached is not None and cached.seq == seq:
                return cached
            if raw is None:
                return None
            t0 = time.perf_counter()
            try:
                image = parse_image_cdr(raw)
                jpeg = encode_jpeg(image, self.quality, self.max_width)
            except FrameError as exc:
                with self._lock:
                    self.encode_errors += 1
                    self.last_error = f"{camera}: {exc}"
                return None
            frame = EncodedFrame(camera, seq, image.stamp_s, jpeg)
            with self._lock:
                self._cache[camera] = frame
                self.encoded_count += 1
                self.encode_s_total += time.perf_counter() - t0
            return frame
