"""piper_bridge: the AgileX PiPER arm (CAN, piper_sdk) as a ROS 2 robot bridge.

Thin rclpy adapter over ``ramp_robots.core.piper_driver.PiperDriver`` and
``ramp_robots.core.safety.SafetyFilter``. One control thread with absolute deadlines
(``ramp_common.rate_loop.RateLoop``) at ``control_rate_hz``: read the arm's feedback, pass the
latest ``joint_command`` through the safety filter, send the result; ``joint_states`` is published
from the same thread at ``state_rate_hz`` (at most the control rate).

Faults: when the arm stops answering (no joint feedback for ``feedback_timeout_s``) or reports a
fault (e-stop, joint limit, driver errors, ... in words), the bridge sends no motion, reports
ERROR on ``diagnostics`` at once (not only at the 1 Hz refresh), and stops publishing
``joint_states`` while the arm is silent. When the fault clears, the safety filter restarts from
the measured pose and holds until a new command arrives, so the arm never jumps toward an old
target. The arm's own e-stop shows on ``ramp/estop_active`` like the software one.

``use_fake_hardware:=true`` (set globally by ``ramp up --fake-hardware``) starts a
:class:`ramp_robots.fakes.fake_piper.FakePiper` in this process on a python-can ``virtual``
channel and talks to it through the same SDK and driver.

Topics: publishes ``joint_states`` (JointState: rad / m, rad/s, N*m), ``ramp/estop_active``
(std_msgs/Bool, latched, on change), ``diagnostics`` (incl. the last target sent: ``sent_*``);
subscribes ``joint_command`` (JointState, positions by name). Service ``ramp/estop``
(std_srvs/SetBool: true engages, false releases). Stamps: joint_states carry the CAN feedback
time (wall clock).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import asdict
from typing import Any

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
from ramp_common.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher, NodeHealth, RateMeter
from ramp_common.limits import JointLimits
from ramp_common.node_tools import LogOnce, declare, require_in, require_positive, run_node
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop
from ramp_robots.core.driver import DriverError, RobotState
from ramp_robots.core.piper_driver import PIPER_JOINTS, PiperConfig, PiperDriver
from ramp_robots.core.safety import SafetyFilter

DEFAULT_LOWER = [-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0]
DEFAULT_UPPER = [2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07]
DEFAULT_MAX_VELOCITY = [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 0.2]
DEFAULT_MAX_ACCELERATION = [15.0, 15.0, 15.0, 20.0, 20.0, 20.0, 2.0]
BUSTYPES = ("socketcan", "virtual", "slcan", "pcan", "kvaser")
"""python-can interfaces the PiPER SDK is known to run on ('virtual' only with the fake)."""
HARDWARE_ESTOP = "estop"
"""The fault word the driver reports while the arm's own e-stop is active."""

_fake_channels = itertools.count()


class PiperBridgeNode(Node):
    """Drives a PiPER arm and bridges it to ROS (see the module docstring)."""

    def __init__(self, node_name: str = "piper_bridge", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        names = list(declare(self, "joint_names", list(PIPER_JOINTS), "joint1..joint6 [+gripper]"))
        limits = JointLimits.from_lists(
            names,
            declare(self, "position_lower", DEFAULT_LOWER, "Lower position limits, rad / m."),
            declare(self, "position_upper", DEFAULT_UPPER, "Upper position limits, rad / m."),
            declare(self, "max_velocity", DEFAULT_MAX_VELOCITY, "Speed limits, rad/s / m/s."),
            declare(self, "max_acceleration", DEFAULT_MAX_ACCELERATION, "Accel. limits, rad/s^2."),
        )
        channel = str(declare(self, "can_channel", "can0", "CAN interface of the arm."))
        bustype = require_in(
            "can_bustype",
            str(declare(self, "can_bustype", "socketcan", "python-can interface type.")),
            BUSTYPES,
        )
        control_rate = require_positive(
            "control_rate_hz",
            declare(self, "control_rate_hz", 200.0, "Rate of targets sent to the arm, Hz."),
        )
        state_rate = require_positive(
            "state_rate_hz", declare(self, "state_rate_hz", 200.0, "joint_states rate, Hz.")
        )
        command_timeout = require_positive(
            "command_timeout_s",
            declare(
                self, "command_timeout_s", 0.5, "No fresh joint_command this long -> hold (s)."
            ),
        )
        enable_timeout = require_positive(
            "enable_timeout_s",
            declare(self, "enable_timeout_s", 5.0, "Start-up wait for feedback and enable (s)."),
        )
        feedback_timeout = require_positive(
            "feedback_timeout_s",
            declare(self, "feedback_timeout_s", 0.1, "No feedback this long = arm silent (s)."),
        )
        speed_rate = int(
            declare(self, "speed_rate_percent", 100, "Speed % of the arm's MOVE J controller.")
        )
        gripper_effort = float(
            declare(self, "gripper_effort_nm", 1.0, "Gripper force limit, N*m (0..5).")
        )
        disable_on_exit = bool(
            declare(
                self,
                "disable_on_disconnect",
                False,
                "Disable the motors on exit (the arm then drops under gravity).",
            )
        )
        use_fake = bool(
            declare(
                self,
                "use_fake_hardware",
                False,
                "Run an in-process fake PiPER on a virtual CAN channel instead of the arm.",
            )
        )
        if state_rate > control_rate:
            self.get_logger().warning(
                f"state_rate_hz={state_rate} > control_rate_hz={control_rate}: joint_states "
                "are published at the control rate"
            )

        self._names = names
        self._fake = None
        if use_fake:
            from ramp_robots.fakes.fake_piper import FakePiper

            # A fresh channel name per node: the SDK keeps one interface object per name.
            channel = f"fake-{channel}-{os.getpid()}-{next(_fake_channels)}"
            bustype = "virtual"
            self._fake = FakePiper(channel).start()
        self._driver = PiperDriver(
            PiperConfig(
                can_channel=channel,
                can_bustype=bustype,
                joint_names=tuple(names),
                enable_timeout_s=enable_timeout,
                feedback_timeout_s=feedback_timeout,
                speed_rate_percent=speed_rate,
                gripper_effort_nm=gripper_effort,
                disable_on_disconnect=disable_on_exit,
            )
        )
        self._safety = SafetyFilter(limits, 1.0 / control_rate, command_timeout_s=command_timeout)
        self._state_period = 1.0 / min(state_rate, control_rate)
        self._next_state = 0.0

        self._health = NodeHealth()
        self._health.set_status(OK, "starting")
        self._log_once = LogOnce(self)
        self._control_rate = RateMeter()
        self._state_rate = RateMeter()
        self._fault_lock = threading.Lock()
        self._faults: list[str] = []
        self._fault_since = 0.0
        self._hw_estop = False
        self._sw_estop = False
        self._estop_lock = threading.Lock()
        self._estop_published: bool | None = None

        group = ReentrantCallbackGroup()
        self._state_pub = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self._estop_pub = self.create_publisher(Bool, "ramp/estop_active", LATCHED_QOS)
        self.create_subscription(
            JointState, "joint_command", self._on_command, COMMAND_QOS, callback_group=group
        )
        self.create_service(SetBool, "ramp/estop", self._on_estop, callback_group=group)
        self._publish_estop()

        try:
            self._driver.connect()
        except BaseException:
            if self._fake is not None:
                self._fake.stop()
            raise
        self._closed = False
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)
        self._loop = RateLoop(1.0 / control_rate, self._control_tick, name="piper_bridge_control")
        self._loop.start()
        where = "fake PiPER (in-process)" if self._fake is not None else "PiPER"
        self.get_logger().info(
            f"{where} on {bustype} channel '{channel}' enabled in CAN joint mode; control at "
            f"{control_rate} Hz, joint_states at {1.0 / self._state_period:g} Hz, feedback "
            f"timeout {feedback_timeout} s"
        )

    @property
    def fake_hardware(self):
        """The in-process FakePiper when ``use_fake_hardware`` is true, else None."""
        return self._fake

    # ------------------------------------------------------------------ callbacks

    def _on_command(self, msg: JointState) -> None:
        try:
            target = joint_state_positions(msg, self._names)
        except MessageError as exc:
            self._health.count("commands_malformed")
            self._log_once.warn("malformed", f"dropping joint_command: {exc}")
            return
        limits = self._safety.limits
        outside = (target < limits.lower) | (target > limits.upper)
        if outside.any():
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
                f"joint_command beyond the position limits, clamping: {beyond} "
                "(value, lower, upper)",
            )
        sent_at = stamp_to_sec(msg.header.stamp)
        reason = self._safety.command(target, time.monotonic(), sent_at=sent_at or None)
        if reason is not None:
            self._health.count("commands_rejected")
            self._log_once.warn(f"rejected-{reason[:24]}", f"rejecting joint_command: {reason}")

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

    def _publish_estop(self) -> None:
        with self._estop_lock:
            active = self._sw_estop or self._hw_estop
            if active == self._estop_published:
                return
            self._estop_published = active
        self._estop_pub.publish(Bool(data=active))

    # ------------------------------------------------------------------ control loop

    def _control_tick(self, _now_wall: float) -> None:
        self._control_rate.tick()
        try:
            state = self._driver.read_state()
        except DriverError as exc:
            self._set_faults([str(exc)])
            return
        hw_estop = HARDWARE_ESTOP in state.faults
        if hw_estop != self._hw_estop:
            with self._estop_lock:
                self._hw_estop = hw_estop
            self._publish_estop()
        if state.faults:
            self._set_faults(state.faults)
        else:
            if self._faults:
                self._set_faults([])
            self._send(state)
        now = time.monotonic()
        if now >= self._next_state:
            self._next_state = max(self._next_state + self._state_period, now)
            self._state_pub.publish(
                make_joint_state(
                    self._names,
                    state.positions,
                    sec_to_stamp(state.stamp),
                    state.velocities,
                    state.efforts,
                )
            )
            self._state_rate.tick()

    def _send(self, state: RobotState) -> None:
        target = self._safety.output(time.monotonic(), state.positions)
        try:
            self._driver.send(target)
        except DriverError as exc:  # went silent between read and send: nothing was sent
            self._set_faults([str(exc)])

    def _set_faults(self, faults: list[str]) -> None:
        """Record the active faults; on every change log it and publish diagnostics at once."""
        with self._fault_lock:
            # Compare the words only: a comm-timeout text carries a growing age.
            key = [f.split(":")[0] for f in faults]
            if key == [f.split(":")[0] for f in self._faults]:
                self._faults = faults
                return
            was_faulted = bool(self._faults)
            self._faults = faults
            if faults and not was_faulted:
                self._fault_since = time.monotonic()
        if faults:
            self._health.count("faults")
            self.get_logger().error(f"PiPER fault, not sending motion: {'; '.join(faults)}")
        else:
            # Start again from where the arm is, at rest, holding until a new command.
            self._safety.resync()
            self.get_logger().warning("PiPER fault cleared: holding until a new joint_command")
        self._diag.publish()

    # ------------------------------------------------------------------ diagnostics

    def _update_health(self) -> None:
        health = self._health
        health.set_value("control_rate_hz", self._control_rate.rate_hz())
        health.set_value("state_rate_hz", self._state_rate.rate_hz())
        for key, value in self._driver.feedback_rates_hz().items():
            health.set_value(f"feedback_rate_hz_{key}", value)
        sent = self._driver.last_sent
        if sent is not None:
            stamp, positions = sent
            health.set_value("sent_age_s", time.time() - stamp)
            for name, value in zip(self._names, positions, strict=True):
                health.set_value(f"sent_{name}", f"{value:.5f}")
        for key, value in asdict(self._safety.counters).items():
            health.set_value(f"safety_{key}", value)
        health.set_value("safety_mode", self._safety.mode.value)
        with self._estop_lock:
            health.set_value("estop", self._sw_estop)
            health.set_value("hardware_estop", self._hw_estop)
        for key, value in self._loop.jitter.percentiles_ms().items():
            health.set_value(f"control_loop_jitter_ms_{key}", value)
        health.set_value("control_loop_overruns", self._loop.overruns)
        with self._fault_lock:
            faults = list(self._faults)
            since = self._fault_since
        health.set_value("faults_active", "; ".join(faults) if faults else "none")
        if self._loop.errors:
            self._log_once.error("loop", f"control loop failed: {self._loop.last_error}")
        if faults:
            health.set_status(
                ERROR,
                f"not sending motion for {time.monotonic() - since:.1f} s: {'; '.join(faults)}",
            )
        elif self._loop.errors:
            health.set_status(
                ERROR, f"control loop: {self._loop.errors} errors, last: {self._loop.last_error}"
            )
        elif self._sw_estop:
            health.set_status(WARN, "e-stop engaged")
        else:
            health.set_status(OK, self._safety.mode.value)

    def close(self) -> None:
        """Stop the control loop, release the arm (it holds), stop the fake. Safe twice."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        self._loop.stop()
        try:
            self._driver.disconnect()
        finally:
            if self._fake is not None:
                self._fake.stop()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``piper_bridge``."""
    return run_node(PiperBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
