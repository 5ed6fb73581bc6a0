"""Malformed input to every topic subscription of the sim stack (case 2 of bench/faults.py).

One ``ramp up --robot sim`` (one process per node). For each handler (topic + message type the
stack's nodes subscribe to), ``n`` seeded-random malformed messages (tests/faultkit.py: NaN/inf,
wrong lengths, unknown and duplicated names, wrong image encodings/steps/sizes, empty and huge
arrays, zero/far past/future stamps, out-of-order chunk times) are published as fast as the
probe can (a burst far above every topic's rate) over real DDS. Then: every node still runs
with the pid it had (no crash, no respawn), every command the bridge sent to the arm stayed
within the position limits and the speed limit, and the log lines each node printed meanwhile
(a flood would be ~one per message).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

HANDLERS = (
    # (topic, kind, subscribers)
    ("joint_command", "joint_state", "sim_bridge"),
    ("joint_states", "joint_state", "chunk_executor, policy_node, arbiter, teleop, recorder"),
    ("ramp/policy_command", "joint_state", "intervention_arbiter"),
    ("ramp/operator_command", "joint_state", "intervention_arbiter"),
    ("leader/joint_states", "joint_state", "teleop_node"),
    ("ramp/action_chunk", "trajectory", "chunk_executor, recorder"),
    ("sim/camera/front/image_raw", "image", "camera_node"),
    ("camera/front/image_raw", "image", "worldmodel_node, recorder"),
    ("ramp/wm_state", "image", "policy_node, recorder"),
    ("joy", "joy", "teleop_node"),
    ("ramp/operator_joy", "joy", "intervention_arbiter"),
)
LINE = re.compile(rb"^\[([a-z_]+)\] ")


def log_lines(path: Path, start: int) -> tuple[Counter, list[str], int]:
    """Lines per node written to ``ramp up``'s output since byte ``start``; samples; new end."""
    data = path.read_bytes()
    counts: Counter = Counter()
    samples: list[str] = []
    for raw in data[start:].splitlines():
        match = LINE.match(raw)
        if match:
            counts[match.group(1).decode()] += 1
            if len(samples) < 6 and (b"WARN" in raw or b"ERROR" in raw):
                samples.append(raw.decode(errors="replace")[:220])
    return counts, samples, len(data)


def fuzz_handler(stack, topic: str, kind: str, n: int, seed: int) -> dict:
    """Publish ``n`` malformed messages on ``topic``; the figures of what the stack did."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState, Joy
    from trajectory_msgs.msg import JointTrajectory

    from ramp_bringup.core.faults import step_figures, within_limits
    from tests.faultkit import bad_image, bad_joint_state, bad_joy, bad_trajectory

    msg_type, make = {
        "joint_state": (JointState, lambda r: bad_joint_state(r, names)),
        "trajectory": (JointTrajectory, lambda r: bad_trajectory(r, names)),
        "image": (Image, bad_image),
        "joy": (Joy, bad_joy),
    }[kind]
    names = stack.limits["joint_names"]
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )
    # one publisher per topic for the stack's life: destroying one while the probe's executor
    # spins races with its wait set (rclpy InvalidHandle in the spin thread)
    publishers = stack.__dict__.setdefault("fuzz_publishers", {})
    if topic not in publishers:
        publishers[topic] = stack.probe.create_publisher(msg_type, topic, qos)
        time.sleep(1.0)  # discovery
    pub = publishers[topic]
    rng = np.random.default_rng(seed)
    pids = stack.node_pids()
    err = stack.proc.stderr_path
    _, _, offset = log_lines(err, 0)
    t0 = time.time()
    for _ in range(n):
        pub.publish(make(rng))
    t_pub = time.time() - t0
    time.sleep(2.0)
    t1 = time.time()
    counts, samples, _ = log_lines(err, offset)
    after = stack.node_pids()
    crashed = sorted(k for k, pid in pids.items() if after.get(k) != pid)
    with stack.lock:
        _, stamp, pos, _ = stack.streams["ramp/sent_command"].window(t0, t1)
    steps = step_figures(stamp, pos, stack.limits["max_velocity"])
    outside = within_limits(pos, stack.limits["position_lower"], stack.limits["position_upper"])
    return {
        "topic": topic,
        "messages": n,
        "publish_rate_hz": n / t_pub if t_pub > 0 else None,
        "crashed_or_respawned": crashed,
        "stack_alive": stack.alive(),
        "sent_commands": steps.messages,
        "sent_outside_limits": outside,
        "sent_jumps": steps.jumps,
        "sent_speed_ratio": steps.largest_speed_ratio,
        "log_lines": dict(counts),
        "log_samples": samples,
    }


def fuzz_campaign(
    n: int, workdir: Path, log, topics: tuple[str, ...] | None = None, dds: str = "udp"
):
    """Rows for bench/faults.py's table, and every handler's figures."""
    from tests.faultkit import SimStack
    from tests.rosutil import probe_node

    workdir.mkdir(parents=True)
    results = []
    with probe_node("fuzz_probe") as probe:
        stack = SimStack(probe, workdir, dds=dds)
        try:
            if stack.wait_flowing(time.time(), 120.0) is None:
                raise RuntimeError(f"the stack never flowed; see {workdir}/ramp_up.err")
            for i, (topic, kind, _subs) in enumerate(HANDLERS):
                if topics and topic not in topics:
                    continue
                result = fuzz_handler(stack, topic, kind, n, seed=1000 + i)
                log(f"fuzz {topic}: {result}")
                results.append(result)
                if not stack.alive():
                    break
        finally:
            stack.stop()
    rows = []
    for (topic, _kind, subs), r in zip(
        [h for h in HANDLERS if not topics or h[0] in topics], results, strict=False
    ):
        most = max(r["log_lines"].values(), default=0)
        ok = (
            not r["crashed_or_respawned"]
            and r["stack_alive"]
            and r["sent_commands"] > 0
            and r["sent_outside_limits"] == 0
            and r["sent_jumps"] == 0
            and most <= 50
        )
        rows.append(
            (
                f"malformed {topic} x{r['messages']}",
                f"crashed {len(r['crashed_or_respawned'])} ({subs}); sent outside limits "
                f"{r['sent_outside_limits']}/{r['sent_commands']}, jumps {r['sent_jumps']}; "
                f"log lines max {most}/node",
                "0 crashes, 0 unsafe, <= 50 lines",
                ok,
            )
        )
    return rows, results
