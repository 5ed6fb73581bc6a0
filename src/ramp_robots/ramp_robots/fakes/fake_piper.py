"""A protocol-level fake of the AgileX PiPER arm on a python-can bus (ROS-free).

It answers CAN frames the way the arm's controller does, so the real ``piper_sdk`` and
:class:`ramp_robots.core.piper_driver.PiperDriver` can be tested without hardware. Its frames are
packed here with ``struct`` from the protocol layout (big-endian), not with the SDK, so a mismatch
between the SDK's encoding and the protocol shows up in tests.

Handled commands: 0x150 (quick stop 0x01 / resume 0x02), 0x151 (control mode, move mode, speed
rate), 0x155-0x157 (joint targets, int32 pairs, 0.001 deg), 0x159 (gripper target 0.001 mm,
effort, enable code), 0x471 (motor enable/disable). Everything else (parameter queries) is ignored.

Sent every tick at ``rate_hz`` (200 Hz by default, as the arm): 0x2A1 status, 0x2A5-0x2A7 joint
feedback, 0x2A8 gripper feedback; every 2nd tick 0x251-0x256 motor speed; every 4th tick
0x261-0x266 driver status (carrying the enable flags).

Motion model: while enabled in CAN control mode and not stopped, each joint moves toward its target
at ``max_velocity * speed_rate / 100`` (no dynamics, no gravity; a disabled arm stays put).
A target outside the arm's range is clamped and flags that joint's limit bit until a target within
range arrives.

python-can's ``virtual`` bus only connects bus objects inside one process, so the fake runs as a
thread (``start()`` / ``stop()``) next to the driver.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence

import can
import numpy as np

from ramp_common.rate_loop import RateLoop
from ramp_robots.core.piper_driver import PIPER_LOWER, PIPER_UPPER, piper_to_si, si_to_piper

DEFAULT_MAX_VELOCITY = (3.14, 3.4, 3.14, 3.93, 3.93, 3.93, 0.1)
"""Joint speeds of the PiPER data sheet (rad/s; gripper m/s) at speed rate 100 %."""

ID_QUICK_STOP = 0x150
ID_MODE = 0x151
ID_JOINT_CMD = (0x155, 0x156, 0x157)
ID_GRIPPER_CMD = 0x159
ID_ENABLE = 0x471
ID_STATUS = 0x2A1
ID_JOINT_FEEDBACK = (0x2A5, 0x2A6, 0x2A7)
ID_GRIPPER_FEEDBACK = 0x2A8
ID_MOTOR_HIGH_SPEED = tuple(range(0x251, 0x257))
ID_DRIVER_LOW_SPEED = tuple(range(0x261, 0x267))

ARM_NORMAL = 0x00
ARM_ESTOP = 0x01
ENABLED_BIT = 1 << 6
HOMED_BIT = 1 << 7
SUPPLY_DECIVOLT = 240  # 24.0 V


class FakePiper:
    """The fake arm (see the module docstring). Positions are SI (rad; gripper opening m)."""

    def __init__(
        self,
        channel: str,
        bustype: str = "virtual",
        rate_hz: float = 200.0,
        initial_positions: Sequence[float] | None = None,
        max_velocity: Sequence[float] = DEFAULT_MAX_VELOCITY,
        refuse_enable: bool = False,
    ) -> None:
        """Args:
        channel: python-can channel the driver uses (any name on the virtual bus).
        bustype: python-can interface ('virtual' in tests).
        rate_hz: feedback rate, Hz.
        initial_positions: 7 values (rad x6, gripper m); default all zero (the rest pose).
        max_velocity: 7 speed limits at speed rate 100 % (rad/s; gripper m/s).
        refuse_enable: ignore enable commands (an arm whose e-stop is pressed at power-up).
        """
        self._channel = channel
        self._bus = can.Bus(channel=channel, interface=bustype, receive_own_messages=False)
        self._period = 1.0 / rate_hz
        pos = np.zeros(7) if initial_positions is None else np.array(initial_positions, float)
        if pos.shape != (7,):
            raise ValueError(f"initial_positions needs 7 values, got {pos.shape}")
        self._lock = threading.Lock()
        self._pos = np.clip(pos, PIPER_LOWER, PIPER_UPPER)
        self._target = self._pos.copy()
        self._vel = np.zeros(7)
        self._vmax = np.array(max_velocity, dtype=np.float64)
        self._enabled = [False] * 7  # joint1..6, gripper
        self._ctrl_mode = 0x00
        self._move_mode = 0x00
        self._speed_rate = 0
        self._gripper_effort_raw = 0
        self._estop = False
        self._silent = False
        self._refuse_enable = refuse_enable
        self._limit_bits = 0  # bit j: joint j+1 angle limit
        self._comm_bits = 0  # bit j: joint j+1 communication error
        self._received: Counter[int] = Counter()
        self._tick = 0
        self._last_step = time.monotonic()
        self._loop = RateLoop(self._period, self._step, name=f"fake_piper_{channel}")
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakePiper:
        if not self._started:
            self._started = True
            self._last_step = time.monotonic()
            self._loop.start()
        return self

    def stop(self) -> None:
        """Stop the thread and leave the bus. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._loop.stop()
        self._bus.shutdown()

    def __enter__(self) -> FakePiper:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test controls

    def go_silent(self) -> None:
        """Stop answering: no feedback frames, commands are counted but have no effect."""
        with self._lock:
            self._silent = True

    def resume(self) -> None:
        """Answer again after :meth:`go_silent`."""
        with self._lock:
            self._silent = False

    def press_estop(self) -> None:
        """The arm's stop: joints hold where they are, status 'emergency stop', targets ignored."""
        with self._lock:
            self._estop = True
            self._target = self._pos.copy()

    def release_estop(self) -> None:
        with self._lock:
            self._estop = False

    def inject_joint_limit(self, joint: int) -> None:
        """Flag joint ``joint`` (1..6) as beyond its angle limit in the status frame."""
        self._check_joint(joint)
        with self._lock:
            self._limit_bits |= 1 << (joint - 1)

    def inject_comm_error(self, joint: int) -> None:
        """Flag a communication error of joint ``joint`` (1..6) in the status frame."""
        self._check_joint(joint)
        with self._lock:
            self._comm_bits |= 1 << (joint - 1)

    def clear_faults(self) -> None:
        """Clear injected limit and communication flags."""
        with self._lock:
            self._limit_bits = 0
            self._comm_bits = 0

    @staticmethod
    def _check_joint(joint: int) -> None:
        if not 1 <= joint <= 6:
            raise ValueError(f"joint must be 1..6, got {joint}")

    # ------------------------------------------------------------------ observations

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def positions(self) -> np.ndarray:
        """Current positions (rad x6, gripper opening m)."""
        with self._lock:
            return self._pos.copy()

    @property
    def targets(self) -> np.ndarray:
        """Current targets as the arm received them (rad x6, gripper m)."""
        with self._lock:
            return self._target.copy()

    @property
    def enabled(self) -> tuple[bool, ...]:
        """Enable flags of joint1..joint6 and the gripper."""
        with self._lock:
            return tuple(self._enabled)

    @property
    def mode(self) -> tuple[int, int, int]:
        """(control mode, move mode, speed rate %) as last set by frame 0x151."""
        with self._lock:
            return self._ctrl_mode, self._move_mode, self._speed_rate

    def frames_received(self, can_id: int) -> int:
        """How many frames with ``can_id`` arrived (also while silent)."""
        with self._lock:
            return self._received[can_id]

    # ------------------------------------------------------------------ the loop

    def _step(self, _now_wall: float) -> None:
        while True:
            msg = self._bus.recv(timeout=0.0)
            if msg is None:
                break
            self._handle(msg)
        now = time.monotonic()
        dt = min(now - self._last_step, 0.1)
        self._last_step = now
        with self._lock:
            self._move(dt)
            frames = [] if self._silent else self._feedback_frames()
            self._tick += 1
        for can_id, data in frames:
            self._bus.send(can.Message(arbitration_id=can_id, data=data, is_extended_id=False))

    def _handle(self, msg: can.Message) -> None:
        can_id, data = msg.arbitration_id, bytes(msg.data)
        with self._lock:
            self._received[can_id] += 1
            if self._silent or len(data) < 8:
                return
            if can_id == ID_QUICK_STOP:
                self._on_quick_stop(data[0])
            elif can_id == ID_MODE:
                self._ctrl_mode, self._move_mode, self._speed_rate = data[0], data[1], data[2]
            elif can_id in ID_JOINT_CMD:
                first = 2 * ID_JOINT_CMD.index(can_id)
                self._on_joint_targets(first, struct.unpack(">ii", data))
            elif can_id == ID_GRIPPER_CMD:
                stroke, effort, code, _zero = struct.unpack(">iHBB", data)
                self._on_gripper(stroke, effort, code)
            elif can_id == ID_ENABLE:
                self._on_enable(data[0], data[1])

    def _on_quick_stop(self, code: int) -> None:
        if code == 0x01:
            self._estop = True
            self._target = self._pos.copy()
        elif code == 0x02:  # resume = reset: clears errors and switches the motors off
            self._estop = False
            self._limit_bits = self._comm_bits = 0
            self._enabled = [False] * 7
            self._ctrl_mode = 0x00

    def _following(self) -> bool:
        return all(self._enabled[:6]) and self._ctrl_mode == 0x01 and not self._estop

    def _on_joint_targets(self, first: int, raw: tuple[int, int]) -> None:
        if not self._following():
            return
        values = piper_to_si(raw)
        for offset, value in enumerate(values):
            j = first + offset
            clamped = float(np.clip(value, PIPER_LOWER[j], PIPER_UPPER[j]))
            if clamped != value:
                self._limit_bits |= 1 << j
            else:
                self._limit_bits &= ~(1 << j)
            self._target[j] = clamped

    def _on_gripper(self, stroke: int, effort: int, code: int) -> None:
        if code in (0x00, 0x02):
            self._enabled[6] = False
        elif code in (0x01, 0x03):
            self._enabled[6] = True
        self._gripper_effort_raw = effort
        if self._enabled[6] and not self._estop:
            opening = piper_to_si([0, 0, 0, 0, 0, 0, stroke])[6]
            self._target[6] = float(np.clip(opening, PIPER_LOWER[6], PIPER_UPPER[6]))

    def _on_enable(self, motor: int, flag: int) -> None:
        if self._refuse_enable or flag not in (0x01, 0x02):
            return
        motors = range(6) if motor == 7 else [motor - 1] if 1 <= motor <= 6 else []
        for j in motors:
            self._enabled[j] = flag == 0x02

    def _move(self, dt: float) -> None:
        moving = np.array(self._enabled, dtype=bool)
        if self._estop or self._ctrl_mode != 0x01:
            moving[:6] = False
        if self._estop:
            moving[6] = False
        speed = self._vmax * max(self._speed_rate, 0) / 100.0
        step = np.clip(self._target - self._pos, -speed * dt, speed * dt)
        step[~moving] = 0.0
        self._pos = self._pos + step
        self._vel = step / dt if dt > 0 else np.zeros(7)

    def _feedback_frames(self) -> list[tuple[int, bytes]]:
        raw = si_to_piper(self._pos)
        reached = bool(np.all(np.abs(self._target - self._pos) < 1e-6))
        err_code = (self._limit_bits << 8) | self._comm_bits
        status = struct.pack(
            ">BBBBBBH",
            self._ctrl_mode,
            ARM_ESTOP if self._estop else ARM_NORMAL,
            self._move_mode,
            0x00,  # teach status: off
            0x00 if reached else 0x01,
            0x00,  # trajectory point
            err_code,
        )
        frames = [(ID_STATUS, status)]
        for k, can_id in enumerate(ID_JOINT_FEEDBACK):
            frames.append((can_id, struct.pack(">ii", raw[2 * k], raw[2 * k + 1])))
        gripper_code = (ENABLED_BIT if self._enabled[6] else 0) | HOMED_BIT
        effort = self._gripper_effort_raw if self._enabled[6] else 0
        frames.append(
            (ID_GRIPPER_FEEDBACK, struct.pack(">ihBB", raw[6], min(effort, 32767), gripper_code, 0))
        )
        if self._tick % 2 == 0:
            for j, can_id in enumerate(ID_MOTOR_HIGH_SPEED):
                speed = int(np.clip(round(self._vel[j] * 1000.0), -32768, 32767))  # 0.001 rad/s
                frames.append((can_id, struct.pack(">hHi", speed, 0, 0)))
        if self._tick % 4 == 0:
            for j, can_id in enumerate(ID_DRIVER_LOW_SPEED):
                code = ENABLED_BIT if self._enabled[j] else 0
                frames.append((can_id, struct.pack(">HhbBH", SUPPLY_DECIVOLT, 30, 30, code, 0)))
        return frames
