"""intervention_arbiter: forwards the policy or the operator command to ``joint_command``.

Thin rclpy adapter over :class:`ramp_hilr_teleop.core.arbiter.InterventionArbiter` (states,
smooth handover, limits, staleness hold, auto-takeover, segments). The output runs on its own
thread with absolute deadlines (``ramp_common.rate_loop.RateLoop``) at ``control_rate_hz``, using
the latest command of the active source.

Subscribes ``ramp/policy_command`` and ``ramp/operator_command`` (sensor_msgs/JointState; the
operator command may carry a subset of the joints), ``joint_states`` (measured pose; the policy
commands and the newest joint state are taken at each control tick, ``ramp_common.intake``),
``ramp/estop_active`` (std_msgs/Bool, latched, from the bridge) and ``ramp/operator_joy``
(sensor_msgs/Joy: takeover / handback / pause buttons), ``ramp/node_exited`` (std_msgs/String,
from the supervisor: the exit of a source's sender makes that source stale at once). Services
``ramp/takeover`` (SetBool: true takes over, false hands back) and ``ramp/pause`` (SetBool: true
pauses, false resumes).
Calls ``ramp/executor/reset`` (Trigger, chunk_executor) before following the policy after a
handback or resume. Publishes ``joint_command`` (JointState, rad / m, stamp = tick wall time),
``ramp/intervention`` (Bool, latched: true while CORRECTING), ``ramp/arbiter_state``
(std_msgs/String, latched: JSON ``{"state", "since", "reason"}`` on every change) and diagnostics.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import (
    MessageError,
    joint_state_positions,
    make_joint_state,
    sec_to_stamp,
    stamp_to_sec,
)
from ramp_common.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher, NodeHealth
from ramp_common.hops import HopTimer
from ramp_common.intake import Intake
from ramp_common.node_exits import publisher_names, subscribe_node_exits
from ramp_common.node_tools import LogOnce, run_node
from ramp_common.params import (
    CONTROL_PHASE_ARBITER_S,
    Param,
    ParamSet,
    control_phase_param,
    control_rt_priority_param,
    hold_on_exit_param,
    joint_limit_params,
    joint_limits,
    playout_params,
)
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop
from ramp_hilr_teleop.core.arbiter import (
    ArbiterState,
    ArbiterStatus,
    InterventionArbiter,
    RequestResult,
    Source,
    select_joints,
)
from ramp_hilr_teleop.core.teleop import ButtonEdges

RESET_RETRY_S = 1.0
"""A pending executor reset call is repeated after this long without an answer."""


PARAMS: tuple[Param, ...] = (
    Param("joint_names", None, "Joint order.", type="string[]"),
    *joint_limit_params(),
    Param("control_rate_hz", 200.0, "Output rate of joint_command.", unit="Hz", positive=True),
    control_rt_priority_param(),
    control_phase_param(CONTROL_PHASE_ARBITER_S),
    Param("blend_time_s", 0.5, "Cosine blend at every handover (0 = none).", unit="s", low=0.0),
    Param(
        "auto_takeover_threshold",
        0.0,
        "Operator command moving this far from its synced pose takes over (0 = off).",
        unit="rad / m",
        low=0.0,
    ),
    Param(
        "source_timeout_s",
        0.05,
        "Active source silent this long -> hold (the executor sends at 200 Hz: 10 ticks).",
        unit="s",
        positive=True,
    ),
    *playout_params(),
    hold_on_exit_param(
        "makes the arbiter, while the policy drives, brake to a hold at once from its own "
        "output (not one stream behind the executor's braking) and drive again after an "
        "executor reset, on the restarted pipeline's chunks."
    ),
    Param("joy_takeover_button", 0, "ramp/operator_joy button: take over."),
    Param("joy_handback_button", 1, "ramp/operator_joy button: hand back."),
    Param("joy_pause_button", 2, "ramp/operator_joy button: pause/resume (-1 = off)."),
)


SOURCE_TOPICS = {Source.POLICY: "ramp/policy_command", Source.OPERATOR: "ramp/operator_command"}
"""The topic of each source, relative to the node's namespace."""


class InterventionArbiterNode(Node):
    """Chooses the source of ``joint_command`` (see the module docstring)."""

    def __init__(self, node_name: str = "intervention_arbiter", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = p = ParamSet(self, PARAMS)
        names = list(p["joint_names"])
        limits = joint_limits(p, names)
        rate = float(p["control_rate_hz"])
        blend_time = float(p["blend_time_s"])
        threshold = float(p["auto_takeover_threshold"])
        timeout = float(p["source_timeout_s"])
        self._buttons = {
            "takeover": int(p["joy_takeover_button"]),
            "handback": int(p["joy_handback_button"]),
            "pause": int(p["joy_pause_button"]),
        }
        self._names = names
        self._upstream = {name for name in p["hold_on_exit_of"] if name}
        self._arbiter = InterventionArbiter(
            limits,
            1.0 / rate,
            blend_time_s=blend_time,
            source_timeout_s=timeout,
            auto_takeover_threshold=threshold,
            playout_delay_s=float(p["playout_delay_s"]),
            max_playout_delay_s=float(p["max_playout_delay_s"]),
        )
        self._health = NodeHealth()
        self._hops = HopTimer(("forward", "policy_arrival"))
        self._policy_sent_at: float | None = None
        """Stamp (the executor's tick time, s) of the newest policy command not yet forwarded."""
        self._log_once = LogOnce(self)
        self._edges = ButtonEdges()
        self._published_version = -1
        self._reset_lock = threading.Lock()
        self._reset_call: tuple[int, float] | None = None  # (token, sent at monotonic s)

        group = ReentrantCallbackGroup()
        # read at each control tick, not dispatched per message (ramp_common.intake)
        self._policy_intake = Intake(self, JointState, "ramp/policy_command", COMMAND_QOS)
        self._joint_states = Intake(self, JointState, "joint_states", STATE_QOS)
        self.create_subscription(
            JointState,
            "ramp/operator_command",
            self._on_operator,
            COMMAND_QOS,
            callback_group=group,
        )
        self.create_subscription(
            Bool, "ramp/estop_active", self._on_estop, LATCHED_QOS, callback_group=group
        )
        self.create_subscription(Joy, "ramp/operator_joy", self._on_joy, 10, callback_group=group)
        subscribe_node_exits(self, self._on_node_exited, callback_group=group)
        self.create_service(SetBool, "ramp/takeover", self._on_takeover, callback_group=group)
        self.create_service(SetBool, "ramp/pause", self._on_pause, callback_group=group)
        self._reset_client = self.create_client(
            Trigger, "ramp/executor/reset", callback_group=group
        )
        self._command_pub = self.create_publisher(JointState, "joint_command", COMMAND_QOS)
        self._intervention_pub = self.create_publisher(Bool, "ramp/intervention", LATCHED_QOS)
        self._state_pub = self.create_publisher(String, "ramp/arbiter_state", LATCHED_QOS)
        self._publish_status(self._arbiter.status())
        self.create_timer(0.1, self._request_executor_reset, callback_group=group)
        self._loop = RateLoop(
            1.0 / rate,
            self._control_tick,
            name="intervention_arbiter_control",
            realtime_priority=int(p["control_rt_priority"]),
            phase_s=float(p["control_phase_s"]),
        )
        self._loop.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)
        self.get_logger().info(
            f"arbitrating {names} at {rate} Hz; blend {blend_time} s, source timeout {timeout} s, "
            f"auto-takeover {'off' if threshold <= 0 else f'{threshold} rad'}"
        )

    # ------------------------------------------------------------------ inputs

    def _on_policy(self, msg: JointState, received_s: float) -> None:
        try:
            q = joint_state_positions(msg, self._names)
            sent_at = stamp_to_sec(msg.header.stamp)
            self._arbiter.policy_command(q, received_s, sent_at=sent_at)
            self._policy_sent_at = sent_at
            # the executor's tick -> here: its lateness, publish and one DDS hop; the phase of
            # this loop behind the executor's (control_phase_s) must cover it
            self._hops.add("policy_arrival", received_s - sent_at)
        except (MessageError, ValueError) as exc:
            self._health.count("policy_commands_rejected")
            self._log_once.warn("policy", f"rejecting ramp/policy_command: {exc}")

    def _on_operator(self, msg: JointState) -> None:
        try:
            q, mask = select_joints(self._names, msg.name, msg.position)
            self._arbiter.operator_command(
                q, time.time(), mask=mask, sent_at=stamp_to_sec(msg.header.stamp)
            )
        except ValueError as exc:
            self._health.count("operator_commands_rejected")
            self._log_once.warn("operator", f"rejecting ramp/operator_command: {exc}")

    def _on_node_exited(self, name: str) -> None:
        """The supervisor announced that node ``name`` exited: a source it published is lost
        now, not after ``source_timeout_s``; a node of ``hold_on_exit_of`` makes the arbiter
        hold while the policy drives (``ramp_common.node_exits``)."""
        # what the policy sent before the exit goes in before the hold
        with self._policy_intake.held():
            self._policy_intake.feed(self._on_policy)
            lost = [
                (source, topic)
                for source, topic in SOURCE_TOPICS.items()
                if name in publisher_names(self, [topic])
            ]
            for source, _topic in lost:
                self._arbiter.source_lost(source)
            held = name in self._upstream and self._arbiter.upstream_lost(
                time.time(), f"{name} exited"
            )
        for _source, topic in lost:
            self.get_logger().warning(f"{name} (sender of {topic}) exited: source lost")
        if held:
            self.get_logger().warning(
                f"{name} exited: holding until the executor is reset and chunks of the "
                "restarted pipeline arrive"
            )

    def _on_joint_state(self, msg: JointState, received_s: float) -> None:
        try:
            self._arbiter.update_measured(joint_state_positions(msg, self._names), received_s)
        except (MessageError, ValueError) as exc:
            self._health.count("dropped_joint_states")
            self._log_once.warn("joints", f"dropping joint_states: {exc}")

    def _on_estop(self, msg: Bool) -> None:
        self._arbiter.set_estop(bool(msg.data), time.time())

    def _on_joy(self, msg: Joy) -> None:
        pressed = self._edges.update(msg.buttons)
        now = time.time()
        result: RequestResult | None = None
        if self._buttons["takeover"] in pressed:
            result = self._arbiter.takeover(now, "gamepad button")
        elif self._buttons["handback"] in pressed:
            result = self._arbiter.handback(now, "gamepad button")
        elif self._buttons["pause"] >= 0 and self._buttons["pause"] in pressed:
            if self._arbiter.state is ArbiterState.PAUSED:
                result = self._arbiter.resume(now, "gamepad button")
            else:
                result = self._arbiter.pause(now, "gamepad button")
        if result is not None:
            self._after_request(result)

    def _on_takeover(self, request: SetBool.Request, response: SetBool.Response):
        now = time.time()
        if request.data:
            result = self._arbiter.takeover(now, "service")
        else:
            result = self._arbiter.handback(now, "service")
        self._after_request(result)
        response.success = result.accepted
        response.message = result.message
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response):
        now = time.time()
        if request.data:
            result = self._arbiter.pause(now, "service")
        else:
            result = self._arbiter.resume(now, "service")
        self._after_request(result)
        response.success = result.accepted
        response.message = result.message
        return response

    def _after_request(self, result: RequestResult) -> None:
        if not result.accepted:
            self.get_logger().warning(result.message)
        self._request_executor_reset()

    # ------------------------------------------------------------------ executor reset

    def _request_executor_reset(self) -> None:
        """Call ramp/executor/reset once per pending handover (again after RESET_RETRY_S)."""
        token = self._arbiter.executor_reset_token()
        if token is None:
            return
        with self._reset_lock:
            now = time.monotonic()
            if (
                self._reset_call is not None
                and self._reset_call[0] == token
                and now - self._reset_call[1] < RESET_RETRY_S
            ):
                return
            if not self._reset_client.service_is_ready():
                self._log_once.warn(
                    "reset-missing",
                    "ramp/executor/reset is not available: holding until the chunk executor "
                    "serves it",
                )
                self._reset_call = (token, now)
                return
            self._reset_call = (token, now)
        future = self._reset_client.call_async(Trigger.Request())
        future.add_done_callback(lambda f: self._on_reset_done(token, f))

    def _on_reset_done(self, token: int, future) -> None:
        try:
            answer = future.result()
        except Exception as exc:  # a failed call is retried by the timer
            self._health.count("executor_reset_errors")
            self._log_once.warn("reset-error", f"ramp/executor/reset failed: {exc}")
            return
        if answer is None or not answer.success:
            self._health.count("executor_reset_errors")
            message = "no answer" if answer is None else answer.message
            self._log_once.warn("reset-refused", f"ramp/executor/reset refused: {message}")
            return
        if self._arbiter.executor_reset_done(token, time.time()):
            self._health.count("executor_resets")
            with self._reset_lock:
                self._reset_call = None

    # ------------------------------------------------------------------ control loop

    def _control_tick(self, now: float) -> None:
        # the core steps at the tick's due time and the command is stamped with it, so a late
        # or skipped tick does not read downstream as the stream slowing down (Finding 11)
        due = self._loop.due_wall or now
        newest = self._joint_states.take_newest()
        if newest is not None:
            self._on_joint_state(newest.msg, newest.received_s)
        self._policy_intake.feed(self._on_policy)
        command = self._arbiter.step(due)
        if command is not None:
            self._command_pub.publish(make_joint_state(self._names, command, sec_to_stamp(due)))
            sent_at, self._policy_sent_at = self._policy_sent_at, None
            if sent_at is not None:  # the executor's tick -> this tick, transport included
                self._hops.add("forward", now - sent_at)
        status = self._arbiter.status()
        if status.version != self._published_version:
            self._publish_status(status)

    def _publish_status(self, status: ArbiterStatus) -> None:
        self._published_version = status.version
        self._intervention_pub.publish(Bool(data=status.state is ArbiterState.CORRECTING))
        payload = {"state": status.state.value, "since": status.since_s, "reason": status.reason}
        self._state_pub.publish(String(data=json.dumps(payload)))
        if status.version > 0:
            self.get_logger().info(f"{status.state.value}: {status.reason}")

    def _update_health(self) -> None:
        for key, value in self._arbiter.stats().items():
            self._health.set_value(key, value)
        for key, value in self._loop.jitter.percentiles_ms().items():
            self._health.set_value(f"loop_jitter_ms_{key}", value)
        self._health.set_value("loop_overruns", self._loop.overruns)
        self._health.set_value("loop_realtime", self._loop.realtime)
        if self._loop.realtime_error:
            self._log_once.warn("rt", self._loop.realtime_error)
        self._hops.report(self._health)
        status = self._arbiter.status()
        if self._loop.errors:
            self._log_once.error("loop", f"control loop failed: {self._loop.last_error}")
            self._health.set_status(ERROR, f"control loop errors: {self._loop.last_error}")
        elif status.state is ArbiterState.ESTOP:
            self._health.set_status(WARN, "e-stop active")
        elif status.awaiting_executor_reset:
            self._health.set_status(WARN, "holding: waiting for ramp/executor/reset")
        else:
            following = status.following.value if status.following else "holding"
            self._health.set_status(OK, f"{status.state.value} ({following})")

    def close(self) -> None:
        """Stop the control loop (called on shutdown; safe twice)."""
        self._loop.stop()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``intervention_arbiter``."""
    return run_node(InterventionArbiterNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
