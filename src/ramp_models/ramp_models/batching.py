"""Batched serving: one model session serves K robots, one forward pass per round (ROS-free).

A batched model node keeps one :class:`FleetInputs` for the robots it serves (one
:class:`~ramp_models.observation.ObservationBuffer` per robot, keyed by the robot's name, e.g.
its namespace). Each round of the inference thread:

1. :meth:`FleetInputs.gather` picks the robots that are *ready*: due (their own rate limit and,
   for the policy, their own replan rule), with a complete observation whose inputs are all
   younger than ``max_age_s``, new since that robot's last inference, and (with ``sync_keys``) a
   complete new frame set, as the single-robot node waits for one
   (:class:`~ramp_models.observation.FrameSetGate`, per robot). A robot whose inputs
   stopped, or that has not sent a complete observation yet, is simply not ready: it never
   holds up the others, and it is served from its first complete observation on.
2. :func:`run_batched` stacks the ready robots' feeds along the batch axis (in groups of at most
   the card's ``batch``; a card with ``batch: 1`` gets one call per robot), runs the session once
   per group and splits the outputs back per robot. A robot whose output row is not finite gets
   an error; the other rows are delivered.

Times are wall-clock seconds on the clock of the message stamps, as in ``observation.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from ramp_models.inputs import InputPlan, observation_id
from ramp_models.observation import (
    FrameSetGate,
    Observation,
    ObservationBuffer,
    StaleInputError,
)
from ramp_models.onnx_runtime import LoadedModel

T = TypeVar("T")


@dataclass
class RobotStatus:
    """What the fleet knows about one robot's inputs and service (read under the fleet lock)."""

    served: int = 0
    """Observations of this robot that went into an inference."""
    skipped: int = 0
    """Rounds that served other robots while this one was due but had no fresh complete
    observation (inputs missing or older than ``max_age_s``)."""
    waiting: str = "no data yet"
    """Why the robot was last not ready ('' when it was served at its last due round)."""
    last_served: float = -float("inf")
    """Wall time (s) of its last inference start; -inf before the first."""
    last_id: tuple | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Ready:
    """One robot's observation chosen for this round."""

    robot: str
    observation: Observation


@dataclass(frozen=True)
class Served:
    """One robot's result of a round: its outputs (batch 1, keyed by role) or an error."""

    robot: str
    observation: Observation
    outputs: dict[str, np.ndarray] | None
    """Outputs with a leading axis of 1, as a batch-1 call returns them; None on error."""
    error: str = ""


class FleetInputs:
    """Per-robot latest-sample stores and service bookkeeping; thread-safe.

    ``robots`` are the names the node uses (namespaces); ``keys`` the observation keys of the
    model (``InputPlan.keys``), the same for every robot. ``min_period_s`` is each robot's
    shortest time between two of its inferences (1 / rate_hz).
    """

    def __init__(
        self,
        robots: Iterable[str],
        keys: Iterable[str],
        min_period_s: float,
        sync_keys: Iterable[str] = (),
        sync_timeout_s: float = 0.0,
    ) -> None:
        """``sync_keys``: inputs that form a frame set (the trigger inputs, cameras); a robot
        waits until each has a new sample, or ``sync_timeout_s`` (s) after the first one."""
        self.robots = tuple(robots)
        if not self.robots:
            raise ValueError("a fleet needs at least one robot")
        dupes = sorted({r for r in self.robots if self.robots.count(r) > 1})
        if dupes:
            raise ValueError(f"robots named twice: {dupes}")
        if min_period_s < 0:
            raise ValueError(f"min_period_s={min_period_s!r} must be >= 0")
        self.keys = tuple(keys)
        self.min_period_s = float(min_period_s)
        self._buffers = {r: ObservationBuffer(self.keys) for r in self.robots}
        self._status = {r: RobotStatus() for r in self.robots}
        sync = sorted(sync_keys)
        self._gates = {r: FrameSetGate(sync, sync_timeout_s) for r in self.robots} if sync else {}
        self._lock = threading.Lock()

    def put(self, robot: str, key: str, stamp: float, value: np.ndarray) -> None:
        """Store the latest sample of ``key`` for ``robot`` (older than the stored one: ignored)."""
        self._buffers[robot].put(key, stamp, value)

    def status(self, robot: str) -> RobotStatus:
        """A copy of ``robot``'s status."""
        with self._lock:
            s = self._status[robot]
            return RobotStatus(s.served, s.skipped, s.waiting, s.last_served, s.last_id)

    def next_due_in(self, now: float) -> float | None:
        """Seconds until the next robot now held back by its rate limit becomes due; None when
        none is held back (robots already due are woken by their next input, not by time)."""
        with self._lock:
            waits = [s.last_served + self.min_period_s - now for s in self._status.values()]
        held = [w for w in waits if w > 0]
        return min(held) if held else None

    def gather(
        self,
        now: float,
        max_age_s: float,
        due: Callable[[str, float], bool] | None = None,
    ) -> list[Ready]:
        """The robots ready at ``now`` (see the module docstring), in fleet order; each chosen
        observation is marked as served, so the same observation is never inferred twice.

        ``due(robot, now)`` is an extra per-robot condition (the policy's replan rule).
        """
        ready: list[Ready] = []
        not_ready: list[tuple[str, str]] = []
        with self._lock:
            for robot in self.robots:
                status = self._status[robot]
                if now - status.last_served < self.min_period_s:
                    continue
                if due is not None and not due(robot, now):
                    continue
                try:
                    obs = self._buffers[robot].observation(now, max_age_s)
                except StaleInputError as exc:
                    not_ready.append((robot, str(exc)))
                    continue
                obs_id = observation_id(obs)
                if obs_id == status.last_id:
                    continue  # nothing new since its last inference
                gate = self._gates.get(robot)
                if gate is not None:
                    if not gate.ready(obs, now):
                        continue  # the rest of its frame set is on its way
                    gate.used(obs)
                status.last_id = obs_id
                status.last_served = now
                status.served += 1
                status.waiting = ""
                ready.append(Ready(robot, obs))
            for robot, reason in not_ready:
                status = self._status[robot]
                status.waiting = reason
                if ready:
                    status.skipped += 1
        return ready


def split_outputs(outputs: Mapping[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """Batched outputs (leading axis n) -> n dicts of batch-1 outputs (views, no copy)."""
    for role, value in outputs.items():
        if value.shape[0] != n:
            raise ValueError(f"output {role!r} has batch {value.shape[0]}, expected {n}")
    return [{role: value[i : i + 1] for role, value in outputs.items()} for i in range(n)]


def groups(items: Sequence[T], max_batch: int | None) -> list[list[T]]:
    """``items`` in consecutive groups of at most ``max_batch`` (None: one group)."""
    if not items:
        return []
    size = len(items) if max_batch is None else max(1, int(max_batch))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def run_batched(model: LoadedModel, plan: InputPlan, ready: Sequence[Ready]) -> list[Served]:
    """One forward pass per group of ready robots (groups of at most the card's ``batch``).

    Errors stay with their robot: a robot whose inputs cannot become feeds (a frame the
    preprocessing refuses) or whose output row is not finite gets ``error``, the other robots
    of the round still get their outputs.
    """
    served: list[Served] = []
    feedable: list[tuple[Ready, dict[str, np.ndarray]]] = []
    specs = {spec.role: spec for spec in model.card.inputs}
    for item in ready:
        try:
            feeds = plan.feeds(item.observation)
            for role, array in feeds.items():
                spec = specs[role]
                if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
                    raise ValueError(
                        f"role {role!r}: {array.dtype} {list(array.shape)}, the model takes "
                        f"{spec.dtype} {list(spec.shape)}"
                    )
            feedable.append((item, feeds))
        except (ValueError, KeyError) as exc:  # FrameError, a shape the model does not take
            served.append(Served(item.robot, item.observation, None, f"bad input: {exc}"))
    for group in groups(feedable, model.card.max_batch):
        if len(group) == 1:
            feeds = group[0][1]
        else:
            feeds = {role: np.concatenate([f[role] for _, f in group]) for role in group[0][1]}
        outputs = model.run(feeds, check_finite=False)
        for (item, _), out in zip(group, split_outputs(outputs, len(group)), strict=True):
            bad = [
                role
                for role, value in out.items()
                if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value))
            ]
            if bad:
                served.append(
                    Served(item.robot, item.observation, None, f"non-finite output {bad}")
                )
            else:
                served.append(Served(item.robot, item.observation, out))
    return served
