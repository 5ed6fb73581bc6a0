"""InterventionArbiterNode and TeleopNode (gamepad mode) in one process over real DDS.

A gamepad on ``joy`` takes over (teleop forwards it to ``ramp/operator_joy``), jogs joint1,
pauses and resumes through ``ramp/pause``; the bridge's ``ramp/estop_active`` stops the output;
handing back without a chunk executor holds and says so in the diagnostics.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool

from ramp_common.conversions import make_joint_state, sec_to_stamp, stamp_to_sec
from ramp_common.diagnostics import WARN, level_to_int
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_hilr_teleop.intervention_arbiter import InterventionArbiterNode
from ramp_hilr_teleop.teleop_node import TeleopNode

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "154"))
JOINTS = ["joint1", "joint2", "gripper"]
HOME = np.array([0.1, -0.2, 0.03])
SHARED = [
    Parameter("joint_names", value=JOINTS),
    Parameter("position_lower", value=[-2.0, -2.0, 0.0]),
    Parameter("position_upper", value=[2.0, 2.0, 0.08]),
    Parameter("max_velocity", value=[1.0, 1.0, 0.1]),
    Parameter("max_acceleration", value=[8.0, 8.0, 1.0]),
]


@pytest.fixture
def context(monkeypatch: pytest.MonkeyPatch) -> Iterator[Context]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = Context()
    rclpy.init(context=ctx, domain_id=DOMAIN_ID)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def test_gamepad_takeover_jog_pause_estop_and_handback_without_executor(
    context: Context,
) -> None:
    arbiter = InterventionArbiterNode(
        context=context,
        parameter_overrides=[
            *SHARED,
            Parameter("control_rate_hz", value=100.0),
            Parameter("blend_time_s", value=0.1),
            Parameter("control_phase_s", value=0.003),
        ],
    )
    teleop = TeleopNode(
        context=context,
        parameter_overrides=[
            *SHARED,
            Parameter("mode", value="joy"),
            Parameter("rate_hz", value=50.0),
            Parameter("keyboard", value=False),
            Parameter("jog_speed", value=0.5),
        ],
    )
    probe = rclpy.create_node("arbiter_node_probe", context=context)
    # spin_once in a loop that ends on ``stop``: no callback is in flight when the nodes go.
    executor = SingleThreadedExecutor(context=context)
    for node in (arbiter, teleop, probe):
        executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()

    commands: list[np.ndarray] = []
    command_stamps: list[float] = []
    operator: list[JointState] = []
    interventions: list[bool] = []
    states: list[str] = []
    state_since: list[float] = []
    diagnostics: list[tuple[int, str]] = []

    def on_command(msg: JointState) -> None:
        command_stamps.append(stamp_to_sec(msg.header.stamp))
        commands.append(np.array(msg.position))

    def on_state(msg: String) -> None:
        state = json.loads(msg.data)
        state_since.append(state["since"])
        states.append(state["state"])

    probe.create_subscription(JointState, "joint_command", on_command, 100)
    probe.create_subscription(JointState, "ramp/operator_command", operator.append, 100)
    probe.create_subscription(
        Bool, "ramp/intervention", lambda m: interventions.append(m.data), LATCHED_QOS
    )
    probe.create_subscription(String, "ramp/arbiter_state", on_state, 50)
    probe.create_subscription(
        DiagnosticArray,
        "diagnostics",
        lambda m: diagnostics.extend(
            (level_to_int(s.level), s.message) for s in m.status if "arbiter" in s.name
        ),
        10,
    )
    joy_pub = probe.create_publisher(Joy, "joy", 10)
    estop_pub = probe.create_publisher(Bool, "ramp/estop_active", LATCHED_QOS)
    state_pub = probe.create_publisher(JointState, "joint_states", STATE_QOS)
    policy_pub = probe.create_publisher(JointState, "ramp/policy_command", COMMAND_QOS)
    pause = probe.create_client(SetBool, "ramp/pause")
    gamepad = {"axes": [0.0, 0.0], "buttons": [0, 0, 0, 0, 0, 0]}
    streaming = threading.Event()

    def stream() -> None:
        """The robot echoes the last command; the gamepad reports its state at 50 Hz."""
        while not streaming.is_set():
            stamp = sec_to_stamp(time.time())
            measured = commands[-1] if commands else HOME
            state_pub.publish(make_joint_state(JOINTS, measured, stamp))
            joy_pub.publish(Joy(axes=gamepad["axes"], buttons=gamepad["buttons"]))
            time.sleep(0.02)

    def press(button: int) -> None:
        gamepad["buttons"] = [int(i == button) for i in range(6)]
        time.sleep(0.1)
        gamepad["buttons"] = [0] * 6

    def call_pause(data: bool) -> SetBool.Response:
        assert pause.wait_for_service(timeout_sec=5.0)
        future = pause.call_async(SetBool.Request(data=data))
        wait_for(future.done, 5.0, "ramp/pause answer")
        return future.result()

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        estop_pub.publish(Bool(data=False))
        wait_for(lambda: len(commands) > 10, 10.0, "joint_command (holding the measured pose)")
        np.testing.assert_allclose(commands[-1], HOME, atol=1e-9)
        assert not operator, "operator command without a gamepad input or a takeover"

        # Takeover button (A): teleop forwards the gamepad, the arbiter takes over.
        press(0)
        wait_for(lambda: bool(interventions) and interventions[-1], 5.0, "intervention true")
        wait_for(lambda: len(operator) > 5, 5.0, "operator commands from the measured pose")
        np.testing.assert_allclose(operator[-1].position, HOME, atol=1e-9)
        assert list(operator[-1].name) == JOINTS

        # Jog joint1 up at full deflection (0.5 rad/s) for ~0.4 s.
        gamepad["axes"] = [0.0, 1.0]
        wait_for(lambda: commands[-1][0] > HOME[0] + 0.1, 5.0, "joint1 jogging up")
        gamepad["axes"] = [0.0, 0.0]
        time.sleep(0.3)
        jogged = commands[-1].copy()
        np.testing.assert_allclose(jogged[1:], HOME[1:], atol=1e-9)  # only joint1 moved
        np.testing.assert_allclose(operator[-1].position, jogged, atol=1e-9)

        # A policy command while the operator is in control changes nothing.
        policy_pub.publish(make_joint_state(JOINTS, HOME - 0.5, sec_to_stamp(time.time())))
        time.sleep(0.1)
        np.testing.assert_allclose(commands[-1], jogged, atol=1e-9)

        # Pause holds; resume returns to the operator.
        answer = call_pause(True)
        assert answer.success and "paused" in answer.message
        wait_for(lambda: states[-1] == "PAUSED", 2.0, "PAUSED")
        assert interventions[-1] is False
        assert call_pause(False).message == "resumed: CORRECTING"
        wait_for(lambda: interventions[-1] is True, 2.0, "intervention true again")

        # The bridge's e-stop: no output while active, PAUSED after the release.
        estop_pub.publish(Bool(data=True))
        wait_for(lambda: states[-1] == "ESTOP", 2.0, "ESTOP")
        estop_since = state_since[-1]
        time.sleep(0.3)
        assert command_stamps[-1] < estop_since, "joint_command published during the e-stop"
        count = len(commands)
        estop_pub.publish(Bool(data=False))
        wait_for(lambda: states[-1] == "PAUSED", 2.0, "PAUSED after the release")
        wait_for(lambda: len(commands) > count + 5, 2.0, "joint_command after the release")
        np.testing.assert_allclose(commands[-1], jogged, atol=1e-9)

        # Handback button (B) with no chunk executor serving the reset: hold and say so.
        press(1)
        wait_for(lambda: states[-1] == "AUTONOMOUS", 2.0, "AUTONOMOUS")
        wait_for(
            lambda: any(
                level == WARN and "ramp/executor/reset" in message for level, message in diagnostics
            ),
            4.0,
            "diagnostics: waiting for ramp/executor/reset",
        )
        np.testing.assert_allclose(commands[-1], jogged, atol=1e-9)

        # Its ticks lie on the monotonic clock's 10 ms grid, 3 ms in (control_phase_s).
        offset = (arbiter._loop.due_mono - 0.003) % 0.01
        assert min(offset, 0.01 - offset) < 1e-6, arbiter._loop.due_mono
    finally:
        streaming.set()
        streamer.join(2.0)
        stop.set()
        spinner.join(2.0)
        executor.shutdown()
        for node in (arbiter, teleop):
            node.close()
            node.destroy_node()
        probe.destroy_node()
