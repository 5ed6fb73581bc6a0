"""The last line before hardware: every robot bridge sends only what this filter outputs (ROS-free).

Units: positions in rad (revolute) or m (gripper opening), arrays (D,) in the limits' joint order.
``now`` is monotonic seconds (the same clock for :meth:`SafetyFilter.command` and
:meth:`SafetyFilter.output`).

Behaviour, per control tick (:meth:`SafetyFilter.output`):

- The output moves from the last output toward the goal with
  :func:`ramp_common.limits.limit_step` (position, velocity and acceleration limits), so it never
  jumps. With no last output (first tick, after :meth:`SafetyFilter.resync` or after e-stop
  release) it starts from the measured position, at rest.
- The goal is the accepted command stream while its newest command is fresh (younger than
  ``command_timeout_s``), replayed ``playout_delay_s`` behind its fastest delivery by the
  commands' stamps (:class:`ramp_common.stream.TargetStream`): a feasible stream is followed
  without lag or overshoot whatever the phase between sender and filter ticks and whatever the
  delivery jitter up to the playout delay, with its velocity fed forward.
- A step after skipped ticks computes them too (:func:`ramp_common.limits.ticks_due`), so a
  skipped tick does not leave the output behind; the bridge sends the last.
- Before the first command, after the command went stale, and while the e-stop is engaged, the
  goal is a hold pose: where the joints come to rest braking at the acceleration limit from the
  current output velocity (:func:`ramp_common.limits.stop_position`): decelerate, then hold.
- Commands that are not finite or have the wrong size are rejected with a reason; the filter keeps
  doing what it did. Commands while the e-stop is engaged are rejected too, so the robot does not
  resume toward an old target after release.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from enum import Enum

import numpy as np

from ramp_common.limits import JointLimits, due_tick_times, limit_step, stop_position
from ramp_common.stream import TargetStream

HARDWARE_CATCH_UP_TICKS = 4
"""After a stall the filter computes at most this many ticks at once: the hardware receives a
step of at most 4 periods of motion, and the output catches up with the rest within the limits
(:func:`ramp_common.limits.ticks_due`)."""


class SafetyMode(str, Enum):
    """What the filter is doing."""

    IDLE = "idle"
    """No command received yet (or since a resync/e-stop release): holding."""
    TRACKING = "tracking"
    """Following a fresh command."""
    STALE_HOLD = "stale_hold"
    """The last command is older than the timeout: decelerating and holding."""
    ESTOP = "estop"
    """E-stop engaged: decelerating and holding; commands are rejected."""


@dataclass(frozen=True)
class SafetyCounters:
    """Counts for diagnostics since construction."""

    accepted: int = 0
    """Commands accepted."""
    rejected: int = 0
    """Commands rejected (wrong size, not finite, e-stop engaged)."""
    clamped: int = 0
    """Output ticks where a limit kept at least one joint off its goal."""
    stale_holds: int = 0
    """Times the command went stale while tracking (each starts a hold)."""
    estops: int = 0
    """Times the e-stop was engaged."""


class SafetyFilter:
    """Turns (possibly bad, late or missing) commands into a feasible, limited output stream.

    Thread-safe: commands may arrive on a subscription thread while a control thread calls
    :meth:`output`.
    """

    def __init__(
        self,
        limits: JointLimits,
        period_s: float,
        command_timeout_s: float = 0.5,
        playout_delay_s: float = 0.0,
        max_extrapolation_s: float = 0.02,
        max_playout_delay_s: float | None = None,
    ) -> None:
        """Args:
        limits: joint limits; their joint order is the order of every array.
        period_s: control period in s (the time between :meth:`output` calls).
        command_timeout_s: a command older than this (s) is stale and the filter holds.
        playout_delay_s: the command stream is replayed this far (s) behind its fastest
            delivery; delivery jitter up to it is absorbed (0: follow the newest command).
        max_extrapolation_s: how long (s) the replayed stream moves on past its newest command
            when the next one is late.
        max_playout_delay_s: when above ``playout_delay_s``, the playout delay adapts up to it,
            to the measured delivery jitter (:class:`ramp_common.stream.TargetStream`).
        Raises ValueError for a non-positive period or timeout, or a negative delay.
        """
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        if not command_timeout_s > 0:
            raise ValueError(f"command_timeout_s must be > 0, got {command_timeout_s}")
        self._limits = limits
        self._period = float(period_s)
        self._timeout = float(command_timeout_s)
        self._playout_delay = float(playout_delay_s)
        self._max_extrapolation = float(max_extrapolation_s)
        self._max_playout_delay = max_playout_delay_s
        self._all_joints = np.ones(limits.dof, dtype=bool)
        self._lock = threading.Lock()
        self._counts = {f.name: 0 for f in fields(SafetyCounters)}
        self._estop = False
        self._drop_motion_locked()

    @property
    def limits(self) -> JointLimits:
        return self._limits

    @property
    def period_s(self) -> float:
        return self._period

    @property
    def command_timeout_s(self) -> float:
        return self._timeout

    @property
    def mode(self) -> SafetyMode:
        """The mode of the last output tick (IDLE/ESTOP right after a resync or e-stop change)."""
        with self._lock:
            return self._mode

    @property
    def estop_engaged(self) -> bool:
        with self._lock:
            return self._estop

    @property
    def counters(self) -> SafetyCounters:
        with self._lock:
            return SafetyCounters(**self._counts)

    @property
    def last_output(self) -> np.ndarray | None:
        """The last output (what the bridge sent), or None before the first tick."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def command(self, target: np.ndarray, now: float, sent_at: float | None = None) -> str | None:
        """Offer a new position target received at ``now`` (monotonic s).

        ``sent_at`` (s, any clock, optional) is the sender's stamp; when given for consecutive
        commands it times the stream's velocity estimate instead of the receive times.
        Returns None when accepted, else the reason it was rejected (then nothing changes).
        """
        arr = np.array(target, dtype=np.float64)
        reason = None
        if arr.shape != (self._limits.dof,):
            reason = (
                f"command has {arr.size} values with shape {arr.shape}, expected "
                f"{self._limits.dof} for {list(self._limits.names)}"
            )
        elif not np.all(np.isfinite(arr)):
            bad = [self._limits.names[i] for i in np.flatnonzero(~np.isfinite(arr))]
            reason = f"command is not finite for joints {bad}"
        with self._lock:
            if reason is None and self._estop:
                reason = "e-stop engaged"
            if reason is not None:
                self._counts["rejected"] += 1
                return reason
            # The output is clipped to the range anyway; clipping the target here keeps the
            # stream's velocity estimate finite (float64-max targets 5 ms apart overflowed it
            # to inf, the output went NaN and the bridge's state loop died: bench/faults.py).
            arr = np.clip(arr, self._limits.lower, self._limits.upper)
            self._stream.update(arr, self._all_joints, float(now), sent_at)
            self._counts["accepted"] += 1
            return None

    def expire_command(self) -> None:
        """The command's sender is known to be gone (its process exited): treat the current
        command as stale now, without waiting ``command_timeout_s``; the next tick decelerates
        and holds (counted in ``stale_holds``). A later command is followed as usual."""
        with self._lock:
            self._stream.expire()

    def engage_estop(self) -> None:
        """Latch the e-stop: decelerate and hold; reject commands until release."""
        with self._lock:
            if not self._estop:
                self._estop = True
                self._counts["estops"] += 1
                self._drop_command_locked()
                self._mode = SafetyMode.ESTOP

    def release_estop(self) -> None:
        """Release the e-stop; the next output starts from the measured position and holds it
        until a command arrives after the release.
        """
        with self._lock:
            if self._estop:
                self._estop = False
                self._drop_motion_locked()

    def resync(self) -> None:
        """Forget the last output and the current command (the robot was moved externally, e.g.
        a simulator reset): the next output starts from the measured position and holds it.
        """
        with self._lock:
            self._drop_motion_locked()

    def _drop_command_locked(self) -> None:
        self._stream = TargetStream(
            self._limits.dof,
            playout_delay_s=self._playout_delay,
            max_extrapolation_s=self._max_extrapolation,
            max_deceleration=self._limits.max_acceleration,
            max_playout_delay_s=self._max_playout_delay,
        )
        self._hold: np.ndarray | None = None

    def _drop_motion_locked(self) -> None:
        self._drop_command_locked()
        self._last: np.ndarray | None = None
        self._velocity = np.zeros(self._limits.dof)
        self._last_tick: float | None = None
        self._mode = SafetyMode.ESTOP if self._estop else SafetyMode.IDLE

    def output(self, now: float, measured: np.ndarray) -> np.ndarray:
        """The position to send this tick (a new array within all limits).

        ``measured`` (the robot's current positions) is used only when there is no last output.
        Raises ValueError when it is needed and has the wrong size or is not finite.
        """
        with self._lock:
            if self._last is None:
                start = np.array(measured, dtype=np.float64)
                if start.shape != (self._limits.dof,) or not np.all(np.isfinite(start)):
                    raise ValueError(
                        f"measured position {start.tolist()} is unusable for "
                        f"{list(self._limits.names)}: cannot start the safety filter"
                    )
                # limit_step brings a start outside the range back inside without a jump.
                self._last = start
                self._velocity = np.zeros(self._limits.dof)

            for tick in due_tick_times(now, self._last_tick, self._period, HARDWARE_CATCH_UP_TICKS):
                self._tick(tick)
            self._last_tick = now
            return self._last.copy()

    def _tick(self, now: float) -> None:
        """One control tick at ``now`` (lock held): moves ``_last`` on by one period."""
        assert self._last is not None
        age = now - self._stream.received_s
        if self._estop:
            mode = SafetyMode.ESTOP
        elif self._stream.position is None:
            mode = SafetyMode.IDLE
        elif age <= self._timeout:
            mode = SafetyMode.TRACKING
        else:
            mode = SafetyMode.STALE_HOLD
        if mode is SafetyMode.STALE_HOLD and self._mode is SafetyMode.TRACKING:
            self._counts["stale_holds"] += 1
        self._mode = mode

        if mode is SafetyMode.TRACKING:
            self._hold = None
            goal, goal_velocity = self._stream.sample(now)
        else:
            if self._hold is None:
                self._hold = stop_position(self._last, self._velocity, self._period, self._limits)
            goal, goal_velocity = self._hold, None

        out, velocity, clamped = limit_step(
            self._last,
            self._velocity,
            goal,
            self._period,
            self._limits,
            target_velocity=goal_velocity,
        )
        if np.any(clamped):
            self._counts["clamped"] += 1
        self._last = out
        self._velocity = velocity
