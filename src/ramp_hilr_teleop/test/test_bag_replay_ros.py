"""ramp-bag replay over real DDS against a stand-in policy.

The stand-in answers each replayed joint state with a one-step chunk: the state's positions plus
0.5, stamped with the state's stamp. Mapped back to bag time, that chunk is compared with the
executed joint_command of the bag (which leads the state by 10 ms), so the reported action MAE
must be 0.5 within the synthetic lead (< 0.004) - a wrong time mapping would show as more.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import joint_state_positions, numpy_to_trajectory
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_hilr_teleop.bag_cli import main
from ramp_hilr_teleop.core.synthetic import synthetic_episode

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "153"))
OFFSET = 0.5


@pytest.fixture
def stand_in_policy(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list]]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("stand_in_policy", context=context)
    pub = node.create_publisher(JointTrajectory, "ramp/action_chunk", COMMAND_QOS)
    seen: dict[str, list] = {"tasks": [], "states": []}
    names = ["joint1", "joint2", "gripper"]

    def on_state(msg: JointState) -> None:
        seen["states"].append(msg)
        if len(seen["states"]) % 20:  # a chunk at 10 Hz from 200 Hz states
            return
        pos = joint_state_positions(msg, names) + OFFSET
        pub.publish(numpy_to_trajectory(names, np.zeros(1), pos[None, :], msg.header.stamp, "p1"))

    # a deep reader queue: the replay publishes 400 states in 1 s; under load the 10-deep
    # STATE_QOS queue dropped up to 42 of them (seen in CI-like runs, load average 13)
    deep = QoSProfile(
        history=STATE_QOS.history,
        depth=1000,
        reliability=STATE_QOS.reliability,
        durability=STATE_QOS.durability,
    )
    node.create_subscription(JointState, "joint_states", on_state, deep)
    node.create_subscription(
        String, "ramp/task", lambda m: seen["tasks"].append(m.data), LATCHED_QOS
    )
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_replay_scores_chunks_against_executed_actions(
    tmp_path: Path, stand_in_policy: dict[str, list]
) -> None:
    ep = synthetic_episode(tmp_path / "bag", duration_s=2.0, cameras=("front",),
                           interventions=[(1.0, 1.5)])  # fmt: skip
    out = tmp_path / "report"
    code = main(["replay", str(ep.path), "--rate", "2.0", "--out", str(out), "--wait-s", "10"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "replay.png").stat().st_size > 10_000
    assert stand_in_policy["tasks"] == ["pick the red cube"]
    # the publisher's keep-last queue may still drop a state under heavy load; the score must
    # not care, so only "most states arrived, none twice" is asserted
    assert 300 <= len(stand_in_policy["states"]) <= 400
    assert report["chunks_received"] >= 15
    assert report["chunks_compared"] >= report["chunks_received"] - 1
    assert report["mae"] == pytest.approx(OFFSET, abs=0.004)
    assert report["mae_policy"] == pytest.approx(OFFSET, abs=0.004)
    assert report["mae_intervention"] == pytest.approx(OFFSET, abs=0.004)
    assert report["model_ids"] == ["p1"] and report["rate"] == 2.0
