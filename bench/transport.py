"""One DDS hop, measured directly: publish -> subscriber callback, per message type of the stack.

A publisher process sends what the capture -> command path carries, at the stack's rates and
with the stack's QoS profiles and conversions: two rgb8 camera frames (``--sizes``, 30 Hz each,
``ramp_common.conversions.numpy_to_image``), a world-model state (32FC1 8 x 64, 30 Hz), an
action chunk (JointTrajectory 7 joints x 16 steps, 30 Hz) and a joint command (JointState, 200 Hz).
Each message's ``header.stamp`` is the wall time just before ``publish()``; a subscriber process
(its own executor thread, as the nodes have) takes ``time.time()`` on entry to the callback and
converts images back with ``image_to_numpy`` (timed separately). Both ends run on this computer,
so the two stamps come from one clock. Prints p50/p99/max per topic and frame size.

The DDS profile is the one ``ramp up`` ships (``src/ramp_bringup/dds/fastdds_shm.xml``: shared
memory with a 16 MiB segment, UDP for other hosts); ``--dds-profile none`` measures the Fast DDS
defaults instead (best-effort 640x480 frames are mostly lost there).

``--load`` runs the sim stack (``ramp up --robot sim``, one process per node, in another DDS
domain) at the same time: the hop measured while the two cores are as busy as in the stack.

    python bench/transport.py [--duration 10] [--sizes 320x240 640x480] [--load]
                              [--dds-profile FILE|none]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

RATES_HZ = {"camera/front": 30.0, "camera/wrist": 30.0, "wm_state": 30.0, "chunk": 30.0}
COMMAND_HZ = 200.0
WM_SHAPE = (8, 64)
CHUNK = (16, 7)
SHIPPED_PROFILE = Path(__file__).resolve().parents[1] / "src/ramp_bringup/dds/fastdds_shm.xml"
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def _topics():
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS

    return {
        "camera/front": (Image, "bench/camera/front/image_raw", SENSOR_QOS),
        "camera/wrist": (Image, "bench/camera/wrist/image_raw", SENSOR_QOS),
        "wm_state": (Image, "bench/wm_state", STATE_QOS),
        "chunk": (JointTrajectory, "bench/action_chunk", COMMAND_QOS),
        "joint_command": (JointState, "bench/joint_command", COMMAND_QOS),
    }


def subscriber(duration_s: float) -> None:
    """Child process: record (callback entry - stamp) and image conversion times; print JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ramp_common.conversions import image_to_numpy, stamp_to_sec

    rclpy.init()
    node = rclpy.create_node("bench_transport_sub")
    hops: dict[str, list[float]] = {}
    convert: list[float] = []

    def on_msg(key: str, msg) -> None:
        now = time.time()
        hops.setdefault(key, []).append(now - stamp_to_sec(msg.header.stamp))
        if key.startswith("camera/"):
            t0 = time.perf_counter()
            image_to_numpy(msg)
            convert.append(time.perf_counter() - t0)

    for key, (msg_type, topic, qos) in _topics().items():
        node.create_subscription(msg_type, topic, lambda m, k=key: on_msg(k, m), qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("ready", flush=True)
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    print(json.dumps({"hops": hops, "image_to_numpy": convert}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def publish_for(width: int, height: int, duration_s: float) -> None:
    """Publish every topic at its rate for ``duration_s`` (one thread per rate, like the nodes)."""
    import rclpy
    from sensor_msgs.msg import JointState

    from ramp_common.conversions import numpy_to_image, numpy_to_trajectory, sec_to_stamp

    node = rclpy.create_node("bench_transport_pub")
    pubs = {k: node.create_publisher(t, name, qos) for k, (t, name, qos) in _topics().items()}
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    latent = rng.standard_normal(WM_SHAPE).astype(np.float32)
    chunk = rng.standard_normal(CHUNK)
    names = [f"joint{i + 1}" for i in range(CHUNK[1])]
    t_from_start = 0.05 * np.arange(1, CHUNK[0] + 1)
    stop = time.monotonic() + duration_s

    def build(key: str):
        stamp = sec_to_stamp(time.time())
        if key.startswith("camera/"):
            return numpy_to_image(frame, "rgb8", stamp, key)
        if key == "wm_state":
            return numpy_to_image(latent, "32FC1", stamp, "bench")
        if key == "chunk":
            return numpy_to_trajectory(names, t_from_start, chunk, stamp, "bench")
        msg = JointState(name=names, position=list(chunk[0]))
        msg.header.stamp = stamp
        return msg

    def loop(keys: list[str], rate_hz: float) -> None:
        period, deadline = 1.0 / rate_hz, time.monotonic()
        while deadline < stop:
            for key in keys:
                pubs[key].publish(build(key))
            deadline += period
            time.sleep(max(0.0, deadline - time.monotonic()))

    threads = [
        threading.Thread(target=loop, args=(list(RATES_HZ), 30.0)),
        threading.Thread(target=loop, args=(["joint_command"], COMMAND_HZ)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    node.destroy_node()


def percentiles_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values) * 1e3
    return {
        "n": int(arr.size),
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def measure(width: int, height: int, duration_s: float) -> dict:
    import rclpy

    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "sub", "--duration", str(duration_s + 3.0)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit("subscriber process did not start")
    rclpy.init()
    try:
        time.sleep(1.0)  # discovery
        publish_for(width, height, duration_s)
    finally:
        rclpy.try_shutdown()
    out, _ = child.communicate(timeout=duration_s + 30.0)
    data = json.loads(out.strip().splitlines()[-1])
    result = {k: percentiles_ms(v[5:]) for k, v in data["hops"].items()}  # skip the first few
    result["image_to_numpy"] = percentiles_ms(data["image_to_numpy"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"])
    parser.add_argument("--load", action="store_true", help="run the sim stack meanwhile")
    parser.add_argument("--dds-profile", default=str(SHIPPED_PROFILE), help="file or 'none'")
    parser.add_argument("--role", choices=("main", "sub"), default="main", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    if args.role == "sub":
        subscriber(args.duration)
        return 0
    os.environ.setdefault("ROS_DOMAIN_ID", "93")
    for var in PROFILE_VARS:  # read by both processes (the subscriber inherits it)
        if args.dds_profile == "none":
            os.environ.pop(var, None)
        else:
            os.environ[var] = args.dds_profile
    stack = None
    if args.load:
        domain = str((int(os.environ["ROS_DOMAIN_ID"]) + 1) % 230)
        cmd = [sys.executable, "-m", "ramp_bringup.cli", "up", "--robot", "sim"]
        stack = subprocess.Popen(
            [*cmd, "--domain-id", domain],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(15.0)  # the stack up and running
    results = {}
    try:
        for size in args.sizes:
            width, height = (int(v) for v in size.split("x"))
            results[size] = measure(width, height, args.duration)
    finally:
        if stack is not None:
            stack.send_signal(2)
            stack.wait(30)
    load = "while the sim stack runs" if args.load else "nothing else running"
    profile = Path(args.dds_profile).name if args.dds_profile != "none" else "Fast DDS defaults"
    print(
        f"one DDS hop, publish -> callback entry (ms), {args.duration:.0f} s per size, {load}, "
        f"DDS profile {profile}"
    )
    print(f"{'frame size':10s} {'topic':14s} {'n':>6s} {'p50':>7s} {'p99':>7s} {'max':>7s}")
    for size, by_topic in results.items():
        for topic, stats in by_topic.items():
            if stats.get("n"):
                print(
                    f"{size:10s} {topic:14s} {stats['n']:6d} {stats['p50']:7.2f} "
                    f"{stats['p99']:7.2f} {stats['max']:7.2f}"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
