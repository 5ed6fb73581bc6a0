"""Figures of a fault campaign from recorded samples, ROS-free (bench/faults.py, tests).

Everything here works on plain arrays of what a probe received: receive times (wall clock, s
since the epoch), joint positions (rad / m) and velocities (rad/s / m/s), one row per message.

Definitions (docs/reliability.md):

- **held (motion)**: every joint's measured speed (``joint_states`` velocity) is below
  ``threshold`` (default 0.01 rad/s) for ``settle_s`` without interruption; the hold time is
  from the fault to the first sample of that quiet stretch (0 when already quiet).
- **held (command)**: the command the safety filter sent (``ramp/sent_command``) changes by less
  than ``step_eps`` (1e-5 rad) per message for ``settle_s``; the same measure on the commands.
- **jump**: a step between consecutive commands larger than the speed limit allows over the time
  between them, ``|dq| > vmax * max(dt, min_dt) * tolerance + abs_eps``: a position the robot
  was told to reach faster than its limit (a command after a gap that is within reach of the
  limit over the gap is not a jump).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def hold_time(
    times: np.ndarray,
    values: np.ndarray,
    t_fault: float,
    threshold: float,
    settle_s: float = 0.3,
) -> float | None:
    """Seconds from ``t_fault`` to the start of the first quiet stretch of ``settle_s``.

    ``values``: (n, joints) magnitudes to compare with ``threshold`` (speeds, or step sizes).
    A stretch is quiet when every sample in it has every value below ``threshold``. Samples
    before ``t_fault`` count only as the start of a stretch already quiet at the fault.
    None when no quiet stretch of ``settle_s`` starts after the fault in the samples given.
    """
    times = np.asarray(times, dtype=float)
    quiet = np.all(np.abs(np.asarray(values, dtype=float)) < threshold, axis=1)
    if len(times) == 0:
        return None
    start: float | None = None
    for t, q in zip(times, quiet, strict=True):
        if not q:
            start = None
            continue
        if start is None:
            start = t
        if t - start >= settle_s and t >= t_fault:
            return max(start - t_fault, 0.0)
    return None


def command_steps(positions: np.ndarray) -> np.ndarray:
    """Absolute per-joint change between consecutive commands, (n-1, joints)."""
    positions = np.asarray(positions, dtype=float)
    if len(positions) < 2:
        return np.zeros((0, positions.shape[1] if positions.ndim == 2 else 0))
    return np.abs(np.diff(positions, axis=0))


@dataclass
class StepFigures:
    """Largest command step and the jumps of one command stream."""

    largest_step: float
    """rad (or m for a gripper), the largest change of one joint between two commands."""
    largest_speed_ratio: float
    """Largest ``|dq| / (vmax * max(dt, min_dt))``: 1.0 = exactly at the speed limit."""
    jumps: int
    """Steps beyond the limit (see module docstring)."""
    messages: int


def step_figures(
    times: np.ndarray,
    positions: np.ndarray,
    max_velocity: Sequence[float],
    min_dt: float = 0.005,
    tolerance: float = 1.5,
    abs_eps: float = 1e-4,
) -> StepFigures:
    """Steps of a command stream against the speed limits.

    ``times``: s (header stamps or receive times); ``min_dt``: the shortest interval credited
    between two commands (one control tick; a burst of messages received together still gets
    one tick of motion each); ``tolerance`` allows for timing jitter of stamps.
    """
    times = np.asarray(times, dtype=float)
    positions = np.asarray(positions, dtype=float)
    if len(times) < 2:
        return StepFigures(0.0, 0.0, 0, len(times))
    vmax = np.asarray(max_velocity, dtype=float)
    dq = command_steps(positions)
    dt = np.maximum(np.diff(times), min_dt)[:, None]
    allowed = vmax[None, :] * dt
    ratio = dq / allowed
    jumps = int(np.sum(np.any(dq > allowed * tolerance + abs_eps, axis=1)))
    return StepFigures(float(dq.max()), float(ratio.max()), jumps, len(times))


def within_limits(
    positions: np.ndarray, lower: Sequence[float], upper: Sequence[float], eps: float = 1e-6
) -> int:
    """How many commands (rows) have a joint outside [lower, upper] or not finite."""
    positions = np.asarray(positions, dtype=float)
    if positions.size == 0:
        return 0
    bad = ~np.isfinite(positions)
    bad |= positions < np.asarray(lower)[None, :] - eps
    bad |= positions > np.asarray(upper)[None, :] + eps
    return int(np.sum(np.any(bad, axis=1)))


def percentile(values: Sequence[float | None], q: float) -> float | None:
    """``q``-th percentile of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return float(np.percentile(present, q))
