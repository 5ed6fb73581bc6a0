"""Health report of a stack run (ROS-free): counts, rates, latencies, motion, errors -> JSON.

The runner's monitor feeds it every message it sees (receive time, header stamp); this module
turns them into the report ``ramp up --report FILE`` writes. Times are float seconds on the wall
clock; latencies are reported in ms. Besides percentiles, the report keeps the last
``RAW_SAMPLES`` raw latencies of each series (``latency_samples_ms``, ``stamp_delay_samples_ms``)
so that ``ramp summary --plot`` can draw their histograms.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RAW_SAMPLES = 2000
"""Raw latency samples kept in the report per series (the last ones of the run)."""


def last_samples_ms(samples_s: list[float], n: int = RAW_SAMPLES) -> list[float]:
    """The last ``n`` durations (s) in ms, rounded to 1 us (bounded raw data for histograms)."""
    return [round(v * 1e3, 3) for v in samples_s[-n:]] if n > 0 else []


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in ms of durations given in seconds; {} when empty."""
    if not samples_s:
        return {}
    arr = np.asarray(samples_s, dtype=np.float64) * 1e3
    return {
        "p50": round(float(np.percentile(arr, 50)), 3),
        "p90": round(float(np.percentile(arr, 90)), 3),
        "p99": round(float(np.percentile(arr, 99)), 3),
        "max": round(float(arr.max()), 3),
        "n": len(samples_s),
    }


@dataclass
class TopicStats:
    """Receive times and (receive - header stamp) delays of one topic."""

    receive_times: list[float] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    def summary(self, t_end: float) -> dict[str, Any]:
        n = len(self.receive_times)
        out: dict[str, Any] = {"count": n}
        if n >= 2:
            span = self.receive_times[-1] - self.receive_times[0]
            out["rate_hz"] = round((n - 1) / span, 2) if span > 0 else 0.0
            gaps = np.diff(self.receive_times)
            out["max_gap_ms"] = round(float(gaps.max()) * 1e3, 2)
            out["silent_at_end_s"] = round(t_end - self.receive_times[-1], 3)
        else:
            out["rate_hz"] = 0.0
        if self.delays:
            out["stamp_delay_ms"] = percentiles_ms(self.delays)
        return out


class RunRecorder:
    """Thread-safe accumulator of what the monitor observed during a run."""

    def __init__(self, joint_names: list[str]) -> None:
        self._lock = threading.Lock()
        self._topics: dict[str, TopicStats] = {}
        self._joint_names = joint_names
        self._joint_positions: list[np.ndarray] = []
        self._pending_chunk_stamps: list[float] = []
        self._e2e: dict[str, list[float]] = {
            "capture_to_wm_state": [],
            "capture_to_chunk": [],
            "capture_to_first_command": [],
        }
        self._diagnostics: dict[str, dict[str, Any]] = {}
        self._errors: list[str] = []
        self._log_errors: list[str] = []

    def message(self, topic: str, received: float, stamp: float | None) -> None:
        with self._lock:
            stats = self._topics.setdefault(topic, TopicStats())
            stats.receive_times.append(received)
            if stamp is not None and stamp > 0:
                stats.delays.append(received - stamp)

    def joint_state(self, positions: np.ndarray) -> None:
        with self._lock:
            self._joint_positions.append(np.asarray(positions, dtype=np.float64))

    def wm_state(self, received: float, observation_stamp: float) -> None:
        with self._lock:
            self._e2e["capture_to_wm_state"].append(received - observation_stamp)

    def chunk(self, received: float, observation_stamp: float) -> None:
        with self._lock:
            self._e2e["capture_to_chunk"].append(received - observation_stamp)
            self._pending_chunk_stamps.append(observation_stamp)

    def command(self, received: float) -> None:
        """A joint command: the first one after a chunk closes that chunk's end-to-end latency."""
        with self._lock:
            for stamp in self._pending_chunk_stamps:
                self._e2e["capture_to_first_command"].append(received - stamp)
            self._pending_chunk_stamps.clear()

    def diagnostic(self, name: str, level: int, message: str, values: dict[str, str]) -> None:
        with self._lock:
            self._diagnostics[name] = {"level": level, "message": message, "values": values}
            if level >= 2:
                self._errors.append(f"diagnostics {name}: {message}")

    def log_error(self, text: str) -> None:
        with self._lock:
            self._log_errors.append(text)

    def error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)

    def report(self, meta: dict[str, Any], t_start: float, t_end: float) -> dict[str, Any]:
        """The JSON-ready report."""
        with self._lock:
            topics = {name: s.summary(t_end) for name, s in sorted(self._topics.items())}
            e2e = {k: percentiles_ms(v) for k, v in self._e2e.items()}
            e2e_samples = {k: last_samples_ms(v) for k, v in self._e2e.items()}
            delay_samples = {
                name: last_samples_ms(s.delays)
                for name, s in sorted(self._topics.items())
                if s.delays
            }
            motion: dict[str, Any] = {"samples": len(self._joint_positions)}
            if len(self._joint_positions) >= 2:
                q = np.stack(self._joint_positions)
                ranges = q.max(axis=0) - q.min(axis=0)
                motion["range"] = {
                    n: round(float(r), 4) for n, r in zip(self._joint_names, ranges, strict=True)
                }
                motion["path_length"] = round(float(np.abs(np.diff(q, axis=0)).sum()), 4)
                motion["moving"] = bool(ranges[:-1].max() > 0.05) if len(ranges) > 1 else False
            else:
                motion["moving"] = False
            errors = list(dict.fromkeys(self._errors))  # dedupe, keep order
            log_errors = list(dict.fromkeys(self._log_errors))
            diagnostics = dict(self._diagnostics)
        inference = {}
        for name, diag in diagnostics.items():
            values = diag["values"]
            if "inference_ms_p50" in values:
                inference[name] = {
                    k.removeprefix("inference_ms_"): float(v)
                    for k, v in values.items()
                    if k.startswith("inference_ms_")
                }
        return {
            **meta,
            "duration_s": round(t_end - t_start, 3),
            "topics": topics,
            "latency_ms": e2e,
            "inference_ms": inference,
            "joint_motion": motion,
            "diagnostics": diagnostics,
            "errors": errors + log_errors,
            "ok": not errors and not log_errors,
            "latency_samples_ms": e2e_samples,
            "stamp_delay_samples_ms": delay_samples,
        }


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as indented JSON (atomically: temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
