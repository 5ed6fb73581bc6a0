"""fake_g1 and g1_bridge in two network namespaces joined by a veth pair (like robot and PC).

The fixture makes namespaces A (the "robot") and B (the "PC"), a veth pair between them with
multicast on and addresses 10.231.N.1/30 and 10.231.N.2/30 that exist only inside them, and removes
everything afterwards. fake_g1 runs in A. In B, this file runs as a script (``--in-namespace``):
it builds a G1BridgeNode on the veth interface plus a probe node in one process (ROS stays on B's
loopback), streams a joint_command and writes what it saw as JSON. Skips when ``ip netns`` is not
permitted (not root, or no CAP_SYS_ADMIN).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ramp_robots.core.driver import DriverError
from ramp_robots.core.g1_driver import check_dds_stack

try:
    check_dds_stack()
except DriverError as exc:
    pytest.skip(f"G1 DDS stack unusable: {exc}", allow_module_level=True)

pytestmark = pytest.mark.ros

ROS_DOMAIN = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "152"))
G1_DOMAIN = 20 + (ROS_DOMAIN - 120) % 80  # one per test session, as in test_g1.py
ELBOW = "left_elbow_joint"
ELBOW_TARGET = 1.2  # rad; fake_g1 starts the elbows at 0.9


@dataclass(frozen=True)
class NetnsPair:
    robot_ns: str
    pc_ns: str
    robot_iface: str
    pc_iface: str
    robot_address: str
    pc_address: str


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _kill_namespace_processes(namespace: str) -> None:
    pids = _ip("netns", "pids", namespace).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    if shutil.which("ip") is None:
        pytest.skip("the 'ip' tool (iproute2) is not installed")
    tag = os.getpid() % 100000
    subnet = os.getpid() % 256
    pair = NetnsPair(
        robot_ns=f"ramp_g1_robot_{tag}",
        pc_ns=f"ramp_g1_pc_{tag}",
        robot_iface=f"rg1r{tag}",
        pc_iface=f"rg1p{tag}",
        robot_address=f"10.231.{subnet}.1/30",
        pc_address=f"10.231.{subnet}.2/30",
    )
    made = _ip("netns", "add", pair.robot_ns)
    if made.returncode != 0:
        pytest.skip(f"ip netns is not permitted here: {made.stderr.strip()}")
    namespaces = [pair.robot_ns]
    try:
        steps = [
            ("netns", "add", pair.pc_ns),
            ("link", "add", pair.robot_iface, "type", "veth", "peer", "name", pair.pc_iface),
            ("link", "set", pair.robot_iface, "netns", pair.robot_ns),
            ("link", "set", pair.pc_iface, "netns", pair.pc_ns),
        ]
        for ns, iface, address in (
            (pair.robot_ns, pair.robot_iface, pair.robot_address),
            (pair.pc_ns, pair.pc_iface, pair.pc_address),
        ):
            steps += [
                ("-n", ns, "addr", "add", address, "dev", iface),
                ("-n", ns, "link", "set", iface, "multicast", "on", "up"),
                ("-n", ns, "link", "set", "lo", "up"),
            ]
        for step in steps:
            result = _ip(*step)
            if step[:2] == ("netns", "add") and result.returncode == 0:
                namespaces.append(step[2])
            assert result.returncode == 0, f"ip {' '.join(step)}: {result.stderr}"
        yield pair
    finally:
        for ns in namespaces:
            _kill_namespace_processes(ns)
            _ip("netns", "del", ns)  # deletes the veth pair with it


def test_bridge_and_fake_in_two_namespaces(netns_pair: NetnsPair, tmp_path: Path) -> None:
    stats_path = tmp_path / "fake_stats.json"
    result_path = tmp_path / "result.json"
    env = dict(os.environ, ROS_DOMAIN_ID=str(ROS_DOMAIN))
    fake_cmd = [
        "ip", "netns", "exec", netns_pair.robot_ns, sys.executable, "-m",
        "ramp_robots.fakes.fake_g1", "--iface", netns_pair.robot_iface,
        "--domain", str(G1_DOMAIN), "--stats-file", str(stats_path),
    ]  # fmt: skip
    with open(tmp_path / "fake.txt", "w") as fake_log:
        fake = subprocess.Popen(fake_cmd, env=env, stdout=fake_log, stderr=subprocess.STDOUT)
    try:
        pc_cmd = [
            "ip", "netns", "exec", netns_pair.pc_ns, sys.executable, __file__,
            "--in-namespace", "--iface", netns_pair.pc_iface, "--out", str(result_path),
        ]  # fmt: skip
        run = subprocess.run(pc_cmd, env=env, capture_output=True, text=True, timeout=90)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stderr, run.stderr
        result = json.loads(result_path.read_text())
        stats = json.loads(stats_path.read_text())
    finally:
        fake.terminate()
        fake.wait(10)
    print(
        f"across namespaces: first LowState {result['discovery_s']:.2f} s after connect; "
        f"bridge up in {result['startup_s']:.2f} s; elbow {result['elbow_final']:.3f} rad"
    )
    assert result["joint_states"] > 20
    assert result["elbow_start"] == pytest.approx(0.9, abs=0.01)
    assert result["elbow_final"] == pytest.approx(ELBOW_TARGET, abs=0.02)
    assert result["elbow_max"] < ELBOW_TARGET + 0.01
    assert stats["arm_sdk_received"] > 50 and stats["bad_crc"] == 0
    assert stats["weight"] == 0.0  # the bridge ramped out on close
    assert fake.returncode == 0


def _run_in_namespace(args: argparse.Namespace) -> int:
    """Bridge + probe in this (PC) namespace; writes what the probe saw to ``args.out``."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState

    from ramp_common.qos import COMMAND_QOS, STATE_QOS
    from ramp_robots.g1_bridge import G1BridgeNode

    context = Context()
    rclpy.init(context=context, domain_id=ROS_DOMAIN)
    started = time.monotonic()
    bridge = G1BridgeNode(
        context=context,
        parameter_overrides=[
            Parameter("network_interface", value=args.iface),
            Parameter("dds_domain", value=G1_DOMAIN),
            Parameter("weight_ramp_s", value=0.3),
            Parameter("control_rate_hz", value=100.0),
            Parameter("connect_timeout_s", value=20.0),
            Parameter("state_timeout_s", value=0.5),
        ],
    )
    startup_s = time.monotonic() - started
    probe = rclpy.create_node("g1_netns_probe", context=context)
    states: list[JointState] = []
    probe.create_subscription(JointState, "joint_states", states.append, STATE_QOS)
    command_pub = probe.create_publisher(JointState, "joint_command", COMMAND_QOS)
    executor = SingleThreadedExecutor(context=context)  # rclpy#1452: the multi one busy-spins
    executor.add_node(bridge)
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    result: dict[str, float] = {"startup_s": startup_s}
    try:
        deadline = time.monotonic() + 10.0
        while len(states) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        names = list(states[-1].name)
        elbow = names.index(ELBOW)
        result["elbow_start"] = states[-1].position[elbow]
        target = list(states[-1].position)
        target[elbow] = ELBOW_TARGET
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            command_pub.publish(JointState(name=names, position=target))
            if abs(states[-1].position[elbow] - ELBOW_TARGET) < 0.005:
                break
            time.sleep(0.02)
        result["elbow_final"] = states[-1].position[elbow]
        result["elbow_max"] = max(s.position[elbow] for s in states)
        result["joint_states"] = len(states)
        result["discovery_s"] = bridge.driver_stats.discovery_s
    finally:
        bridge.close()
        executor.shutdown()
        bridge.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--in-namespace", action="store_true", required=True)
    parser.add_argument("--iface", required=True)
    parser.add_argument("--out", required=True)
    raise SystemExit(_run_in_namespace(parser.parse_args()))
