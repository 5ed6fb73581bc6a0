"""Unitree G1 humanoid over DDS (``unitree_sdk2py`` on CycloneDDS 0.10.x), ROS-free.

Units: joint positions rad, velocities rad/s, efforts N*m; arrays (D,) in the configured
``joint_names`` order (a subset of :data:`G1_JOINT_NAMES`, the G1 29-DoF motor order). Stamps are
wall-clock seconds (``time.time()``); ages and deadlines use the monotonic clock.

Two ways to command the robot (``G1Config.mode``):

- ``arm_sdk`` (default): ``unitree_hg`` LowCmd on ``rt/arm_sdk``. The robot's own locomotion
  controller keeps the legs; it blends our upper-body targets (waist + arms) with its own by a
  weight in motor slot 29's ``q`` (0 = ignore us, 1 = follow us). :meth:`G1Driver.connect` ramps
  the weight smoothly 0 -> 1 while holding the pose measured at connect; :meth:`G1Driver.disconnect`
  ramps it 1 -> 0 holding the last target, so control goes back to the robot without a jump.
  Upper-body joints not in ``joint_names`` are held at their pose measured at connect.
- ``lowcmd``: full LowCmd on ``rt/lowcmd`` (every motor, ``mode_pr`` = PR, ``mode_machine`` echoed
  from LowState). Only for a robot whose locomotion service is off and which hangs in a harness or
  sits on a fixed base: nothing balances it. Joints not in ``joint_names`` hold their connect pose;
  the stiffness (kp) ramps 0 -> kp on connect and back to 0 (damping only) on disconnect.

LowState (``rt/lowstate``) is CRC-checked: a sample with a bad CRC is counted and dropped. Every
LowCmd carries its CRC. When no valid LowState arrived for ``state_timeout_s`` the driver is in
fault: :meth:`G1Driver.read_state` and :meth:`G1Driver.send` raise :class:`DriverError` and the
published target is frozen at the last one (no motion) until LowState flows again.

A publisher thread keeps the command stream alive at ``publish_rate_hz`` (ramps, holds, and
between :meth:`G1Driver.send` calls); ``send`` itself publishes at once, so a bridge that calls it
at the same rate adds no extra sampling delay. Ramps advance with each published LowCmd (by at most
two periods each), so a stalled thread stretches a ramp instead of making the weight jump.

The SDK's channel factory is one DDS participant per process: every G1Driver in a process must use
the same (domain, interface). Readers and writers are shared per topic (:func:`dds_writer`,
:func:`dds_subscribe`) and deleted only at process exit.
"""

from __future__ import annotations

import atexit
import ctypes
import math
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

from ramp_common.rate_loop import RateLoop
from ramp_robots.core.driver import DriverError, RobotDriver, RobotState

G1_JOINT_NAMES: tuple[str, ...] = (
    "left_hip_pitch_joint",
    "left_hip_roll_joint",
    "left_hip_yaw_joint",
    "left_knee_joint",
    "left_ankle_pitch_joint",
    "left_ankle_roll_joint",
    "right_hip_pitch_joint",
    "right_hip_roll_joint",
    "right_hip_yaw_joint",
    "right_knee_joint",
    "right_ankle_pitch_joint",
    "right_ankle_roll_joint",
    "waist_yaw_joint",
    "waist_roll_joint",
    "waist_pitch_joint",
    "left_shoulder_pitch_joint",
    "left_shoulder_roll_joint",
    "left_shoulder_yaw_joint",
    "left_elbow_joint",
    "left_wrist_roll_joint",
    "left_wrist_pitch_joint",
    "left_wrist_yaw_joint",
    "right_shoulder_pitch_joint",
    "right_shoulder_roll_joint",
    "right_shoulder_yaw_joint",
    "right_elbow_joint",
    "right_wrist_roll_joint",
    "right_wrist_pitch_joint",
    "right_wrist_yaw_joint",
)
"""The G1 29-DoF joints in motor-slot order (index = slot in LowCmd/LowState ``motor_cmd``)."""

G1_NUM_MOTORS = len(G1_JOINT_NAMES)
MOTOR_SLOTS = 35
"""Length of the ``unitree_hg`` motor arrays (slots 29..34 are not motors)."""
ARM_SDK_WEIGHT_SLOT = 29
"""On ``rt/arm_sdk`` the ``q`` of this slot is the blend weight, 0..1."""
UPPER_BODY_SLOTS: tuple[int, ...] = tuple(range(12, 29))
"""Waist and arms: the joints ``rt/arm_sdk`` can command."""
ARM_JOINT_NAMES: tuple[str, ...] = G1_JOINT_NAMES[15:29]
"""The 14 arm joints (left arm, then right arm)."""
MODE_PR = 0
"""``mode_pr``: ankles and waist commanded as pitch/roll (serial) joints."""
MOTOR_ENABLE = 1
"""``motor_cmd[i].mode`` that enables a motor (0 disables it)."""

TOPIC_LOWSTATE = "rt/lowstate"
TOPIC_ARM_SDK = "rt/arm_sdk"
TOPIC_LOWCMD = "rt/lowcmd"

G1_POSITION_LIMITS: dict[str, tuple[float, float]] = dict(
    zip(
        G1_JOINT_NAMES,
        (
            (-2.5307, 2.8798),
            (-0.5236, 2.9671),
            (-2.7576, 2.7576),
            (-0.087267, 2.8798),
            (-0.87267, 0.5236),
            (-0.2618, 0.2618),
            (-2.5307, 2.8798),
            (-2.9671, 0.5236),
            (-2.7576, 2.7576),
            (-0.087267, 2.8798),
            (-0.87267, 0.5236),
            (-0.2618, 0.2618),
            (-2.618, 2.618),
            (-0.52, 0.52),
            (-0.52, 0.52),
            (-3.0892, 2.6704),
            (-1.5882, 2.2515),
            (-2.618, 2.618),
            (-1.0472, 2.0944),
            (-1.972222, 1.972222),
            (-1.614430, 1.614430),
            (-1.614430, 1.614430),
            (-3.0892, 2.6704),
            (-2.2515, 1.5882),
            (-2.618, 2.618),
            (-1.0472, 2.0944),
            (-1.972222, 1.972222),
            (-1.614430, 1.614430),
            (-1.614430, 1.614430),
        ),
        strict=True,
    )
)
"""Mechanical joint ranges (rad) of the G1 29-DoF, from Unitree's published robot description."""

_LEG_GAINS = ((60.0, 1.0), (60.0, 1.0), (60.0, 1.0), (100.0, 2.0), (40.0, 1.0), (40.0, 1.0))
DEFAULT_GAINS: dict[str, tuple[float, float]] = dict(
    zip(
        G1_JOINT_NAMES,
        _LEG_GAINS
        + _LEG_GAINS
        + ((60.0, 1.0), (40.0, 1.0), (40.0, 1.0))
        + ((40.0, 1.0),) * 4
        + ((20.0, 0.5),) * 3
        + ((40.0, 1.0),) * 4
        + ((20.0, 0.5),) * 3,
        strict=True,
    )
)
"""Default (kp N*m/rad, kd N*m*s/rad) per joint: moderate gains for position holding."""

SETUP_HINT = "run scripts/setup_g1_dds.sh (CycloneDDS 0.10.x binding + unitree-sdk2py)"


class G1Mode(str, Enum):
    """Which LowCmd topic the driver commands (see the module docstring)."""

    ARM_SDK = "arm_sdk"
    LOWCMD = "lowcmd"


RATE_RANGE_HZ: dict[G1Mode, tuple[float, float]] = {
    G1Mode.ARM_SDK: (50.0, 250.0),
    G1Mode.LOWCMD: (250.0, 1000.0),
}
"""Allowed command rates per mode, Hz."""
DEFAULT_RATE_HZ: dict[G1Mode, float] = {G1Mode.ARM_SDK: 200.0, G1Mode.LOWCMD: 500.0}


@dataclass(frozen=True)
class G1Config:
    """Configuration of a :class:`G1Driver`. Build it, then call :meth:`validated`."""

    joint_names: tuple[str, ...] = ARM_JOINT_NAMES
    """Joints this driver reads and commands, in array order (G1 29-DoF names)."""
    network_interface: str = "eth0"
    """Interface on the robot's network (the G1's computers are 192.168.123.x)."""
    dds_domain: int = 0
    """DDS domain id of the robot (0 on a G1)."""
    mode: G1Mode | str = G1Mode.ARM_SDK
    publish_rate_hz: float = 0.0
    """LowCmd rate, Hz; 0 = the mode's default (arm_sdk 200, lowcmd 500)."""
    kp: tuple[float, ...] = ()
    """Stiffness per joint in ``joint_names``, N*m/rad; empty = :data:`DEFAULT_GAINS`."""
    kd: tuple[float, ...] = ()
    """Damping per joint in ``joint_names``, N*m*s/rad; empty = :data:`DEFAULT_GAINS`."""
    state_timeout_s: float = 0.2
    """No valid LowState for this long (s) is a fault."""
    connect_timeout_s: float = 10.0
    """How long :meth:`G1Driver.connect` waits for the first LowState (DDS discovery), s."""
    ramp_s: float = 2.0
    """Duration of the arm-sdk weight (or lowcmd stiffness) ramp on connect and disconnect, s."""

    def validated(self) -> G1Config:
        """A copy with the mode as :class:`G1Mode`, the rate and gains filled in.

        Raises ValueError naming the field (and the joint) that is wrong.
        """
        try:
            mode = G1Mode(self.mode)
        except ValueError:
            raise ValueError(
                f"mode={self.mode!r} must be one of {[m.value for m in G1Mode]}"
            ) from None
        names = tuple(self.joint_names)
        if not names:
            raise ValueError("joint_names is empty")
        unknown = [n for n in names if n not in G1_POSITION_LIMITS]
        if unknown:
            raise ValueError(
                f"joint_names has unknown G1 joints {unknown}; known: {G1_JOINT_NAMES}"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"joint_names has duplicates: {list(names)}")
        if mode is G1Mode.ARM_SDK:
            lower_body = [n for n in names if G1_JOINT_NAMES.index(n) not in UPPER_BODY_SLOTS]
            if lower_body:
                raise ValueError(
                    f"joints {lower_body} cannot be commanded in mode arm_sdk (waist and arms "
                    "only); use mode lowcmd on a hung robot"
                )
        if not self.network_interface:
            raise ValueError("network_interface is empty")
        if not 0 <= int(self.dds_domain) <= 232:
            raise ValueError(f"dds_domain={self.dds_domain} must be in 0..232")
        rate = float(self.publish_rate_hz) or DEFAULT_RATE_HZ[mode]
        low, high = RATE_RANGE_HZ[mode]
        if not low <= rate <= high:
            raise ValueError(
                f"publish rate {rate} Hz is outside [{low}, {high}] Hz for mode {mode.value}"
            )
        gains = {}
        for label, column, given in (("kp", 0, self.kp), ("kd", 1, self.kd)):
            values = (
                tuple(float(v) for v in given)
                if len(given)
                else tuple(DEFAULT_GAINS[n][column] for n in names)
            )
            if len(values) != len(names):
                raise ValueError(
                    f"{label} has {len(values)} values for {len(names)} joints {names}"
                )
            bad = [
                n for n, v in zip(names, values, strict=True) if not (math.isfinite(v) and v >= 0)
            ]
            if bad:
                raise ValueError(f"{label} must be finite and >= 0; wrong for joints {bad}")
            gains[label] = values
        for label in ("state_timeout_s", "connect_timeout_s", "ramp_s"):
            value = getattr(self, label)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{label}={value} must be > 0")
        return replace(
            self,
            joint_names=names,
            mode=mode,
            dds_domain=int(self.dds_domain),
            publish_rate_hz=rate,
            kp=gains["kp"],
            kd=gains["kd"],
        )


@dataclass(frozen=True)
class G1DriverStats:
    """Counters and levels for diagnostics."""

    states_received: int
    """Valid LowState samples."""
    crc_errors: int
    """LowState samples dropped for a bad CRC."""
    commands_sent: int
    """LowCmd samples published."""
    write_errors: int
    """LowCmd writes DDS refused, plus errors of the publisher thread."""
    engagement: float
    """arm_sdk weight, or lowcmd stiffness scale, of the last command (0..1)."""
    state_age_s: float
    """Age of the last valid LowState (inf before the first)."""
    mode_machine: int
    """The robot type id LowState reports (echoed in lowcmd)."""
    faulted: bool
    """No valid LowState for ``state_timeout_s``."""
    faults: int
    """Times the driver went into fault."""
    discovery_s: float
    """From the start of the last :meth:`G1Driver.connect` to its first valid LowState, s (DDS
    discovery plus the first sample; nan before that)."""


def smooth_ramp(fraction: float) -> float:
    """0 -> 1 with zero slope at both ends (cosine), for ``fraction`` clipped to [0, 1]."""
    f = min(max(fraction, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * f)


def check_dds_stack() -> str:
    """The installed cyclonedds version when the G1 stack is usable, else DriverError.

    Usable means: ``cyclonedds`` 0.10.x imports (and loads its C library) and ``unitree_sdk2py``
    with the ``unitree_hg`` messages imports.
    """
    try:
        from importlib.metadata import PackageNotFoundError, version

        cyclone = version("cyclonedds")
    except PackageNotFoundError:
        raise DriverError(f"the Python package cyclonedds is not installed: {SETUP_HINT}") from None
    if not cyclone.startswith("0.10."):
        raise DriverError(
            f"cyclonedds {cyclone} is installed, but the G1 (CycloneDDS 0.10.x) does not talk to "
            f"it: {SETUP_HINT}"
        )
    try:
        _sdk()
    except Exception as exc:  # ImportError, or the C library failing to load
        raise DriverError(f"the Unitree SDK does not import ({exc}): {SETUP_HINT}") from None
    return cyclone


def _sdk() -> Any:
    """The SDK modules, imported on first use (this module imports without them)."""
    from types import SimpleNamespace

    from unitree_sdk2py.core import channel
    from unitree_sdk2py.idl import default
    from unitree_sdk2py.idl.unitree_hg.msg import dds_
    from unitree_sdk2py.utils.crc import CRC

    return SimpleNamespace(
        ChannelFactoryInitialize=channel.ChannelFactoryInitialize,
        ChannelPublisher=channel.ChannelPublisher,
        ChannelSubscriber=channel.ChannelSubscriber,
        LowCmd_=dds_.LowCmd_,
        LowState_=dds_.LowState_,
        new_lowcmd=default.unitree_hg_msg_dds__LowCmd_,
        new_lowstate=default.unitree_hg_msg_dds__LowState_,
        crc=CRC(),
    )


_factory_lock = threading.Lock()
_factory_args: tuple[int, str] | None = None


def init_dds(domain: int, interface: str) -> Any:
    """Join DDS ``domain`` on ``interface`` once per process (the SDK's channel factory).

    Returns the SDK namespace. Raises DriverError naming the interface when it does not exist,
    and when this process already joined another (domain, interface).
    """
    global _factory_args
    check_dds_stack()
    try:
        socket.if_nametoindex(interface)
    except OSError:
        available = [name for _, name in socket.if_nameindex()]
        raise DriverError(
            f"network interface {interface!r} does not exist on this computer (it has "
            f"{available}); set network_interface to the interface on the G1's network "
            "(192.168.123.x), see docs/g1.md"
        ) from None
    sdk = _sdk()
    with _factory_lock:
        if _factory_args is None:
            try:
                sdk.ChannelFactoryInitialize(domain, interface)
            except Exception as exc:
                raise DriverError(
                    f"CycloneDDS could not join domain {domain} on interface {interface!r}: {exc}"
                ) from None
            _factory_args = (domain, interface)
            atexit.register(_close_dds_at_exit)
        elif _factory_args != (domain, interface):
            raise DriverError(
                f"this process already joined DDS domain {_factory_args[0]} on "
                f"{_factory_args[1]!r}; a second G1 connection on domain {domain} / "
                f"{interface!r} needs its own process"
            )
    return sdk


def lowstate_crc_ok(sdk: Any, msg: Any) -> bool:
    """True when a LowState's ``crc`` matches its content."""
    return int(sdk.crc.Crc(msg)) == int(msg.crc)


# One DDS reader and one writer per topic for the whole process, created on first use and never
# deleted before the process ends. Why: the SDK's Close() only drops references, so the CycloneDDS
# entities die later in Python's cyclic garbage collector, which may run inside a DDS listener
# thread and then deadlocks in dds_delete (seen here). Handlers are attached and detached instead.
_endpoint_lock = threading.Lock()
_writers: dict[str, Any] = {}
_readers: dict[str, list[Callable[[Any], None]]] = {}


def _message_type(sdk: Any, topic: str) -> Any:
    return sdk.LowState_ if topic == TOPIC_LOWSTATE else sdk.LowCmd_


def dds_writer(sdk: Any, topic: str) -> Any:
    """The process's SDK publisher on ``topic`` (LowState_ on rt/lowstate, else LowCmd_).

    ``Write(msg)`` returns False when DDS refused the sample. Call :func:`init_dds` first.
    """
    with _endpoint_lock:
        writer = _writers.get(topic)
        if writer is None:
            writer = sdk.ChannelPublisher(topic, _message_type(sdk, topic))
            writer.Init()
            _writers[topic] = writer
        return writer


def dds_subscribe(sdk: Any, topic: str, handler: Callable[[Any], None]) -> None:
    """Call ``handler(msg)`` (on a DDS listener thread) for every sample on ``topic``."""
    with _endpoint_lock:
        handlers = _readers.get(topic)
        if handlers is None:
            handlers = _readers[topic] = []

            def dispatch(msg: Any, _handlers: list = handlers) -> None:
                for call in tuple(_handlers):
                    call(msg)

            reader = sdk.ChannelSubscriber(topic, _message_type(sdk, topic))
            reader.Init(dispatch, 0)
            _keep_alive.append(reader)
        handlers.append(handler)


def dds_unsubscribe(topic: str, handler: Callable[[Any], None]) -> None:
    """Stop calling ``handler`` for ``topic`` (the reader itself stays; see above)."""
    with _endpoint_lock:
        handlers = _readers.get(topic, [])
        if handler in handlers:
            handlers.remove(handler)


_keep_alive: list[Any] = []

_DDS_CYCLONEDDS_HANDLE = 0x7FFF0000 + 256
"""``DDS_CYCLONEDDS_HANDLE`` of the C API: deleting it deletes every entity of the process."""


def _close_dds_at_exit() -> None:
    """Delete all CycloneDDS entities while the interpreter is still whole (atexit).

    Why: otherwise DDS threads may still call Python listeners while the interpreter finalizes,
    and the entities' finalizers call into a half-torn-down library; a test process crashed with
    SIGSEGV at exit that way (once in about ten runs).
    """
    with _endpoint_lock:
        for handlers in _readers.values():
            handlers.clear()
    try:
        from cyclonedds.core import Entity
        from cyclonedds.internal import load_cyclonedds

        delete = load_cyclonedds().dds_delete
        delete.argtypes = [ctypes.c_int32]
        delete.restype = ctypes.c_int32
        delete(_DDS_CYCLONEDDS_HANDLE)  # waits for running listeners (ctypes drops the GIL)
        # The Python objects' finalizers skip entities they no longer find registered.
        Entity._entities.clear()
    except Exception:  # best effort at exit; nothing to report to
        pass


class G1Driver(RobotDriver):
    """The G1 behind :class:`RobotDriver` (see the module docstring)."""

    def __init__(self, config: G1Config) -> None:
        """Validates ``config`` (ValueError naming the field); nothing is opened before connect."""
        self._config = config.validated()
        cfg = self._config
        self._mode = G1Mode(cfg.mode)
        self._slots = np.array([G1_JOINT_NAMES.index(n) for n in cfg.joint_names], dtype=np.intp)
        self._period = 1.0 / cfg.publish_rate_hz
        self._kp = np.zeros(MOTOR_SLOTS)
        self._kd = np.zeros(MOTOR_SLOTS)
        for name, _kp, _kd in zip(cfg.joint_names, cfg.kp, cfg.kd, strict=True):
            self._kp[G1_JOINT_NAMES.index(name)] = _kp
            self._kd[G1_JOINT_NAMES.index(name)] = _kd
        others = UPPER_BODY_SLOTS if self._mode is G1Mode.ARM_SDK else range(G1_NUM_MOTORS)
        held = [s for s in others if s not in set(self._slots.tolist())]
        for slot in held:
            self._kp[slot], self._kd[slot] = DEFAULT_GAINS[G1_JOINT_NAMES[slot]]
        self._commanded_slots = np.array(sorted(set(self._slots.tolist()) | set(held)), np.intp)

        self._lock = threading.Lock()
        """Guards state and target; the LowState listener takes it, so never held over DDS calls."""
        self._write_lock = threading.Lock()
        self._sdk: Any = None
        self._publisher: Any = None
        self._subscribed = False
        self._loop: RateLoop | None = None
        self._connected = False
        self._listening = False
        # Latest valid LowState (all 29 motors) and when it arrived.
        self._q = np.zeros(G1_NUM_MOTORS)
        self._dq = np.zeros(G1_NUM_MOTORS)
        self._tau = np.zeros(G1_NUM_MOTORS)
        self._state_wall = 0.0
        self._state_mono = -math.inf
        self._mode_machine = 0
        self._states = 0
        self._crc_errors = 0
        # Command side.
        self._target = np.zeros(MOTOR_SLOTS)
        """q per motor slot of the next LowCmd (the commanded and held joints)."""
        self._ramp_from = 0.0
        self._ramp_to = 0.0
        self._ramp_progress = 1.0
        """Fraction of the current ramp done, advanced by each publish (see _publish)."""
        self._engagement = 0.0
        self._last_publish = -math.inf
        self._commands = 0
        self._write_errors = 0
        self._faulted = False
        self._faults = 0
        self._discovery_s = math.nan
        self._cmd: Any = None

    # ------------------------------------------------------------------ contract

    @property
    def joint_names(self) -> list[str]:
        return list(self._config.joint_names)

    @property
    def config(self) -> G1Config:
        """The validated configuration."""
        return self._config

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Join DDS, wait for LowState, then ramp control in (blocks about ``ramp_s``).

        Raises DriverError naming the cause (missing interface, no LowState within
        ``connect_timeout_s``, DDS stack unusable); nothing is left open then.
        """
        if self._connected:
            return
        cfg = self._config
        self._sdk = init_dds(cfg.dds_domain, cfg.network_interface)
        try:
            started = time.monotonic()
            self._open_channels()
            self._wait_first_state(started)
            with self._lock:
                self._target[:G1_NUM_MOTORS] = self._q
                self._cmd = self._new_command()
                self._start_ramp_locked(1.0)
            self._loop = RateLoop(self._period, self._keep_alive, name="g1_lowcmd")
            self._loop.start()
            self._connected = True
            self._wait_ramp()
        except BaseException:
            self._shutdown()
            raise

    def read_state(self) -> RobotState:
        """Latest LowState of ``joint_names``. DriverError before the first one or when stale."""
        now = time.monotonic()
        with self._lock:
            self._check_fresh_locked(now)
            return RobotState(
                stamp=self._state_wall,
                positions=self._q[self._slots].copy(),
                velocities=self._dq[self._slots].copy(),
                efforts=self._tau[self._slots].copy(),
            )

    def send(self, positions: np.ndarray) -> None:
        """Command ``positions`` (rad, (D,)) and publish at once.

        ValueError for a wrong size or non-finite values; DriverError when not connected or in
        fault (the target then stays where it was).
        """
        target = np.asarray(positions, dtype=np.float64)
        if target.shape != (len(self._slots),):
            raise ValueError(
                f"send() got {target.size} positions with shape {target.shape}, expected "
                f"{len(self._slots)} for {self.joint_names}"
            )
        if not np.all(np.isfinite(target)):
            bad = [self.joint_names[i] for i in np.flatnonzero(~np.isfinite(target))]
            raise ValueError(f"send() got non-finite positions for joints {bad}")
        now = time.monotonic()
        with self._lock:
            if not self._connected:
                raise DriverError("G1 driver is not connected")
            self._check_fresh_locked(now)
            self._target[self._slots] = target
        self._publish(now)

    def disconnect(self) -> None:
        """Ramp control out (weight or stiffness to 0, blocks about ``ramp_s``), then close.

        Safe to call twice.
        """
        if self._connected:
            with self._lock:
                self._start_ramp_locked(0.0)
            self._wait_ramp()
        self._shutdown()

    # ------------------------------------------------------------------ extras

    def read_all_positions(self) -> np.ndarray:
        """Latest measured positions of all 29 motors (rad, slot order). DriverError when stale."""
        with self._lock:
            self._check_fresh_locked(time.monotonic())
            return self._q.copy()

    @property
    def stats(self) -> G1DriverStats:
        now = time.monotonic()
        with self._lock:
            return G1DriverStats(
                states_received=self._states,
                crc_errors=self._crc_errors,
                commands_sent=self._commands,
                write_errors=self._write_errors + (self._loop.errors if self._loop else 0),
                engagement=self._engagement,
                state_age_s=now - self._state_mono,
                mode_machine=self._mode_machine,
                faulted=self._faulted,
                faults=self._faults,
                discovery_s=self._discovery_s,
            )

    # ------------------------------------------------------------------ internals

    def _open_channels(self) -> None:
        self._listening = True
        dds_subscribe(self._sdk, TOPIC_LOWSTATE, self._on_lowstate)
        self._subscribed = True
        topic = TOPIC_ARM_SDK if self._mode is G1Mode.ARM_SDK else TOPIC_LOWCMD
        self._publisher = dds_writer(self._sdk, topic)

    def _wait_first_state(self, started: float) -> None:
        """Wait for a LowState that arrived after ``started`` (monotonic s)."""
        cfg = self._config
        deadline = started + cfg.connect_timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._state_mono > started:
                    self._discovery_s = self._state_mono - started
                    return
            time.sleep(0.005)
        with self._lock:
            bad = self._crc_errors
        detail = f" ({bad} arrived with a bad CRC and were dropped)" if bad else ""
        raise DriverError(
            f"no valid LowState on {TOPIC_LOWSTATE} within {cfg.connect_timeout_s} s (DDS domain "
            f"{cfg.dds_domain}, interface {cfg.network_interface!r}){detail}: is the G1 on, is "
            "this computer on its network (192.168.123.x), is the domain right?"
        )

    def _on_lowstate(self, msg: Any) -> None:
        """DDS listener thread: CRC check, then store the motor arrays."""
        if not self._listening:
            return
        ok = lowstate_crc_ok(self._sdk, msg)
        motors = msg.motor_state
        if ok:
            q = np.array([motors[i].q for i in range(G1_NUM_MOTORS)], dtype=np.float64)
            dq = np.array([motors[i].dq for i in range(G1_NUM_MOTORS)], dtype=np.float64)
            tau = np.array([motors[i].tau_est for i in range(G1_NUM_MOTORS)], dtype=np.float64)
            ok = bool(np.all(np.isfinite(q)))
        with self._lock:
            if not ok:
                self._crc_errors += 1
                return
            self._q, self._dq, self._tau = q, dq, tau
            self._state_wall = time.time()
            self._state_mono = time.monotonic()
            self._mode_machine = int(msg.mode_machine)
            self._states += 1

    def _check_fresh_locked(self, now: float) -> None:
        if self._states == 0:
            raise DriverError(f"no LowState received yet on {TOPIC_LOWSTATE}")
        age = now - self._state_mono
        if age > self._config.state_timeout_s:
            if not self._faulted:
                self._faulted = True
                self._faults += 1
            raise DriverError(
                f"no valid LowState on {TOPIC_LOWSTATE} for {age:.3f} s (state_timeout_s="
                f"{self._config.state_timeout_s}): holding the last target"
            )
        self._faulted = False

    def _new_command(self) -> Any:
        cmd = self._sdk.new_lowcmd()
        cmd.mode_pr = MODE_PR
        for slot in self._commanded_slots.tolist():
            motor = cmd.motor_cmd[slot]
            motor.mode = MOTOR_ENABLE if self._mode is G1Mode.LOWCMD else 0
            motor.dq = 0.0
            motor.tau = 0.0
            motor.kd = float(self._kd[slot])
        return cmd

    def _start_ramp_locked(self, to: float) -> None:
        self._ramp_from, self._ramp_to, self._ramp_progress = self._engagement, to, 0.0

    def _advance_ramp_locked(self, now: float) -> float:
        """The engagement level for a LowCmd published at ``now``.

        The ramp advances by the time since the last LowCmd, but by at most two publish periods,
        so a stalled thread slows the ramp down instead of making the weight jump.
        """
        if self._ramp_progress < 1.0:
            elapsed = min(max(now - self._last_publish, 0.0), 2.0 * self._period)
            self._ramp_progress = min(1.0, self._ramp_progress + elapsed / self._config.ramp_s)
        span = self._ramp_to - self._ramp_from
        return self._ramp_from + span * smooth_ramp(self._ramp_progress)

    def _wait_ramp(self) -> None:
        """Block until the ramp is done (it may take longer than ``ramp_s`` on a loaded CPU)."""
        deadline = time.monotonic() + 5.0 * self._config.ramp_s + 1.0
        while time.monotonic() < deadline:
            with self._lock:
                done = self._ramp_progress >= 1.0 or self._cmd is None
            if done:
                with self._write_lock:  # the LowCmd that finished the ramp is out
                    return
            time.sleep(min(self._period, 0.01))

    def _keep_alive(self, _now_wall: float) -> None:
        """Publisher thread: publish when ``send`` did not within most of a period."""
        now = time.monotonic()
        with self._lock:
            if self._cmd is None:
                return
            stale = now - self._state_mono > self._config.state_timeout_s
            if stale and self._states and not self._faulted:
                self._faulted = True
                self._faults += 1
            due = now - self._last_publish >= 0.75 * self._period
        if due:
            self._publish(now)

    def _publish(self, now: float) -> None:
        """Fill, CRC and write one LowCmd from the current target and ramp level.

        ``_write_lock`` serialises writers; ``_lock`` (which the LowState listener needs) is only
        held to take a snapshot, never while DDS writes.
        """
        with self._write_lock:
            with self._lock:
                cmd = self._cmd
                if cmd is None:
                    return
                level = self._advance_ramp_locked(now)
                self._engagement = level
                self._last_publish = now
                target = self._target.copy()
                mode_machine = self._mode_machine
            motors = cmd.motor_cmd
            if self._mode is G1Mode.ARM_SDK:
                motors[ARM_SDK_WEIGHT_SLOT].q = float(level)
                kp = self._kp
            else:
                cmd.mode_machine = mode_machine
                kp = self._kp * level
            for slot in self._commanded_slots.tolist():
                motors[slot].q = float(target[slot])
                motors[slot].kp = float(kp[slot])
            cmd.crc = self._sdk.crc.Crc(cmd)
            # The SDK reports a refused write by returning False (it logs the DDS error itself).
            failed = self._publisher.Write(cmd) is False
            with self._lock:
                self._commands += 1
                self._write_errors += int(failed)

    def _shutdown(self) -> None:
        self._connected = False
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        self._listening = False
        with self._write_lock:  # no LowCmd is half-way out when the publisher goes
            with self._lock:
                self._cmd = None
            self._publisher = None
        if self._subscribed:
            dds_unsubscribe(TOPIC_LOWSTATE, self._on_lowstate)
            self._subscribed = False


def joint_limits_table(names: Sequence[str]) -> tuple[list[float], list[float]]:
    """(lower, upper) mechanical limits (rad) of ``names``; ValueError for an unknown joint."""
    unknown = [n for n in names if n not in G1_POSITION_LIMITS]
    if unknown:
        raise ValueError(f"unknown G1 joints {unknown}; known: {G1_JOINT_NAMES}")
    return [G1_POSITION_LIMITS[n][0] for n in names], [G1_POSITION_LIMITS[n][1] for n in names]
