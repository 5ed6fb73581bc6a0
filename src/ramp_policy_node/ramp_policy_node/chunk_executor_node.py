"""chunk_executor: action chunks -> one joint position command per control tick.

Thin rclpy adapter over ``ramp_policy_node.core.executor.ChunkExecutor`` (time alignment,
latency compensation, splicing, limits, watchdog, e-stop). The control loop runs on its own
thread with absolute deadlines (``ramp_common.rate_loop.RateLoop``), not on an rclpy timer.

Subscribes ``ramp/action_chunk`` (JointTrajectory), ``joint_states`` (measured pose; the newest
is taken at each control tick, ``ramp_common.intake``),
``ramp/estop_active`` (std_msgs/Bool, latched, from the robot bridge) and ``ramp/node_exited``
(std_msgs/String, from the supervisor: a node of ``hold_on_exit_of`` exiting -> hold at once).
Publishes the per-tick command (sensor_msgs/JointState, positions in rad / m) on
``command_topic`` (``joint_command`` when no intervention arbiter runs, ``ramp/policy_command``
behind one).
"""

from __future__ import annotations

import time
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import (
    MessageError,
    joint_state_positions,
    make_joint_state,
    sec_to_stamp,
    stamp_to_sec,
    trajectory_to_numpy,
)
from ramp_common.diagnostics import OK, WARN, DiagnosticsPublisher, NodeHealth
from ramp_common.hops import HopTimer
from ramp_common.intake import Intake
from ramp_common.node_exits import subscribe_node_exits
from ramp_common.node_tools import LogOnce, run_node
from ramp_common.params import (
    CONTROL_PHASE_EXECUTOR_S,
    Param,
    ParamSet,
    control_phase_param,
    control_rt_priority_param,
    hold_on_exit_param,
    joint_limit_params,
    joint_limits,
)
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop
from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import GRIPPER_MODES, ChunkExecutor
from ramp_policy_node.core.splice import SPLICE_STRATEGIES as STRATEGIES

PARAMS: tuple[Param, ...] = (
    Param("joint_names", None, "Joint order.", type="string[]"),
    *joint_limit_params(),
    Param("control_rate_hz", 200.0, "Control rate.", unit="Hz", positive=True),
    control_rt_priority_param(),
    control_phase_param(CONTROL_PHASE_EXECUTOR_S),
    Param("strategy", "replace", "Chunk splicing strategy.", choices=tuple(STRATEGIES)),
    Param("gripper_joints", ["gripper"], "Joints never blended (open/close).", type="string[]"),
    Param(
        "watchdog_timeout_s",
        0.5,
        "No fresh chunk for this long -> decelerate and hold.",
        unit="s",
        positive=True,
    ),
    Param("crossfade_steps", 10, "crossfade: length of the blend.", unit="chunk steps", low=1),
    Param(
        "ensemble_decay", 0.1, "ensemble: weight exp(-decay * i) of the i-th oldest chunk.", low=0.0
    ),
    Param(
        "inference_delay_s",
        0.05,
        "rtc: committed prefix of the old chunk; set to the measured inference latency.",
        unit="s",
        low=0.0,
    ),
    Param(
        "ramp_in_velocity_scale",
        0.5,
        "Velocity-limit scale while ramping in from the measured pose (start, e-stop "
        "release, handover).",
        positive=True,
        high=1.0,
    ),
    Param("gripper_mode", "switch", "Gripper at a splice: switch or blend.", choices=GRIPPER_MODES),
    Param("command_topic", "joint_command", "Where per-tick commands are published."),
    hold_on_exit_param(
        "makes the executor brake to a hold at once instead of playing its chunk until the "
        "watchdog; chunks observed before the exit are refused."
    ),
)


class ChunkExecutorNode(Node):
    """Executes action chunks at ``control_rate_hz``."""

    def __init__(self, node_name: str = "chunk_executor", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = p = ParamSet(self, PARAMS)
        names = list(p["joint_names"])
        limits = joint_limits(p, names)
        rate = float(p["control_rate_hz"])
        strategy = p["strategy"]
        grippers = list(p["gripper_joints"])
        unknown = [g for g in grippers if g and g not in names]
        if unknown:
            raise ValueError(f"gripper_joints {unknown} are not in joint_names {names}")
        watchdog = float(p["watchdog_timeout_s"])
        crossfade_steps = p["crossfade_steps"]
        ensemble_decay = p["ensemble_decay"]
        inference_delay_s = p["inference_delay_s"]
        ramp_in_scale = p["ramp_in_velocity_scale"]
        gripper_mode = p["gripper_mode"]
        command_topic = p["command_topic"]
        self._names = names
        self._executor = ChunkExecutor(
            limits,
            1.0 / rate,
            strategy=strategy,
            gripper_indices=[names.index(g) for g in grippers if g],
            watchdog_timeout_s=watchdog,
            crossfade_steps=crossfade_steps,
            ensemble_decay=ensemble_decay,
            inference_delay_s=inference_delay_s,
            ramp_in_max_velocity_scale=ramp_in_scale,
            gripper_mode=gripper_mode,
        )
        self._health = NodeHealth()
        self._health.set_value("strategy", strategy)
        self._log_once = LogOnce(self)
        self._estop_engaged = False

        group = ReentrantCallbackGroup()
        self.create_subscription(
            JointTrajectory, "ramp/action_chunk", self._on_chunk, COMMAND_QOS, callback_group=group
        )
        # read at each control tick, not dispatched per message (ramp_common.intake)
        self._joint_states = Intake(self, JointState, "joint_states", STATE_QOS)
        self.create_subscription(
            Bool, "ramp/estop_active", self._on_estop, LATCHED_QOS, callback_group=group
        )
        self.create_service(Trigger, "ramp/executor/reset", self._on_reset, callback_group=group)
        self._upstream = {name for name in p["hold_on_exit_of"] if name}
        if self._upstream:
            subscribe_node_exits(self, self._on_node_exited, callback_group=group)
        self._pub = self.create_publisher(JointState, command_topic, COMMAND_QOS)
        self._hops = HopTimer(("chunk_arrival", "align", "capture_to_tick"))
        self._pending_arrival: tuple[float, float] | None = None
        """(arrival wall time, observation stamp) of the newest chunk no tick has used yet, s."""
        self._loop = RateLoop(
            1.0 / rate,
            self._control_tick,
            name="chunk_executor_control",
            realtime_priority=int(self.params["control_rt_priority"]),
            phase_s=float(self.params["control_phase_s"]),
        )
        self._loop.start()
        self.create_timer(1.0, self._update_health, callback_group=group)
        self._diag = DiagnosticsPublisher(self, self._health)

    def _on_chunk(self, msg: JointTrajectory) -> None:
        now = time.time()
        try:
            t_from_start, positions = trajectory_to_numpy(msg, self._names)
        except MessageError as exc:
            self._health.count("rejected_chunks")
            self._log_once.warn(f"chunk-{exc}", f"rejecting action chunk: {exc}")
            return
        chunk = ActionChunk(
            stamp=stamp_to_sec(msg.header.stamp),
            t_from_start=t_from_start,
            positions=positions,
            model_id=msg.header.frame_id,
        )
        reason = self._executor.submit(chunk, now)
        if reason is None:
            self._hops.add("chunk_arrival", now - chunk.stamp)
            self._pending_arrival = (now, chunk.stamp)
        else:
            self._log_once.warn(
                f"chunk-{reason.split(':')[0]}", f"rejecting action chunk: {reason}"
            )

    def _on_joint_state(self, msg: JointState, received_s: float) -> None:
        try:
            q = joint_state_positions(msg, self._names)
        except MessageError as exc:
            self._health.count("dropped_joint_states")
            self._log_once.warn("joints", f"dropping joint_states: {exc}")
            return
        self._executor.update_measured(q, received_s)

    def _on_estop(self, msg: Bool) -> None:
        engaged = bool(msg.data)
        self._executor.set_estop(engaged, time.time())
        if engaged != self._estop_engaged:
            self.get_logger().warning(f"e-stop {'ENGAGED' if engaged else 'released'}")
        self._estop_engaged = engaged

    def _on_node_exited(self, name: str) -> None:
        if name in self._upstream:
            self._executor.upstream_lost(time.time())
            self.get_logger().warning(
                f"{name} exited: holding until a chunk observed after its exit arrives"
            )

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._executor.reset_to_measured(time.time())
        response.success = True
        response.message = "chunks dropped; resuming from the measured pose"
        return response

    def _control_tick(self, now: float) -> None:
        # the core steps at the tick's due time and the command is stamped with it: positions
        # and stamps stay on the control period's grid for the followers (Finding 11)
        due = self._loop.due_wall or now
        newest = self._joint_states.take_newest()
        if newest is not None:
            self._on_joint_state(newest.msg, newest.received_s)
        command = self._executor.step(due)
        pending, self._pending_arrival = self._pending_arrival, None
        if pending is not None:  # the first tick that can use the newest chunk
            arrival, observation_stamp = pending
            self._hops.add("align", now - arrival)
            self._hops.add("capture_to_tick", now - observation_stamp)
        if command is None:
            return
        self._pub.publish(make_joint_state(self._names, command, sec_to_stamp(due)))

    def _update_health(self) -> None:
        stats = self._executor.stats()
        for key, value in stats.items():
            self._health.set_value(key, value)
        jitter = self._loop.jitter.percentiles_ms()
        for key, value in jitter.items():
            self._health.set_value(f"loop_jitter_ms_{key}", value)
        self._health.set_value("loop_overruns", self._loop.overruns)
        self._health.set_value("loop_realtime", self._loop.realtime)
        if self._loop.realtime_error:
            self._log_once.warn("rt", self._loop.realtime_error)
        self._hops.report(self._health)
        if self._loop.errors:
            self._health.set_status(WARN, f"control loop errors: {self._loop.last_error}")
        else:
            self._health.set_status(OK, str(stats.get("state", "")))

    def close(self) -> None:
        """Stop the control loop (called on shutdown)."""
        self._loop.stop()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``chunk_executor``."""
    return run_node(ChunkExecutorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
