"""How smooth the command stream that reaches the bridge is (ROS-free).

Fed every ``joint_command`` (header stamp = the control tick it was computed for, positions of
the arm joints; grippers switch by design and are left out), it keeps what
``bench/chunk_splice.py`` measures offline, so the two are comparable: the largest jump of the
finite-difference velocity between consecutive ticks (rad/s) and the largest finite-difference
acceleration (rad/s^2), over the control period (the stamps say how many ticks lie between two
commands; their jitter within a tick is the loop's wake-up time, not motion); plus the ticks the
control loop missed (a stamp gap over 1.5 periods) as the stall count.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

MISSED_TICK_FACTOR = 1.5


class CommandSmoothness:
    """Accumulates smoothness figures of one command stream; thread-safe."""

    def __init__(self, control_period_s: float) -> None:
        self._period = control_period_s
        self._lock = threading.Lock()
        self._last: tuple[float, np.ndarray] | None = None
        self._last_velocity: np.ndarray | None = None
        self.ticks = 0
        self.missed_ticks = 0
        self.max_velocity_jump = 0.0
        self.max_acceleration = 0.0

    def add(self, stamp_s: float, positions: np.ndarray) -> None:
        """One command: its tick stamp (s) and arm-joint positions (rad)."""
        q = np.asarray(positions, dtype=np.float64)
        with self._lock:
            self.ticks += 1
            if self._last is None or self._last[1].shape != q.shape:
                self._last, self._last_velocity = (stamp_s, q), None
                return
            dt = stamp_s - self._last[0]
            if dt <= 0:
                return  # a repeated or reordered stamp: nothing to difference
            ticks = max(1, round(dt / self._period))
            if dt > MISSED_TICK_FACTOR * self._period:
                self.missed_ticks += ticks - 1
            dt = ticks * self._period
            velocity = (q - self._last[1]) / dt
            if self._last_velocity is not None:
                jump = float(np.max(np.abs(velocity - self._last_velocity)))
                self.max_velocity_jump = max(self.max_velocity_jump, jump)
                self.max_acceleration = max(self.max_acceleration, jump / dt)
            self._last, self._last_velocity = (stamp_s, q), velocity

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "ticks": self.ticks,
                "missed_ticks": self.missed_ticks,
                "max_velocity_jump_rad_s": round(self.max_velocity_jump, 4),
                "max_acceleration_rad_s2": round(self.max_acceleration, 2),
            }
