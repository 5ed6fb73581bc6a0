"""Per-node diagnostics on ``diagnostics`` (diagnostic_msgs/DiagnosticArray) at a fixed rate.

A node keeps a :class:`NodeHealth`, counts and times things into it, and a timer publishes a
DiagnosticStatus per node with key/values (rates in Hz, latencies in ms, counters, model ids).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

# Levels as ints (the message field is a byte; rclpy exposes it as bytes in Jazzy).
OK = 0
WARN = 1
ERROR = 2
STALE = 3


def level_to_int(level: int | bytes) -> int:
    """DiagnosticStatus.level as read from a message (bytes or int) -> int."""
    return level[0] if isinstance(level, bytes) else int(level)


class RateMeter:
    """Event rate over a sliding window of the last ``window_s`` seconds (monotonic clock)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        """Count one event at ``now`` (monotonic seconds)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            while self._times and now - self._times[0] > self._window_s:
                self._times.popleft()

    def rate_hz(self, now: float | None = None) -> float:
        """Events per second over the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and now - self._times[0] > self._window_s:
                self._times.popleft()
            return len(self._times) / self._window_s


class LatencyStats:
    """Keeps the last ``size`` samples of a duration (seconds) and reports percentiles in ms."""

    def __init__(self, size: int = 500) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def percentiles_ms(self) -> dict[str, float]:
        """{'p50': ms, 'p99': ms, 'max': ms}; empty when no sample yet."""
        with self._lock:
            if not self._samples:
                return {}
            arr = np.asarray(self._samples) * 1e3
        return {
            "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)),
            "max": float(arr.max()),
        }


class NodeHealth:
    """What a node reports about itself: level, message, and key/values.

    Thread-safe: callbacks and worker threads update it; the diagnostics timer reads it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._level = OK
        self._message = "starting"
        self._values: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    def set_status(self, level: int, message: str) -> None:
        with self._lock:
            self._level = level
            self._message = message

    def set_value(self, key: str, value: object) -> None:
        with self._lock:
            self._values[key] = _fmt(value)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + n

    def counter(self, key: str) -> int:
        with self._lock:
            return self._counters.get(key, 0)

    def snapshot(self) -> tuple[int, str, dict[str, str]]:
        with self._lock:
            values = dict(self._values)
            values.update({k: str(v) for k, v in self._counters.items()})
            return self._level, self._message, values


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class DiagnosticsPublisher:
    """Publishes one DiagnosticStatus for ``node`` on ``diagnostics`` every ``period_s``."""

    def __init__(
        self,
        node: Node,
        health: NodeHealth,
        period_s: float = 1.0,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        """``refresh`` is called before each publication to update slow-to-compute values."""
        self._node = node
        self._health = health
        self._refresh = refresh
        self._pub = node.create_publisher(DiagnosticArray, "diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        if self._refresh is not None:
            self._refresh()
        level, message, values = self._health.snapshot()
        status = DiagnosticStatus()
        status.level = bytes([level]) if isinstance(DiagnosticStatus.OK, bytes) else int(level)
        status.name = self._node.get_fully_qualified_name()
        status.hardware_id = self._node.get_name()
        status.message = message
        status.values = [KeyValue(key=k, value=v) for k, v in sorted(values.items())]
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [status]
        self._pub.publish(msg)
