"""AgileX PiPER arm behind the RobotDriver contract, over the official ``piper_sdk`` (ROS-free).

The SDK (``C_PiperInterface_V2``) owns the CAN bus: its reader thread parses the arm's feedback
frames into cached messages, and its command methods encode frames. This driver adds what a robot
bridge needs on top: start-up checks with clear errors, enabling with a timeout, CAN joint-position
control (MOVE J), unit conversion, fault words, and detection of a device that went silent.

Units and frames: joint positions in rad (``joint1`` .. ``joint6``, the PiPER's own joint zero),
the optional seventh value is the gripper opening in m (total stroke between the fingers).
Velocities rad/s, efforts N*m (gripper: m/s is not reported, so 0; effort N*m from the gripper
feedback). Protocol units are 0.001 deg and 0.001 mm; :func:`si_to_piper` and
:func:`piper_to_si` are the only places that convert. Stamps are wall-clock seconds (the CAN
frame timestamps: ``time.time()`` on the virtual bus, the kernel receive time on socketcan).

Frames seen on the bus: commands 0x151 (mode), 0x155-0x157 (joints), 0x159 (gripper), 0x471
(enable); feedback 0x2A1 (status), 0x2A5-0x2A7 (joints), 0x2A8 (gripper), 0x251-0x256 (motor
speed/effort), 0x261-0x266 (driver status, incl. the enable flag).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ramp_robots.core.driver import DriverError, RobotDriver, RobotState

PIPER_ARM_JOINTS: tuple[str, ...] = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6")
PIPER_JOINTS: tuple[str, ...] = (*PIPER_ARM_JOINTS, "gripper")
"""Default joint order: the six arm joints, then the gripper opening."""

PIPER_BRIDGE_LIMITS: dict[str, tuple[float, ...]] = {
    "lower": (-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0),
    "upper": (2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07),
    "max_velocity": (2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 0.2),
    "max_acceleration": (15.0, 15.0, 15.0, 20.0, 20.0, 20.0, 2.0),
}
"""Default limits of the PiPER bridge and the simulated arm (same dimensions), in PIPER_JOINTS
order: rad / m, rad/s / m/s, rad/s^2 / m/s^2 (the gripper in m)."""

PIPER_LOWER = np.array([-2.6179, 0.0, -2.967, -1.745, -1.22, -2.09439, 0.0])
PIPER_UPPER = np.array([2.6179, 3.14, 0.0, 1.745, 1.22, 2.09439, 0.07])
"""The arm's own position range (rad; gripper m), as the SDK documents it. ``send`` clips to it as
a last guard; the bridge's configured limits should lie inside."""

MDEG_PER_RAD = 180_000.0 / math.pi
"""Protocol unit of joint angles: 0.001 degree."""
UM_PER_M = 1_000_000.0
"""Protocol unit of the gripper stroke: 0.001 mm."""
_SCALE = np.array([MDEG_PER_RAD] * 6 + [UM_PER_M])
MILLI = 1e-3
"""Motor speed (0.001 rad/s) and effort (0.001 N*m) feedback -> rad/s and N*m."""

CTRL_MODE_STANDBY = 0x00
CTRL_MODE_CAN = 0x01
MOVE_MODE_J = 0x01
POSITION_VELOCITY_MODE = 0x00  # "is_mit_mode" byte of 0x151: plain position/velocity control
ENABLE_ALL_MOTORS = 7
GRIPPER_ENABLE = 0x01
GRIPPER_DISABLE = 0x00
CAN_BITRATE = 1_000_000

ENABLE_RETRY_PERIOD_S = 0.05
"""How often the enable command is repeated while waiting for the arm to report enabled."""
MODE_REFRESH_PERIOD_S = 0.1
"""Least time between two mode commands (0x151) re-sent because the arm reports another mode."""

ARM_STATUS_WORDS: dict[int, str] = {
    0x01: "estop",
    0x02: "no kinematic solution",
    0x03: "singularity",
    0x04: "target angle beyond limit",
    0x05: "joint communication error",
    0x06: "joint brake not released",
    0x07: "collision",
    0x08: "overspeed while teaching",
    0x09: "joint status error",
    0x0A: "other error",
    0x0B: "teach recording",
    0x0C: "teach replay",
    0x0D: "teach paused",
    0x0E: "main controller over temperature",
    0x0F: "discharge resistor over temperature",
}
"""Arm status byte of frame 0x2A1 (0x00 = normal) in words."""

DRIVER_STATUS_BITS: tuple[tuple[int, str], ...] = (
    (0, "supply voltage low"),
    (1, "motor over temperature"),
    (2, "driver over current"),
    (3, "driver over temperature"),
    (4, "collision protection"),
    (5, "driver error"),
    (7, "stall protection"),
)
"""Fault bits of a joint driver's status byte (frames 0x261-0x266); bit 6 is 'enabled'."""
DRIVER_ENABLED_BIT = 6
GRIPPER_STATUS_BITS: tuple[tuple[int, str], ...] = (
    (0, "supply voltage low"),
    (1, "motor over temperature"),
    (2, "driver over current"),
    (3, "driver over temperature"),
    (4, "sensor error"),
    (5, "driver error"),
)
"""Fault bits of the gripper status byte (frame 0x2A8); bit 6 is 'enabled'."""


def si_to_piper(values: Sequence[float] | np.ndarray) -> list[int]:
    """Joint angles in rad (and an optional 7th gripper opening in m) -> protocol integers
    (0.001 deg; gripper 0.001 mm), rounded to the nearest unit.
    """
    arr = np.asarray(values, dtype=np.float64)
    return [int(v) for v in np.rint(arr * _SCALE[: arr.size])]


def piper_to_si(raw: Sequence[int]) -> np.ndarray:
    """Protocol integers (0.001 deg; optional 7th gripper value 0.001 mm) -> rad (gripper m)."""
    arr = np.asarray(raw, dtype=np.float64)
    return arr / _SCALE[: arr.size]


def describe_faults(
    arm_status: int,
    err_code: int,
    driver_status: Sequence[int | None] = (),
    gripper_status: int | None = None,
) -> list[str]:
    """Fault flags of the arm in words (empty when all is well).

    Args:
        arm_status: arm status byte of frame 0x2A1 (0 = normal, 1 = e-stop, ...).
        err_code: error word of frame 0x2A1: bits 8-13 joint 1-6 angle limit, bits 0-5 joint 1-6
            communication error.
        driver_status: status byte of each joint driver (frames 0x261-0x266), None where unknown.
        gripper_status: status byte of the gripper (frame 0x2A8), None without a gripper.
    """
    faults = []
    if arm_status:
        faults.append(ARM_STATUS_WORDS.get(arm_status, f"arm status 0x{arm_status:02X}"))
    for j in range(6):
        if err_code & (1 << (8 + j)):
            faults.append(f"joint{j + 1} limit")
        if err_code & (1 << j):
            faults.append(f"joint{j + 1} communication error")
    for j, code in enumerate(driver_status):
        if code is None:
            continue
        if not code & (1 << DRIVER_ENABLED_BIT):
            faults.append(f"joint{j + 1} disabled")
        faults.extend(
            f"joint{j + 1} {word}" for bit, word in DRIVER_STATUS_BITS if code & (1 << bit)
        )
    if gripper_status is not None:
        if not gripper_status & (1 << DRIVER_ENABLED_BIT):
            faults.append("gripper disabled")
        faults.extend(
            f"gripper {word}" for bit, word in GRIPPER_STATUS_BITS if gripper_status & (1 << bit)
        )
    return faults


@dataclass(frozen=True)
class PiperConfig:
    """How to reach and drive one PiPER arm."""

    can_channel: str = "can0"
    """CAN interface name (socketcan: the network interface, e.g. can0; virtual: any name)."""
    can_bustype: str = "socketcan"
    """python-can interface: 'socketcan' on the robot, 'virtual' for the in-process fake."""
    joint_names: tuple[str, ...] = PIPER_JOINTS
    """Names of joint1..joint6 in order, optionally followed by the gripper's name."""
    enable_timeout_s: float = 5.0
    """How long connect() waits for feedback and for all motors to report enabled (s)."""
    feedback_timeout_s: float = 0.1
    """No joint feedback frame for this long (s) = the device is silent ('comm timeout')."""
    speed_rate_percent: int = 100
    """Speed percentage of the arm's own MOVE J controller (1..100)."""
    gripper_effort_nm: float = 1.0
    """Gripper force limit sent with every gripper target (N*m, 0..5)."""
    disable_on_disconnect: bool = False
    """Disable the motors on disconnect. The PiPER has no brakes on every joint, so a disabled arm
    drops under gravity; the default leaves it enabled, holding its last target."""

    def __post_init__(self) -> None:
        names = tuple(self.joint_names)
        object.__setattr__(self, "joint_names", names)
        if len(names) not in (6, 7) or len(set(names)) != len(names):
            raise ValueError(
                f"PiPER joint_names must be 6 unique arm joint names, optionally followed by the "
                f"gripper's, got {list(names)}"
            )
        if not self.can_channel:
            raise ValueError("can_channel is empty")
        for label in ("enable_timeout_s", "feedback_timeout_s"):
            if not getattr(self, label) > 0:
                raise ValueError(f"{label} must be > 0, got {getattr(self, label)}")
        if not 1 <= int(self.speed_rate_percent) <= 100:
            raise ValueError(f"speed_rate_percent must be in 1..100, got {self.speed_rate_percent}")
        if not 0.0 <= self.gripper_effort_nm <= 5.0:
            raise ValueError(f"gripper_effort_nm must be in 0..5, got {self.gripper_effort_nm}")

    @property
    def has_gripper(self) -> bool:
        return len(self.joint_names) == 7


def check_can_interface(channel: str, sys_class_net: Path = Path("/sys/class/net")) -> None:
    """Raise DriverError naming ``channel`` when that socketcan network interface is missing or
    down (the usual cause: the USB-CAN adapter is unplugged or ``ip link set ... up`` was not run).
    """
    state_file = sys_class_net / channel / "operstate"
    if not (sys_class_net / channel).exists():
        raise DriverError(
            f"CAN interface '{channel}' does not exist (no {sys_class_net / channel}): plug in the "
            f"USB-CAN adapter and run `sudo ip link set {channel} type can bitrate {CAN_BITRATE} "
            f"&& sudo ip link set {channel} up` (see docs/piper.md)"
        )
    try:
        state = state_file.read_text().strip()
    except OSError:
        state = "unknown"
    # CAN interfaces report "up" or, on some adapters, "unknown" while running.
    if state == "down":
        raise DriverError(
            f"CAN interface '{channel}' is down: run `sudo ip link set {channel} type can bitrate "
            f"{CAN_BITRATE} && sudo ip link set {channel} up`"
        )


class _FreshnessWatch:
    """Notes when a cached SDK timestamp last changed, on the monotonic clock.

    The SDK keeps the CAN timestamp of the latest frame of each kind; a value that stops changing
    means no new frame. Comparing values (not wall-clock ages) keeps this immune to clock steps.
    """

    def __init__(self) -> None:
        self._values: dict[str, float] = {}
        self._changed: dict[str, float] = {}

    def reset(self, key: str, value: float) -> None:
        """Start watching ``key`` from ``value`` (a stamp seen before connecting: not fresh)."""
        self._values[key] = value
        self._changed.pop(key, None)

    def update(self, key: str, value: float, now: float) -> None:
        if self._values.get(key) != value:
            self._values[key] = value
            self._changed[key] = now

    def age(self, key: str, now: float) -> float:
        """Seconds since ``key`` last changed; inf when it never changed since reset."""
        changed = self._changed.get(key)
        return math.inf if changed is None else now - changed


class PiperDriver(RobotDriver):
    """A PiPER arm over CAN through ``piper_sdk`` (see the module docstring).

    Thread-safe: ``read_state`` and ``send`` may be called from different threads.
    """

    def __init__(self, config: PiperConfig | None = None) -> None:
        self._config = config or PiperConfig()
        self._sdk: Any = None
        self._lock = threading.Lock()
        self._watch = _FreshnessWatch()
        self._last_sent: np.ndarray | None = None
        self._last_sent_time = 0.0
        self._last_mode_command = -math.inf
        self._gripper_effort = round(self._config.gripper_effort_nm / MILLI)

    # ------------------------------------------------------------------ properties

    @property
    def joint_names(self) -> list[str]:
        return list(self._config.joint_names)

    @property
    def config(self) -> PiperConfig:
        return self._config

    @property
    def connected(self) -> bool:
        return self._sdk is not None

    @property
    def last_sent(self) -> tuple[float, np.ndarray] | None:
        """(wall-clock s, positions) of the last target sent to the arm, or None."""
        with self._lock:
            if self._last_sent is None:
                return None
            return self._last_sent_time, self._last_sent.copy()

    def feedback_rates_hz(self) -> dict[str, float]:
        """Frame rates the SDK measures: joint feedback, gripper feedback, status, all frames."""
        sdk = self._sdk
        if sdk is None:
            return {}
        rates = {
            "joints": float(sdk.GetArmJointMsgs().Hz),
            "status": float(sdk.GetArmStatus().Hz),
            "all_frames": float(sdk.GetCanFps()),
        }
        if self._config.has_gripper:
            rates["gripper"] = float(sdk.GetArmGripperMsgs().Hz)
        return rates

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        """Open the CAN channel, wait for feedback, enable all motors, switch to CAN MOVE J.

        Raises DriverError naming the channel when the interface is missing, no feedback arrives
        or the motors do not report enabled within ``enable_timeout_s``.
        """
        if self._sdk is not None:
            return
        cfg = self._config
        channel = cfg.can_channel
        try:
            from piper_sdk import C_PiperInterface_V2, LogLevel
        except ImportError as exc:
            raise DriverError(
                f"piper_sdk is not installed ({exc}): pip install piper_sdk==0.6.2 python-can"
            ) from exc
        if cfg.can_bustype == "socketcan":
            check_can_interface(channel)
        try:
            # The SDK keeps one interface object per channel name; can_auto_init=False lets the
            # bus type be chosen (socketcan on the robot, virtual for the in-process fake).
            sdk = C_PiperInterface_V2(
                can_name=channel,
                judge_flag=False,
                can_auto_init=False,
                logger_level=LogLevel.WARNING,
            )
            sdk.CreateCanBus(channel, bustype=cfg.can_bustype, expected_bitrate=CAN_BITRATE)
        except Exception as exc:
            raise DriverError(
                f"cannot open CAN channel '{channel}' ({cfg.can_bustype}): {exc}"
            ) from exc
        can_bus = sdk.GetCanBus()
        if can_bus is None or can_bus.recv_bus is None or can_bus.send_bus is None:
            raise DriverError(
                f"cannot open CAN channel '{channel}' ({cfg.can_bustype}): python-can refused it"
            )
        if cfg.can_bustype == "virtual" and can_bus.send_bus is not can_bus.recv_bus:
            # A second virtual bus object would queue every frame on the channel and never be
            # read (unbounded memory); share one bus as the SDK itself does on Windows/macOS.
            can_bus.send_bus.shutdown()
            can_bus.send_bus = can_bus.recv_bus

        for key, stamp in self._stamps(sdk).items():
            self._watch.reset(key, stamp)
        self._sdk = sdk
        try:
            sdk.ConnectPort()
            self._wait_for_feedback()
            self._enable()
            self._set_joint_mode()
        except BaseException:
            self._close_port()
            raise

    def disconnect(self) -> None:
        """Stop commanding the arm (it holds its last target), optionally disable the motors,
        and close the CAN channel. Safe to call twice.
        """
        sdk = self._sdk
        if sdk is None:
            return
        try:
            if self._config.disable_on_disconnect:
                with self._lock:
                    sdk.DisableArm(ENABLE_ALL_MOTORS)
                    if self._config.has_gripper:
                        sdk.GripperCtrl(0, 0, GRIPPER_DISABLE, 0)
        finally:
            self._close_port()

    def _close_port(self) -> None:
        sdk, self._sdk = self._sdk, None
        if sdk is not None:
            # Closing must not fail a shutdown; the port is gone either way.
            with contextlib.suppress(Exception):
                sdk.DisconnectPort()

    # ------------------------------------------------------------------ connect steps

    def _wait_for_feedback(self) -> None:
        cfg = self._config
        deadline = time.monotonic() + cfg.enable_timeout_s
        while time.monotonic() < deadline:
            self._poll_stamps()
            if self._watch.age("joints", time.monotonic()) < math.inf:
                return
            time.sleep(0.01)
        raise DriverError(
            f"no feedback from the PiPER on CAN channel '{cfg.can_channel}' "
            f"({cfg.can_bustype}) within {cfg.enable_timeout_s} s: is the arm powered on, the CAN "
            f"cable plugged in and the bitrate {CAN_BITRATE}?"
        )

    def _enable(self) -> None:
        cfg = self._config
        sdk = self._sdk
        deadline = time.monotonic() + cfg.enable_timeout_s
        gripper_raw = self._read_raw_gripper()
        missing = list(cfg.joint_names)
        while time.monotonic() < deadline:
            with self._lock:
                sdk.EnableArm(ENABLE_ALL_MOTORS)
                if cfg.has_gripper:
                    # Hold the gripper where it is while enabling it.
                    sdk.GripperCtrl(max(gripper_raw, 0), self._gripper_effort, GRIPPER_ENABLE, 0)
            time.sleep(ENABLE_RETRY_PERIOD_S)
            missing = self._not_enabled()
            if not missing:
                return
        raise DriverError(
            f"the PiPER on CAN channel '{cfg.can_channel}' did not report enabled within "
            f"{cfg.enable_timeout_s} s (not enabled: {missing}); check the e-stop button and "
            "the arm's power"
        )

    def _not_enabled(self) -> list[str]:
        """Names of the motors that have not reported 'enabled' since connect()."""
        sdk = self._sdk
        now = time.monotonic()
        self._poll_stamps()
        names = self._config.joint_names
        if self._watch.age("drivers", now) == math.inf:
            missing = list(names[:6])
        else:
            low = sdk.GetArmLowSpdInfoMsgs()
            missing = [
                names[j]
                for j in range(6)
                if not getattr(low, f"motor_{j + 1}").foc_status.driver_enable_status
            ]
        if self._config.has_gripper:
            gripper = sdk.GetArmGripperMsgs()
            if (
                self._watch.age("gripper", now) == math.inf
                or not gripper.gripper_state.foc_status.driver_enable_status
            ):
                missing.append(names[6])
        return missing

    def _set_joint_mode(self) -> None:
        """CAN command mode, MOVE J, and a first target at the measured pose (so the arm does not
        resume toward some target it received before).
        """
        measured = self._measured_raw()
        with self._lock:
            self._send_mode_locked()
            self._sdk.JointCtrl(*measured[:6])

    def _send_mode_locked(self) -> None:
        self._sdk.MotionCtrl_2(
            CTRL_MODE_CAN, MOVE_MODE_J, int(self._config.speed_rate_percent), POSITION_VELOCITY_MODE
        )
        self._last_mode_command = time.monotonic()

    # ------------------------------------------------------------------ feedback

    @staticmethod
    def _stamps(sdk: Any) -> dict[str, float]:
        return {
            "joints": float(sdk.GetArmJointMsgs().time_stamp),
            "gripper": float(sdk.GetArmGripperMsgs().time_stamp),
            "status": float(sdk.GetArmStatus().time_stamp),
            "drivers": float(sdk.GetArmLowSpdInfoMsgs().time_stamp),
            "motors": float(sdk.GetArmHighSpdInfoMsgs().time_stamp),
        }

    def _poll_stamps(self) -> float:
        now = time.monotonic()
        for key, stamp in self._stamps(self._sdk).items():
            self._watch.update(key, stamp, now)
        return now

    def _read_raw_gripper(self) -> int:
        return int(self._sdk.GetArmGripperMsgs().gripper_state.grippers_angle)

    def _measured_raw(self) -> list[int]:
        joints = self._sdk.GetArmJointMsgs().joint_state
        raw = [int(getattr(joints, f"joint_{j + 1}")) for j in range(6)]
        if self._config.has_gripper:
            raw.append(self._read_raw_gripper())
        return raw

    def _comm_timeout(self, now: float) -> str | None:
        """Why the device counts as silent, or None while joint feedback is fresh."""
        age = self._watch.age("joints", now)
        timeout = self._config.feedback_timeout_s
        if age <= timeout:
            return None
        return (
            f"comm timeout: no joint feedback from the PiPER on CAN channel "
            f"'{self._config.can_channel}' for {age:.3f} s (feedback_timeout_s={timeout})"
        )

    def read_state(self) -> RobotState:
        """The latest feedback (see the module docstring for units) with the arm's faults.

        Raises DriverError ('comm timeout: ...') when no joint feedback frame arrived for
        ``feedback_timeout_s``, and when not connected.
        """
        sdk = self._sdk
        if sdk is None:
            raise DriverError(f"PiPER on CAN channel '{self._config.can_channel}' not connected")
        with self._lock:
            now = self._poll_stamps()
            reason = self._comm_timeout(now)
        if reason is not None:
            raise DriverError(reason)
        cfg = self._config
        timeout = cfg.feedback_timeout_s
        joint_msgs = sdk.GetArmJointMsgs()
        positions = piper_to_si(self._measured_raw())
        velocities = np.zeros(len(positions))
        efforts = np.zeros(len(positions))
        if self._watch.age("motors", now) <= timeout:
            motors = sdk.GetArmHighSpdInfoMsgs()
            for j in range(6):
                motor = getattr(motors, f"motor_{j + 1}")
                velocities[j] = motor.motor_speed * MILLI
                efforts[j] = motor.effort * MILLI
        faults: list[str] = []
        status = sdk.GetArmStatus().arm_status
        if self._watch.age("status", now) > timeout:
            faults.append(f"status feedback timeout (> {timeout} s)")
            arm_status, err_code = 0, 0
        else:
            arm_status, err_code = int(status.arm_status), int(status.err_code)
        driver_status: list[int | None] = [None] * 6
        if self._watch.age("drivers", now) <= max(timeout, 0.5):
            # Driver status comes at a lower rate than joint feedback on the arm.
            low = sdk.GetArmLowSpdInfoMsgs()
            driver_status = [int(getattr(low, f"motor_{j + 1}").foc_status_code) for j in range(6)]
        gripper_status = None
        if cfg.has_gripper:
            gripper = sdk.GetArmGripperMsgs().gripper_state
            efforts[6] = gripper.grippers_effort * MILLI
            if self._watch.age("gripper", now) > timeout:
                faults.append(f"gripper feedback timeout (> {timeout} s)")
            else:
                gripper_status = int(gripper.status_code)
        faults.extend(describe_faults(arm_status, err_code, driver_status, gripper_status))
        stamp = float(joint_msgs.time_stamp)
        if abs(stamp - time.time()) > 1.0:  # an adapter without usable frame timestamps
            stamp = time.time()
        return RobotState(stamp, positions, velocities, efforts, faults)

    # ------------------------------------------------------------------ commands

    def send(self, positions: np.ndarray) -> None:
        """Send one position target (rad; gripper m), clipped to the arm's own range.

        Raises ValueError for a wrong size or non-finite values, DriverError when not connected
        or while the device is silent (nothing is sent then).
        """
        cfg = self._config
        target = np.array(positions, dtype=np.float64)
        n = len(cfg.joint_names)
        if target.shape != (n,):
            raise ValueError(f"PiPER target has shape {target.shape}, expected ({n},)")
        if not np.all(np.isfinite(target)):
            bad = [cfg.joint_names[i] for i in np.flatnonzero(~np.isfinite(target))]
            raise ValueError(f"PiPER target is not finite for {bad}")
        target = np.clip(target, PIPER_LOWER[:n], PIPER_UPPER[:n])
        raw = si_to_piper(target)
        sdk = self._sdk
        if sdk is None:
            raise DriverError(f"PiPER on CAN channel '{cfg.can_channel}' not connected")
        with self._lock:
            now = self._poll_stamps()
            reason = self._comm_timeout(now)
            if reason is not None:
                raise DriverError(f"{reason}; not sending")
            if self._mode_lost(now) and now - self._last_mode_command >= MODE_REFRESH_PERIOD_S:
                self._send_mode_locked()
            sdk.JointCtrl(*raw[:6])
            if cfg.has_gripper:
                sdk.GripperCtrl(max(raw[6], 0), self._gripper_effort, GRIPPER_ENABLE, 0)
            self._last_sent = target
            self._last_sent_time = time.time()

    def _mode_lost(self, now: float) -> bool:
        """True when the arm reports a control or move mode other than CAN / MOVE J."""
        if self._watch.age("status", now) > self._config.feedback_timeout_s:
            return False
        status = self._sdk.GetArmStatus().arm_status
        return int(status.ctrl_mode) != CTRL_MODE_CAN or int(status.mode_feed) != MOVE_MODE_J
