"""One DDS hop, measured directly: build + publish -> subscriber callback, per message type.

A publisher process sends what the capture -> command path carries, at the stack's rates and
with the stack's QoS profiles: two rgb8 camera frames (``--sizes``, 30 Hz each), a world-model
state (32FC1 8 x 64, 30 Hz), an action chunk (JointTrajectory 7 joints x 16 steps, 30 Hz) and
a joint command (JointState, 200 Hz). Each message's ``header.stamp`` is the wall time just
before the message is built from numpy; a subscriber process (its own executor thread, as the
nodes have) takes ``time.time()`` on entry to the callback and converts images back to numpy
(timed separately, row ``frame_to_numpy``: ``decode_image`` or ``image_to_numpy``). Both ends
run on this computer, so the two stamps come from one clock. Prints p50/p99/max per topic, frame
size and image path.

Two image paths, measured one after the other in one run (``--paths``):

- ``stack``: what the nodes do since round 5: images published serialized
  (``ramp_common.image_wire.encode_image`` + ``publish(bytes)``), subscribed with ``raw=True``
  and decoded with ``decode_image``, both processes with the glibc malloc settings that
  ``ramp up`` gives every node (``ramp_bringup.core.plan.MALLOC_ENV``);
- ``messages``: the path before it: rclpy ``Image`` objects (``numpy_to_image`` /
  ``image_to_numpy``), glibc defaults.

The DDS profile is the one ``ramp up`` ships (``src/ramp_bringup/dds/fastdds_shm.xml``: shared
memory with a 16 MiB segment, UDP for other hosts); ``--dds-profile none`` measures the Fast DDS
defaults instead (best-effort 640x480 frames are mostly lost there).

``--load`` runs the sim stack (``ramp up --robot sim``, one process per node, in another DDS
domain) at the same time: the hop measured while the two cores are as busy as in the stack.

    python bench/transport.py [--duration 10] [--sizes 320x240 640x480] [--load]
                              [--dds-profile FILE|none] [--paths stack messages]
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
PATHS = ("stack", "messages")
IDLE_END_S = 1.5  # the subscriber ends this long after the last message
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


def _is_image(key: str) -> bool:
    return key.startswith("camera/") or key == "wm_state"


def subscriber(duration_s: float, path: str) -> None:
    """Child process: record (callback entry - stamp) and image conversion times; print JSON."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from ramp_common.conversions import image_to_numpy, stamp_to_sec
    from ramp_common.image_wire import decode_image

    rclpy.init()
    node = rclpy.create_node("bench_transport_sub")
    hops: dict[str, list[float]] = {}
    convert: list[float] = []
    raw_images = path == "stack"

    last = [time.monotonic()]

    def on_msg(key: str, msg) -> None:
        now = time.time()
        last[0] = time.monotonic()
        t0 = time.perf_counter()
        if raw_images and _is_image(key):
            stamp = decode_image(msg).stamp_s
        else:
            stamp = stamp_to_sec(msg.header.stamp)
            if _is_image(key):
                image_to_numpy(msg)
        if key.startswith("camera/"):
            convert.append(time.perf_counter() - t0)
        hops.setdefault(key, []).append(now - stamp)

    for key, (msg_type, topic, qos) in _topics().items():
        raw = raw_images and _is_image(key)
        node.create_subscription(msg_type, topic, lambda m, k=key: on_msg(k, m), qos, raw=raw)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    print("ready", flush=True)
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
        if convert and time.monotonic() - last[0] > IDLE_END_S:
            break  # the publisher is done
    print(json.dumps({"hops": hops, "frame_to_numpy": convert}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def publisher(width: int, height: int, duration_s: float, path: str) -> None:
    """Child process: publish every topic at its rate for ``duration_s`` (one thread per rate,
    like the nodes)."""
    import rclpy
    from sensor_msgs.msg import JointState

    from ramp_common.conversions import numpy_to_image, numpy_to_trajectory, sec_to_stamp
    from ramp_common.image_wire import encode_image

    rclpy.init()

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
        now = time.time()
        if _is_image(key) and path == "stack":
            return encode_image(frame if key != "wm_state" else latent, encoding(key), now, key)
        stamp = sec_to_stamp(now)
        if _is_image(key):
            return numpy_to_image(frame if key != "wm_state" else latent, encoding(key), stamp)
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
    rclpy.try_shutdown()


def encoding(key: str) -> str:
    return "32FC1" if key == "wm_state" else "rgb8"


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


def path_env(path: str) -> dict[str, str]:
    """The environment of both processes for an image path (see the module docstring)."""
    from ramp_bringup.core.plan import MALLOC_ENV

    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    if path == "stack":
        env.update(MALLOC_ENV)
    return env


def measure(width: int, height: int, duration_s: float, path: str) -> dict:
    env = path_env(path)
    base = [sys.executable, __file__, "--path", path]
    child = subprocess.Popen(
        [*base, "--role", "sub", "--duration", str(duration_s + 20.0)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise SystemExit("subscriber process did not start")
    size = f"{width}x{height}"
    pub = subprocess.run(
        [*base, "--role", "pub", "--duration", str(duration_s), "--sizes", size],
        env=env,
        timeout=duration_s + 30.0,
    )
    if pub.returncode != 0:
        raise SystemExit(f"publisher process failed ({pub.returncode})")
    out, _ = child.communicate(timeout=duration_s + 30.0)
    data = json.loads(out.strip().splitlines()[-1])
    result = {k: percentiles_ms(v[5:]) for k, v in data["hops"].items()}  # skip the first few
    result["frame_to_numpy"] = percentiles_ms(data["frame_to_numpy"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480"])
    parser.add_argument("--load", action="store_true", help="run the sim stack meanwhile")
    parser.add_argument("--dds-profile", default=str(SHIPPED_PROFILE), help="file or 'none'")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument(
        "--role", choices=("main", "sub", "pub"), default="main", help=argparse.SUPPRESS
    )
    parser.add_argument("--path", choices=PATHS, default="stack", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    if args.role == "sub":
        subscriber(args.duration, args.path)
        return 0
    if args.role == "pub":
        width, height = (int(v) for v in args.sizes[0].split("x"))
        time.sleep(1.0)  # discovery
        publisher(width, height, args.duration, args.path)
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
            for path in args.paths:
                results[f"{size} {path}"] = measure(width, height, args.duration, path)
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
    print(f"{'frame size, path':20s} {'topic':14s} {'n':>6s} {'p50':>7s} {'p99':>7s} {'max':>7s}")
    for case, by_topic in results.items():
        for topic, stats in by_topic.items():
            if stats.get("n"):
                print(
                    f"{case:20s} {topic:14s} {stats['n']:6d} {stats['p50']:7.2f} "
                    f"{stats['p99']:7.2f} {stats['max']:7.2f}"
                )
    if len(args.paths) == 2:
        print("camera hop p99, stack / messages (same run):")
        for size in args.sizes:
            a, b = results[f"{size} stack"], results[f"{size} messages"]
            for topic in ("camera/front", "camera/wrist"):
                if a[topic].get("n") and b[topic].get("n"):
                    ratio = a[topic]["p99"] / b[topic]["p99"]
                    print(f"  {size:8s} {topic:14s} {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
