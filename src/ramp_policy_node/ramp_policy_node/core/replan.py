"""When the policy node starts its next inference (ROS-free).

Checked by the inference thread on every wake-up (at most ``rate_hz``): with
``replan_remaining_s`` > 0 (asynchronous chunking) the next inference waits until the chunk last
published has less than ``replan_remaining_s`` seconds left (it ends at ``observation stamp +
H * step_dt``); with 0 it runs on every new observation. Either way a new chunk needs a new
observation (:func:`ramp_models.inputs.observation_id`, checked by the model-node base).

Times are float seconds on the clock of the observation stamps (wall clock in the nodes).
"""

from __future__ import annotations

import threading


class ReplanRule:
    """Decides whether the next inference may start; thread-safe."""

    def __init__(self, replan_remaining_s: float = 0.0) -> None:
        if replan_remaining_s < 0:
            raise ValueError(f"replan_remaining_s={replan_remaining_s!r} must be >= 0")
        self._lock = threading.Lock()
        self._remaining_s = float(replan_remaining_s)
        self._chunk_end = 0.0

    @property
    def replan_remaining_s(self) -> float:
        with self._lock:
            return self._remaining_s

    @replan_remaining_s.setter
    def replan_remaining_s(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"replan_remaining_s={value!r} must be >= 0")
        with self._lock:
            self._remaining_s = float(value)

    @property
    def chunk_end(self) -> float:
        """When the last published chunk runs out (s; 0 before the first chunk)."""
        with self._lock:
            return self._chunk_end

    def due(self, now: float) -> bool:
        """True when the current chunk leaves room for the next inference at ``now`` (s)."""
        with self._lock:
            return self._remaining_s <= 0 or now >= self._chunk_end - self._remaining_s

    def published(self, observation_stamp: float, chunk_duration_s: float) -> None:
        """Record a published chunk: observed at ``observation_stamp``, lasting its H steps."""
        with self._lock:
            self._chunk_end = observation_stamp + chunk_duration_s
