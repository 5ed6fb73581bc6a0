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
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_bringup.core.report import RunRecorder
from ramp_bringup.core.smoothness import CommandSmoothness
from ramp_common.conversions import MessageError, joint_state_positions, stamp_from_cdr
from ramp_common.diagnostics import level_to_int
from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS

ROSOUT_ERROR = 40  # rcl_interfaces/Log ERROR
JOINT_SAMPLE_EVERY = 10  # joint motion is sampled from every 10th joint state


def record_stamped(recorder: RunRecorder, topic: str, raw: bytes) -> float:
    """Record one serialized message of ``topic`` (receive time now, its header stamp read from
    the bytes without deserializing); -> the stamp (s, 0.0 when it has none)."""
    now = time.time()
    try:
        stamp = stamp_from_cdr(raw)
    except MessageError:
        stamp = None
    recorder.message(topic, now, stamp)
    return stamp or 0.0


class StackMonitor(Node):
    """Subscribes to the stack's topics and records what it sees."""

    def __init__(
        self,
        recorder: RunRecorder,
        joint_names: list[str],
        camera_names: list[str],
        command_topic: str = "joint_command",
        watched_nodes: set[str] | None = None,
        smoothness: CommandSmoothness | None = None,
        arm_joints: list[str] | None = None,
    ) -> None:
        super().__init__("ramp_monitor")
        self._rec = recorder
        self._joint_names = joint_names
        self._smoothness = smoothness
        self._arm_joints = arm_joints or joint_names
        self._watched = watched_nodes
        group = ReentrantCallbackGroup()

        def sub(msg_type: type, topic: str, handler, qos: QoSProfile | int) -> None:
            self.create_subscription(msg_type, topic, handler, qos, callback_group=group, raw=True)

        # Raw subscriptions: the monitor reads stamps straight from the serialized bytes, so it
        # never deserializes an image and costs the stack as little as possible.
        for camera in camera_names:
            topic = f"camera/{camera}/image_raw"
            sub(Image, topic, lambda raw, t=topic: self._stamped(t, raw), SENSOR_QOS)
        sub(JointState, "joint_states", self._on_joint_states, STATE_QOS)
        sub(Image, "ramp/wm_state", self._on_wm_state, STATE_QOS)
        sub(JointTrajectory, "ramp/action_chunk", self._on_chunk, COMMAND_QOS)
        sub(JointState, command_topic, self._on_command, COMMAND_QOS)
        self._command_topic = command_topic
        self._joint_samples = 0
        group_cooked = ReentrantCallbackGroup()
        self.create_subscription(
            DiagnosticArray, "diagnostics", self._on_diagnostics, 50, callback_group=group_cooked
        )
        self.create_subscription(Log, "/rosout", self._on_log, 100, callback_group=group_cooked)

    def _stamped(self, topic: str, raw: bytes) -> float:
        return record_stamped(self._rec, topic, raw)

    def _on_joint_states(self, raw: bytes) -> None:
        self._stamped("joint_states", raw)
        self._joint_samples += 1
        if self._joint_samples % JOINT_SAMPLE_EVERY:
            return
        msg = deserialize_message(raw, JointState)
        with contextlib.suppress(MessageError):  # malformed states are the bridge's to report
            self._rec.joint_state(joint_state_positions(msg, self._joint_names))

    def _on_wm_state(self, raw: bytes) -> None:
        stamp = self._stamped("ramp/wm_state", raw)
        self._rec.wm_state(time.time(), stamp)

    def _on_chunk(self, raw: bytes) -> None:
        stamp = self._stamped("ramp/action_chunk", raw)
        self._rec.chunk(time.time(), stamp)

    def _on_command(self, raw: bytes) -> None:
        now = time.time()
        stamp = self._stamped(self._command_topic, raw)
        self._rec.command(now)
        if self._smoothness is not None and stamp > 0:
            msg = deserialize_message(raw, JointState)
            with contextlib.suppress(MessageError):  # the bridge reports malformed commands
                self._smoothness.add(stamp, joint_state_positions(msg, self._arm_joints))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            level = level_to_int(status.level)
            values = {kv.key: kv.value for kv in status.values}
            self._rec.diagnostic(status.name, level, status.message, values)

    def _on_log(self, msg: Log) -> None:
        level = msg.level[0] if isinstance(msg.level, bytes) else int(msg.level)
        watched = self._watched is None or msg.name.split(".")[-1] in self._watched
        if level >= ROSOUT_ERROR and msg.name != self.get_name() and watched:
            self._rec.log_error(f"{msg.name}: {msg.msg}")
