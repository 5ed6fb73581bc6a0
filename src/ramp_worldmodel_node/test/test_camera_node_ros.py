"""camera_node as its own process over real DDS: a file camera, a missing device, a sim topic.

Checks frames, stamps and sizes on camera/<name>/image_raw, the ERROR diagnostic for the missing
camera, dropped malformed sim frames, and a clean exit (code 0, no traceback) on SIGINT.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from ramp_common.conversions import image_to_numpy, numpy_to_image, sec_to_stamp, stamp_to_sec
from ramp_common.diagnostics import ERROR, level_to_int
from ramp_common.qos import SENSOR_QOS

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "143"))
SIM_TOPIC = "sim/camera/test/image_raw"
OUT_W, OUT_H = 80, 60


def write_video(path: Path) -> Path:
    """160x120 MJPG video at 30 fps; the top-left quarter is pure red."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (160, 120))
    for i in range(15):
        bgr = np.full((120, 160, 3), 10 * i, np.uint8)
        bgr[:60, :80] = (0, 0, 255)
        writer.write(bgr)
    writer.release()
    return path


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return dict(os.environ)


def test_camera_node_publishes_reports_and_exits_cleanly(
    tmp_path: Path, ros_env: dict[str, str]
) -> None:
    video = write_video(tmp_path / "front.avi")
    sources = f"['file:{video}','device:/dev/video_ramp_missing','topic:{SIM_TOPIC}']"
    cmd = [
        sys.executable,
        "-m",
        "ramp_worldmodel_node.camera_node",
        "--ros-args",
        "-p", "camera_names:=[file_cam,missing_cam,sim_cam]",
        "-p", f"camera_sources:={sources}",
        "-p", "rate_hz:=30.0",
        "-p", f"width:={OUT_W}",
        "-p", f"height:={OUT_H}",
        "-p", "retry_period_s:=0.5",
    ]  # fmt: skip
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr, open(tmp_path / "stdout.txt", "w") as stdout:
        proc = subprocess.Popen(cmd, env=ros_env, stdout=stdout, stderr=stderr)
    try:
        file_frames, sim_frames, diagnostics, sent_stamps = _exchange(proc)
        assert proc.poll() is None, "camera_node exited while running"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            returncode = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    stderr_text = stderr_path.read_text()

    assert len(file_frames) >= 10, f"only {len(file_frames)} file frames; stderr:\n{stderr_text}"
    for msg in file_frames:
        assert (msg.width, msg.height, msg.encoding) == (OUT_W, OUT_H, "rgb8")
        assert msg.header.frame_id == "file_cam"
    stamps = [stamp_to_sec(m.header.stamp) for m in file_frames]
    assert all(b > a for a, b in itertools.pairwise(stamps)), stamps
    red, green, blue = image_to_numpy(file_frames[-1])[10, 10].astype(int)
    assert red > 200 and green < 60 and blue < 60  # RGB order end to end

    assert len(sim_frames) >= 3
    for msg in sim_frames:
        assert (msg.width, msg.height, msg.encoding) == (OUT_W, OUT_H, "rgb8")
        assert msg.header.frame_id == "sim_cam"
        assert stamp_to_sec(msg.header.stamp) in sent_stamps  # original capture stamp kept

    errors = [
        s for s in diagnostics if level_to_int(s.level) == ERROR and "missing_cam" in s.message
    ]
    assert errors, [s.message for s in diagnostics]
    values = {kv.key: kv.value for kv in errors[-1].values}
    assert "does not exist" in errors[-1].message
    assert int(values["missing_cam.failures"]) >= 1
    assert values["missing_cam.state"] == "failed"
    assert int(values["sim_cam.drops"]) >= 1

    assert returncode == 0, stderr_text
    assert "Traceback" not in stderr_text, stderr_text
    assert stderr_text.count("camera missing_cam") == 1  # logged once per failure episode
    assert "dropped a frame from" in stderr_text


def _exchange(
    proc: subprocess.Popen,
) -> tuple[list[Image], list[Image], list[DiagnosticStatus], set[float]]:
    """Feed the sim topic and collect the node's output until everything was seen (<= 15 s)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("camera_node_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    file_frames: list[Image] = []
    sim_frames: list[Image] = []
    diagnostics: list[DiagnosticStatus] = []
    sent_stamps: set[float] = set()
    try:
        node.create_subscription(Image, "camera/file_cam/image_raw", file_frames.append, SENSOR_QOS)
        node.create_subscription(Image, "camera/sim_cam/image_raw", sim_frames.append, SENSOR_QOS)
        node.create_subscription(
            DiagnosticArray,
            "diagnostics",
            lambda msg: diagnostics.extend(s for s in msg.status if "camera_node" in s.name),
            10,
        )
        sim_pub = node.create_publisher(Image, SIM_TOPIC, SENSOR_QOS)
        red = np.zeros((30, 40, 3), np.uint8)
        red[..., 0] = 255

        def done() -> bool:
            drops_seen = any(
                kv.key == "sim_cam.drops" and int(kv.value) > 0
                for s in diagnostics
                for kv in s.values
            )
            missing_seen = any(level_to_int(s.level) == ERROR for s in diagnostics)
            return len(file_frames) >= 10 and len(sim_frames) >= 3 and drops_seen and missing_seen

        deadline = time.monotonic() + 15.0
        tick = 0
        while time.monotonic() < deadline and not done() and proc.poll() is None:
            tick += 1
            stamp = 1000.0 + 0.05 * tick
            if tick % 10 == 0:  # malformed: payload shorter than height * step
                bad = numpy_to_image(red, "rgb8", sec_to_stamp(stamp), "sim")
                bad.data = bytes(10)
                sim_pub.publish(bad)
            else:
                sim_pub.publish(numpy_to_image(red, "rgb8", sec_to_stamp(stamp), "sim"))
                sent_stamps.add(stamp_to_sec(sec_to_stamp(stamp)))
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                executor.spin_once(timeout_sec=0.01)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return file_frames, sim_frames, diagnostics, sent_stamps


@pytest.mark.parametrize(
    ("names", "sources", "message"),
    [
        ("[front,wrist]", "['file:/x.avi']", "camera_sources has 1 entries for 2 camera_names"),
        ("[front]", "['rtsp://cam/stream']", "camera front: unknown camera source scheme 'rtsp'"),
    ],
)
def test_camera_node_refuses_bad_configuration(
    ros_env: dict[str, str], names: str, sources: str, message: str
) -> None:
    cmd = [
        sys.executable,
        "-m",
        "ramp_worldmodel_node.camera_node",
        "--ros-args",
        "-p", f"camera_names:={names}",
        "-p", f"camera_sources:={sources}",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
