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
from collections.abc import Sequence
from typing import Any

from ramp_common.diagnostics import ERROR, NodeHealth, RateMeter
from ramp_common.node_tools import run_node
from ramp_common.params import Param
from ramp_common.rate_loop import RateLoop
from ramp_robots.bridge_node import RobotBridgeNode, bridge_params
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

DEFAULT_MAX_VELOCITY = 2.0
"""rad/s, every joint, when max_velocity is not configured."""
DEFAULT_MAX_ACCELERATION = 10.0
"""rad/s^2, every joint, when max_acceleration is not configured."""
FAKE_INTERFACE = "lo"
FAKE_DDS_DOMAIN = 100
"""fake_g1's DDS domain by default: not the G1's 0, so a fake on a robot computer stays apart."""
FAKE_STOP_TIMEOUT_S = 5.0


class G1BridgeNode(RobotBridgeNode):
    """Bridges the G1 to ROS (see the module docstring)."""

    DEFAULT_JOINTS = tuple(ARM_JOINT_NAMES)

    @classmethod
    def params_for(cls, joint_names: Sequence[str]) -> tuple[Param, ...]:
        try:
            lower, upper = joint_limits_table(joint_names)
        except ValueError as exc:
            raise ValueError(f"parameter joint_names: {exc}") from None
        n = len(joint_names)
        return (
            *bridge_params(
                joint_names,
                "Commanded joints (G1 names).",
                lower,
                upper,
                [DEFAULT_MAX_VELOCITY] * n,
                [DEFAULT_MAX_ACCELERATION] * n,
            ),
            Param("network_interface", "eth0", "Interface on the G1's network (192.168.123.x)."),
            Param("dds_domain", 0, "DDS domain id of the G1 (0 on the robot).", low=0),
            Param(
                "mode",
                G1Mode.ARM_SDK.value,
                "arm_sdk (upper body) or lowcmd (robot hung).",
                choices=tuple(m.value for m in G1Mode),
            ),
            Param(
                "control_rate_hz",
                0.0,
                "Control and LowCmd rate (arm_sdk 50-250, lowcmd 250-1000; 0 = 200 / 500).",
                unit="Hz",
                low=0.0,
            ),
            Param(
                "kp",
                [float(DEFAULT_GAINS[j][0]) for j in joint_names],
                "Stiffness per joint.",
                unit="N*m/rad",
                type="double[]",
            ),
            Param(
                "kd",
                [float(DEFAULT_GAINS[j][1]) for j in joint_names],
                "Damping per joint.",
                unit="N*m*s/rad",
                type="double[]",
            ),
            Param("state_timeout_s", 0.2, "No valid LowState for this long -> fault.", unit="s"),
            Param("connect_timeout_s", 10.0, "Wait for the first LowState at start-up.", unit="s"),
            Param(
                "weight_ramp_s", 2.0, "arm_sdk weight / lowcmd stiffness ramp in and out.", unit="s"
            ),
            Param("state_rate_hz", 200.0, "joint_states rate cap.", unit="Hz", positive=True),
            Param("use_fake_hardware", False, "Run fake_g1 on 'lo' instead of the robot."),
            Param(
                "fake_dds_domain",
                FAKE_DDS_DOMAIN,
                "DDS domain of fake_g1 with use_fake_hardware (kept off the robot's domain).",
                low=0,
            ),
        )

    def __init__(self, node_name: str = "g1_bridge", **node_kwargs: Any) -> None:
        try:
            super().__init__(node_name, **node_kwargs)
        except ValueError as exc:
            if str(exc).startswith(f"{node_name}:"):
                raise
            raise ValueError(f"{node_name}: {exc}") from None
        config = self._config(node_name)
        rate = config.publish_rate_hz
        self._driver = G1Driver(config)
        self._warn_if_limits_exceed(
            *joint_limits_table(self._names),
            "the G1's mechanical ranges",
            lambda outside: [(n, G1_POSITION_LIMITS[n]) for n in outside],
        )
        self._publish_every = max(1, math.ceil(rate / float(self.params["state_rate_hz"]) - 1e-9))
        self._tick = 0
        self._state_rate = RateMeter()
        self._fault: str | None = None
        self._fault_lock = threading.Lock()
        self._fake: subprocess.Popen | None = None
        self._open_safety_io(1.0 / rate)
        self._connect(config.dds_domain)
        self._control_loop = RateLoop(
            1.0 / rate,
            self._guard_control(self._control_tick),
            name="g1_bridge_control",
            realtime_priority=int(self.params["control_rt_priority"]),
            phase_s=float(self.params["control_phase_s"]),
        )
        self._control_loop.start()
        self._start_diagnostics()
        self.get_logger().info(
            f"G1 {'(fake) ' if self.params['use_fake_hardware'] else ''}in mode "
            f"{config.mode.value} on {config.network_interface!r}, DDS domain "
            f"{config.dds_domain}: first LowState after {self._driver.stats.discovery_s:.2f} s; "
            f"controlling {self._names} at {rate} Hz"
        )

    def _config(self, node_name: str) -> G1Config:
        """The driver configuration (with use_fake_hardware: fake_g1 on 'lo')."""
        p = self.params
        interface, domain = p["network_interface"], int(p["dds_domain"])
        if p["use_fake_hardware"]:
            interface, domain = FAKE_INTERFACE, int(p["fake_dds_domain"])
        mode = G1Mode(p["mode"])
        try:
            return G1Config(
                joint_names=tuple(self._names),
                network_interface=interface,
                dds_domain=domain,
                mode=mode,
                publish_rate_hz=float(p["control_rate_hz"]) or DEFAULT_RATE_HZ[mode],
                kp=tuple(p["kp"]),
                kd=tuple(p["kd"]),
                state_timeout_s=p["state_timeout_s"],
                connect_timeout_s=p["connect_timeout_s"],
                ramp_s=p["weight_ramp_s"],
            ).validated()
        except ValueError as exc:
            raise ValueError(f"{node_name}: {exc}") from None

    def _connect(self, domain: int) -> None:
        """Start fake_g1 when asked, then wait for the robot's first LowState."""
        if self.params["use_fake_hardware"]:
            fake_cmd = [sys.executable, "-m", "ramp_robots.fakes.fake_g1", "--exit-with-parent"]
            fake_cmd += ["--iface", FAKE_INTERFACE, "--domain", str(domain)]
            self._fake = subprocess.Popen(fake_cmd)
        try:
            self._driver.connect()
        except BaseException:
            self._stop_fake()
            raise
        self._closed = False

    @property
    def driver_stats(self) -> G1DriverStats:
        """The G1 driver's counters (LowState/LowCmd counts, CRC errors, discovery time)."""
        return self._driver.stats

    # ------------------------------------------------------------------ control loop

    def _control_tick(self, _now_wall: float) -> None:
        try:
            state = self._driver.read_state()
            if self._fault is not None:
                self._recover()
            self._driver.send(self._safety_output(state.positions))
        except DriverError as exc:
            self._enter_fault(str(exc))
            return
        self._tick += 1
        if self._tick % self._publish_every == 0:
            self._publish_state(state)
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

    def _driver_health(self, health: NodeHealth) -> None:
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

    def _fault_status(self) -> str | None:
        fault = self._fault
        return None if fault is None else f"fault: {fault}"

    def _warning_status(self) -> str | None:
        write_errors = self._driver.stats.write_errors
        if not write_errors:
            return None
        self._log_once.warn("write", "LowCmd writes to the G1 fail (see the DDS errors above)")
        return f"{write_errors} LowCmd writes failed"

    # ------------------------------------------------------------------ shutdown

    def _stop(self) -> None:
        """Stop the control loop, ramp control back to the robot, stop the fake."""
        if self._control_loop is not None:
            self._control_loop.stop()
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


PARAMS: tuple[Param, ...] = G1BridgeNode.params_for(G1BridgeNode.DEFAULT_JOINTS)
"""Every parameter, with the defaults for the default joints (docs/parameters.md)."""


def main(args: list[str] | None = None) -> int:
    """Console entry point ``g1_bridge``."""
    return run_node(G1BridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
