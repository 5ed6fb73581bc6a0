"""sim_bridge as its own process over real DDS: commands move the arm, cameras, reset, e-stop.

Starts ``python -m ramp_robots.sim_bridge`` with its own ROS domain id (localhost discovery), drives
it from an rclpy node in this process and checks joint_states, one frame per camera, the latched
task flag, sim/reset, ramp/estop and a clean exit (code 0, no traceback) on SIGINT.
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
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import image_to_numpy, stamp_to_sec
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "141"))
JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
HOME = np.array([0.0, 1.3, -1.45, 0.0, 1.0, 0.0, 0.04])
WIDTH, HEIGHT = 128, 96


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    return dict(os.environ)


@pytest.fixture
def bridge(tmp_path: Path, ros_env: dict[str, str]) -> Iterator[subprocess.Popen]:
    cmd = [
        sys.executable, "-m", "ramp_robots.sim_bridge", "--ros-args",
        "-p", f"camera_width:={WIDTH}",
        "-p", f"camera_height:={HEIGHT}",
        "-p", "camera_rate_hz:=10.0",
        "-p", "command_timeout_s:=0.3",
        "-p", "seed:=3",
    ]  # fmt: skip
    with open(tmp_path / "stderr.txt", "w") as err, open(tmp_path / "stdout.txt", "w") as out:
        proc = subprocess.Popen(cmd, env=ros_env, stdout=out, stderr=err, start_new_session=True)
    proc.stderr_path = tmp_path / "stderr.txt"
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def probe(ros_env: dict[str, str]) -> Iterator[Node]:
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    node = rclpy.create_node("sim_bridge_probe", context=context)
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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sim_bridge exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def call(node: Node, client, request, timeout_s: float = 5.0):
    assert client.wait_for_service(timeout_sec=timeout_s), f"service {client.srv_name} missing"
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert future.done(), f"no answer from {client.srv_name}"
    return future.result()


def test_sim_bridge_follows_commands_publishes_cameras_and_exits_cleanly(
    bridge: subprocess.Popen, probe: Node
) -> None:
    states: list[JointState] = []
    frames: dict[str, list[Image]] = {"front": [], "wrist": []}
    success: list[bool] = []
    estop_flags: list[bool] = []
    probe.create_subscription(JointState, "joint_states", states.append, STATE_QOS)
    for cam, received in frames.items():
        probe.create_subscription(Image, f"sim/camera/{cam}/image_raw", received.append, SENSOR_QOS)
    probe.create_subscription(
        Bool, "sim/task_success", lambda m: success.append(m.data), LATCHED_QOS
    )
    probe.create_subscription(
        Bool, "ramp/estop_active", lambda m: estop_flags.append(m.data), LATCHED_QOS
    )
    diagnostics: list[dict[str, str]] = []
    probe.create_subscription(
        DiagnosticArray,
        "diagnostics",
        lambda m: diagnostics.extend(
            {kv.key: kv.value for kv in st.values} for st in m.status if "sim_bridge" in st.name
        ),
        10,
    )
    command_pub = probe.create_publisher(JointState, "joint_command", COMMAND_QOS)
    reset = probe.create_client(Trigger, "sim/reset")
    estop = probe.create_client(SetBool, "ramp/estop")

    wait_for(lambda: len(states) > 10, 15.0, "joint_states", bridge)
    first = states[-1]
    assert list(first.name) == JOINTS
    np.testing.assert_allclose(first.position, HOME, atol=5e-3)
    assert len(first.velocity) == len(first.effort) == 7
    assert abs(stamp_to_sec(first.header.stamp) - time.time()) < 2.0

    # Command joint1 to 0.5 rad (with a malformed message in between, which must be dropped).
    target = HOME.copy()
    target[0] = 0.5
    command = JointState(name=JOINTS, position=target.tolist())
    for _ in range(3):
        command_pub.publish(JointState(name=["joint1"], position=[3.0]))
    streaming = threading.Event()

    def stream() -> None:
        while not streaming.is_set():
            command_pub.publish(command)
            time.sleep(0.02)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    try:
        wait_for(lambda: states[-1].position[0] > 0.45, 10.0, "joint1 to reach 0.5 rad", bridge)
    finally:
        streaming.set()
        streamer.join(2.0)
    assert max(s.position[0] for s in states) < 0.5 + 0.02, "overshoot past the target"

    wait_for(lambda: all(frames.values()), 10.0, "a frame from each camera", bridge)
    for cam, received in frames.items():
        image = received[-1]
        assert (image.width, image.height, image.encoding) == (WIDTH, HEIGHT, "rgb8")
        assert image.header.frame_id == cam
        assert image_to_numpy(image).std() > 5, f"{cam} image is blank"
    wait_for(lambda: bool(success), 5.0, "latched sim/task_success")
    assert success[-1] is False
    assert estop_flags and estop_flags[-1] is False

    wait_for(lambda: bool(diagnostics), 5.0, "sim_bridge diagnostics")
    for key in ("state_rate_hz", "physics_overruns", "safety_accepted", "estop"):
        assert key in diagnostics[-1], (key, diagnostics[-1])

    # E-stop: engaged, commands are rejected and the arm holds where it is.
    answer = call(probe, estop, SetBool.Request(data=True))
    assert answer.success
    wait_for(lambda: bool(estop_flags) and estop_flags[-1], 5.0, "estop_active true")
    held = states[-1].position[0]
    away = target.copy()
    away[0] = -0.5
    for _ in range(10):
        command_pub.publish(JointState(name=JOINTS, position=away.tolist()))
        time.sleep(0.03)
    time.sleep(0.3)
    assert abs(states[-1].position[0] - held) < 0.02
    assert call(probe, estop, SetBool.Request(data=False)).success
    wait_for(lambda: not estop_flags[-1], 5.0, "estop_active false")

    # Reset: the arm is back home and stays there.
    answer = call(probe, reset, Trigger.Request())
    assert answer.success and "cube at" in answer.message
    time.sleep(0.3)
    np.testing.assert_allclose(states[-1].position, HOME, atol=5e-3)

    os.killpg(bridge.pid, signal.SIGINT)
    assert bridge.wait(10) == 0
    stderr = bridge.stderr_path.read_text()
    assert "Traceback" not in stderr, stderr
    assert "dropping joint_command" in stderr  # the malformed command was reported


BROKEN_LOOP_SCRIPT = """
import sys
from ramp_robots import sim_bridge

MODE = sys.argv[1]
original = sim_bridge.SimBridgeNode._state_tick
ticks = [0]


def state_tick(self, now_wall):
    ticks[0] += 1
    if ticks[0] > 100:  # ~0.5 s of normal control first
        if MODE == "thread":
            raise SystemExit("injected: the state loop's thread ends")
        raise RuntimeError("injected: every state tick fails")
    original(self, now_wall)


sim_bridge.SimBridgeNode._state_tick = state_tick
raise SystemExit(sim_bridge.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("mode", ["every_tick", "thread"])
def test_a_bridge_whose_control_loop_dies_exits_non_zero_instead_of_living_on(
    tmp_path: Path, ros_env: dict[str, str], mode: str
) -> None:
    # Before: an exception on every tick (a NaN in the safety filter) or a dead loop thread
    # left sim_bridge running without control; ramp up saw a live process.
    script = tmp_path / "broken_bridge.py"
    script.write_text(BROKEN_LOOP_SCRIPT)
    cmd = [sys.executable, str(script), mode, "--ros-args", "-p", "camera_rate_hz:=5.0",
           "-p", f"camera_width:={WIDTH}", "-p", f"camera_height:={HEIGHT}"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    from ramp_common.node_tools import EXIT_NODE_FAILED

    assert proc.returncode == EXIT_NODE_FAILED, out[-3000:]
    assert "state loop" in out and "the robot is not controlled" in out, out[-3000:]
    assert "injected" in out, out[-3000:]
