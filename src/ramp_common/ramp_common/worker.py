"""An inference worker thread woken by new data, rate-limited (ROS-free).

Subscription callbacks only store their message and ``poke()`` the worker; the model runs on
this thread, so inference never blocks a callback and starts as soon as new input arrives
(no waiting for the next timer tick), at most ``1 / min_period_s`` times per second on average.

Only a body run that did work (returned True, e.g. ran an inference) uses up the rate slot: a
wake-up that found nothing to do (an incomplete frame set, a repeated observation, a replan that
is not due yet) leaves the next input free to start at once. Before this rule a no-op poll could
delay the next real input by a whole period (seen: the policy waited 34 ms p50 at 10 Hz).

The rate slots lie on a grid set by when the inputs *arrived* (the first poke after a run), not
by when a run started (a virtual scheduling / GCRA rule: the next slot is ``max(arrival,
previous slot) + min_period_s``), and a run may start up to ``slack * min_period_s`` before its
slot. Counting from the start time, every delay before a start (a busy CPU) pushed all later
slots back for good, so with inputs at the capped rate the wait crept up to a whole period and
averaged half of one (measured: ~30 ms at 15 Hz); on the grid an input at the capped rate
starts at once, and the long-run rate still never exceeds the cap (two runs are at least
``(1 - slack) * min_period_s`` apart).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TriggeredWorker:
    """Runs ``body()`` after each ``poke()`` (or every ``max_wait_s``); runs that did work
    (``body()`` returned True) are rate-limited to one per ``min_period_s`` on average (see the
    module docstring)."""

    def __init__(
        self,
        body: Callable[[], bool],
        min_period_s: float,
        max_wait_s: float,
        name: str,
        next_wake_in: Callable[[], float | None] | None = None,
        slack: float = 0.25,
    ) -> None:
        """``next_wake_in()`` (optional): seconds until the body has work without a poke (e.g.
        a robot held back by its own rate limit becomes due), None when nothing is pending."""
        self._body = body
        self._next_wake_in = next_wake_in
        if not 0.0 <= slack < 1.0:
            raise ValueError(f"slack must be in [0, 1), got {slack}")
        self._min_period_s = min_period_s
        self._slack_s = slack * min_period_s
        self._poked_at: float | None = None
        """Monotonic time of the first poke since the worker last woke (the input's arrival)."""
        self._max_wait_s = max_wait_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.errors = 0
        self.last_error = ""

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """New input arrived: run the body soon."""
        if self._poked_at is None:
            self._poked_at = time.monotonic()
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        slot = -float("inf")  # the next run's place on the rate grid (it may start slack earlier)
        while not self._stop.is_set():
            timeout = self._max_wait_s
            if self._next_wake_in is not None:
                due_in = self._next_wake_in()
                if due_in is not None:
                    timeout = min(max(due_in, 0.0), timeout)
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            arrived, self._poked_at = self._poked_at, None
            if arrived is None:  # a timed wake-up: the input (if any) is as old as now
                arrived = time.monotonic()
            wait = slot - self._slack_s - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                break
            try:
                if self._body():
                    slot = max(arrived, slot) + self._min_period_s
            except Exception as exc:  # the owner reports it in diagnostics
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
