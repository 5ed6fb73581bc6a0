"""g1_bridge: the Unitree G1 humanoid (upper body) as a ROS 2 robot bridge.

Thin rclpy adapter over ``ramp_robots.core.g1_driver.G1Driver`` (DDS through ``unitree_sdk2py`` on
CycloneDDS 0.10.x) and ``ramp_robots.core.safety.SafetyFilter``. One control thread with absolute
deadlines (``ramp_common.rate_loop.RateLoop``) at ``control_rate_hz``: read the G1's LowState, pass
the latest ``joint_command`` through the safety filter, send the result as LowCmd, publish
``joint_states`` (at most ``state_rate_hz``).

Faults: when no valid LowState arrived for ``state_timeout_s`` the driver freezes its target (no
motion), ``joint_states`` stops, diagnostics turn ERROR; when LowState flows again the safety filter
restarts from the measured pose and holds it until the next ``joint_command``.

Topics: publishes ``joint_states`` (JointState: rad, rad/s, N*m; the ``joint_names`` joints only),
``ramp/estop_active`` (std_msgs/Bool, latched, on change) and ``diagnostics``; subscribes
``joint_command`` (JointState, positions by name). Service ``ramp/estop`` (std_srvs/SetBool: true
engages, false releases). Stamps are wall-clock time of the LowState's arrival.

With ``use_fake_hardware`` the bridge starts ``fake_g1`` as a child process on the loopback
interface (``lo``) in DDS domain ``fake_dds_domain`` and stops it on close; ``network_interface``
and ``dds_domain`` are then ignored.
"""

from __future__ import annotations

import math
import subprocess
import sys
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
from ramp_robots.core.driver import DriverError
from ramp_robots.core.g1_driver import (
    ARM_JOINT_NAMES,
    DEFAULT_GAINS,
    DEFAULT_RATE_HZ,
    G1_POSITION_LIMITS,
    G1Config,
    G1Driver,
    G1DriverStats,
    G1Mode,
    joint_limits_table,
)
from ramp_robots.core.safety import SafetyFilter

DEFAULT_MAX_VELOCITY = 2.0
"""rad/s, every joint, when max_velocity is not configured."""
DEFAULT_MAX_ACCELERATION = 10.0
"""rad/s^2, every joint, when max_acceleration is not configured."""
FAKE_INTERFACE = "lo"
FAKE_DDS_DOMAIN = 100
"""fake_g1's DDS domain by default: not the G1's 0, so a fake on a robot computer stays apart."""
FAKE_STOP_TIMEOUT_S = 5.0


class G1BridgeNode(Node):
    """Bridges the G1 to ROS (see the module docstring)."""

    def __init__(self, node_name: str = "g1_bridge", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        names = list(
            declare(self, "joint_names", list(ARM_JOINT_NAMES), "Commanded joints (G1 names).")
        )
        try:
            lower, upper = joint_limits_table(names)
        except ValueError as exc:
            raise ValueError(f"{node_name}: parameter joint_names: {exc}") from None
        n = len(names)
        limits = JointLimits.from_lists(
            names,
            declare(self, "position_lower", lower, "Lower position limits, rad."),
            declare(self, "position_upper", upper, "Upper position limits, rad."),
            declare(self, "max_velocity", [DEFAULT_MAX_VELOCITY] * n, "Speed limits, rad/s."),
            declare(
                self, "max_acceleration", [DEFAULT_MAX_ACCELERATION] * n, "Accel. limits, rad/s^2."
            ),
        )
        interface = declare(
            self, "network_interface", "eth0", "Interface on the G1's network (192.168.123.x)."
        )
        domain = int(declare(self, "dds_domain", 0, "DDS domain id of the G1 (0 on the robot)."))
        mode = require_in(
            "mode",
            declare(self, "mode", G1Mode.ARM_SDK.value, "arm_sdk (upper body) or lowcmd (hung)."),
            [m.value for m in G1Mode],
        )
        rate = float(
            declare(
                self,
                "control_rate_hz",
                0.0,
                "Control and LowCmd rate, Hz (arm_sdk 50-250, lowcmd 250-1000; 0 = 200 / 500).",
            )
        )
        rate = rate or DEFAULT_RATE_HZ[G1Mode(mode)]
        kp = declare(
            self, "kp", [DEFAULT_GAINS[j][0] for j in names], "Stiffness per joint, N*m/rad."
        )
        kd = declare(
            self, "kd", [DEFAULT_GAINS[j][1] for j in names], "Damping per joint, N*m*s/rad."
        )
        command_timeout = require_positive(
            "command_timeout_s",
            declare(
                self, "command_timeout_s", 0.5, "No fresh joint_command for this long -> hold (s)."
            ),
        )
        state_timeout = declare(
            self, "state_timeout_s", 0.2, "No valid LowState for this long -> fault (s)."
        )
        connect_timeout = declare(
            self, "connect_timeout_s", 10.0, "Wait for the first LowState at start-up (s)."
        )
        ramp = declare(
            self, "weight_ramp_s", 2.0, "arm_sdk weight / lowcmd stiffness ramp in and out (s)."
        )
        state_rate = require_positive(
            "state_rate_hz", declare(self, "state_rate_hz", 200.0, "joint_states rate cap, Hz.")
        )
        use_fake = bool(
            declare(self, "use_fake_hardware", False, "Run fake_g1 on 'lo' instead of the robot.")
        )
        fake_domain = int(
            declare(
                self,
                "fake_dds_domain",
                FAKE_DDS_DOMAIN,
                "DDS domain of fake_g1 with use_fake_hardware (kept off the robot's domain).",
            )
        )

        self._names = names
        self._fake: subprocess.Popen | None = None
        if use_fake:
            interface, domain = FAKE_INTERFACE, fake_domain
        try:
            config = G1Config(
                joint_names=tuple(names),
                network_interface=interface,
                dds_domain=domain,
                mode=mode,
                publish_rate_hz=rate,
                kp=tuple(kp),
                kd=tuple(kd),
                state_timeout_s=state_timeout,
                connect_timeout_s=connect_timeout,
                ramp_s=ramp,
            ).validated()
        except ValueError as exc:
            raise ValueError(f"{node_name}: {exc}") from None
        self._driver = G1Driver(config)
        self._warn_if_limits_exceed_joints(limits)
        self._safety = SafetyFilter(limits, 1.0 / rate, command_timeout_s=command_timeout)
        self._publish_every = max(1, math.ceil(rate / state_rate - 1e-9))
        self._tick = 0

        self._health = NodeHealth()
        self._health.set_status(OK, "starting")
        self._log_once = LogOnce(self)
        self._state_rate = RateMeter()
        self._fault: str | None = None
        self._fault_lock = threading.Lock()

        group = ReentrantCallbackGroup()
        self._state_pub = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self._estop_pub = self.create_publisher(Bool, "ramp/estop_active", LATCHED_QOS)
        self.create_subscription(
            JointState, "joint_command", self._on_command, COMMAND_QOS, callback_group=group
        )
        self.create_service(SetBool, "ramp/estop", self._on_estop, callback_group=group)
        self._estop_pub.publish(Bool(data=False))

        if use_fake:
            fake_cmd = [sys.executable, "-m", "ramp_robots.fakes.fake_g1", "--exit-with-parent"]
            fake_cmd += ["--iface", FAKE_INTERFACE, "--domain", str(domain)]
            self._fake = subprocess.Popen(fake_cmd)
        self._closed = False
        try:
            self._driver.connect()
        except BaseException:
            self._stop_fake()
            raise
        self._loop = RateLoop(1.0 / rate, self._control_tick, name="g1_bridge_control")
        self._loop.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)
        self.get_logger().info(
            f"G1 {'(fake) ' if use_fake else ''}in mode {config.mode.value} on "
            f"{config.network_interface!r}, DDS domain {domain}: first LowState after "
            f"{self._driver.stats.discovery_s:.2f} s; controlling {names} at {rate} Hz"
        )

    def _warn_if_limits_exceed_joints(self, limits: JointLimits) -> None:
        lower, upper = joint_limits_table(self._names)
        outside = [
            name
            for i, name in enumerate(self._names)
            if limits.lower[i] < lower[i] - 1e-9 or limits.upper[i] > upper[i] + 1e-9
        ]
        if outside:
            self.get_logger().warning(
                f"configured position limits of {outside} reach beyond the G1's mechanical ranges"
                f" {[(n, G1_POSITION_LIMITS[n]) for n in outside]}"
            )

    @property
    def driver_stats(self) -> G1DriverStats:
        """The G1 driver's counters (LowState/LowCmd counts, CRC errors, discovery time)."""
        return self._driver.stats

    # ------------------------------------------------------------------ callbacks

    def _on_command(self, msg: JointState) -> None:
        try:
            target = joint_state_positions(msg, self._names)
        except MessageError as exc:
            self._health.count("commands_malformed")
            self._log_once.warn("malformed", f"dropping joint_command: {exc}")
            return
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
        self._estop_pub.publish(Bool(data=bool(request.data)))
        response.success = True
        response.message = "e-stop engaged" if request.data else "e-stop released"
        return response

    # ------------------------------------------------------------------ control loop

    def _control_tick(self, _now_wall: float) -> None:
        try:
            state = self._driver.read_state()
            if self._fault is not None:
                self._recover()
            self._driver.send(self._safety.output(time.monotonic(), state.positions))
        except DriverError as exc:
            self._enter_fault(str(exc))
            return
        self._tick += 1
        if self._tick % self._publish_every == 0:
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

    def _enter_fault(self, reason: str) -> None:
        with self._fault_lock:
            first = self._fault is None
            self._fault = reason
        if first:
            self._health.count("faults")
            self._health.set_status(ERROR, f"fault: {reason}")
            self.get_logger().error(f"G1 fault: {reason}")

    def _recover(self) -> None:
        with self._fault_lock:
            self._fault = None
        # Start again from where the robot is, holding until a fresh command arrives.
        self._safety.resync()
        self.get_logger().warning("G1 LowState is back: holding the measured pose")

    # ------------------------------------------------------------------ diagnostics

    def _update_health(self) -> None:
        health = self._health
        stats = self._driver.stats
        health.set_value("state_rate_hz", self._state_rate.rate_hz())
        health.set_value("lowstate_received", stats.states_received)
        health.set_value("lowstate_crc_errors", stats.crc_errors)
        health.set_value("lowcmd_sent", stats.commands_sent)
        health.set_value("lowcmd_write_errors", stats.write_errors)
        health.set_value("engagement", stats.engagement)
        health.set_value("lowstate_age_ms", stats.state_age_s * 1e3)
        health.set_value("mode_machine", stats.mode_machine)
        health.set_value("lowstate_discovery_s", stats.discovery_s)
        health.set_value("mode", self._driver.config.mode.value)
        for key, value in asdict(self._safety.counters).items():
            health.set_value(f"safety_{key}", value)
        health.set_value("safety_mode", self._safety.mode.value)
        health.set_value("estop", self._safety.estop_engaged)
        for key, value in self._loop.jitter.percentiles_ms().items():
            health.set_value(f"control_loop_jitter_ms_{key}", value)
        health.set_value("control_loop_overruns", self._loop.overruns)
        fault = self._fault
        if self._loop.errors:
            self._log_once.error("loop", f"control loop failed: {self._loop.last_error}")
            health.set_status(
                ERROR, f"control loop: {self._loop.errors} errors, last: {self._loop.last_error}"
            )
        elif fault is not None:
            health.set_status(ERROR, f"fault: {fault}")
        elif stats.write_errors:
            self._log_once.warn("write", "LowCmd writes to the G1 fail (see the DDS errors above)")
            health.set_status(WARN, f"{stats.write_errors} LowCmd writes failed")
        elif self._safety.estop_engaged:
            health.set_status(WARN, "e-stop engaged")
        else:
            health.set_status(OK, self._safety.mode.value)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Stop the control loop, ramp control back to the robot, stop the fake (safe twice)."""
        if self._closed:
            return
        self._closed = True
        self._loop.stop()
        self._driver.disconnect()
        self._stop_fake()

    def _stop_fake(self) -> None:
        fake, self._fake = self._fake, None
        if fake is None or fake.poll() is not None:
            return
        fake.terminate()
        try:
            fake.wait(FAKE_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            fake.kill()
            fake.wait(FAKE_STOP_TIMEOUT_S)


def main(args: list[str] | None = None) -> int:
    """Console entry point ``g1_bridge``."""
    return run_node(G1BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
