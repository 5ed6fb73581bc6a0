"""piper_bridge over real DDS with the in-process fake PiPER (real piper_sdk, virtual CAN bus).

1. The bridge as its own process (``use_fake_hardware:=true``): commands move the arm, bad
   commands are dropped or clamped and counted, the e-stop holds, SIGINT exits cleanly.
2. The bridge node in this process, so the test can reach its fake arm: a silent arm is an ERROR
   on diagnostics with no motion sent, the arm's own e-stop shows on ``ramp/estop_active``, and
   both recover.
"""

from __future__ import annotations

import math
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

pytest.importorskip("piper_sdk")

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from ramp_common.diagnostics import ERROR, OK, level_to_int
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "151"))
JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
GRIPPER_UPPER = 0.07


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return dict(os.environ)


class Probe:
    """An rclpy node on its own context and spinning thread, recording what the bridge says."""

    def __init__(self, context: Context) -> None:
        self.node = rclpy.create_node("piper_bridge_probe", context=context)
        self.states: list[JointState] = []
        self.estop: list[bool] = []
        self.diagnostics: list[tuple[int, str, dict[str, str]]] = []
        self.node.create_subscription(JointState, "joint_states", self.states.append, STATE_QOS)
        self.node.create_subscription(
            Bool, "ramp/estop_active", lambda m: self.estop.append(m.data), LATCHED_QOS
        )
        self.node.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 10)
        self.commands = self.node.create_publisher(JointState, "joint_command", COMMAND_QOS)
        self.estop_client = self.node.create_client(SetBool, "ramp/estop")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "piper_bridge" in status.name:
                values = {kv.key: kv.value for kv in status.values}
                self.diagnostics.append((level_to_int(status.level), status.message, values))

    def position(self, joint: str) -> float:
        return self.states[-1].position[JOINTS.index(joint)]

    def call_estop(self, engage: bool) -> SetBool.Response:
        assert self.estop_client.wait_for_service(timeout_sec=5.0), "ramp/estop missing"
        future = self.estop_client.call_async(SetBool.Request(data=engage))
        wait_for(future.done, 5.0, "ramp/estop answer")
        return future.result()


class Streamer:
    """Publishes a joint_command at 100 Hz on a thread while active."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe
        self._target: list[float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def aim(self, target: list[float] | None) -> None:
        self._target = target

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            if self._target is not None:
                self._probe.commands.publish(JointState(name=JOINTS, position=self._target))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)


@pytest.fixture
def context(ros_env: dict[str, str]) -> Iterator[Context]:
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def spin_in_thread(executor, context: Context) -> Callable[[], None]:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(2.0)
        executor.shutdown()

    return halt


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, proc=None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"piper_bridge exited ({proc.returncode}) waiting for {what}")
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_bridge_process_with_fake_arm_follows_commands_and_exits_cleanly(
    tmp_path: Path, ros_env: dict[str, str], context: Context
) -> None:
    cmd = [
        sys.executable, "-m", "ramp_robots.piper_bridge", "--ros-args",
        "-p", "use_fake_hardware:=true",
        "-p", "command_timeout_s:=0.3",
        "-p", "feedback_timeout_s:=0.25",  # generous: a stall of this shared machine is no fault
    ]  # fmt: skip
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as err, open(tmp_path / "stdout.txt", "w") as out:
        bridge = subprocess.Popen(cmd, env=ros_env, stdout=out, stderr=err, start_new_session=True)
    probe = Probe(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe.node)
    halt = spin_in_thread(executor, context)
    streamer = Streamer(probe)
    try:
        wait_for(lambda: len(probe.states) > 10, 20.0, "joint_states", bridge)
        assert list(probe.states[-1].name) == JOINTS
        np.testing.assert_allclose(probe.states[-1].position, np.zeros(7), atol=1e-4)
        wait_for(lambda: bool(probe.estop), 5.0, "latched estop_active")
        assert probe.estop[-1] is False

        # Wrong names and NaN are dropped; the gripper beyond its range is clamped.
        wait_for(lambda: probe.commands.get_subscription_count() > 0, 5.0, "joint_command match")
        probe.commands.publish(JointState(name=["joint1"], position=[0.3]))
        probe.commands.publish(JointState(name=JOINTS, position=[math.nan] * 7))
        # both counted before the stream starts: under load a 200 Hz stream right behind them
        # could push them out of the writer's history (KEEP_LAST 5) before they are delivered
        wait_for(
            lambda: (
                bool(probe.diagnostics)
                and int(probe.diagnostics[-1][2].get("commands_malformed", 0)) == 2
            ),
            10.0,
            "both malformed commands counted",
            bridge,
        )
        target = [0.4, 0.6, -0.5, 0.2, -0.2, 0.3, 0.5]
        streamer.aim(target)
        wait_for(
            lambda: (
                abs(probe.position("joint1") - 0.4) < 1e-3
                and abs(probe.position("gripper") - GRIPPER_UPPER) < 1e-4
            ),
            10.0,
            "the arm at the target, the gripper at its limit",
            bridge,
        )
        np.testing.assert_allclose(probe.states[-1].position[:6], target[:6], atol=1e-3)
        assert max(s.position[6] for s in probe.states) <= GRIPPER_UPPER + 1e-5
        assert max(s.position[0] for s in probe.states) <= 0.4 + 1e-3, "overshoot"

        def settled() -> bool:
            # A diagnostics message from after the arrival (they come at 1 Hz).
            if not probe.diagnostics:
                return False
            level, _message, values = probe.diagnostics[-1]
            return level == OK and abs(float(values.get("sent_joint1", "nan")) - 0.4) < 1e-3

        wait_for(settled, 5.0, "diagnostics OK with the target sent", bridge)
        values = probe.diagnostics[-1][2]
        assert int(values["commands_malformed"]) == 2
        assert int(values["commands_clamped_to_limits"]) >= 1
        assert float(values["sent_gripper"]) == pytest.approx(GRIPPER_UPPER, abs=1e-5)
        assert float(values["feedback_rate_hz_joints"]) > 50

        # Software e-stop: commands are refused and the arm holds.
        assert probe.call_estop(True).success
        wait_for(lambda: probe.estop[-1] is True, 5.0, "estop_active true")
        streamer.aim([-0.4, *target[1:]])
        time.sleep(0.3)
        assert probe.position("joint1") == pytest.approx(0.4, abs=1e-3)
        assert probe.call_estop(False).success
        wait_for(lambda: probe.estop[-1] is False, 5.0, "estop_active false")
        wait_for(lambda: probe.position("joint1") < 0.0, 5.0, "motion after release", bridge)
    finally:
        streamer.stop()
        halt()
        probe.node.destroy_node()
        if bridge.poll() is None:
            os.killpg(bridge.pid, signal.SIGINT)
        try:
            code = bridge.wait(10)
        finally:
            if bridge.poll() is None:
                os.killpg(bridge.pid, signal.SIGKILL)
                bridge.wait(5)
    stderr = stderr_path.read_text()
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "dropping joint_command" in stderr
    assert "beyond the position limits" in stderr


def test_silent_arm_and_arm_estop_are_faults_that_recover(context: Context) -> None:
    from ramp_robots.piper_bridge import PiperBridgeNode

    bridge = PiperBridgeNode(
        context=context,
        parameter_overrides=[
            Parameter("use_fake_hardware", value=True),
            Parameter("feedback_timeout_s", value=0.25),
            Parameter("command_timeout_s", value=0.3),
        ],
    )
    fake = bridge.fake_hardware
    probe = Probe(context)
    executor = SingleThreadedExecutor(context=context)  # rclpy#1452: the multi one busy-spins
    executor.add_node(bridge)
    executor.add_node(probe.node)
    halt = spin_in_thread(executor, context)
    streamer = Streamer(probe)
    try:
        wait_for(lambda: len(probe.states) > 5 and bool(probe.estop), 10.0, "joint_states")
        target = [0.3, 0.4, -0.4, 0.0, 0.0, 0.0, 0.02]
        streamer.aim(target)
        wait_for(lambda: abs(probe.position("joint1") - 0.3) < 1e-3, 5.0, "motion")

        # The arm goes silent: ERROR at once, no targets reach the arm, joint_states stop.
        fake.go_silent()
        silent_at = time.monotonic()
        wait_for(
            lambda: any(
                lvl == ERROR and "comm timeout" in msg for lvl, msg, _ in probe.diagnostics
            ),
            2.0,
            "diagnostics ERROR 'comm timeout'",
        )
        print(f"comm timeout on diagnostics after {time.monotonic() - silent_at:.3f} s")
        frames, states = fake.frames_received(0x155), len(probe.states)
        streamer.aim([-0.3, *target[1:]])
        time.sleep(0.3)
        assert fake.frames_received(0x155) == frames, "motion sent to a silent arm"
        assert len(probe.states) <= states + 3, "joint_states from a silent arm"

        # It answers again: OK, holding where it is, then following new commands.
        fake.resume()
        wait_for(lambda: len(probe.states) > states + 5, 2.0, "joint_states again")
        wait_for(lambda: probe.position("joint1") < 0.0, 5.0, "motion after recovery")
        wait_for(lambda: probe.diagnostics[-1][0] == OK, 3.0, "diagnostics OK")
        assert probe.diagnostics[-1][2]["faults_active"] == "none"

        # The arm's own e-stop: estop_active true, ERROR, no motion; release recovers.
        fake.press_estop()
        wait_for(lambda: probe.estop[-1] is True, 2.0, "estop_active from the arm")
        wait_for(
            lambda: probe.diagnostics[-1][0] == ERROR and "estop" in probe.diagnostics[-1][1],
            2.0,
            "diagnostics ERROR 'estop'",
        )
        frames = fake.frames_received(0x155)
        time.sleep(0.1)
        assert fake.frames_received(0x155) == frames
        fake.release_estop()
        wait_for(lambda: probe.estop[-1] is False, 2.0, "estop_active cleared")
        wait_for(lambda: fake.frames_received(0x155) > frames, 2.0, "targets sent again")
    finally:
        streamer.stop()
        halt()
        bridge.close()
        bridge.destroy_node()
        probe.node.destroy_node()
    assert fake.frames_received(0x155) > 0
    assert not any(t.name.startswith("fake_piper") for t in threading.enumerate())
