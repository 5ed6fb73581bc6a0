"""camera_node: publishes every configured camera on ``camera/<name>/image_raw``.

Each camera has a source URI (see :func:`core.camera_sources.parse_source`):

- ``device:`` / ``file:``: a :class:`CameraWorker` thread reads the source at ``rate_hz`` and
  publishes each new frame from that thread, so a slow camera never delays another.
- ``topic:``: frames from a simulator topic (sensor_msgs/Image rgb8) are republished at up to
  ``rate_hz`` with their original capture stamp, straight from the subscription callback.

Frames never go through the executor that spins this node: worker threads publish device and
file frames, and topic frames are taken by a private single-threaded executor on its own thread
(a helper node ``<name>_topic_rx``). The multi-threaded executor of the rclpy releases we run on
(Jazzy 7.1) spins on ready work (ros2/rclpy#1452, fixed upstream in #1547): with it, republishing
640x480 frames cost several times the CPU and lost frames.

Published frames: sensor_msgs/Image ``rgb8``, sensor QoS, ``header.stamp`` = capture time (wall
clock for hardware and files; the simulator's stamp for topics), ``frame_id`` = camera name. A
camera that fails is logged once per failure episode and reported as ERROR on ``diagnostics``
while the node keeps retrying it and the other cameras keep publishing.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from sensor_msgs.msg import Image

from ramp_common.conversions import MessageError
from ramp_common.diagnostics import (
    ERROR,
    OK,
    WARN,
    DiagnosticsPublisher,
    LatencyStats,
    NodeHealth,
    RateMeter,
)
from ramp_common.image_wire import WireImage, decode_image, encode_image
from ramp_common.node_tools import LogOnce, expand_path, run_node
from ramp_common.params import Param, ParamSet
from ramp_common.qos import SENSOR_QOS
from ramp_worldmodel_node.core.camera_sources import (
    CameraWorker,
    Frame,
    FrameThrottle,
    SourceSpec,
    make_frame_source,
    parse_source,
    resize_image,
)

_NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class _Camera:
    """Per-camera state, written by the camera's worker or the topic receiver thread and read
    by the diagnostics timer (counters under ``lock``)."""

    name: str
    spec: SourceSpec
    publisher: Publisher
    rate: RateMeter = field(default_factory=RateMeter)
    age: LatencyStats = field(default_factory=lambda: LatencyStats(size=300))
    lock: threading.Lock = field(default_factory=threading.Lock)
    published: int = 0
    failures: int = 0
    """Failure episodes (an episode ends with the next frame)."""
    failed_reason: str | None = None
    """Why the camera is failing now; None while it delivers."""
    drops: int = 0
    """Malformed incoming frames dropped (topic sources)."""
    worker: CameraWorker | None = None
    """device: and file: sources."""
    throttle: FrameThrottle | None = None
    """topic: sources."""
    last_rx_mono: float = 0.0
    """topic: sources, monotonic time (s) of the last valid frame."""
    received_any: bool = False
    """topic: sources, whether any valid frame came yet."""


PARAMS: tuple[Param, ...] = (
    Param(
        "camera_names",
        ["front"],
        "Camera names; each publishes camera/<name>/image_raw.",
        type="string[]",
    ),
    Param(
        "camera_sources",
        ["device:/dev/video0"],
        "One source per camera name: device:/dev/videoN | device:N | file:<path> | "
        "topic:<sensor_msgs/Image rgb8 topic>",
        type="string[]",
    ),
    Param("rate_hz", 30.0, "Publish rate per camera.", unit="Hz", positive=True),
    Param("width", 0, "Output width (0 = keep the source's).", unit="px", low=0),
    Param("height", 0, "Output height (0 = keep the source's).", unit="px", low=0),
    Param(
        "stall_timeout_s",
        1.0,
        "A camera without a new frame this long fails.",
        unit="s",
        positive=True,
    ),
    Param(
        "startup_timeout_s",
        15.0,
        "A topic camera without its first frame this long after start fails (its publisher may "
        "be a process still starting).",
        unit="s",
        positive=True,
    ),
    Param("retry_period_s", 1.0, "Period of reopen attempts on failure.", unit="s", positive=True),
    Param(
        "use_fake_hardware",
        False,
        "Replace device: sources with synthetic pattern: cameras (robot protocol fakes).",
    ),
)


class CameraNode(Node):
    """Camera ingestion: devices, video files and sim topics -> ``camera/<name>/image_raw``."""

    def __init__(self, node_name: str = "camera_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = ParamSet(self, PARAMS)
        names = list(self.params["camera_names"])
        uris = list(self.params["camera_sources"])
        self._rate_hz = float(self.params["rate_hz"])
        self._width = int(self.params["width"])
        self._height = int(self.params["height"])
        self._stall_timeout_s = float(self.params["stall_timeout_s"])
        self._startup_timeout_s = float(self.params["startup_timeout_s"])
        retry_period_s = float(self.params["retry_period_s"])
        fake = bool(self.params["use_fake_hardware"])
        if fake:
            uris = [
                f"pattern:{n}" if u.startswith("device:") else u
                for n, u in zip(names, uris, strict=False)  # lengths are validated next
            ]
        specs = self._validate(names, uris)

        self._health = NodeHealth()
        self._log_once = LogOnce(self)
        self._closed = False
        self._cameras: list[_Camera] = []
        self._rx_node: Node | None = None
        self._rx_executor: SingleThreadedExecutor | None = None
        self._rx_thread: threading.Thread | None = None
        for name, spec in zip(names, specs, strict=True):
            cam = _Camera(
                name, spec, self.create_publisher(Image, f"camera/{name}/image_raw", SENSOR_QOS)
            )
            self._cameras.append(cam)
            if spec.scheme == "topic":
                self._setup_topic_camera(cam)
            else:
                if spec.scheme == "file":
                    spec = SourceSpec("file", expand_path(spec.target))
                source = make_frame_source(
                    spec, self._width, self._height, self._rate_hz, self._stall_timeout_s
                )
                cam.worker = CameraWorker(
                    name,
                    source,
                    self._rate_hz,
                    self._stall_timeout_s,
                    retry_period_s,
                    on_frame=lambda frame, cam=cam: self._publish_frame(cam, frame),
                    on_failure=lambda reason, cam=cam: self._on_failure(cam, reason),
                    on_recovery=lambda cam=cam: self._on_recovery(cam),
                )
        self.create_timer(1.0, self._update_health, callback_group=MutuallyExclusiveCallbackGroup())
        self._update_health()
        self._diagnostics = DiagnosticsPublisher(self, self._health)
        self._start_topic_receiver()
        for cam in self._cameras:
            if cam.worker is not None:
                cam.worker.start()
        self.get_logger().info(
            f"publishing {len(names)} camera(s) at {self._rate_hz:g} Hz: "
            + ", ".join(f"{c.name} <- {c.spec.uri}" for c in self._cameras)
        )

    def _validate(self, names: list[str], uris: list[str]) -> list[SourceSpec]:
        if len(names) != len(uris):
            raise ValueError(
                f"camera_sources has {len(uris)} entries for {len(names)} camera_names {names}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"camera_names has duplicates: {names}")
        for name in names:
            if not _NAME_PATTERN.match(name):
                raise ValueError(f"camera name {name!r} is no valid topic name token")
        if self._width < 0 or self._height < 0:
            raise ValueError(f"width={self._width}, height={self._height} must be >= 0")
        specs = []
        for name, uri in zip(names, uris, strict=True):
            try:
                specs.append(parse_source(uri))
            except ValueError as exc:
                raise ValueError(f"camera {name}: {exc}") from None
        return specs

    # ----- device and file cameras (worker threads) -----

    def _publish_frame(self, cam: _Camera, frame: Frame) -> None:
        raw = encode_image(frame.image, "rgb8", frame.capture_time_s, cam.name)
        self._publish(cam, raw, frame.capture_time_s)

    def _publish(self, cam: _Camera, raw: bytes, capture_time_s: float) -> None:
        """Publish one serialized frame (``ramp_common.image_wire``) and count it."""
        try:
            cam.publisher.publish(raw)
        except Exception:
            if self._closed or not self.context.ok():
                return  # shutting down: the publisher is gone
            raise
        cam.rate.tick()
        now_s = self.get_clock().now().nanoseconds * 1e-9
        cam.age.add(now_s - capture_time_s)
        with cam.lock:
            cam.published += 1

    def _on_failure(self, cam: _Camera, reason: str) -> None:
        with cam.lock:
            cam.failures += 1
            cam.failed_reason = reason
        if not self._closed:
            self.get_logger().error(
                f"camera {cam.name} ({cam.spec.uri}) failed: {reason}; "
                "retrying until it delivers again"
            )

    def _on_recovery(self, cam: _Camera) -> None:
        with cam.lock:
            cam.failed_reason = None
        if not self._closed:
            self.get_logger().info(f"camera {cam.name} ({cam.spec.uri}) delivers frames again")

    # ----- topic cameras (private executor thread, see the module docstring) -----

    def _setup_topic_camera(self, cam: _Camera) -> None:
        cam.throttle = FrameThrottle(self._rate_hz)
        cam.last_rx_mono = time.monotonic()

    def _start_topic_receiver(self) -> None:
        topic_cams = [cam for cam in self._cameras if cam.throttle is not None]
        if not topic_cams:
            return
        # Own arguments only: a launch-file '__node:=' rename must not give it this node's name.
        self._rx_node = rclpy.create_node(
            f"{self.get_name()}_topic_rx",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )
        for cam in topic_cams:
            self._rx_node.create_subscription(
                Image,
                cam.spec.target,
                lambda raw, cam=cam: self._on_topic_image(cam, raw),
                SENSOR_QOS,
                raw=True,  # serialized frames in and out: see ramp_common.image_wire
            )
        self._rx_node.create_timer(min(0.25, self._stall_timeout_s / 2), self._check_topic_stalls)
        self._rx_executor = SingleThreadedExecutor(context=self.context)
        self._rx_executor.add_node(self._rx_node)
        self._rx_thread = threading.Thread(
            target=self._spin_topic_receiver, name="camera-topic-rx", daemon=True
        )
        self._rx_thread.start()

    def _spin_topic_receiver(self) -> None:
        assert self._rx_executor is not None
        while not self._closed and self.context.ok():
            try:
                self._rx_executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:
                return
            except Exception as exc:  # a bug in one frame must not end every topic camera
                if self._closed or not self.context.ok():
                    return
                self._log_once.error(
                    f"rx:{type(exc).__name__}", f"topic camera callback failed: {exc!r}"
                )

    def _on_topic_image(self, cam: _Camera, raw: bytes) -> None:
        now = time.monotonic()
        try:
            image = decode_image(raw)  # validates size and step against the payload
            if image.encoding != "rgb8":
                raise MessageError(f"encoding {image.encoding!r}, expected 'rgb8'")
        except MessageError as exc:
            with cam.lock:
                cam.drops += 1
            self._log_once.warn(
                f"malformed:{cam.name}",
                f"camera {cam.name}: dropped a frame from {cam.spec.target}: {exc}",
            )
            return
        with cam.lock:
            cam.last_rx_mono = now
            cam.received_any = True
            recovered = cam.failed_reason is not None
        if recovered:
            self._on_recovery(cam)
        assert cam.throttle is not None
        if cam.throttle.accept(now):
            self._publish(cam, self._convert_topic_image(cam, image), image.stamp_s)

    def _check_topic_stalls(self) -> None:
        now = time.monotonic()
        for cam in self._cameras:
            if cam.throttle is None:
                continue
            with cam.lock:
                # Before the first frame the publisher may still be starting (its own process,
                # a renderer warming up): that is "waiting" (WARN), failed only after
                # startup_timeout_s; once frames came, a gap of stall_timeout_s fails.
                limit = self._stall_timeout_s if cam.received_any else self._startup_timeout_s
                stalled = now - cam.last_rx_mono > limit and cam.failed_reason is None
            if stalled:
                self._on_failure(cam, f"no frame on topic {cam.spec.target} for {limit:.3g} s")

    def _convert_topic_image(self, cam: _Camera, image: WireImage) -> bytes:
        """The serialized frame to publish, with the capture stamp as received (exact).

        The received bytes themselves when neither a resize nor a new ``frame_id`` is due (no
        copy at all), else one encode of the (resized) pixels.
        """
        pixels = image.pixels
        if self._width or self._height:
            pixels = resize_image(pixels, self._width, self._height)
        if pixels is image.pixels and image.frame_id == cam.name:
            return image.raw
        return encode_image(pixels, "rgb8", (image.sec, image.nanosec), cam.name)

    # ----- diagnostics and shutdown -----

    def _update_health(self) -> None:
        problems: list[str] = []
        waiting: list[str] = []
        for cam in self._cameras:
            with cam.lock:
                failures, drops, reason = cam.failures, cam.drops, cam.failed_reason
                published = cam.published
            state = "failed" if reason is not None else ("running" if published else "starting")
            if cam.worker is not None:
                state = cam.worker.status().state
            prefix = f"{cam.name}."
            self._health.set_value(prefix + "source", cam.spec.uri)
            self._health.set_value(prefix + "state", state)
            self._health.set_value(prefix + "rate_hz", cam.rate.rate_hz())
            self._health.set_value(
                prefix + "age_p50_ms", cam.age.percentiles_ms().get("p50", float("nan"))
            )
            self._health.set_value(prefix + "failures", failures)
            self._health.set_value(prefix + "drops", drops)
            if reason is not None:
                problems.append(f"camera {cam.name}: {reason}")
            elif not published:
                waiting.append(cam.name)
        if problems:
            self._health.set_status(ERROR, "; ".join(problems))
        elif waiting:
            self._health.set_status(WARN, f"no frame yet from camera(s) {', '.join(waiting)}")
        else:
            self._health.set_status(OK, f"{len(self._cameras)} camera(s) publishing")

    def close(self) -> None:
        """Stop every camera worker and the topic receiver (closes devices and files).

        Safe to call twice.
        """
        self._closed = True
        for cam in self._cameras:
            if cam.worker is not None:
                cam.worker.stop()
        if self._rx_thread is not None:
            self._rx_thread.join(2.0)
            self._rx_thread = None
        if self._rx_executor is not None:
            self._rx_executor.shutdown(timeout_sec=1.0)
            self._rx_executor = None
        if self._rx_node is not None:
            self._rx_node.destroy_node()
            self._rx_node = None


def main(args: list[str] | None = None) -> int:
    """Console entry point ``camera_node``."""
    return run_node(CameraNode, args)


if __name__ == "__main__":
    sys.exit(main())
