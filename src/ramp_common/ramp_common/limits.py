"""Joint limits and the rate limiter that enforces them (ROS-free).

Units: positions in rad (revolute) or m (gripper opening), velocities per second, accelerations
per second squared, time steps in seconds. Arrays are (D,) in the robot config's joint order.

The same code runs in the chunk executor (so the commanded trajectory is already feasible) and
again in every robot bridge (the last line of defence before hardware).

Discrete model: one command per tick of ``dt``; the velocity of a tick is
``(command - previous) / dt`` and the acceleration is the change of that velocity over ``dt``.
:func:`limit_step` keeps both within the limits *exactly* in that model (the finite differences of
its output never exceed them), and keeps every command inside the position range, because it only
ever picks a velocity from which a stop inside the range is still possible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np


class LimitsError(ValueError):
    """Inconsistent limit configuration; the text names the joint and the problem."""


@dataclass(frozen=True)
class JointLimits:
    """Per-joint position, velocity and acceleration limits."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray
    max_acceleration: np.ndarray

    @classmethod
    def from_lists(
        cls,
        names: Sequence[str],
        lower: Sequence[float],
        upper: Sequence[float],
        max_velocity: Sequence[float],
        max_acceleration: Sequence[float],
    ) -> JointLimits:
        """Build and validate limits from config lists (all of length len(names))."""
        n = len(names)
        if len(set(names)) != n:
            raise LimitsError(f"joint names are not unique: {list(names)}")
        arrays = {}
        for label, values in (
            ("position_lower", lower),
            ("position_upper", upper),
            ("max_velocity", max_velocity),
            ("max_acceleration", max_acceleration),
        ):
            arr = np.array(values, dtype=np.float64)
            if arr.shape != (n,):
                raise LimitsError(f"{label} has {arr.size} values for {n} joints {list(names)}")
            if not np.all(np.isfinite(arr)):
                raise LimitsError(f"{label} holds non-finite values: {arr.tolist()}")
            arr.setflags(write=False)
            arrays[label] = arr
        for i, name in enumerate(names):
            if arrays["position_lower"][i] >= arrays["position_upper"][i]:
                raise LimitsError(f"joint {name}: lower limit >= upper limit")
            if arrays["max_velocity"][i] <= 0 or arrays["max_acceleration"][i] <= 0:
                raise LimitsError(f"joint {name}: velocity and acceleration limits must be > 0")
        return cls(
            tuple(names),
            arrays["position_lower"],
            arrays["position_upper"],
            arrays["max_velocity"],
            arrays["max_acceleration"],
        )

    @property
    def dof(self) -> int:
        return len(self.names)

    def clip(self, positions: np.ndarray) -> np.ndarray:
        """Positions clipped into [lower, upper]."""
        return np.clip(positions, self.lower, self.upper)

    def with_velocity_scale(self, scale: float) -> JointLimits:
        """The same limits with every velocity limit multiplied by ``scale`` (0 < scale <= 1)."""
        if not 0.0 < scale <= 1.0:
            raise LimitsError(f"velocity scale must be in (0, 1], got {scale}")
        velocity = self.max_velocity * scale
        velocity.setflags(write=False)
        return replace(self, max_velocity=velocity)


MAX_CATCH_UP_TICKS = 10
"""A control step computes at most this many ticks after a stall (see :func:`ticks_due`)."""


def ticks_due(
    now: float, last_tick: float | None, period_s: float, max_ticks: int = MAX_CATCH_UP_TICKS
) -> int:
    """How many control ticks a step at ``now`` must compute: whole periods since ``last_tick``.

    A loop that skipped ticks (``RateLoop`` runs the next one on schedule, two or more periods
    after the last) computes the skipped ticks too (sends only the last), so its command stream
    keeps the one-tick-per-period model that :func:`limit_step` is exact in, and stays on time
    against its stamps: the next follower reads neither a slow-down nor a lag. Rounded to whole
    periods, so a caller passing actual call times (a few ms of jitter) gets 1; at least 1, at
    most ``max_ticks`` (after a longer stall the command is behind and catches up
    within the limits). ``last_tick`` None (the first tick) gives 1. A bridge sends the last
    tick to hardware, so it passes a smaller ``max_ticks``: the step the hardware receives after
    a stall is at most that many periods of motion.
    """
    if last_tick is None or not math.isfinite(last_tick):
        return 1
    return min(max(round((now - last_tick) / period_s), 1), max_ticks)


def due_tick_times(
    now: float, last_tick: float | None, period_s: float, max_ticks: int = MAX_CATCH_UP_TICKS
) -> list[float]:
    """The times of the ticks a step at ``now`` computes, oldest first, ending at ``now``
    (:func:`ticks_due` of them, one period apart): a core runs its one-tick update at each."""
    ticks = ticks_due(now, last_tick, period_s, max_ticks)
    return [now - k * period_s for k in range(ticks - 1, -1, -1)]


def _speed_to_stop_within(distance: np.ndarray, dt: float, max_acceleration: np.ndarray):
    """Largest speed for this tick after which a stop within ``distance`` is still possible.

    Moving at ``v`` for this tick and then braking by ``a*dt`` per tick covers
    ``D(v) = dt * sum_j max(v - j*a*dt, 0)``; this returns the inverse, the largest ``v`` with
    ``D(v) <= distance`` (0 for distance <= 0). With ``v = (n + f) * a * dt`` (integer n, f in
    [0, 1)) the distance is ``a*dt^2 * (n + 1) * (n/2 + f)``, solved here for n and f.
    """
    unit = max_acceleration * dt * dt
    x = np.maximum(distance, 0.0) / unit
    n = np.floor((np.sqrt(1.0 + 8.0 * x) - 1.0) * 0.5)
    # Guard the integer part against rounding of the square root.
    n = np.where(n * (n + 1.0) * 0.5 > x, n - 1.0, n)
    n = np.where((n + 1.0) * (n + 2.0) * 0.5 <= x, n + 1.0, n)
    n = np.maximum(n, 0.0)
    f = np.clip(x / (n + 1.0) - 0.5 * n, 0.0, 1.0)
    return (n + f) * max_acceleration * dt


def stopping_distance(velocity: np.ndarray, dt: float, limits: JointLimits) -> np.ndarray:
    """Signed distance covered when braking from ``velocity`` at the acceleration limit.

    Counts the ticks after the current one (velocity drops by ``a*dt`` each tick until 0), the
    same model :func:`limit_step` uses, so ``stop_position`` is where it comes to rest.
    """
    speed = np.abs(np.asarray(velocity, dtype=np.float64))
    step = limits.max_acceleration * dt
    ticks = np.floor(speed / step)  # ticks with a positive remaining speed after this one
    # sum_{j=1..ticks} (speed - j*step) * dt
    distance = dt * (ticks * speed - step * ticks * (ticks + 1.0) * 0.5)
    return np.sign(velocity) * np.maximum(distance, 0.0)


def stop_position(
    previous: np.ndarray, previous_velocity: np.ndarray, dt: float, limits: JointLimits
) -> np.ndarray:
    """Where a joint at ``previous`` moving at ``previous_velocity`` stops when braking at the
    acceleration limit (clipped into the position range). Feed it to :func:`limit_step` as a
    constant target to decelerate and then hold exactly there.
    """
    stop = np.asarray(previous, dtype=np.float64) + stopping_distance(previous_velocity, dt, limits)
    return limits.clip(stop)


def limit_step(
    previous: np.ndarray,
    previous_velocity: np.ndarray,
    target: np.ndarray,
    dt: float,
    limits: JointLimits,
    *,
    target_velocity: np.ndarray | None = None,
    max_catch_up: np.ndarray | float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One control tick from ``previous`` toward ``target`` within all limits.

    The position target is clipped into the joint range. The velocity of the tick is chosen to
    close the gap to the target as fast as the limits allow without overshooting it: bounded by
    the velocity limit, by the speed from which the joint can still stop at the target with the
    acceleration limit, and by the speed from which it can still stop inside the position range;
    its change from ``previous_velocity`` is bounded by the acceleration limit.

    ``target_velocity`` (per second, optional) is the velocity the target itself moves at. Given
    it, the gap is closed in the frame moving with the target, so a feasible moving target is
    followed exactly, without the lag of a stop-at-every-target limiter (which trails a target
    moving at v by about v^2 / (2 a)). Without it the target is treated as fixed (a bridge that
    only sees positions can pass ``(target - previous_target) / dt``).

    ``previous`` and ``previous_velocity`` should be the last outputs of this function (or a
    measured pose at rest); then every output is within the range, |velocity| <= max_velocity
    and |velocity - previous_velocity| <= max_acceleration * dt. A ``previous`` outside the range
    is brought back inside without a jump.

    Returns (command, velocity, clamped): ``velocity`` is (command - previous) / dt and
    ``clamped`` marks the joints whose command differs from the target (limited this tick).
    """
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    previous = np.asarray(previous, dtype=np.float64)
    previous_velocity = np.asarray(previous_velocity, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    amax = limits.max_acceleration
    vmax = limits.max_velocity
    goal = limits.clip(target)
    clipped = goal != target
    if target_velocity is None:
        goal_velocity = np.zeros_like(goal)
    else:
        # A target held at a position limit does not move, whatever the unclipped one does.
        goal_velocity = np.where(clipped, 0.0, np.clip(target_velocity, -vmax, vmax))
    # Offset of this command from the target one tick ago (target assumed moving uniformly);
    # closing it with the stopping-speed bound cannot overshoot the target.
    lag = goal - goal_velocity * dt - previous
    closing = _speed_to_stop_within(np.abs(lag), dt, amax)
    if max_catch_up is not None:
        closing = np.minimum(closing, max_catch_up)
    v_wanted = goal_velocity + np.sign(lag) * closing
    v_upper = np.minimum(vmax, _speed_to_stop_within(limits.upper - previous, dt, amax))
    v_lower = np.maximum(-vmax, -_speed_to_stop_within(previous - limits.lower, dt, amax))
    velocity = np.clip(v_wanted, previous_velocity - amax * dt, previous_velocity + amax * dt)
    # Range and speed win over acceleration only when the caller's state was inconsistent.
    velocity = np.clip(velocity, v_lower, v_upper)
    command = previous + velocity * dt
    # Land exactly on the target instead of dithering around it by rounding errors.
    command = np.where(np.abs(goal - command) < 1e-12, goal, command)
    # Rounding guard only: never pushes a command that starts outside the range.
    command = np.clip(
        command, np.minimum(limits.lower, previous), np.maximum(limits.upper, previous)
    )
    velocity = (command - previous) / dt
    clamped = clipped | (np.abs(command - goal) > 1e-9)
    return command, velocity, clamped
