"""Latest-sample store that turns asynchronous inputs into one model observation (ROS-free).

Cameras, joint states and world-model states arrive on their own threads at their own rates. The
inference loop asks for a synchronised observation: the latest sample of every input the model
card names, each no older than ``max_age_s``. The observation time is the *oldest* of the
samples' stamps, so latency measured from it is never flattering.

Times are float seconds on the ROS clock of the stamps (wall clock by default).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


class StaleInputError(RuntimeError):
    """An input the model needs is missing or too old; the text names it."""


@dataclass(frozen=True)
class Sample:
    """One received input: its stamp (s) and payload."""

    stamp: float
    value: np.ndarray


@dataclass(frozen=True)
class Observation:
    """A synchronised set of inputs, keyed by input key (e.g. 'camera/front', 'joint_state')."""

    stamp: float
    samples: dict[str, Sample]

    def key_stamps(self) -> tuple[tuple[str, float], ...]:
        """(key, stamp) pairs; equal between two observations when no input changed."""
        return tuple(sorted((k, s.stamp) for k, s in self.samples.items()))


class ObservationBuffer:
    """Thread-safe latest-sample store for a fixed set of input keys."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(keys)
        self._latest: dict[str, Sample] = {}
        self._lock = threading.Lock()

    @property
    def keys(self) -> tuple[str, ...]:
        return self._keys

    def put(self, key: str, stamp: float, value: np.ndarray) -> None:
        """Store the latest sample of ``key``; a sample older than the stored one is ignored."""
        if key not in self._keys:
            raise KeyError(f"unknown input {key!r}; expected one of {self._keys}")
        with self._lock:
            current = self._latest.get(key)
            if current is None or stamp >= current.stamp:
                self._latest[key] = Sample(stamp, value)

    def observation(self, now: float, max_age_s: float) -> Observation:
        """The latest sample of every key; raises StaleInputError naming missing/stale inputs."""
        with self._lock:
            latest = dict(self._latest)
        missing = [k for k in self._keys if k not in latest]
        if missing:
            raise StaleInputError(f"no data yet from {missing}")
        stale = {k: now - s.stamp for k, s in latest.items() if now - s.stamp > max_age_s}
        if stale:
            ages = ", ".join(f"{k} {age * 1e3:.0f} ms old" for k, age in sorted(stale.items()))
            raise StaleInputError(f"stale inputs (max age {max_age_s * 1e3:.0f} ms): {ages}")
        stamp = min(s.stamp for s in latest.values())
        return Observation(stamp=stamp, samples=latest)


class FrameSetGate:
    """Holds an inference until every trigger input has a new sample (a complete frame set).

    Cameras of one rig deliver their frames of one instant a few ms apart (the simulator's two
    renders, two USB cameras). Running on the first arrival would pair a new frame with the other
    camera's previous one: the observation stamp (the oldest sample) would be a frame period old,
    and the next arrival would run the model again for almost the same input. The gate opens when
    every key in ``keys`` has a sample newer than the one the last inference used, or
    ``sync_timeout_s`` after the first new sample (a slow or dead camera delays inference by at
    most that; the age check of :class:`ObservationBuffer` then decides). Not thread-safe: the
    inference thread owns it.
    """

    def __init__(self, keys: Iterable[str], sync_timeout_s: float) -> None:
        self._keys = tuple(keys)
        self._sync_timeout_s = sync_timeout_s
        self._used: dict[str, float] = {}
        self._pending_since: float | None = None

    def ready(self, obs: Observation, now: float) -> bool:
        """Whether ``obs`` (taken at ``now``, s) should be run: complete, or waited long enough."""
        fresh = [
            k
            for k in self._keys
            if k in obs.samples and obs.samples[k].stamp > self._used.get(k, -float("inf"))
        ]
        if not fresh:
            return False
        if len(fresh) == len(self._keys):
            return True
        if self._pending_since is None:
            self._pending_since = now
        return now - self._pending_since >= self._sync_timeout_s

    def used(self, obs: Observation) -> None:
        """Record the samples an inference consumed."""
        for key in self._keys:
            if key in obs.samples:
                self._used[key] = obs.samples[key].stamp
        self._pending_since = None
