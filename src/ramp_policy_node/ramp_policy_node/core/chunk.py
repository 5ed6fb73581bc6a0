"""Action chunks and their absolute-time trajectories (ROS-free).

A policy predicts an action chunk from one observation: H steps of absolute joint position
targets (rad for revolute joints, m for a gripper opening), in the robot config's joint order.
Step k targets time ``stamp + t_from_start[k]`` on the clock of ``stamp`` (the observation time;
the executor's ``now`` must be on the same clock, wall time in the ROS nodes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_FUTURE_STAMP_S = 1.0
"""A chunk stamped further than this ahead of ``now`` is refused (clocks out of sync)."""


def _frozen_float_array(values: np.ndarray) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class ActionChunk:
    """One policy output: H absolute joint targets with their times after the observation.

    ``stamp``: observation time, s. ``t_from_start``: (H,) s, strictly increasing, > 0.
    ``positions``: (H, D) absolute targets, rad (m for the gripper). The arrays are copied to
    read-only float64 on construction, so a chunk cannot change after it was submitted.
    """

    stamp: float
    t_from_start: np.ndarray
    positions: np.ndarray
    model_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stamp", float(self.stamp))
        object.__setattr__(self, "t_from_start", _frozen_float_array(self.t_from_start))
        object.__setattr__(self, "positions", _frozen_float_array(self.positions))

    @classmethod
    def from_step_dt(
        cls, stamp: float, positions: np.ndarray, step_dt: float, model_id: str = ""
    ) -> ActionChunk:
        """A chunk whose step k targets ``stamp + (k + 1) * step_dt`` (the model card's rule)."""
        horizon = np.shape(positions)[0]
        return cls(stamp, (np.arange(horizon) + 1.0) * step_dt, positions, model_id)

    @property
    def horizon(self) -> int:
        """Number of steps H."""
        return int(self.positions.shape[0]) if self.positions.ndim >= 1 else 0

    @property
    def step_times(self) -> np.ndarray:
        """(H,) absolute target times, s (same clock as ``stamp``)."""
        return self.stamp + self.t_from_start

    def validate(self, dof: int) -> str | None:
        """None if the chunk is usable for a robot with ``dof`` joints, else the reason.

        Reasons start with a short stable key before ':' (for rate-limited logging).
        """
        if not np.isfinite(self.stamp):
            return f"bad stamp: {self.stamp}"
        if self.positions.ndim != 2:
            return f"bad shape: positions must be (H, D), got shape {self.positions.shape}"
        horizon, width = self.positions.shape
        if horizon == 0:
            return "empty: the chunk has no steps"
        if width != dof:
            return f"wrong dof: positions have {width} joints per step, the robot has {dof}"
        if self.t_from_start.shape != (horizon,):
            return (
                f"bad shape: t_from_start has shape {self.t_from_start.shape}, "
                f"expected ({horizon},) to match positions"
            )
        bad = ~np.isfinite(self.positions)
        if bad.any():
            step, joint = (int(i) for i in np.argwhere(bad)[0])
            return (
                f"non-finite position: step {step} joint {joint} is "
                f"{self.positions[step, joint]} ({int(bad.sum())} values in all)"
            )
        if not np.all(np.isfinite(self.t_from_start)):
            return f"non-finite time: t_from_start = {self.t_from_start.tolist()}"
        if self.t_from_start[0] <= 0.0:
            return f"bad time: t_from_start[0] = {self.t_from_start[0]} s, must be > 0"
        steps = np.diff(self.t_from_start)
        if np.any(steps <= 0.0):
            k = int(np.argmax(steps <= 0.0))
            return (
                f"bad time: t_from_start not strictly increasing at step {k + 1} "
                f"({self.t_from_start[k]} -> {self.t_from_start[k + 1]} s)"
            )
        return None


class TimedTrajectory:
    """A piecewise-linear joint trajectory on absolute time (positions (K, D) at times (K,)).

    Sampling before the first knot returns the first knot, after the last knot the last one.
    Built from a chunk at its arrival: the steps already in the past are dropped (but the last
    past step is kept as the interpolation anchor for the current segment), and if the first
    step is still ahead, the pose commanded at arrival becomes the first knot, so the trajectory
    starts where the robot is being commanded.
    """

    def __init__(
        self, times: np.ndarray, positions: np.ndarray, valid_from: float, step_dt: float
    ) -> None:
        self.times = times
        """(K,) knot times, s, strictly increasing."""
        self.positions = positions
        """(K, D) knot positions, rad (m)."""
        self.valid_from = valid_from
        """Arrival time, s: the trajectory is used from here on."""
        self.step_dt = step_dt
        """Spacing of the chunk's steps, s (median; the first step time for a 1-step chunk)."""

    @classmethod
    def from_chunk(
        cls, chunk: ActionChunk, arrival_time: float, arrival_pose: np.ndarray
    ) -> tuple[TimedTrajectory, int]:
        """(trajectory, number of steps dropped because their time had passed at arrival)."""
        times = chunk.step_times
        past = int(np.count_nonzero(times < arrival_time))
        if past == 0:
            knots_t = np.concatenate(([arrival_time], times))
            knots_q = np.vstack((np.asarray(arrival_pose, dtype=np.float64), chunk.positions))
        else:
            knots_t = times[past - 1 :]
            knots_q = chunk.positions[past - 1 :]
        steps = np.diff(chunk.t_from_start)
        step_dt = float(np.median(steps)) if steps.size else float(chunk.t_from_start[0])
        return cls(knots_t, knots_q, arrival_time, step_dt), past

    @property
    def end_time(self) -> float:
        """Time of the last step, s."""
        return float(self.times[-1])

    def sample(self, t: float) -> np.ndarray:
        """Positions at time ``t`` (s), linearly interpolated between knots; (D,)."""
        times = self.times
        if t <= times[0]:
            return self.positions[0].copy()
        if t >= times[-1]:
            return self.positions[-1].copy()
        i = int(np.searchsorted(times, t, side="right"))
        t0, t1 = times[i - 1], times[i]
        alpha = (t - t0) / (t1 - t0)
        return self.positions[i - 1] + alpha * (self.positions[i] - self.positions[i - 1])
