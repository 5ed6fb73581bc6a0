"""Stack monitor: watches the loop's topics from outside and feeds a RunRecorder (core/report.py).

It measures what a user sees on the wire: message rates, stamp-to-receive delays, end-to-end
latency from capture stamp to world-model state, to chunk, and to the first joint command after
each chunk, plus node diagnostics and ERROR log lines on /rosout.
"""

from __future__ import annotations

import contextlib
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_bringup.core.report import RunRecorder
from ramp_common.conversions import MessageError, joint_state_positions, stamp_to_sec
from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS

ROSOUT_ERROR = 40  # rcl_interfaces/Log ERROR


class StackMonitor(Node):
    """Subscribes to the stack's topics and records what it sees."""

    def __init__(
        self,
        recorder: RunRecorder,
        joint_names: list[str],
        camera_names: list[str],
        command_topic: str = "joint_command",
        watched_nodes: set[str] | None = None,
    ) -> None:
        super().__init__("ramp_monitor")
        self._rec = recorder
        self._joint_names = joint_names
        self._watched = watched_nodes
        group = ReentrantCallbackGroup()

        def sub(msg_type: type, topic: str, qos: QoSProfile, handler) -> None:
            self.create_subscription(msg_type, topic, handler, qos, callback_group=group)

        for camera in camera_names:
            topic = f"camera/{camera}/image_raw"
            sub(Image, topic, lambda m, t=topic: self._stamped(t, m), SENSOR_QOS)
        sub(JointState, "joint_states", self._on_joint_states, STATE_QOS)
        sub(Image, "ramp/wm_state", self._on_wm_state, STATE_QOS)
        sub(JointTrajectory, "ramp/action_chunk", self._on_chunk, COMMAND_QOS)
        sub(JointState, command_topic, self._on_command, COMMAND_QOS)
        self._command_topic = command_topic
        sub(DiagnosticArray, "diagnostics", self._on_diagnostics, 50)
        sub(Log, "/rosout", self._on_log, 100)

    def _stamped(self, topic: str, msg) -> float:
        now = time.time()
        stamp = stamp_to_sec(msg.header.stamp)
        self._rec.message(topic, now, stamp)
        return stamp

    def _on_joint_states(self, msg: JointState) -> None:
        self._stamped("joint_states", msg)
        with contextlib.suppress(MessageError):  # malformed states are the bridge's to report
            self._rec.joint_state(joint_state_positions(msg, self._joint_names))

    def _on_wm_state(self, msg: Image) -> None:
        stamp = self._stamped("ramp/wm_state", msg)
        self._rec.wm_state(time.time(), stamp)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        stamp = self._stamped("ramp/action_chunk", msg)
        self._rec.chunk(time.time(), stamp)

    def _on_command(self, msg: JointState) -> None:
        now = time.time()
        self._rec.message(self._command_topic, now, stamp_to_sec(msg.header.stamp))
        self._rec.command(now)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            level = status.level
            level = level[0] if isinstance(level, bytes) else int(level)
            values = {kv.key: kv.value for kv in status.values}
            self._rec.diagnostic(status.name, level, status.message, values)

    def _on_log(self, msg: Log) -> None:
        level = msg.level[0] if isinstance(msg.level, bytes) else int(msg.level)
        watched = self._watched is None or msg.name.split(".")[-1] in self._watched
        if level >= ROSOUT_ERROR and msg.name != self.get_name() and watched:
            self._rec.log_error(f"{msg.name}: {msg.msg}")
