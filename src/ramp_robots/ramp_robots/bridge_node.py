"""RobotBridgeNode: the rclpy side every robot bridge shares (sim, PiPER, G1).

A bridge subclass declares its driver settings and runs its driver; the base owns, once:

- the parameters common to every bridge (:func:`bridge_params`: ``joint_names``, the joint-limit
  block, ``command_timeout_s``), declared with the driver's through ``ramp_common.params``
  (all read-only: limits are safety settings);
- the safety filter (``ramp_robots.core.safety.SafetyFilter``: position / velocity /
  acceleration limits, stale-command watchdog, latched e-stop, first command ramps from the
  measured pose);
- ``joint_command`` (JointState, positions by name), taken at each control tick in arrival
  order with their DDS receive times (``ramp_common.intake``, :meth:`_safety_output`; no
  executor dispatch per command): malformed ones counted and logged once,
  targets beyond the position limits counted (``commands_clamped_to_limits``) and logged once
  with the joints (the filter clamps), rejected ones counted with the filter's reason;
- ``ramp/estop`` (std_srvs/SetBool: true engages, false releases) and ``ramp/estop_active``
  (std_msgs/Bool, latched, published on change; a robot's own e-stop counts too:
  :meth:`RobotBridgeNode._set_hardware_estop`);
- ``ramp/node_exited`` (std_msgs/String, from the supervisor): when the node that publishes
  ``joint_command`` exits, the filter holds at once instead of after ``command_timeout_s``
  (``source_exits`` counts it; ``ramp_common.node_exits``);
- ``joint_states`` (JointState: rad / m, rad/s / m/s, N*m / N; stamp = the driver's state time);
- health on ``diagnostics``: safety counters and mode, e-stop, control-loop jitter / overruns /
  errors, and the status (loop errors or driver faults ERROR, then driver warnings, e-stop
  WARN, else OK with the safety mode).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from ramp_common.conversions import (
    MessageError,
    joint_state_positions,
    make_joint_state,
    sec_to_stamp,
    stamp_to_sec,
)
from ramp_common.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher, NodeHealth
from ramp_common.intake import Intake
from ramp_common.node_exits import publisher_names, subscribe_node_exits
from ramp_common.node_tools import LogOnce
from ramp_common.params import (
    CONTROL_PHASE_BRIDGE_S,
    Param,
    ParamSet,
    control_phase_param,
    control_rt_priority_param,
    joint_limit_params,
    joint_limits,
    playout_params,
)
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop
from ramp_robots.core.driver import RobotState
from ramp_robots.core.safety import SafetyFilter

MAX_TAKEN_AGE_S = 0.1
"""Largest age a taken command is given (s): the reader holds 5 commands, 25 ms at 200 Hz."""


def bridge_params(
    joint_names: Sequence[str],
    joints_description: str,
    lower: Sequence[float],
    upper: Sequence[float],
    max_velocity: Sequence[float],
    max_acceleration: Sequence[float],
) -> tuple[Param, ...]:
    """The parameters every bridge has, with this robot's defaults."""
    return (
        Param("joint_names", list(joint_names), joints_description, type="string[]"),
        *joint_limit_params(lower, upper, max_velocity, max_acceleration),
        Param(
            "command_timeout_s",
            0.1,
            "No fresh joint_command for this long -> decelerate and hold (the arbiter sends "
            "at 200 Hz: 20 ticks).",
            unit="s",
            positive=True,
        ),
        *playout_params(),
        control_rt_priority_param(),
        control_phase_param(CONTROL_PHASE_BRIDGE_S),
    )


class RobotBridgeNode(Node):
    """Base of the robot bridges (see the module docstring).

    A subclass sets ``DEFAULT_JOINTS`` and :meth:`params_for`, creates its driver, calls
    :meth:`_open_safety_io` with its control period, starts its loops and
    :meth:`_start_diagnostics`, and sets ``_closed = False``; the control loop's tick is
    wrapped by :meth:`_guard_control` (a dead or always-failing loop stops the bridge,
    :meth:`fatal`); it implements :meth:`_stop`
    and may add :meth:`_driver_health`, :meth:`_fault_status` and :meth:`_warning_status`.
    """

    DEFAULT_JOINTS: ClassVar[tuple[str, ...]]
    CONTROL_LOOP_KEY: ClassVar[str] = "control_loop"
    """Diagnostics key prefix of the loop that runs the safety filter."""
    CONTROL_LOOP_FAIL_S: ClassVar[float] = 0.25
    """s: a control loop whose every tick fails for this long (or whose thread died) stops
    the bridge: exit 4 through ``run_node``, the robot left holding by ``close()``."""

    @classmethod
    def params_for(cls, joint_names: Sequence[str]) -> tuple[Param, ...]:
        """Every parameter of this bridge, with defaults for these joints."""
        raise NotImplementedError

    def __init__(self, node_name: str, **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self._closed = True  # until the subclass has started its driver
        specs = self.params_for(self.DEFAULT_JOINTS)
        self.params = ParamSet(self, [s for s in specs if s.name == "joint_names"])
        self._names: list[str] = list(self.params["joint_names"])
        # defaults of the other parameters may depend on the joints (G1: limits per joint)
        self.params.declare(s for s in self.params_for(self._names) if s.name != "joint_names")
        self._limits = joint_limits(self.params, self._names)
        self._health = NodeHealth()
        self._health.set_status(OK, "starting")
        self._log_once = LogOnce(self)
        self._estop_lock = threading.Lock()
        self._sw_estop = False
        self._hw_estop = False
        self._estop_published: bool | None = None
        self._control_loop: RateLoop | None = None
        self._failing_since: float | None = None
        self._failed_ticks = 0
        self._loop_died: str | None = None
        self._diag: DiagnosticsPublisher | None = None

    def _tick_time(self) -> float:
        """Monotonic time (s) for the safety filter's tick: the control loop's due time (the
        filter steps one period per due tick, so a late tick does not leave it behind), or now
        outside the loop."""
        loop = self._control_loop
        return loop.due_mono if loop is not None and loop.due_mono > 0 else time.monotonic()

    # -- set-up ---------------------------------------------------------------------------------
    def _open_safety_io(self, control_period_s: float) -> ReentrantCallbackGroup:
        """Create the safety filter, joint_states, the e-stop and joint_command; -> the callback
        group of the bridge's services (for the subclass's own)."""
        self._safety = SafetyFilter(
            self._limits,
            control_period_s,
            command_timeout_s=self.params["command_timeout_s"],
            playout_delay_s=self.params["playout_delay_s"],
            max_playout_delay_s=self.params["max_playout_delay_s"],
        )
        group = ReentrantCallbackGroup()
        self._state_pub = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self._estop_pub = self.create_publisher(Bool, "ramp/estop_active", LATCHED_QOS)
        # taken at each control tick, not dispatched per message (ramp_common.intake)
        self._commands = Intake(self, JointState, "joint_command", COMMAND_QOS)
        self.create_service(SetBool, "ramp/estop", self._on_estop, callback_group=group)
        subscribe_node_exits(self, self._on_node_exited, callback_group=group)
        self._publish_estop()
        return group

    def _start_diagnostics(self) -> None:
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)

    def _warn_if_limits_exceed(
        self, lower: Sequence[float], upper: Sequence[float], what: str, ranges: Any
    ) -> None:
        """Warn when configured position limits reach beyond the robot's (``what``) ranges."""
        limits = self._limits
        outside = [
            name
            for i, name in enumerate(self._names)
            if limits.lower[i] < lower[i] - 1e-9 or limits.upper[i] > upper[i] + 1e-9
        ]
        if outside:
            self.get_logger().warning(
                f"configured position limits of {outside} reach beyond {what} {ranges(outside)}"
            )

    # -- ROS I/O ----------------------------------------------------------------------------------
    def _publish_state(self, state: RobotState) -> None:
        self._state_pub.publish(
            make_joint_state(
                self._names,
                state.positions,
                sec_to_stamp(state.stamp),
                state.velocities,
                state.efforts,
            )
        )

    def _safety_output(self, positions: np.ndarray) -> np.ndarray:
        """The safety filter's output for this control tick, after taking the commands that
        arrived since the last one."""
        self._commands.feed(self._on_command)
        return self._safety.output(self._tick_time(), positions)

    def _on_command(self, msg: JointState, received_s: float) -> None:
        """A command taken from the reader, with its DDS receive time (wall clock s)."""
        # -> the filter's monotonic clock; the age is clamped so that a wall-clock step between
        # reception and now cannot move it far
        age = min(max(time.time() - received_s, 0.0), MAX_TAKEN_AGE_S)
        received_mono = time.monotonic() - age
        try:
            target = joint_state_positions(msg, self._names)
        except MessageError as exc:
            self._health.count("commands_malformed")
            self._log_once.warn("malformed", f"dropping joint_command: {exc}")
            return
        self._warn_if_outside_limits(target)
        sent_at = stamp_to_sec(msg.header.stamp)
        reason = self._safety.command(target, received_mono, sent_at=sent_at or None)
        if reason is not None:
            self._health.count("commands_rejected")
            self._log_once.warn(f"rejected-{reason[:24]}", f"rejecting joint_command: {reason}")

    def _on_node_exited(self, name: str) -> None:
        """The supervisor announced that node ``name`` exited: if it sent our joint_command,
        hold now rather than after ``command_timeout_s`` (``ramp_common.node_exits``)."""
        if name in publisher_names(self, ["joint_command"]):
            with self._commands.held():  # what it sent before its exit goes in before the hold
                self._commands.feed(self._on_command)
                self._safety.expire_command()
            self._health.count("source_exits")
            self.get_logger().warning(f"{name} (sender of joint_command) exited: holding")

    def _warn_if_outside_limits(self, target: np.ndarray) -> None:
        limits = self._limits
        outside = (target < limits.lower) | (target > limits.upper)
        if not outside.any():
            return
        # The safety filter clamps; count it and say which joints.
        self._health.count("commands_clamped_to_limits")
        beyond = {
            self._names[i]: (
                round(float(target[i]), 4),
                float(limits.lower[i]),
                float(limits.upper[i]),
            )
            for i in outside.nonzero()[0]
        }
        self._log_once.warn(
            "outside-limits",
            f"joint_command beyond the position limits, clamping: {beyond} (value, lower, upper)",
        )

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data:
            self._safety.engage_estop()
            self.get_logger().warning("e-stop ENGAGED: holding, commands are rejected")
        else:
            self._safety.release_estop()
            self.get_logger().warning("e-stop released: holding until a new joint_command")
        with self._estop_lock:
            self._sw_estop = bool(request.data)
        self._publish_estop()
        response.success = True
        response.message = "e-stop engaged" if request.data else "e-stop released"
        return response

    def _set_hardware_estop(self, active: bool) -> None:
        """The robot's own e-stop changed (shown on ``ramp/estop_active`` like the software one)."""
        with self._estop_lock:
            if active == self._hw_estop:
                return
            self._hw_estop = active
        self._publish_estop()

    def _publish_estop(self) -> None:
        with self._estop_lock:
            active = self._sw_estop or self._hw_estop
            if active == self._estop_published:
                return
            self._estop_published = active
        self._estop_pub.publish(Bool(data=active))

    # -- health ---------------------------------------------------------------------------------
    def _loops(self) -> dict[str, RateLoop | None]:
        """The bridge's loops by label; their errors turn the status ERROR."""
        return {"control loop": self._control_loop}

    def _driver_health(self, health: NodeHealth) -> None:
        """Add the driver's diagnostics values."""

    def _fault_status(self) -> str | None:
        """The driver's active fault in words (status ERROR), or None."""
        return None

    def _warning_status(self) -> str | None:
        """A driver problem short of a fault (status WARN), or None."""
        return None

    def _update_health(self) -> None:
        health = self._health
        self._driver_health(health)
        for key, value in asdict(self._safety.counters).items():
            health.set_value(f"safety_{key}", value)
        health.set_value("safety_mode", self._safety.mode.value)
        health.set_value("estop", self._safety.estop_engaged)
        if self._control_loop is not None:
            for key, value in self._control_loop.jitter.percentiles_ms().items():
                health.set_value(f"{self.CONTROL_LOOP_KEY}_jitter_ms_{key}", value)
            health.set_value(f"{self.CONTROL_LOOP_KEY}_overruns", self._control_loop.overruns)
            health.set_value(f"{self.CONTROL_LOOP_KEY}_realtime", self._control_loop.realtime)
            if self._control_loop.realtime_error:
                self._log_once.warn("rt", self._control_loop.realtime_error)
        failed = {
            label: loop for label, loop in self._loops().items() if loop is not None and loop.errors
        }
        for label, loop in failed.items():
            self._log_once.error(label, f"{label} failed: {loop.last_error}")
        fault = self._fault_status()
        warning = self._warning_status()
        if fault is not None:
            health.set_status(ERROR, fault)
        elif failed:
            health.set_status(
                ERROR,
                "; ".join(
                    f"{label}: {loop.errors} errors, last: {loop.last_error}"
                    for label, loop in failed.items()
                ),
            )
        elif warning is not None:
            health.set_status(WARN, warning)
        elif self._safety.estop_engaged:
            health.set_status(WARN, "e-stop engaged")
        else:
            health.set_status(OK, self._safety.mode.value)

    def _guard_control(self, body: Callable[[float], None]) -> Callable[[float], None]:
        """Wrap the control loop's tick to track its failures for :meth:`fatal` (errors still
        reach the RateLoop, which counts them for diagnostics)."""

        def tick(now_wall: float) -> None:
            try:
                body(now_wall)
            except Exception:
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._failed_ticks += 1
                raise
            except BaseException as exc:  # ends the loop's thread: nothing controls the robot
                self._loop_died = f"{type(exc).__name__}: {exc}"
                raise
            self._failing_since = None
            self._failed_ticks = 0

        return tick

    def fatal(self) -> str | None:
        """Why the bridge cannot go on, or None: its control loop's thread ended, or every tick
        failed for ``CONTROL_LOOP_FAIL_S`` (and 3 ticks at least).

        Polled by ``run_node``: the process exits 4 (``close()`` leaves the robot holding)
        instead of living on without control (before: a NaN in the safety filter killed
        sim_bridge's state loop for good while the process stayed up)."""
        loop = self._control_loop
        if self._closed or loop is None:
            return None
        label = next((k for k, v in self._loops().items() if v is loop), "control loop")
        if self._loop_died is not None:
            return f"{label} thread ended ({self._loop_died}): the robot is not controlled"
        since = self._failing_since
        if (
            since is not None
            and self._failed_ticks >= 3
            and time.monotonic() - since >= self.CONTROL_LOOP_FAIL_S
        ):
            return (
                f"{label} failed on every tick for {time.monotonic() - since:.2f} s "
                f"({self._failed_ticks} ticks; last: {loop.last_error}): the robot is not "
                "controlled"
            )
        return None

    # -- shutdown -------------------------------------------------------------------------------
    def _stop(self) -> None:
        """Stop the loops and the driver (called once by :meth:`close`)."""

    def close(self) -> None:
        """Stop the bridge (called on shutdown; safe twice and after a failed start)."""
        if self._closed:
            return
        self._closed = True
        self._stop()
