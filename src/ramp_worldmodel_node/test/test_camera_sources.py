"""Camera sources and the camera worker, without ROS (generated MJPG videos, fake sources)."""

from __future__ import annotations

import itertools
import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from ramp_worldmodel_node.core.camera_sources import (
    CameraError,
    CameraWorker,
    Frame,
    FrameSource,
    FrameThrottle,
    SourceSpec,
    V4L2Source,
    VideoFileSource,
    make_frame_source,
    output_size,
    parse_source,
)

WIDTH, HEIGHT, FPS, N_FRAMES = 64, 48, 50.0, 6


def write_video(path: Path, n_frames: int = N_FRAMES, fps: float = FPS) -> Path:
    """MJPG .avi whose frame i has a pure red square top-left and gray level 40*i elsewhere."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(n_frames):
        bgr = np.full((HEIGHT, WIDTH, 3), 40 * i, np.uint8)
        bgr[4:20, 4:20] = (0, 0, 255)  # red in OpenCV's BGR order
        writer.write(bgr)
    writer.release()
    return path


def gray_level(frame: Frame) -> int:
    """The frame's gray level (the frame index times 40) measured away from the red square."""
    return round(float(frame.image[30:, 30:].mean()))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "cam.avi")


def test_file_frames_are_rgb_with_the_file_size(video: Path) -> None:
    source = VideoFileSource(str(video), realtime=False)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert frame.image.shape == (HEIGHT, WIDTH, 3)
    assert frame.image.dtype == np.uint8
    red, green, blue = frame.image[12, 12].astype(int)
    assert red > 200 and green < 60 and blue < 60, frame.image[12, 12]


def test_file_resize_keeps_aspect_when_one_side_is_zero(video: Path) -> None:
    source = VideoFileSource(str(video), realtime=False, width=32)
    source.open()
    try:
        frame = source.read()
    finally:
        source.close()
    assert frame is not None
    assert frame.image.shape == (24, 32, 3)
    assert frame.image[6, 6, 0] > 200  # red square still red after resizing


def test_file_loops_at_the_end(video: Path) -> None:
    source = VideoFileSource(str(video), loop=True, realtime=False)
    source.open()
    try:
        levels = [gray_level(source.read()) for _ in range(2 * N_FRAMES + 1)]  # type: ignore[arg-type]
    finally:
        source.close()
    expected = [40 * (i % N_FRAMES) for i in range(2 * N_FRAMES + 1)]
    assert np.allclose(levels, expected, atol=4), levels


def test_file_without_loop_ends_with_an_error_naming_it(video: Path) -> None:
    source = VideoFileSource(str(video), loop=False, realtime=False)
    source.open()
    try:
        for _ in range(N_FRAMES):
            assert source.read() is not None
        with pytest.raises(CameraError, match=r"cam\.avi: end of video"):
            source.read()
    finally:
        source.close()


def test_realtime_file_is_paced_by_its_frame_rate(video: Path) -> None:
    source = VideoFileSource(str(video), loop=True, realtime=True)
    source.open()
    try:
        frames = [source.read() for _ in range(N_FRAMES + 3)]
    finally:
        source.close()
    assert all(f is not None for f in frames)
    stamps = np.array([f.capture_time_s for f in frames])  # type: ignore[union-attr]
    steps = np.diff(stamps)
    # Capture times sit on the play timeline: whole multiples of the frame interval, increasing.
    assert np.all(steps > 0)
    assert np.allclose(steps / (1.0 / FPS), np.round(steps / (1.0 / FPS)), atol=1e-6)
    # Each frame's content matches its place on the timeline, across the loop.
    index = np.round((stamps - stamps[0]) * FPS).astype(int)
    levels = [gray_level(f) for f in frames]  # type: ignore[arg-type]
    assert np.allclose(levels, 40 * (index % N_FRAMES), atol=4), (levels, index)


def test_configured_fps_overrides_the_file_rate(video: Path) -> None:
    source = VideoFileSource(str(video), fps=100.0)
    source.open()
    try:
        assert source.fps == 100.0
        first, second = source.read(), source.read()
    finally:
        source.close()
    assert first is not None and second is not None
    step = second.capture_time_s - first.capture_time_s
    # A whole number of frame intervals of the configured rate (more than one if this machine
    # stalled the test): the stamps are due times, not read times. They are epoch seconds in a
    # float (resolution about 2.4e-7 s near 1.8e9 s), so the difference is exact only to a few
    # ulps; a read-time stamp would be off by the wake-up latency (tens of microseconds or more).
    tolerance_s = 4 * math.ulp(second.capture_time_s)
    assert step > 0 and step / 0.01 == pytest.approx(round(step / 0.01), abs=tolerance_s / 0.01)


def test_missing_file_error_names_it(tmp_path: Path) -> None:
    source = VideoFileSource(str(tmp_path / "nope.avi"))
    with pytest.raises(CameraError, match=r"video file .*nope\.avi does not exist"):
        source.open()


def test_unreadable_file_error_names_it(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.avi"
    bad.write_bytes(b"this is no video" * 100)
    with pytest.raises(CameraError, match=r"garbage\.avi"):
        VideoFileSource(str(bad)).open()


@pytest.mark.parametrize("device", ["/dev/video_ramp_missing", "99"])
def test_missing_device_error_names_it(device: str) -> None:
    source = V4L2Source(device, 640, 480, 30.0)
    expected = device if device.startswith("/") else "/dev/video99"
    with pytest.raises(CameraError, match=f"camera device {expected} does not exist"):
        source.open()
    source.close()  # safe after a failed open
    assert expected in source.describe()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("device:/dev/video0", SourceSpec("device", "/dev/video0")),
        ("device:2", SourceSpec("device", "/dev/video2")),
        ("file:/data/cam.avi", SourceSpec("file", "/data/cam.avi")),
        ("file:relative/cam.mp4", SourceSpec("file", "relative/cam.mp4")),
        ("topic:sim/camera/front/image_raw", SourceSpec("topic", "sim/camera/front/image_raw")),
        (" topic:/abs/image ", SourceSpec("topic", "/abs/image")),
    ],
)
def test_parse_source(uri: str, expected: SourceSpec) -> None:
    assert parse_source(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("rtsp://cam.local/stream", "unknown camera source scheme 'rtsp'"),
        ("/dev/video0", "has no scheme"),
        ("file:", "names no file"),
        ("device:  ", "names no device"),
    ],
)
def test_parse_source_rejects(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_source(uri)


def test_make_frame_source() -> None:
    assert isinstance(make_frame_source(parse_source("device:1")), V4L2Source)
    assert isinstance(make_frame_source(parse_source("file:/x.avi")), VideoFileSource)
    with pytest.raises(ValueError, match="is a topic"):
        make_frame_source(parse_source("topic:sim/cam"))


def test_output_size() -> None:
    assert output_size(640, 480, 0, 0) == (640, 480)
    assert output_size(640, 480, 320, 0) == (320, 240)
    assert output_size(640, 480, 0, 120) == (160, 120)
    assert output_size(640, 480, 100, 100) == (100, 100)
    with pytest.raises(ValueError, match="width=-1"):
        output_size(640, 480, -1, 0)


def test_throttle_keeps_every_frame_of_a_jittery_source_at_the_rate() -> None:
    throttle = FrameThrottle(30.0)
    rng = np.random.default_rng(0)
    arrivals = np.arange(300) / 30.0 + rng.uniform(-0.006, 0.006, 300)
    assert all(throttle.accept(t) for t in arrivals)


def test_throttle_thins_a_faster_source_to_the_rate() -> None:
    throttle = FrameThrottle(30.0)
    passed = [t for t in np.arange(600) / 90.0 if throttle.accept(t)]  # 90 Hz for ~6.7 s
    assert len(passed) == 200  # exactly every third frame
    assert np.allclose(np.diff(passed), 1 / 30.0)


def test_throttle_restarts_its_grid_after_a_gap() -> None:
    throttle = FrameThrottle(10.0)
    assert throttle.accept(0.0)
    assert not throttle.accept(0.05)
    assert throttle.accept(5.0)  # long gap: passes and becomes the new grid origin
    assert not throttle.accept(5.06)
    assert throttle.accept(5.1)
    with pytest.raises(ValueError, match="rate_hz"):
        FrameThrottle(0.0)


class FlakySource(FrameSource):
    """Test double at the source boundary: open fails ``open_failures`` times, then frames flow
    until ``read_failures_after`` frames, after which one read fails; then it works again."""

    def __init__(self, open_failures: int, read_failures_after: int | None = None) -> None:
        self.open_failures = open_failures
        self.read_failures_after = read_failures_after
        self.opens = 0
        self.closes = 0
        self.reads = 0
        self.is_open = False
        self.lock = threading.Lock()

    def open(self) -> None:
        with self.lock:
            self.opens += 1
            if self.opens <= self.open_failures:
                raise CameraError(f"fake camera busy (attempt {self.opens})")
            self.is_open = True

    def read(self) -> Frame | None:
        with self.lock:
            assert self.is_open, "read on a closed source"
            self.reads += 1
            if self.read_failures_after is not None and self.reads == self.read_failures_after:
                raise CameraError("fake camera unplugged")
            return Frame(float(self.reads), np.full((2, 2, 3), self.reads % 256, np.uint8))

    def close(self) -> None:
        with self.lock:
            if self.is_open:
                self.closes += 1
            self.is_open = False

    def describe(self) -> str:
        return "fake"


class StallingSource(FlakySource):
    """Delivers one frame after each open, then nothing (read returns None)."""

    def __init__(self) -> None:
        super().__init__(open_failures=0)
        self.delivered = False

    def open(self) -> None:
        super().open()
        self.delivered = False

    def read(self) -> Frame | None:
        if self.delivered:
            return None
        self.delivered = True
        return Frame(1.0, np.zeros((2, 2, 3), np.uint8))


class Recorder:
    """Collects the worker's callbacks and lets a test wait for a condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frames: list[Frame] = []
        self.failures: list[str] = []
        self.recoveries = 0

    def on_frame(self, frame: Frame) -> None:
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()

    def on_failure(self, reason: str) -> None:
        with self.cond:
            self.failures.append(reason)
            self.cond.notify_all()

    def on_recovery(self) -> None:
        with self.cond:
            self.recoveries += 1
            self.cond.notify_all()

    def wait_for(self, predicate, timeout_s: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout_s)


def make_worker(source: FrameSource, rec: Recorder, **kwargs: float) -> CameraWorker:
    return CameraWorker(
        "fake",
        source,
        rate_hz=kwargs.get("rate_hz", 200.0),
        stall_timeout_s=kwargs.get("stall_timeout_s", 0.2),
        retry_period_s=kwargs.get("retry_period_s", 0.02),
        on_frame=rec.on_frame,
        on_failure=rec.on_failure,
        on_recovery=rec.on_recovery,
    )


def test_worker_retries_open_and_reports_once_per_episode() -> None:
    source, rec = FlakySource(open_failures=3), Recorder()
    worker = make_worker(source, rec)
    worker.start()
    try:
        assert rec.wait_for(lambda r: len(r.frames) >= 5)
        status = worker.status()
    finally:
        worker.stop()
    assert source.opens == 4
    assert rec.failures == ["fake camera busy (attempt 1)"]  # reported once, not per retry
    assert rec.recoveries == 1
    assert status.state == "running" and status.failures == 1
    assert status.last_error == "fake camera busy (attempt 3)"
    assert worker.latest() is rec.frames[-1]
    assert worker.status().state == "stopped"
    assert not source.is_open


def test_worker_reopens_after_a_read_failure() -> None:
    source, rec = FlakySource(open_failures=0, read_failures_after=3), Recorder()
    worker = make_worker(source, rec)
    worker.start()
    try:
        assert rec.wait_for(lambda r: len(r.frames) >= 6)
    finally:
        worker.stop()
    assert rec.failures == ["fake camera unplugged"]
    assert rec.recoveries == 1
    assert source.opens == 2 and source.closes == 2
    assert worker.status().failures == 1


def test_worker_reports_a_stalled_source() -> None:
    source, rec = StallingSource(), Recorder()
    worker = make_worker(source, rec, stall_timeout_s=0.05)
    worker.start()
    try:
        assert rec.wait_for(lambda r: r.recoveries >= 1)
    finally:
        worker.stop()
    assert rec.failures[0] == "no frame from fake for 0.05 s"
    assert source.opens >= 2  # closed and reopened after the stall
    assert not source.is_open


def test_worker_keeps_only_the_latest_frame_and_survives_a_failing_handler() -> None:
    source = FlakySource(open_failures=0)
    calls = []

    def bad_handler(frame: Frame) -> None:
        calls.append(frame)
        raise RuntimeError("handler bug")

    worker = CameraWorker("fake", source, rate_hz=500.0, on_frame=bad_handler)
    assert worker.latest() is None
    worker.start()
    try:
        for _ in range(500):
            if len(calls) >= 10:
                break
            threading.Event().wait(0.01)
    finally:
        worker.stop()
    assert len(calls) >= 10  # the worker went on after each handler error
    assert worker.latest() is calls[-1]
    assert worker.status().failures == 0


def test_worker_file_source_end_to_end(video: Path) -> None:
    rec = Recorder()
    worker = make_worker(VideoFileSource(str(video)), rec, rate_hz=FPS, stall_timeout_s=1.0)
    worker.start()
    try:
        assert rec.wait_for(lambda r: len(r.frames) >= N_FRAMES + 2)
    finally:
        worker.stop()
    stamps = [f.capture_time_s for f in rec.frames]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert rec.failures == []


def test_worker_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="camera fake: rate_hz must be > 0"):
        CameraWorker("fake", FlakySource(0), rate_hz=0.0)
    with pytest.raises(ValueError, match="retry_period_s"):
        CameraWorker("fake", FlakySource(0), rate_hz=1.0, retry_period_s=-1.0)


def test_pattern_source_generates_moving_rgb_frames():
    from ramp_worldmodel_node.core.camera_sources import make_frame_source, parse_source

    source = make_frame_source(parse_source("pattern:front"), 64, 48, fps=200.0)
    source.open()
    first, second = source.read(), source.read()
    source.close()
    assert first.image.shape == (48, 64, 3) and first.image.dtype == np.uint8
    assert second.capture_time_s >= first.capture_time_s
    assert not np.array_equal(first.image, second.image)  # the square moves
