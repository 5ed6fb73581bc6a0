"""Episode recorder throughput: 3x 640x480 RGB at 30 Hz + joint states at 200 Hz over DDS.

Starts ``episode_recorder`` as its own process (shipped Fast DDS profile, own domain id),
publishes the camera and joint-state topics from this process at ``--scale`` x the required
rates for ``--duration`` seconds inside one episode, stops it, reads the bag back and prints, per
scale: what was published and recorded (messages, MB/s), the recorded data rate as a ratio of the
required one (3 * 640*480*3 B * 30 Hz + joint states at 200 Hz), and the drops (published but
not in the bag; the recorder's own queue drops from episode.yaml in brackets).

    python bench/recorder.py [--duration 8] [--scales 1 2 3] [--export] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import make_joint_state, numpy_to_image, sec_to_stamp
from ramp_common.qos import SENSOR_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop
from ramp_hilr_teleop.core.episode import read_metadata

ROOT = Path(__file__).resolve().parents[1]
CAMERAS = ["c0", "c1", "c2"]
WIDTH, HEIGHT = 640, 480
CAMERA_HZ, STATE_HZ = 30.0, 200.0
JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
JS_BYTES_APPROX = 188
"""Serialized size of the 7-joint JointState published here (positions only)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per episode")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 2.0, 3.0])
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 153)))
    parser.add_argument("--out", help="bag folder (default: a temporary folder, removed)")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument(
        "--export", action="store_true", help="also time `ramp-bag export` of the first episode"
    )
    args = parser.parse_args()
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault(
        "FASTRTPS_DEFAULT_PROFILES_FILE", str(ROOT / "src/ramp_bringup/dds/fastdds_shm.xml")
    )
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        rows = run(Path(tmp), args.duration, args.scales)
        if args.export:
            export_row = time_export(Path(tmp))
    print(
        f"{'scale':>5s} {'published':>9s} {'recorded':>9s} {'pub MB/s':>8s} {'rec MB/s':>8s} "
        f"{'ratio':>6s} {'drops':>12s} {'rec CPU':>7s}"
    )
    for r in rows:
        print(
            f"{r['scale']:5.1f} {r['published']:9d} {r['recorded']:9d} {r['published_mb_s']:8.1f} "
            f"{r['recorded_mb_s']:8.1f} {r['ratio_of_required']:6.2f} "
            f"{r['lost']:5d} [{r['queue_drops']:5d}] {r['recorder_cpu_cores']:7.2f}"
        )
    print(
        f"required: {required_bytes_per_s() / 2**20:.1f} MB/s (3x 640x480 rgb8 @30 Hz + 200 Hz js)"
    )
    if args.export:
        print(
            f"export of the first episode at 10 Hz (3 cameras, random-noise images = worst case "
            f"for the encoder): {export_row['frames']} frames in {export_row['seconds']:.1f} s "
            f"= {export_row['frames_per_s']:.1f} frames/s ({export_row['codec']}), "
            f"{export_row['episode_s_per_s']:.2f} s of episode per s"
        )
        rows.append({"export": export_row})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def time_export(tmp: Path) -> dict:
    """Export the first recorded episode at 10 Hz and time it."""
    from ramp_hilr_teleop.core.export import ExportConfig, export_lerobot

    bag = sorted((tmp / "episodes").iterdir())[0]
    # the bench records no joint_command: joint_states stands in as the action (timing only)
    config = ExportConfig(fps=10, action_topic="joint_states")
    report = export_lerobot([bag], tmp / "dataset", config)
    episode_s = report.frames / 10
    return {
        "frames": report.frames,
        "seconds": report.seconds,
        "frames_per_s": report.frames_per_s,
        "codec": report.codec,
        "episode_s_per_s": episode_s / report.seconds,
    }


def required_bytes_per_s() -> float:
    return len(CAMERAS) * WIDTH * HEIGHT * 3 * CAMERA_HZ + JS_BYTES_APPROX * STATE_HZ


def run(tmp: Path, duration: float, scales: list[float]) -> list[dict]:
    out_dir = tmp / "episodes"
    cmd = [
        sys.executable, "-m", "ramp_hilr_teleop.episode_recorder", "--ros-args",
        "-p", f"output_dir:={out_dir}",
        "-p", f"camera_names:={CAMERAS}".replace("'", '"'),
        "-p", "topics:=[" + ",".join(
            [f"camera/{c}/image_raw" for c in CAMERAS] + ["joint_states"]) + "]",
        "-p", "min_free_disk_mb:=200.0",
        "-p", "robot:=bench",
    ]  # fmt: skip
    log = (tmp / "recorder.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("recorder_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    rows = []
    try:
        cams = [node.create_publisher(Image, f"camera/{c}/image_raw", SENSOR_QOS) for c in CAMERAS]
        js = node.create_publisher(JointState, "joint_states", STATE_QOS)
        start = node.create_client(Trigger, "ramp/episode/start")
        stop = node.create_client(SetBool, "ramp/episode/stop")
        deadline = time.monotonic() + 30
        while not (start.wait_for_service(0.2) and all(p.get_subscription_count() for p in cams)):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("recorder did not come up; see " + str(tmp / "recorder.log"))
        time.sleep(1.0)  # let discovery settle on both sides
        for scale in scales:
            cpu0 = cpu_seconds(proc.pid)
            row = episode(start, stop, cams, js, duration, scale, out_dir)
            row["recorder_cpu_cores"] = (cpu_seconds(proc.pid) - cpu0) / row["duration_s"]
            rows.append(row)
    finally:
        executor.shutdown()
        spin.join(5.0)  # out of rclpy before teardown: a daemon thread left there aborts at exit
        node.destroy_node()
        rclpy.shutdown(context=context)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(client, request, timeout_s: float = 60.0):
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if time.monotonic() > deadline:
            raise RuntimeError("service call timed out")
        time.sleep(0.01)
    return future.result()


def episode(start, stop, cams, js, duration: float, scale: float, out_dir: Path) -> dict:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in CAMERAS]
    images = [
        numpy_to_image(f, "rgb8", sec_to_stamp(0.0), c)
        for f, c in zip(frames, CAMERAS, strict=True)
    ]
    state = make_joint_state(JOINTS, np.zeros(len(JOINTS)), sec_to_stamp(0.0))
    counts = {"camera": 0, "joint_states": 0}

    def publish_cameras(now: float) -> None:
        for pub, msg in zip(cams, images, strict=True):
            msg.header.stamp = sec_to_stamp(now)
            pub.publish(msg)
            counts["camera"] += 1

    def publish_state(now: float) -> None:
        state.header.stamp = sec_to_stamp(now)
        js.publish(state)
        counts["joint_states"] += 1

    response = call(start, Trigger.Request())
    if not response.success:
        raise RuntimeError(f"start refused: {response.message}")
    bag = Path(response.message.split(";")[0])
    loops = [
        RateLoop(1.0 / (CAMERA_HZ * scale), publish_cameras, "cams"),
        RateLoop(1.0 / (STATE_HZ * scale), publish_state, "js"),
    ]
    t0 = time.monotonic()
    for loop in loops:
        loop.start()
    time.sleep(duration)
    for loop in loops:
        loop.stop()
    elapsed = time.monotonic() - t0
    time.sleep(0.3)  # let the last samples arrive
    response = call(stop, SetBool.Request(data=True))
    meta = read_metadata(bag)
    recorded = sum(t.count for t in meta.topics.values())
    published = counts["camera"] + counts["joint_states"]
    js_bytes = len(serialize_message(state))
    image_bytes = len(images[0].data)
    rec_bytes = sum(
        t.count * (image_bytes if name.startswith("camera/") else js_bytes)
        for name, t in meta.topics.items()
    )
    pub_bytes = counts["camera"] * image_bytes + counts["joint_states"] * js_bytes
    return {
        "scale": scale,
        "duration_s": elapsed,
        "published": published,
        "recorded": recorded,
        "published_mb_s": pub_bytes / elapsed / 2**20,
        "recorded_mb_s": rec_bytes / elapsed / 2**20,
        "ratio_of_required": rec_bytes / elapsed / required_bytes_per_s(),
        "lost": published - recorded,
        "queue_drops": meta.dropped_count,
        "per_topic": {k: v.count for k, v in meta.topics.items()},
        "bag_mb": sum(f.stat().st_size for f in bag.iterdir()) / 2**20,
    }


if __name__ == "__main__":
    raise SystemExit(main())
