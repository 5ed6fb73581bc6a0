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
from collections.abc import Sequence
from typing import Any

from ramp_common.diagnostics import NodeHealth, RateMeter
from ramp_common.node_tools import run_node
from ramp_common.params import Param
from ramp_common.rate_loop import RateLoop
from ramp_robots.bridge_node import RobotBridgeNode, bridge_params
from ramp_robots.core.driver import DriverError, RobotState
from ramp_robots.core.piper_driver import (
    PIPER_BRIDGE_LIMITS,
    PIPER_JOINTS,
    PiperConfig,
    PiperDriver,
)

BUSTYPES = ("socketcan", "virtual", "slcan", "pcan", "kvaser")
"""python-can interfaces the PiPER SDK is known to run on ('virtual' only with the fake)."""
HARDWARE_ESTOP = "estop"
"""The fault word the driver reports while the arm's own e-stop is active."""

_fake_channels = itertools.count()


class PiperBridgeNode(RobotBridgeNode):
    """Drives a PiPER arm and bridges it to ROS (see the module docstring)."""

    DEFAULT_JOINTS = tuple(PIPER_JOINTS)

    @classmethod
    def params_for(cls, joint_names: Sequence[str]) -> tuple[Param, ...]:
        return (
            *bridge_params(joint_names, "joint1..joint6 [+gripper]", **PIPER_BRIDGE_LIMITS),
            Param("can_channel", "can0", "CAN interface of the arm."),
            Param("can_bustype", "socketcan", "python-can interface type.", choices=BUSTYPES),
            Param(
                "control_rate_hz",
                200.0,
                "Rate of targets sent to the arm.",
                unit="Hz",
                positive=True,
            ),
            Param(
                "state_rate_hz",
                200.0,
                "joint_states rate (at most the control rate).",
                unit="Hz",
                positive=True,
            ),
            Param(
                "enable_timeout_s",
                5.0,
                "Start-up wait for feedback and enable.",
                unit="s",
                positive=True,
            ),
            Param(
                "feedback_timeout_s",
                0.1,
                "No feedback this long = arm silent.",
                unit="s",
                positive=True,
            ),
            Param("speed_rate_percent", 100, "Speed of the arm's MOVE J controller.", unit="%"),
            Param("gripper_effort_nm", 1.0, "Gripper force limit (0..5).", unit="N*m"),
            Param(
                "disable_on_disconnect",
                False,
                "Disable the motors on exit (the arm then drops under gravity).",
            ),
            Param(
                "use_fake_hardware",
                False,
                "Run an in-process fake PiPER on a virtual CAN channel instead of the arm.",
            ),
        )

    def __init__(self, node_name: str = "piper_bridge", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        control_rate = float(self.params["control_rate_hz"])
        state_rate = float(self.params["state_rate_hz"])
        if state_rate > control_rate:
            self.get_logger().warning(
                f"state_rate_hz={state_rate} > control_rate_hz={control_rate}: joint_states "
                "are published at the control rate"
            )
        self._state_period = 1.0 / min(state_rate, control_rate)
        self._next_state = 0.0
        self._control_rate = RateMeter()
        self._state_rate = RateMeter()
        self._fault_lock = threading.Lock()
        self._faults: list[str] = []
        self._fault_since = 0.0
        channel, bustype = self._start_fake_if_asked()
        self._driver = self._make_driver(channel, bustype)
        self._open_safety_io(1.0 / control_rate)
        self._connect()
        self._start_diagnostics()
        self._control_loop = RateLoop(
            1.0 / control_rate,
            self._guard_control(self._control_tick),
            name="piper_bridge_control",
            realtime_priority=int(self.params["control_rt_priority"]),
            phase_s=float(self.params["control_phase_s"]),
        )
        self._control_loop.start()
        where = "fake PiPER (in-process)" if self._fake is not None else "PiPER"
        self.get_logger().info(
            f"{where} on {bustype} channel '{channel}' enabled in CAN joint mode; control at "
            f"{control_rate} Hz, joint_states at {1.0 / self._state_period:g} Hz, feedback "
            f"timeout {self.params['feedback_timeout_s']} s"
        )

    def _start_fake_if_asked(self) -> tuple[str, str]:
        """With use_fake_hardware, start a FakePiper on a fresh virtual channel; -> (channel,
        bustype) to talk to."""
        channel, bustype = str(self.params["can_channel"]), str(self.params["can_bustype"])
        self._fake = None
        if not self.params["use_fake_hardware"]:
            return channel, bustype
        from ramp_robots.fakes.fake_piper import FakePiper

        # A fresh channel name per node: the SDK keeps one interface object per name.
        channel = f"fake-{channel}-{os.getpid()}-{next(_fake_channels)}"
        self._fake = FakePiper(channel).start()
        return channel, "virtual"

    def _make_driver(self, channel: str, bustype: str) -> PiperDriver:
        return PiperDriver(
            PiperConfig(
                can_channel=channel,
                can_bustype=bustype,
                joint_names=tuple(self._names),
                enable_timeout_s=float(self.params["enable_timeout_s"]),
                feedback_timeout_s=float(self.params["feedback_timeout_s"]),
                speed_rate_percent=int(self.params["speed_rate_percent"]),
                gripper_effort_nm=float(self.params["gripper_effort_nm"]),
                disable_on_disconnect=bool(self.params["disable_on_disconnect"]),
            )
        )

    def _connect(self) -> None:
        try:
            self._driver.connect()
        except BaseException:
            if self._fake is not None:
                self._fake.stop()
            raise
        self._closed = False

    @property
    def fake_hardware(self):
        """The in-process FakePiper when ``use_fake_hardware`` is true, else None."""
        return self._fake

    # ------------------------------------------------------------------ control loop

    def _control_tick(self, _now_wall: float) -> None:
        self._control_rate.tick()
        try:
            state = self._driver.read_state()
        except DriverError as exc:
            self._set_faults([str(exc)])
            return
        self._set_hardware_estop(HARDWARE_ESTOP in state.faults)
        if state.faults:
            self._set_faults(state.faults)
        else:
            if self._faults:
                self._set_faults([])
            self._send(state)
        now = time.monotonic()
        if now >= self._next_state:
            self._next_state = max(self._next_state + self._state_period, now)
            self._publish_state(state)
            self._state_rate.tick()

    def _send(self, state: RobotState) -> None:
        target = self._safety_output(state.positions)
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

    def _driver_health(self, health: NodeHealth) -> None:
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
        with self._estop_lock:
            health.set_value("hardware_estop", self._hw_estop)
        with self._fault_lock:
            faults = list(self._faults)
        health.set_value("faults_active", "; ".join(faults) if faults else "none")

    def _fault_status(self) -> str | None:
        with self._fault_lock:
            faults = list(self._faults)
            since = self._fault_since
        if not faults:
            return None
        return f"not sending motion for {time.monotonic() - since:.1f} s: {'; '.join(faults)}"

    def _stop(self) -> None:
        """Stop the control loop, release the arm (it holds), stop the fake."""
        if self._control_loop is not None:
            self._control_loop.stop()
        try:
            self._driver.disconnect()
        finally:
            if self._fake is not None:
                self._fake.stop()


PARAMS: tuple[Param, ...] = PiperBridgeNode.params_for(PiperBridgeNode.DEFAULT_JOINTS)
"""Every parameter, with the defaults for the default joints (docs/parameters.md)."""


def main(args: list[str] | None = None) -> int:
    """Console entry point ``piper_bridge``."""
    return run_node(PiperBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
