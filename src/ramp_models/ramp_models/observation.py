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
