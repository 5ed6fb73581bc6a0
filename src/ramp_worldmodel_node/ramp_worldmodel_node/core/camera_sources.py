"""Camera frame sources and the worker thread that runs one (ROS-free).

A :class:`FrameSource` delivers RGB frames (H, W, 3) uint8 with their capture time in float
seconds on the wall clock (``time.time()``, the clock ROS stamps use by default). Sources:

- :class:`V4L2Source`: a USB/CSI camera through OpenCV's V4L2 backend.
- :class:`VideoFileSource`: a video file (MJPG .avi, mp4v .mp4) played like a live camera.

Simulator frames arriving on a ROS topic are no FrameSource: the node subscribes to them.

:class:`CameraWorker` runs one source in its own thread at a target rate, keeps only the latest
frame, and on failure (open fails, read fails, no frame for a while) reports it, closes the source
and retries opening until stopped.
"""

from __future__ import annotations

import abc
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

_LOG = logging.getLogger(__name__)


class CameraError(RuntimeError):
    """A camera source cannot deliver frames; the text names the device or file and the cause."""


@dataclass(frozen=True)
class Frame:
    """One camera frame."""

    capture_time_s: float
    """Capture time, float seconds on the wall clock (``time.time()``)."""
    image: np.ndarray
    """(H, W, 3) uint8, RGB channel order."""


class FrameSource(abc.ABC):
    """Open / read / close contract of a camera; nothing ROS in here.

    Not thread-safe: one thread (the :class:`CameraWorker`'s) uses a source at a time.
    """

    @abc.abstractmethod
    def open(self) -> None:
        """Open the device or file. Raises CameraError naming it and the cause."""

    @abc.abstractmethod
    def read(self) -> Frame | None:
        """The next frame; blocks for at most about one frame interval.

        Returns None when no new frame is available yet (not a failure by itself: the worker's
        stall timeout decides). Raises CameraError when the source is broken.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the device or file. Safe to call twice or without open()."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Short human-readable description (for logs and diagnostics)."""


def output_size(src_width: int, src_height: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) in pixels a frame of ``src_width`` x ``src_height`` is resized to.

    ``width``/``height`` 0 means "keep": both 0 keeps the source size, one of them 0 follows the
    source aspect ratio.
    """
    if width < 0 or height < 0:
        raise ValueError(f"image size must be >= 0, got width={width} height={height}")
    if width == 0 and height == 0:
        return src_width, src_height
    if width == 0:
        return max(1, round(src_width * height / src_height)), height
    if height == 0:
        return width, max(1, round(src_height * width / src_width))
    return width, height


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` (H, W, C) resized per :func:`output_size`; the same array when no resize is due."""
    src_h, src_w = image.shape[:2]
    out_w, out_h = output_size(src_w, src_h, width, height)
    if (out_w, out_h) == (src_w, src_h):
        return image
    # INTER_AREA avoids aliasing when shrinking; it degrades to bilinear-like when enlarging.
    interpolation = cv2.INTER_AREA if out_w * out_h < src_w * src_h else cv2.INTER_LINEAR
    return cv2.resize(image, (out_w, out_h), interpolation=interpolation)


def _bgr_to_rgb(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    return cv2.cvtColor(resize_image(bgr, width, height), cv2.COLOR_BGR2RGB)


class V4L2Source(FrameSource):
    """A V4L2 camera (``/dev/videoN``) through OpenCV.

    ``width``/``height``/``fps`` request a capture mode (0 keeps the device default); a device
    that ignores the request gets its frames resized to the requested size. The driver buffer
    holds one frame, so a read returns a fresh frame rather than a queued old one. A read that
    waits longer than ``read_timeout_s`` fails.
    """

    def __init__(
        self,
        device: str,
        width: int = 0,
        height: int = 0,
        fps: float = 0.0,
        fourcc: str = "MJPG",
        read_timeout_s: float = 1.0,
    ) -> None:
        self.device = f"/dev/video{device}" if device.isdigit() else device
        if len(fourcc) != 4:
            raise ValueError(f"fourcc must have 4 characters, got {fourcc!r}")
        output_size(1, 1, width, height)  # validates
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.read_timeout_s = read_timeout_s
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        if not os.path.exists(self.device):
            raise CameraError(f"camera device {self.device} does not exist")
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot open camera device {self.device} with V4L2 "
                "(busy, no permission, or not a capture device)"
            )
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width > 0:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height > 0:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps > 0:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1.0, self.read_timeout_s * 1e3))
        self._cap = cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise CameraError(f"camera device {self.device} is not open")
        if not self._cap.grab():
            raise CameraError(
                f"camera device {self.device}: no frame within {self.read_timeout_s:.3g} s "
                "(unplugged or stalled)"
            )
        capture_time_s = time.time()
        ok, bgr = self._cap.retrieve()
        if not ok or bgr is None:
            raise CameraError(f"camera device {self.device}: frame could not be decoded")
        return Frame(capture_time_s, _bgr_to_rgb(bgr, self.width, self.height))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def describe(self) -> str:
        size = f"{self.width or 'default'}x{self.height or 'default'}"
        return f"device:{self.device} (V4L2 {self.fourcc} {size} @ {self.fps or 'default'} fps)"


class VideoFileSource(FrameSource):
    """A video file that OpenCV decodes (MJPG .avi, mp4v .mp4), played like a live camera.

    ``realtime=True``: frame k of the play timeline is due at ``open + k / fps`` (``fps`` or else
    the file's own rate); a read waits until the next frame is due, and a reader that fell behind
    gets the latest due frame (the ones in between are skipped, as a live camera with a one-frame
    buffer does). The capture time is the due time. ``realtime=False``: frames come as fast as
    they are read, stamped with the read time. ``loop``: start again at the end of the file;
    otherwise the end of the file is a CameraError. ``width``/``height`` resize (0 keeps).
    """

    _MAX_WAIT_S = 0.25
    """Longest a read sleeps before returning None, so a stop request is seen promptly."""

    def __init__(
        self,
        path: str,
        loop: bool = True,
        realtime: bool = True,
        fps: float | None = None,
        width: int = 0,
        height: int = 0,
    ) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps for video file {path} must be > 0, got {fps}")
        output_size(1, 1, width, height)  # validates
        self.path, self.loop, self.realtime = path, loop, realtime
        self.width, self.height = width, height
        self._requested_fps = fps
        self._cap: cv2.VideoCapture | None = None
        self._fps = 0.0
        self._t0 = 0.0
        self._wall_minus_mono = 0.0
        self._next_index = 0
        self._pos = 0
        self._frames_since_rewind = 0
        self._pending: np.ndarray | None = None

    @property
    def fps(self) -> float:
        """Play rate in frames per second (known after open())."""
        return self._fps

    def open(self) -> None:
        self.close()
        if not os.path.isfile(self.path):
            raise CameraError(f"video file {self.path} does not exist")
        cap = self._open_capture()
        file_fps = cap.get(cv2.CAP_PROP_FPS)
        fps = self._requested_fps or file_fps
        if not (math.isfinite(fps) and fps > 0):
            cap.release()
            raise CameraError(f"video file {self.path} states no frame rate; configure one")
        ok, bgr = cap.read()
        if not ok or bgr is None:
            cap.release()
            raise CameraError(f"video file {self.path} holds no decodable frame")
        self._cap, self._fps = cap, float(fps)
        self._pending, self._pos, self._frames_since_rewind = bgr, 1, 1
        self._next_index = 0
        self._t0 = time.monotonic()
        self._wall_minus_mono = time.time() - self._t0

    def _open_capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot read video file {self.path} (not a video OpenCV decodes)")
        return cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise CameraError(f"video file {self.path} is not open")
        if not self.realtime:
            bgr = self._frame_at(self._next_index)
            self._next_index += 1
            return Frame(time.time(), _bgr_to_rgb(bgr, self.width, self.height))
        now = time.monotonic()
        due_index = math.floor((now - self._t0) * self._fps)
        if due_index < self._next_index:
            wake = self._t0 + self._next_index / self._fps
            if wake - now > self._MAX_WAIT_S:
                time.sleep(self._MAX_WAIT_S)
                return None
            time.sleep(max(0.0, wake - now))
            target = self._next_index
        elif due_index - self._pos > self._fps:
            # More than a second behind (the reader paused): re-anchor the timeline instead of
            # decoding through everything that was missed.
            target = self._pos
            self._t0 = now - target / self._fps
        else:
            target = due_index
        bgr = self._frame_at(target)
        self._next_index = target + 1
        capture_time_s = self._t0 + target / self._fps + self._wall_minus_mono
        return Frame(capture_time_s, _bgr_to_rgb(bgr, self.width, self.height))

    def _frame_at(self, index: int) -> np.ndarray:
        """Decoded BGR frame at play-timeline ``index`` (>= the last one returned)."""
        if self._pending is not None and index == self._pos - 1:
            bgr, self._pending = self._pending, None
            return bgr
        self._pending = None
        while self._pos < index:
            self._grab()
        self._grab()
        assert self._cap is not None
        ok, bgr = self._cap.retrieve()
        if not ok or bgr is None:
            raise CameraError(f"video file {self.path}: frame {self._pos - 1} could not be decoded")
        return bgr

    def _grab(self) -> None:
        assert self._cap is not None
        if not self._cap.grab():
            if not self.loop:
                raise CameraError(f"video file {self.path}: end of video")
            if self._frames_since_rewind == 0:
                raise CameraError(f"video file {self.path}: no frame after rewinding")
            # Reopening is the rewind that works for every container OpenCV reads.
            self._cap.release()
            self._cap = self._open_capture()
            self._frames_since_rewind = 0
            if not self._cap.grab():
                raise CameraError(f"video file {self.path}: no frame after rewinding")
        self._frames_since_rewind += 1
        self._pos += 1

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None

    def describe(self) -> str:
        rate = f"{self._fps:.3g} fps" if self._fps else "file fps"
        mode = ", loop" if self.loop else ""
        return f"file:{self.path} ({rate}{mode})"


class FrameThrottle:
    """Passes at most ``rate_hz`` frames per second on a grid of absolute deadlines (no drift).

    A frame passes when it arrives no earlier than ``tolerance`` periods before the next
    deadline, so a source running at ``rate_hz`` with some jitter keeps every frame and a faster
    one is thinned to ``rate_hz``. After a gap longer than a period the grid restarts at the
    arrival. Times are float seconds on any monotonic clock. Not thread-safe.
    """

    def __init__(self, rate_hz: float, tolerance: float = 0.25) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        if not 0 <= tolerance < 0.5:
            raise ValueError(f"tolerance must be in [0, 0.5), got {tolerance}")
        self._period_s = 1.0 / rate_hz
        self._early_s = tolerance * self._period_s
        self._next_s: float | None = None

    def accept(self, now_s: float) -> bool:
        """Whether a frame arriving at ``now_s`` is to be passed on."""
        if self._next_s is not None and now_s < self._next_s - self._early_s:
            return False
        if self._next_s is None or now_s - self._next_s >= self._period_s:
            self._next_s = now_s  # first frame, or after a gap: restart the grid here
        self._next_s += self._period_s
        return True


class PatternSource(FrameSource):
    """A synthetic camera (``pattern:<label>``): a moving colour gradient with a bright square.

    The stand-in for a camera at the hardware boundary when a robot runs against its protocol
    fake (``use_fake_hardware``): frames are generated with numpy, stamped at generation time.
    """

    def __init__(self, label: str, width: int = 0, height: int = 0, fps: float = 30.0) -> None:
        self._label = label
        self._width = width or 320
        self._height = height or 240
        self._period_s = 1.0 / fps if fps > 0 else 1.0 / 30.0
        self._next_s = 0.0
        ys, xs = np.mgrid[0 : self._height, 0 : self._width]
        self._base = np.stack(
            [xs * 255 // max(self._width - 1, 1), ys * 255 // max(self._height - 1, 1), 0 * xs],
            axis=-1,
        ).astype(np.uint8)
        self._k = 0

    def open(self) -> None:
        self._next_s = time.monotonic()

    def read(self) -> Frame | None:
        now = time.monotonic()
        if now < self._next_s:
            time.sleep(self._next_s - now)
        self._next_s += self._period_s
        image = self._base.copy()
        size = max(8, self._height // 6)
        x = (self._k * 4) % max(self._width - size, 1)
        image[self._height // 3 : self._height // 3 + size, x : x + size] = 255
        self._k += 1
        return Frame(time.time(), image)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return f"pattern:{self._label} {self._width}x{self._height}"


SourceScheme = Literal["device", "file", "topic", "pattern"]


@dataclass(frozen=True)
class SourceSpec:
    """A parsed camera source URI."""

    scheme: SourceScheme
    target: str
    """Device path (``/dev/videoN``), file path, or topic name."""

    @property
    def uri(self) -> str:
        return f"{self.scheme}:{self.target}"


_SCHEMES: tuple[SourceScheme, ...] = ("device", "file", "topic", "pattern")


def parse_source(uri: str) -> SourceSpec:
    """Parse a configured camera source.

    ``device:/dev/video0`` or ``device:0`` (V4L2 camera), ``file:/path/video.avi`` (video file),
    ``topic:sim/camera/front/image_raw`` (sensor_msgs/Image rgb8 topic). Raises ValueError naming
    the URI for an unknown scheme or an empty target.
    """
    scheme, sep, target = uri.strip().partition(":")
    if not sep:
        raise ValueError(
            f"camera source {uri!r} has no scheme; use one of "
            f"{', '.join(s + ':' for s in _SCHEMES)}"
        )
    if scheme not in _SCHEMES:
        raise ValueError(
            f"unknown camera source scheme {scheme!r} in {uri!r}; use one of "
            f"{', '.join(s + ':' for s in _SCHEMES)}"
        )
    target = target.strip()
    if not target:
        raise ValueError(f"camera source {uri!r} names no {scheme}")
    if scheme == "device" and target.isdigit():
        target = f"/dev/video{target}"
    return SourceSpec(scheme, target)  # type: ignore[arg-type]


def make_frame_source(
    spec: SourceSpec, width: int = 0, height: int = 0, fps: float = 0.0, read_timeout_s: float = 1.0
) -> FrameSource:
    """The FrameSource for a ``device:`` or ``file:`` spec. ``topic:`` has none (ValueError)."""
    if spec.scheme == "device":
        return V4L2Source(spec.target, width, height, fps, read_timeout_s=read_timeout_s)
    if spec.scheme == "file":
        return VideoFileSource(spec.target, width=width, height=height)
    if spec.scheme == "pattern":
        return PatternSource(spec.target, width, height, fps)
    raise ValueError(f"camera source {spec.uri!r} is a topic, not a frame source")


WorkerState = Literal["starting", "running", "failed", "stopped"]


@dataclass(frozen=True)
class WorkerStatus:
    """What a CameraWorker reports about its camera."""

    state: WorkerState
    frames: int
    """Frames delivered since start."""
    failures: int
    """Failure episodes since start (an episode ends with the next delivered frame)."""
    last_error: str | None
    """Reason of the current or last failure."""


class CameraWorker:
    """Runs one FrameSource in its own thread at ``rate_hz`` with absolute deadlines.

    Keeps only the latest frame (:meth:`latest`) and hands each new one to ``on_frame`` in the
    worker thread. When the source fails (open or read raises, or no frame for
    ``stall_timeout_s``) it calls ``on_failure(reason)`` once per failure episode, closes the
    source and tries to open it again every ``retry_period_s`` until stopped; the first frame
    after that calls ``on_recovery()``. Thread-safe.
    """

    def __init__(
        self,
        name: str,
        source: FrameSource,
        rate_hz: float,
        stall_timeout_s: float = 1.0,
        retry_period_s: float = 1.0,
        on_frame: Callable[[Frame], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_recovery: Callable[[], None] | None = None,
    ) -> None:
        for label, value in (
            ("rate_hz", rate_hz),
            ("stall_timeout_s", stall_timeout_s),
            ("retry_period_s", retry_period_s),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"camera {name}: {label} must be > 0, got {value}")
        self.name = name
        self.source = source
        self._period_s = 1.0 / rate_hz
        self._stall_timeout_s = stall_timeout_s
        self._retry_period_s = retry_period_s
        self._on_frame = on_frame
        self._on_failure = on_failure
        self._on_recovery = on_recovery
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._latest: Frame | None = None
        self._state: WorkerState = "starting"
        self._frames = 0
        self._failures = 0
        self._last_error: str | None = None
        self._in_failure = False

    def start(self) -> None:
        """Start the worker thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"camera worker {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop the thread and close the source; waits up to ``timeout_s``. Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _LOG.warning("camera %s: worker did not stop within %.3g s", self.name, timeout_s)

    def latest(self) -> Frame | None:
        """The most recent frame, or None before the first one."""
        with self._lock:
            return self._latest

    def status(self) -> WorkerStatus:
        with self._lock:
            return WorkerStatus(self._state, self._frames, self._failures, self._last_error)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.source.open()
                except Exception as exc:  # any open error is a camera failure, retried
                    self._fail(_reason(exc))
                else:
                    self._stream()
                    self._close_source()
                if not self._stop.is_set():
                    self._stop.wait(self._retry_period_s)
        finally:
            self._close_source()
            with self._lock:
                self._state = "stopped"

    def _stream(self) -> None:
        """Read frames until the source fails or stop is requested."""
        deadline = time.monotonic()
        last_frame_mono = deadline
        poll_s = min(self._period_s, 0.01)
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except Exception as exc:  # a broken source ends the stream; it is reopened later
                self._fail(_reason(exc))
                return
            now = time.monotonic()
            if frame is None:
                if now - last_frame_mono > self._stall_timeout_s:
                    self._fail(
                        f"no frame from {self.source.describe()} for {self._stall_timeout_s:.3g} s"
                    )
                    return
                self._stop.wait(poll_s)
                continue
            last_frame_mono = now
            self._deliver(frame)
            deadline += self._period_s
            now = time.monotonic()
            if deadline < now - self._period_s:
                deadline = now  # more than a period late: resynchronise instead of bursting
            self._stop.wait(max(0.0, deadline - now))

    def _deliver(self, frame: Frame) -> None:
        with self._lock:
            self._latest = frame
            self._frames += 1
            self._state = "running"
            recovered = self._in_failure
            self._in_failure = False
        if recovered and self._on_recovery is not None:
            self._on_recovery()
        if self._on_frame is not None:
            try:
                self._on_frame(frame)
            except Exception:
                _LOG.exception("camera %s: frame handler failed", self.name)

    def _fail(self, reason: str) -> None:
        with self._lock:
            self._state = "failed"
            self._last_error = reason
            first = not self._in_failure
            if first:
                self._in_failure = True
                self._failures += 1
        self._close_source()
        if first and self._on_failure is not None:
            self._on_failure(reason)

    def _close_source(self) -> None:
        try:
            self.source.close()
        except Exception as exc:  # closing a broken device must not kill the worker
            _LOG.warning("camera %s: closing %s failed: %s", self.name, self.source.describe(), exc)


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"
