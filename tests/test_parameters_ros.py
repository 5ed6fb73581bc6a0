"""Parameters over real DDS, the way ``ros2 param set`` changes them (rcl_interfaces SetParameters).

The policy node runs in its own rclpy context; a probe node in another feeds it world-model
states and joint states, watches its chunks and diagnostics, and calls its
``set_parameters`` service: a read-only parameter is refused with a reason naming it and keeps
its value; a reloadable one (``max_input_age_s``) takes effect: at 1 us every input is stale,
chunks stop and the node says it is waiting for stale inputs; back at 0.25 s chunks resume.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import make_joint_state, numpy_to_image, sec_to_stamp
from ramp_common.qos import COMMAND_QOS, STATE_QOS
from ramp_models.model_card import ModelCard
from tests.rosutil import call, probe_node, spun_node, wait_for

pytestmark = pytest.mark.ros

MODEL_DIR = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / "demo"
NODE = "param_test_policy"


def _policy(card: Path, joints: list[str]) -> Callable[[Context], Node]:
    def make(context: Context) -> Node:
        from ramp_policy_node.policy_node import PolicyNode

        return PolicyNode(
            NODE,
            context=context,
            parameter_overrides=[
                Parameter("model_card", value=str(card)),
                Parameter("joint_names", value=joints),
                Parameter("camera_names", value=["front", "wrist"]),
            ],
        )

    return make


def _set(probe, name: str, value: ParameterValue):
    request = SetParameters.Request(parameters=[ParameterMsg(name=name, value=value)])
    return call(probe, SetParameters, f"{NODE}/set_parameters", request).results[0]


def _double(value: float) -> ParameterValue:
    return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)


def test_read_only_refused_with_reason_reloadable_takes_effect() -> None:
    card_path = MODEL_DIR / "policy.yaml"
    if not card_path.is_file():
        pytest.skip(f"{card_path} missing: run scripts/setup.sh (exports the demo models)")
    card = ModelCard.load(card_path)
    joints = list(card.joints)
    wm_shape = tuple(card.input_by_role("wm_state").shape[1:])
    chunks: list[float] = []
    statuses: list[str] = []

    with spun_node(_policy(card_path, joints)), probe_node("param_probe") as probe:
        probe.create_subscription(
            JointTrajectory,
            "ramp/action_chunk",
            lambda _msg: chunks.append(time.monotonic()),
            COMMAND_QOS,
        )

        def on_diag(msg: DiagnosticArray) -> None:
            statuses.extend(s.message for s in msg.status if NODE in s.name)

        probe.create_subscription(DiagnosticArray, "diagnostics", on_diag, 10)
        wm_pub = probe.create_publisher(Image, "ramp/wm_state", STATE_QOS)
        js_pub = probe.create_publisher(JointState, "joint_states", STATE_QOS)
        rng = np.random.default_rng(0)

        def feed() -> None:
            stamp = sec_to_stamp(time.time())
            latent = rng.standard_normal(wm_shape).astype(np.float32)
            js_pub.publish(make_joint_state(joints, np.zeros(len(joints)), stamp))
            wm_pub.publish(numpy_to_image(latent, "32FC1", stamp, "probe"))

        probe.create_timer(0.05, feed)
        wait_for(lambda: len(chunks) >= 3, 20.0, "chunks from the policy")

        # read-only: refused, with a reason naming it; the value stays
        result = _set(probe, "rate_hz", _double(50.0))
        assert not result.successful
        assert "rate_hz" in result.reason and "read-only" in result.reason, result.reason
        got = call(
            probe, GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=["rate_hz"])
        )
        assert got.values[0].double_value == pytest.approx(10.0)
        # a reloadable parameter out of its bounds: refused, naming it
        result = _set(probe, "max_input_age_s", _double(-1.0))
        assert not result.successful and "max_input_age_s" in result.reason, result.reason

        # reloadable: takes effect; every input is older than 1 us -> no chunks, node waits
        result = _set(probe, "max_input_age_s", _double(1e-6))
        assert result.successful, result.reason
        time.sleep(0.3)  # a chunk already in flight may still arrive
        before = len(chunks)
        wait_for(
            lambda: any("stale inputs" in s for s in statuses[-3:]),
            5.0,
            "diagnostics saying the inputs are stale",
        )
        time.sleep(1.0)
        assert len(chunks) == before, "chunks went on with max_input_age_s = 1 us"

        result = _set(probe, "max_input_age_s", _double(0.25))
        assert result.successful, result.reason
        wait_for(lambda: len(chunks) >= before + 3, 10.0, "chunks again after the change back")


def test_chunk_executor_limits_are_read_only() -> None:
    """``ros2 param set /chunk_executor max_velocity ...`` is refused (it used to report success
    and change nothing)."""
    from ramp_policy_node.chunk_executor_node import ChunkExecutorNode

    limits = {
        "joint_names": ["a", "b"],
        "position_lower": [-1.0, -1.0],
        "position_upper": [1.0, 1.0],
        "max_velocity": [1.0, 1.0],
        "max_acceleration": [5.0, 5.0],
        "gripper_joints": [""],
    }

    def make(context: Context) -> Node:
        overrides = [Parameter(k, value=v) for k, v in limits.items()]
        return ChunkExecutorNode(NODE, context=context, parameter_overrides=overrides)

    with spun_node(make), probe_node("param_probe") as probe:
        value = ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[9.0, 9.0]
        )
        result = _set(probe, "max_velocity", value)
        assert not result.successful
        assert "max_velocity" in result.reason and "read-only" in result.reason, result.reason
        request = GetParameters.Request(names=["max_velocity"])
        got = call(probe, GetParameters, f"{NODE}/get_parameters", request)
        assert list(got.values[0].double_array_value) == [1.0, 1.0]
