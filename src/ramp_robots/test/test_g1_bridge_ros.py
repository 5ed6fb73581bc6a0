"""g1_bridge as its own process with ``use_fake_hardware`` (fake_g1 on ``lo``), over real DDS.

Drives the bridge from an rclpy node in this process: joint_states, commands through the safety
filter, a malformed command, e-stop, diagnostics, a silent robot (SIGUSR1 to the fake child) ->
fault without motion -> recovery (SIGUSR2), and a clean exit on SIGINT that also stops the fake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from ramp_common.diagnostics import ERROR, OK, level_to_int
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_robots.core.driver import DriverError
from ramp_robots.core.g1_driver import ARM_JOINT_NAMES, check_dds_stack

try:
    check_dds_stack()
except DriverError as exc:
    pytest.skip(f"G1 DDS stack unusable: {exc}", allow_module_level=True)

pytestmark = pytest.mark.ros

ROS_DOMAIN = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "152"))
G1_DOMAIN = 20 + (ROS_DOMAIN - 120) % 80  # one per test session, as in test_g1.py
JOINTS = list(ARM_JOINT_NAMES)
ELBOW = JOINTS.index("left_elbow_joint")
FAKE_START_ELBOW = 0.9  # fake_g1's start pose of the elbows, rad


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(ROS_DOMAIN))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return dict(os.environ)


@pytest.fixture
def bridge(tmp_path: Path, ros_env: dict[str, str]) -> Iterator[subprocess.Popen]:
    cmd = [
        sys.executable, "-m", "ramp_robots.g1_bridge", "--ros-args",
        "-p", "use_fake_hardware:=true",
        "-p", f"fake_dds_domain:={G1_DOMAIN}",
        "-p", "weight_ramp_s:=0.3",
        "-p", "command_timeout_s:=1.0",
        "-p", "state_timeout_s:=0.5",
        "-p", "control_rate_hz:=100.0",
        "-p", "connect_timeout_s:=30.0",
    ]  # fmt: skip
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            cmd, env=ros_env, stdout=err, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc.log_path = tmp_path / "stderr.txt"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def probe(ros_env: dict[str, str]) -> Iterator[Node]:
    context = Context()
    rclpy.init(context=context, domain_id=ROS_DOMAIN)
    node = rclpy.create_node("g1_bridge_probe", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        stop.set()
        thread.join(2.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, proc=None) -> None:
    """Poll ``condition``; on failure the message ends with the bridge's log (when ``proc``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"g1_bridge exited ({proc.returncode}) while waiting for {what}\n{log_tail(proc)}"
            )
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{log_tail(proc)}")


def log_tail(proc, lines: int = 30) -> str:
    if proc is None:
        return ""
    return "\n".join(proc.log_path.read_text().splitlines()[-lines:])


def children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (all its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(c) for c in text)
    return found


def call(client, request, timeout_s: float = 5.0):
    assert client.wait_for_service(timeout_sec=timeout_s), f"service {client.srv_name} missing"
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.done(), f"no answer from {client.srv_name}"
    return future.result()


def test_g1_bridge_on_fake_hardware(bridge: subprocess.Popen, probe: Node) -> None:
    states: list[JointState] = []
    estop_flags: list[bool] = []
    diagnostics: list[tuple[int, str, dict[str, str]]] = []
    probe.create_subscription(JointState, "joint_states", states.append, STATE_QOS)
    probe.create_subscription(
        Bool, "ramp/estop_active", lambda m: estop_flags.append(m.data), LATCHED_QOS
    )
    probe.create_subscription(
        DiagnosticArray,
        "diagnostics",
        lambda m: diagnostics.extend(
            (level_to_int(s.level), s.message, {kv.key: kv.value for kv in s.values})
            for s in m.status
            if "g1_bridge" in s.name
        ),
        10,
    )
    command_pub = probe.create_publisher(JointState, "joint_command", COMMAND_QOS)
    estop = probe.create_client(SetBool, "ramp/estop")

    wait_for(lambda: len(states) > 10, 60.0, "joint_states", bridge)
    assert list(states[-1].name) == JOINTS
    assert len(states[-1].velocity) == len(states[-1].effort) == len(JOINTS)
    assert states[-1].position[ELBOW] == pytest.approx(FAKE_START_ELBOW, abs=0.01)
    [fake_pid] = children(bridge.pid)

    # A malformed command is dropped; a streamed one moves the elbow, without overshoot.
    wait_for(lambda: command_pub.get_subscription_count() > 0, 10.0, "the bridge's subscription")
    for _ in range(5):  # a single sample can be lost before the reliable match settles
        command_pub.publish(JointState(name=["left_elbow_joint"], position=[2.0]))
        time.sleep(0.02)
    target = np.array(states[-1].position)
    target[ELBOW] = 1.2
    streaming = threading.Event()

    def stream() -> None:
        while not streaming.is_set():
            command_pub.publish(JointState(name=JOINTS, position=target.tolist()))
            time.sleep(0.02)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        wait_for(lambda: states[-1].position[ELBOW] > 1.18, 30.0, "the elbow at 1.2 rad", bridge)
    finally:
        streaming.set()
        streamer.join(2.0)
    assert max(s.position[ELBOW] for s in states) < 1.2 + 0.01

    wait_for(lambda: bool(diagnostics) and diagnostics[-1][0] == OK, 20.0, "diagnostics OK", bridge)
    values = diagnostics[-1][2]
    assert values["mode"] == "arm_sdk" and values["engagement"] == "1"
    assert values["lowstate_crc_errors"] == "0" and int(values["lowcmd_sent"]) > 0
    assert values["lowcmd_write_errors"] == "0"
    assert estop_flags and estop_flags[-1] is False

    # E-stop: commands are rejected, the arm holds.
    assert call(estop, SetBool.Request(data=True)).success
    wait_for(lambda: estop_flags[-1], 10.0, "estop_active true")
    held = states[-1].position[ELBOW]
    away = target.copy()
    away[ELBOW] = 0.5
    for _ in range(10):
        command_pub.publish(JointState(name=JOINTS, position=away.tolist()))
        time.sleep(0.03)
    time.sleep(0.3)
    assert abs(states[-1].position[ELBOW] - held) < 0.01
    assert call(estop, SetBool.Request(data=False)).success
    wait_for(lambda: not estop_flags[-1], 10.0, "estop_active false")

    # The robot goes silent: fault (ERROR diagnostics, no joint_states), then recovery.
    os.kill(fake_pid, signal.SIGUSR1)
    wait_for(
        lambda: diagnostics[-1][0] == ERROR and "fault" in diagnostics[-1][1], 20.0, "fault", bridge
    )
    count = len(states)
    time.sleep(0.5)
    assert len(states) == count, "joint_states went on without LowState"
    os.kill(fake_pid, signal.SIGUSR2)
    wait_for(lambda: len(states) > count + 10, 20.0, "joint_states after recovery", bridge)
    moved = abs(states[-1].position[ELBOW] - held)
    assert moved < 0.01, f"the arm moved by {moved} rad during the fault\n{log_tail(bridge)}"
    wait_for(lambda: diagnostics[-1][0] == OK, 20.0, "diagnostics OK after recovery", bridge)

    # Clean exit: ramps out, stops the fake, no traceback.
    os.killpg(bridge.pid, signal.SIGINT)
    assert bridge.wait(30) == 0
    log = bridge.log_path.read_text()
    assert "Traceback" not in log, log
    assert "dropping joint_command" in log
    assert "G1 fault" in log and "LowState is back" in log
    wait_for(lambda: not Path(f"/proc/{fake_pid}").exists(), 10.0, "fake_g1 to exit")


def test_g1_bridge_refuses_bad_parameters(ros_env: dict[str, str]) -> None:
    cmd = [
        sys.executable, "-m", "ramp_robots.g1_bridge", "--ros-args",
        "-p", "joint_names:=[left_elbow_joint, left_knee_joint]",
        "-p", f"dds_domain:={G1_DOMAIN}",
    ]  # fmt: skip
    result = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "left_knee_joint" in result.stderr and "arm_sdk" in result.stderr
    assert "Traceback" not in result.stderr
