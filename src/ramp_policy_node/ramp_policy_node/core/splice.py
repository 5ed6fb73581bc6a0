"""How a new action chunk joins the trajectory being executed (ROS-free).

The executor's target at time t is a :class:`Reference`: a function of absolute time (s) giving
(D,) joint positions (rad, m for a gripper). A chunk is a :class:`ChunkReference`; splicing a new
chunk wraps the current reference and the new chunk in a blend, so blends that overlap (a chunk
arrives while the last splice is still blending) nest without a jump. ``settled(t)`` drops the
parts of a blend that can no longer matter after t, which keeps the nesting shallow.

Strategies (``SPLICE_STRATEGIES``):

- ``replace``: the new chunk is the target from the next tick on.
- ``ensemble``: ACT temporal ensembling; the target is the weighted mean of every chunk that still
  covers t, weights exp(-decay * i) with i the age index among them (oldest = 0), normalised.
- ``crossfade``: cosine crossfade from the current target to the new chunk over
  ``crossfade_steps`` *chunk steps* (steps of the new chunk, so the duration does not depend on
  the control rate: 10 steps of 0.02 s = 0.2 s at 200 and at 500 Hz). The new chunk is first
  re-anchored: offset by (commanded pose - new chunk at the splice time), the offset fading to 0
  with the same cosine.
- ``rtc``: real-time-chunking-style splice: the current target is kept unchanged up to
  ``max(arrival, stamp + inference_delay_s)`` (the committed prefix), then the weight on it falls
  linearly to 0 at the end of its newest chunk (at least two chunk steps later).

Gripper joints (``switch_mask``) are never blended: they take the new chunk's value (from the
splice on; for ``rtc`` from the end of the committed prefix, for ``ensemble`` from the newest
chunk covering t) and are not re-anchored.

When chunks start again from a hold (first chunk, after the watchdog, e-stop or a handover), the
first chunk is re-anchored to the commanded pose the same way for every strategy (``resume``).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

from ramp_policy_node.core.chunk import TimedTrajectory

SPLICE_STRATEGIES = ("replace", "ensemble", "crossfade", "rtc")

RTC_MIN_BLEND_STEPS = 2
"""The rtc blend lasts at least this many chunk steps after the committed prefix."""


def cosine_ramp(progress: float) -> float:
    """0 -> 1 with zero slope at both ends: 0.5 - 0.5 cos(pi p), p clipped into [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    return 0.5 - 0.5 * math.cos(math.pi * p)


def ensemble_weights(count: int, decay: float) -> np.ndarray:
    """ACT temporal-ensembling weights for ``count`` chunks, oldest first, summing to 1."""
    weights = np.exp(-decay * np.arange(count, dtype=np.float64))
    return weights / weights.sum()


class Reference(abc.ABC):
    """Target joint positions as a function of absolute time."""

    @abc.abstractmethod
    def sample(self, t: float) -> np.ndarray:
        """(D,) target at time ``t`` (s)."""

    @property
    @abc.abstractmethod
    def end_time(self) -> float:
        """Time of the last step of the newest chunk in this reference, s."""

    def settled(self, t: float) -> Reference:
        """An equivalent reference for all times >= t, with finished blends removed."""
        return self

    @property
    def depth(self) -> int:
        """Number of chunks this reference still blends (for diagnostics and tests)."""
        return 1


class ChunkReference(Reference):
    """One chunk on its own."""

    def __init__(self, trajectory: TimedTrajectory) -> None:
        self.trajectory = trajectory

    def sample(self, t: float) -> np.ndarray:
        return self.trajectory.sample(t)

    @property
    def end_time(self) -> float:
        return self.trajectory.end_time


class AnchoredReference(Reference):
    """``inner`` plus an offset that fades from ``offset`` at ``t0`` to 0 at ``t0 + duration``
    (cosine), so the reference starts at the commanded pose instead of jumping to the chunk.
    """

    def __init__(self, inner: Reference, offset: np.ndarray, t0: float, duration: float) -> None:
        self.inner = inner
        self.offset = offset
        self.t0 = t0
        self.duration = duration

    def sample(self, t: float) -> np.ndarray:
        fade = 1.0 - cosine_ramp((t - self.t0) / self.duration)
        return self.inner.sample(t) + fade * self.offset

    @property
    def end_time(self) -> float:
        return self.inner.end_time

    def settled(self, t: float) -> Reference:
        if t >= self.t0 + self.duration:
            return self.inner.settled(t)
        self.inner = self.inner.settled(t)
        return self

    @property
    def depth(self) -> int:
        return self.inner.depth


class _PairBlend(Reference):
    """Blend of an older reference into a newer one; gripper joints follow ``switch_mask``."""

    def __init__(self, old: Reference, new: Reference, switch_mask: np.ndarray) -> None:
        self.old = old
        self.new = new
        self.switch_mask = switch_mask

    @property
    def finished_at(self) -> float:
        """From this time on the blend equals ``new``."""
        raise NotImplementedError

    @property
    def end_time(self) -> float:
        return self.new.end_time

    def settled(self, t: float) -> Reference:
        if t >= self.finished_at:
            return self.new.settled(t)
        self.old = self.old.settled(t)
        self.new = self.new.settled(t)
        return self

    @property
    def depth(self) -> int:
        return self.old.depth + self.new.depth


class CrossfadeReference(_PairBlend):
    """(1 - s) * old + s * new with s a cosine ramp over [t0, t0 + duration]."""

    def __init__(
        self,
        old: Reference,
        new: Reference,
        t0: float,
        duration: float,
        switch_mask: np.ndarray,
    ) -> None:
        super().__init__(old, new, switch_mask)
        self.t0 = t0
        self.duration = duration

    @property
    def finished_at(self) -> float:
        return self.t0 + self.duration

    def sample(self, t: float) -> np.ndarray:
        s = cosine_ramp((t - self.t0) / self.duration)
        new = self.new.sample(t)
        if s >= 1.0:
            return new
        out = (1.0 - s) * self.old.sample(t) + s * new
        out[self.switch_mask] = new[self.switch_mask]
        return out


class RtcReference(_PairBlend):
    """old alone up to ``t_commit``; then old weight falling linearly to 0 at ``t_end``."""

    def __init__(
        self,
        old: Reference,
        new: Reference,
        t_commit: float,
        t_end: float,
        switch_mask: np.ndarray,
    ) -> None:
        super().__init__(old, new, switch_mask)
        self.t_commit = t_commit
        self.t_end = t_end

    @property
    def finished_at(self) -> float:
        return self.t_end

    def old_weight(self, t: float) -> float:
        """1 during the committed prefix, then linear down to 0 at ``t_end``."""
        if t <= self.t_commit:
            return 1.0
        return max(0.0, 1.0 - (t - self.t_commit) / (self.t_end - self.t_commit))

    def sample(self, t: float) -> np.ndarray:
        w_old = self.old_weight(t)
        if w_old <= 0.0:
            return self.new.sample(t)
        old = self.old.sample(t)
        if w_old >= 1.0:
            return old  # committed prefix: the old target runs on, grippers included
        new = self.new.sample(t)
        out = w_old * old + (1.0 - w_old) * new
        out[self.switch_mask] = new[self.switch_mask]
        return out


class EnsembleReference(Reference):
    """ACT temporal ensembling over the chunks (``members``, oldest first) covering t."""

    def __init__(self, members: tuple[Reference, ...], decay: float, switch_mask: np.ndarray):
        self.members = members
        self.decay = decay
        self.switch_mask = switch_mask

    def _covering(self, t: float) -> tuple[Reference, ...]:
        covering = tuple(m for m in self.members if m.end_time >= t)
        return covering or self.members[-1:]

    def sample(self, t: float) -> np.ndarray:
        covering = self._covering(t)
        samples = np.stack([m.sample(t) for m in covering])
        out = ensemble_weights(len(covering), self.decay) @ samples
        out[self.switch_mask] = samples[-1][self.switch_mask]
        return out

    @property
    def end_time(self) -> float:
        return self.members[-1].end_time

    def settled(self, t: float) -> Reference:
        self.members = tuple(m.settled(t) for m in self._covering(t))
        return self

    @property
    def depth(self) -> int:
        return len(self.members)


@dataclass(frozen=True)
class SpliceParams:
    """Strategy parameters (see the module docstring); ``switch_mask`` (D,) marks grippers."""

    strategy: str
    crossfade_steps: int
    ensemble_decay: float
    inference_delay_s: float
    switch_mask: np.ndarray


def _anchor(
    new: Reference, trajectory: TimedTrajectory, now: float, pose: np.ndarray, params: SpliceParams
) -> AnchoredReference:
    offset = pose - new.sample(now)
    offset[params.switch_mask] = 0.0
    duration = params.crossfade_steps * trajectory.step_dt
    return AnchoredReference(new, offset, now, duration)


def resume(
    trajectory: TimedTrajectory, now: float, commanded_pose: np.ndarray, params: SpliceParams
) -> Reference:
    """The reference for the first chunk after a hold: the chunk re-anchored to the pose."""
    anchored = _anchor(ChunkReference(trajectory), trajectory, now, commanded_pose, params)
    if params.strategy == "ensemble":
        return EnsembleReference((anchored,), params.ensemble_decay, params.switch_mask)
    return anchored


def splice(
    current: Reference,
    trajectory: TimedTrajectory,
    chunk_stamp: float,
    now: float,
    commanded_pose: np.ndarray,
    params: SpliceParams,
) -> Reference:
    """The reference after the chunk ``trajectory`` (observed at ``chunk_stamp``) arrives at
    ``now`` while ``current`` is executing; ``commanded_pose`` is the command at ``now``.
    """
    new = ChunkReference(trajectory)
    strategy = params.strategy
    if strategy == "replace":
        return new
    if strategy == "ensemble":
        if isinstance(current, EnsembleReference):
            members = (*current.settled(now).members, new)
        else:
            members = (current, new)
        return EnsembleReference(members, params.ensemble_decay, params.switch_mask)
    if strategy == "crossfade":
        anchored = _anchor(new, trajectory, now, commanded_pose, params)
        return CrossfadeReference(current, anchored, now, anchored.duration, params.switch_mask)
    if strategy == "rtc":
        t_commit = max(now, chunk_stamp + params.inference_delay_s)
        t_end = max(current.end_time, t_commit + RTC_MIN_BLEND_STEPS * trajectory.step_dt)
        return RtcReference(current, new, t_commit, t_end, params.switch_mask)
    raise ValueError(f"unknown splice strategy {strategy!r}; expected one of {SPLICE_STRATEGIES}")
