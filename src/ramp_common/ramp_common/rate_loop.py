"""A periodic loop on its own thread with absolute deadlines (no drift), ROS-free.

Tick k is due at ``start + k * period``. A late tick runs at once; when the loop falls more than
one period behind, the missed ticks are skipped (counted as overruns), never run in a burst.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ramp_common.diagnostics import LatencyStats


class RateLoop:
    """Calls ``body(now_wall_s)`` every ``period_s`` on a dedicated thread."""

    def __init__(self, period_s: float, body: Callable[[float], None], name: str) -> None:
        if period_s <= 0:
            raise ValueError(f"period must be > 0, got {period_s}")
        self._period = period_s
        self._body = body
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.jitter = LatencyStats(size=2000)
        """Lateness of each tick against its deadline (s)."""
        self.overruns = 0
        self.errors = 0
        self.last_error = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the loop to end and wait up to ``timeout_s``; True when its thread has ended.

        False means the body is still running (e.g. inside a C call): the owner must not free
        what the body uses (a renderer, a driver) until it returns.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        start = time.monotonic()
        k = 0
        while not self._stop.is_set():
            deadline = start + k * self._period
            delay = deadline - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            late = time.monotonic() - deadline
            self.jitter.add(max(late, 0.0))
            try:
                self._body(time.time())
            except Exception as exc:  # keep the loop alive; the owner reports it
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            k += 1
            behind = int((time.monotonic() - start) / self._period) - k
            if behind > 0:
                self.overruns += behind
                k += behind
