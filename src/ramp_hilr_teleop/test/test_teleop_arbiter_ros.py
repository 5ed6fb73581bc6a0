"""intervention_arbiter and teleop_node as separate processes over real DDS.

This test process plays the chunk executor (a policy_command ramp and a fake
``ramp/executor/reset``), a leader arm (``leader/joint_states``) and the robot (``joint_states``
echo the last ``joint_command``). It takes over through ``ramp/takeover``, moves the leader,
hands back with the ``h`` key typed into teleop_node's terminal (a pseudo-terminal), and checks
that ``joint_command`` follows the policy, then the operator, then the policy again with no jump
(per-tick change within velocity limit * dt), that ``ramp/intervention`` toggles, that the reset
was called on handback, and that both nodes exit cleanly with the terminal restored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import make_joint_state, sec_to_stamp, stamp_to_sec
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "154"))
JOINTS = ["joint1", "joint2", "gripper"]
LEADER_JOINTS = ["leader_a", "leader_b", "leader_grip"]
MAX_VELOCITY = np.array([1.0, 1.0, 0.1])
RATE_HZ = 100.0
DT = 1.0 / RATE_HZ
HOME = np.array([0.2, -0.3, 0.03])
LEADER_SCALE = np.array([1.0, -1.0, 1.0])
LEADER_OFFSET = np.array([0.0, 0.1, 0.0])

PARAMS = f"""
/**:
  ros__parameters:
    joint_names: {JOINTS}
    position_lower: [-2.0, -2.0, 0.0]
    position_upper: [2.0, 2.0, 0.08]
    max_velocity: {MAX_VELOCITY.tolist()}
    max_acceleration: [8.0, 8.0, 1.0]
intervention_arbiter:
  ros__parameters:
    control_rate_hz: {RATE_HZ}
    blend_time_s: 0.3
    source_timeout_s: 0.2
teleop_node:
  ros__parameters:
    mode: leader
    rate_hz: {RATE_HZ}
    leader_joint_names: {LEADER_JOINTS}
    scale: {LEADER_SCALE.tolist()}
    offset: {LEADER_OFFSET.tolist()}
"""


def policy_at(t: float) -> np.ndarray:
    """The executor's command stream: slow sines around HOME (well within the limits)."""
    return HOME + np.array([0.25 * np.sin(0.7 * t), 0.15 * np.sin(0.5 * t), 0.0])


def robot_from_leader(leader: np.ndarray) -> np.ndarray:
    return LEADER_OFFSET + LEADER_SCALE * leader


class Proc:
    """A node process in its own session; stop() always ends it."""

    def __init__(self, args: list[str], log_dir: Path, name: str, stdin: int | None = None):
        self.err_path = log_dir / f"{name}.err"
        with open(log_dir / f"{name}.out", "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                args, stdin=stdin, stdout=out, stderr=err, start_new_session=True
            )

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


@pytest.fixture
def probe(ros_env: None) -> Iterator[Node]:
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("teleop_arbiter_probe", context=context)
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


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for proc in procs:
            if proc.proc.poll() is not None:
                raise AssertionError(f"a node exited while waiting for {what}:\n{proc.stderr()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_takeover_and_handback_between_policy_and_leader(
    probe: Node, ros_env: None, tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS)
    commands: list[tuple[float, np.ndarray]] = []
    interventions: list[bool] = []
    states: list[str] = []
    resets: list[float] = []
    lock = threading.Lock()

    def on_command(msg: JointState) -> None:
        with lock:
            commands.append((stamp_to_sec(msg.header.stamp), np.array(msg.position)))

    def on_reset(_request, response):
        resets.append(time.time())
        response.success = True
        response.message = "fake executor reset"
        return response

    deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    probe.create_subscription(JointState, "joint_command", on_command, deep)
    probe.create_subscription(
        Bool, "ramp/intervention", lambda m: interventions.append(m.data), LATCHED_QOS
    )
    probe.create_subscription(
        String,
        "ramp/arbiter_state",
        lambda m: states.append(json.loads(m.data)["state"]),
        LATCHED_QOS,
    )
    probe.create_service(Trigger, "ramp/executor/reset", on_reset)
    policy_pub = probe.create_publisher(JointState, "ramp/policy_command", COMMAND_QOS)
    leader_pub = probe.create_publisher(JointState, "leader/joint_states", STATE_QOS)
    state_pub = probe.create_publisher(JointState, "joint_states", STATE_QOS)
    takeover = probe.create_client(SetBool, "ramp/takeover")

    # Leader poses that put the robot well away from the policy's range.
    leader = {"pose": np.array([0.9, -0.2, 0.05])}  # robot [0.9, 0.3, 0.05]
    stop_streams = threading.Event()

    def stream() -> None:
        """Executor, leader arm and robot at 100 Hz (the robot reports the last command)."""
        while not stop_streams.is_set():
            now = time.time()
            stamp = sec_to_stamp(now)
            policy_pub.publish(make_joint_state(JOINTS, policy_at(now), stamp))
            leader_pub.publish(make_joint_state(LEADER_JOINTS, leader["pose"], stamp))
            with lock:
                measured = commands[-1][1] if commands else HOME
            state_pub.publish(make_joint_state(JOINTS, measured, stamp))
            time.sleep(DT)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    master, slave = os.openpty()
    terminal_before = termios.tcgetattr(slave)
    module = [sys.executable, "-m"]
    ros_args = ["--ros-args", "--params-file", str(params)]
    arbiter = Proc([*module, "ramp_hilr_teleop.intervention_arbiter", *ros_args], tmp_path, "arb")
    teleop = Proc(
        [*module, "ramp_hilr_teleop.teleop_node", *ros_args], tmp_path, "teleop", stdin=slave
    )
    procs = (arbiter, teleop)
    try:

        def last_error(reference: Callable[[float], np.ndarray]) -> float:
            with lock:
                if not commands:
                    return np.inf
                t, q = commands[-1]
            return float(np.max(np.abs(q - reference(t))))

        # 1. Autonomous: joint_command follows the policy.
        wait_for(lambda: last_error(policy_at) < 0.01, 20.0, "following the policy", procs)
        wait_for(lambda: bool(interventions and states), 5.0, "the latched state topics", procs)
        assert interventions[-1] is False
        assert states[-1] == "AUTONOMOUS"
        time.sleep(0.3)
        assert last_error(policy_at) < 0.01

        # 2. Takeover through the service: the robot blends to the leader, then follows it.
        assert takeover.wait_for_service(timeout_sec=5.0)
        future = takeover.call_async(SetBool.Request(data=True))
        wait_for(future.done, 5.0, "the takeover answer", procs)
        assert future.result().success, future.result().message
        wait_for(lambda: interventions[-1] is True, 5.0, "ramp/intervention true", procs)
        takeover_index = len(commands)

        def operator_at(_t: float) -> np.ndarray:
            return robot_from_leader(leader["pose"])

        wait_for(lambda: last_error(operator_at) < 1e-6, 10.0, "reaching the leader", procs)
        leader["pose"] = np.array([0.5, 0.7, 0.03])  # the operator moves: robot [0.5, -0.6, 0.03]
        wait_for(lambda: last_error(operator_at) < 1e-6, 10.0, "following the leader", procs)
        assert states[-1] == "CORRECTING"
        assert not resets, "executor reset before the handback"

        # 3. Handback with the 'h' key in teleop_node's terminal: reset, then the policy again.
        handback_index = len(commands)
        os.write(master, b"h")
        wait_for(lambda: interventions[-1] is False, 5.0, "ramp/intervention false", procs)
        wait_for(lambda: len(resets) == 1, 5.0, "the ramp/executor/reset call", procs)
        wait_for(lambda: last_error(policy_at) < 0.01, 10.0, "following the policy again", procs)
        assert states[-1] == "AUTONOMOUS"
        assert interventions[0] is False and True in interventions
    finally:
        stop_streams.set()
        streamer.join(2.0)
        codes = {"arbiter": arbiter.stop(), "teleop": teleop.stop()}
        terminal_after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)

    for name, proc in (("arbiter", arbiter), ("teleop", teleop)):
        assert codes[name] == 0, proc.stderr()
        assert "Traceback" not in proc.stderr(), proc.stderr()
    assert terminal_after == terminal_before, "teleop_node left the terminal in cbreak mode"
    assert "ramp/takeover false: policy in control" in teleop.stderr()

    # No jump anywhere: per control tick, |dq| <= max_velocity * dt (a lost message spans two).
    with lock:
        stamps = np.array([t for t, _ in commands])
        positions = np.array([q for _, q in commands])
    ticks = np.maximum(np.round(np.diff(stamps) / DT), 1.0)[:, None]
    per_tick = np.abs(np.diff(positions, axis=0)) / ticks
    assert np.all(per_tick <= MAX_VELOCITY * DT * (1 + 1e-6)), per_tick.max(axis=0)
    # The handovers really moved the robot (the check above is not vacuous).
    correcting = positions[takeover_index:handback_index]
    assert np.max(np.abs(correcting - correcting[0])) > 0.4
    assert np.any(per_tick[:, 0] > 0.5 * MAX_VELOCITY[0] * DT)
