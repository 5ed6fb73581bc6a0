"""Stand-in robot sides for bench/fleet.py: K PiPER robots' inference-facing traffic in one process.

One rclpy node per robot namespace (``robot1`` ... ``robotK``), all in this process, publishing
what a PiPER robot side (``ramp up --robot piper --fake-hardware --role robot``) publishes to the
inference nodes, and nothing else:

- ``camera/<name>/image_raw`` for every camera of the PiPER config (front, wrist):
  sensor_msgs/Image ``rgb8``, ``--width`` x ``--height`` (default 160x120, the bench's trimmed
  camera_node), ``--camera-hz`` (default 15), sensor QoS, ``header.stamp`` = capture time (wall
  clock, s), ``frame_id`` = camera name, as camera_node publishes a synthetic camera. A frame is
  a prebuilt image with a changing counter written into its first row (numpy, no per-pixel
  Python). The cameras of one robot are published in the same tick; the robots' ticks are spread
  evenly over one frame period (robot i starts i/K of a period after robot1), as K robot
  computers started at different times would be;
- ``joint_states`` at ``--joint-hz`` (default 100, the bench's trimmed bridge): the PiPER joint
  names, positions in rad / m (a slow sine inside the joint limits), state QoS, stamped now.

Each node subscribes to its robot's ``ramp/action_chunk`` and ``ramp/wm_state`` (raw, the stamp
read from the bytes) and feeds a :class:`ramp_bringup.core.report.RunRecorder`, the same calls
the health report's monitor makes (``ramp_bringup.monitor``), so ``capture_to_chunk`` and
``capture_to_wm_state`` are computed exactly as in ``ramp up --report``: arrival time minus the
observation stamp, on this (the robot's) clock. The last diagnostics status of every model node
(``/diagnostics`` and ``/<ns>/diagnostics``) is kept as well: inference time, hops, batch sizes.

Recording starts at SIGUSR1 (the bench sends it after its start-up period; everything before
is discarded) or at start when no SIGUSR1 comes; SIGINT or SIGTERM ends the run and writes the
per-robot figures to ``--out`` (JSON): chunk and wm_state rates (Hz) and latencies (ms), the
rates this process published at (Hz, max gap in ms) and its timers' lateness (ms) and overruns,
so a reader can check the stand-in was not the bottleneck.

    python bench/fleet_standin.py --robots 4 --out /tmp/standin.json --domain-id 71
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_bringup.core.report import RunRecorder, TopicStats
from ramp_bringup.monitor import record_stamped
from ramp_common.conversions import (
    make_joint_state,
    numpy_to_image,
    sec_to_stamp,
)
from ramp_common.diagnostics import LatencyStats
from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop

JOINT_NAMES = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
"""The PiPER joints (config/piper.yaml)."""
CAMERA_NAMES = ["front", "wrist"]
"""The PiPER cameras (config/piper.yaml)."""
_LOWER = np.array([-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0])
_UPPER = np.array([2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07])
_MID, _HALF = (_LOWER + _UPPER) / 2, (_UPPER - _LOWER) / 2


@dataclass
class Recording:
    """What one robot saw and sent since recording started (wall-clock s)."""

    recorder: RunRecorder = field(default_factory=lambda: RunRecorder(JOINT_NAMES))
    published: dict[str, TopicStats] = field(default_factory=dict)

    def sent(self, topic: str, now_s: float) -> None:
        """One message published on ``topic`` at ``now_s``."""
        self.published.setdefault(topic, TopicStats()).receive_times.append(now_s)


class StandInRobot(Node):
    """One robot's inference-facing topics: cameras and joint_states out, chunks and wm_state in."""

    def __init__(self, namespace: str, width: int, height: int) -> None:
        super().__init__("fleet_standin", namespace=namespace)
        self.robot = namespace
        self.recording = Recording()
        self._cameras: list[tuple[str, Publisher]] = [
            (name, self.create_publisher(Image, f"camera/{name}/image_raw", SENSOR_QOS))
            for name in CAMERA_NAMES
        ]
        self._joints = self.create_publisher(JointState, "joint_states", STATE_QOS)
        ys, xs = np.mgrid[0:height, 0:width]
        self._frame = np.stack(
            [xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), 0 * xs], axis=-1
        ).astype(np.uint8)
        self._counter = self._frame[0, :8].reshape(-1)[:8].view(np.uint64)
        self._frames = 0
        self.create_subscription(
            JointTrajectory, "ramp/action_chunk", self._on_chunk, COMMAND_QOS, raw=True
        )
        self.create_subscription(Image, "ramp/wm_state", self._on_wm_state, STATE_QOS, raw=True)

    def publish_cameras(self, now_s: float) -> None:
        """One frame per camera, stamped ``now_s`` (capture time, wall clock s)."""
        self._frames += 1
        self._counter[0] = self._frames
        stamp = sec_to_stamp(now_s)
        for name, publisher in self._cameras:
            publisher.publish(numpy_to_image(self._frame, "rgb8", stamp, name))
            self.recording.sent(f"camera/{name}/image_raw", time.time())

    def publish_joints(self, now_s: float) -> None:
        """One joint state, stamped ``now_s``: positions (rad, gripper m) on a 0.1 Hz sine."""
        q = _MID + 0.5 * _HALF * np.sin(2 * np.pi * 0.1 * now_s)
        zeros = np.zeros(len(JOINT_NAMES))  # velocity, effort: as the bridge sends them
        self._joints.publish(make_joint_state(JOINT_NAMES, q, sec_to_stamp(now_s), zeros, zeros))
        self.recording.sent("joint_states", time.time())

    # As ramp_bringup.monitor.StackMonitor does for the health report.
    def _stamped(self, topic: str, raw: bytes) -> float:
        return record_stamped(self.recording.recorder, topic, raw)

    def _on_chunk(self, raw: bytes) -> None:
        stamp = self._stamped("ramp/action_chunk", raw)
        self.recording.recorder.chunk(time.time(), stamp)

    def _on_wm_state(self, raw: bytes) -> None:
        stamp = self._stamped("ramp/wm_state", raw)
        self.recording.recorder.wm_state(time.time(), stamp)


def _percentiles(stats: LatencyStats) -> dict[str, float]:
    """p50/p99 (ms) of a RateLoop's lateness."""
    p = stats.percentiles_ms()
    return {k: round(float(p[k]), 3) for k in ("p50", "p99") if k in p}


def summary(
    robot: StandInRobot, loops: dict[str, RateLoop], t_start: float, t_end: float
) -> dict[str, Any]:
    """JSON-ready figures of one robot: rates in Hz, latencies and gaps in ms."""
    report = robot.recording.recorder.report({}, t_start, t_end)
    topics = report["topics"]
    published = {t: s.summary(t_end) for t, s in sorted(robot.recording.published.items())}
    return {
        "chunk_hz": topics.get("ramp/action_chunk", {}).get("rate_hz", 0.0),
        "wm_state_hz": topics.get("ramp/wm_state", {}).get("rate_hz", 0.0),
        "capture_to_chunk_ms": report["latency_ms"]["capture_to_chunk"],
        "capture_to_wm_state_ms": report["latency_ms"]["capture_to_wm_state"],
        "published": {
            t: {"rate_hz": s.get("rate_hz", 0.0), "max_gap_ms": s.get("max_gap_ms")}
            for t, s in published.items()
        },
        "timers": {
            name: {"late_ms": _percentiles(loop.jitter), "overruns": loop.overruns}
            for name, loop in loops.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--robots", type=int, default=1, help="K: robot1 ... robotK")
    parser.add_argument("--out", required=True, help="JSON file written at the end")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: env)")
    parser.add_argument("--width", type=int, default=160, help="frame width, px")
    parser.add_argument("--height", type=int, default=120, help="frame height, px")
    parser.add_argument("--camera-hz", type=float, default=15.0, help="frames per camera, Hz")
    parser.add_argument("--joint-hz", type=float, default=100.0, help="joint_states rate, Hz")
    args = parser.parse_args()
    if args.domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # ours end the run
    robots = [StandInRobot(f"robot{i + 1}", args.width, args.height) for i in range(args.robots)]
    diagnostics: dict[str, dict[str, str]] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    # the batched model nodes report on /diagnostics, a robot's own (separate) ones on
    # /<ns>/diagnostics
    robots[0].create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    for robot in robots:
        robot.create_subscription(DiagnosticArray, "diagnostics", on_diagnostics, 50)
    executor = SingleThreadedExecutor()
    for robot in robots:
        executor.add_node(robot)

    def publish_all_joints(now_s: float) -> None:
        for robot in robots:
            robot.publish_joints(now_s)

    loops: dict[str, dict[str, RateLoop]] = {r.robot: {} for r in robots}
    joint_loop = RateLoop(1.0 / args.joint_hz, publish_all_joints, "standin-joints")
    for robot in robots:
        loops[robot.robot]["joint_states"] = joint_loop
        loops[robot.robot]["cameras"] = RateLoop(
            1.0 / args.camera_hz, robot.publish_cameras, f"standin-{robot.robot}-cameras"
        )
    t_start = time.time()
    stop = threading.Event()

    def start_recording(*_: object) -> None:
        nonlocal t_start
        for robot in robots:
            robot.recording = Recording()
        for loop in [joint_loop, *(robot_loops["cameras"] for robot_loops in loops.values())]:
            loop.jitter = LatencyStats(size=2000)
            loop.overruns = 0
        t_start = time.time()

    signal.signal(signal.SIGUSR1, start_recording)
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    joint_loop.start()
    for i, robot in enumerate(robots):  # spread the robots' frame ticks over one period
        loops[robot.robot]["cameras"].start()
        if i + 1 < len(robots):
            time.sleep(1.0 / args.camera_hz / len(robots))
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.1)
    t_end = time.time()
    joint_loop.stop()
    for robot_loops in loops.values():
        robot_loops["cameras"].stop()
    out = {
        "duration_s": round(t_end - t_start, 3),
        "robots": {r.robot: summary(r, loops[r.robot], t_start, t_end) for r in robots},
        "model_diagnostics": {
            name: values
            for name, values in diagnostics.items()
            if "worldmodel" in name or "policy" in name
        },
    }
    path = Path(args.out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(path)
    executor.shutdown()
    for robot in robots:
        robot.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
