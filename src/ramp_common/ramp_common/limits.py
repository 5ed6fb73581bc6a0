"""Joint limits and the rate limiter that enforces them (ROS-free).

Units: positions in rad (revolute) or m (gripper opening), velocities per second, accelerations
per second squared, time steps in seconds. Arrays are (D,) in the robot config's joint order.

The same code runs in the chunk executor (so the commanded trajectory is already feasible) and
again in every robot bridge (the last line of defence before hardware).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        arrays = {}
        for label, values in (
            ("position_lower", lower),
            ("position_upper", upper),
            ("max_velocity", max_velocity),
            ("max_acceleration", max_acceleration),
        ):
            arr = np.asarray(values, dtype=np.float64)
            if arr.shape != (n,):
                raise LimitsError(f"{label} has {arr.size} values for {n} joints {list(names)}")
            if not np.all(np.isfinite(arr)):
                raise LimitsError(f"{label} holds non-finite values: {arr.tolist()}")
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


def limit_step(
    previous: np.ndarray,
    previous_velocity: np.ndarray,
    target: np.ndarray,
    dt: float,
    limits: JointLimits,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One control tick from ``previous`` toward ``target`` within all limits.

    The position target is clipped into the joint range; the velocity is bounded by the velocity
    limit and by the speed from which the joint can still stop at the target with the
    acceleration limit (so it neither overshoots nor leaves the range); the change of velocity is
    bounded by the acceleration limit. ``previous`` must itself be within the range.

    Returns (command, velocity, clamped) where ``clamped`` marks the joints whose step was
    changed by a limit (for diagnostics).
    """
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    goal = limits.clip(target)
    clamped = goal != target
    error = goal - previous
    amax = limits.max_acceleration
    # Largest speed from which a stop at the goal is possible in discrete steps of dt:
    # v <= a*dt*(sqrt(1/4 + 2*d/(a*dt^2)) - 1/2)  (sum of a decreasing arithmetic sequence).
    dist = np.abs(error)
    v_stop = amax * dt * (np.sqrt(0.25 + 2.0 * dist / (amax * dt * dt)) - 0.5)
    v_cap = np.minimum(limits.max_velocity, v_stop)
    v_wanted = np.clip(error / dt, -v_cap, v_cap)
    dv = np.clip(v_wanted - previous_velocity, -amax * dt, amax * dt)
    velocity = previous_velocity + dv
    command = previous + velocity * dt
    # Exact reach: do not dither around the goal.
    reached = np.abs(goal - command) < 1e-12
    command = np.where(reached, goal, command)
    clamped |= np.abs(v_wanted - error / dt) > 1e-9
    clamped |= np.abs(dv - (v_wanted - previous_velocity)) > 1e-9
    out = limits.clip(command)
    velocity = (out - previous) / dt
    return out, velocity, clamped
