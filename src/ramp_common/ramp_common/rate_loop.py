"""A periodic loop on its own thread with absolute deadlines (no drift), ROS-free.

Tick k is due at ``start + k * period``. A late tick runs at once; when the loop falls more than
one period behind, the missed ticks are skipped (counted as overruns), never run in a burst.

``start`` lies on a grid of the monotonic clock (CLOCK_MONOTONIC, one per machine): ticks fall
at ``n * period + phase``. Loops of one machine that follow each other (the chunk executor ->
the intervention arbiter -> the bridge) keep fixed phases apart, so a command published at one
loop's tick is taken at the follower's next tick ``phase`` difference later, not anywhere in
a period (docs/latency.md, "Round 6: loops in phase"). Loops on different machines share no
grid.

The loop thread asks for a 1 us timer slack (Linux ``PR_SET_TIMERSLACK``; the default 50 us is
added to every sleep) and, with ``realtime_priority`` > 0, for SCHED_FIFO at that priority: on a
robot computer that lets the control loop preempt inference and rendering on the same cores. It
needs CAP_SYS_NICE or an ``rtprio`` limit (``/etc/security/limits.d``); without it the loop runs
at normal priority and says why in ``realtime_error``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import threading
import time
from collections.abc import Callable

from ramp_common.diagnostics import LatencyStats


class RateLoop:
    """Calls ``body(now_wall_s)`` every ``period_s`` on a dedicated thread."""

    def __init__(
        self,
        period_s: float,
        body: Callable[[float], None],
        name: str,
        realtime_priority: int = 0,
        phase_s: float = 0.0,
    ) -> None:
        """Args:
        period_s: tick period (s).
        body: called with the wall-clock time (s) of each tick.
        name: the thread's name.
        realtime_priority: SCHED_FIFO priority of the loop thread, 1-99 (0 = normal).
        phase_s: offset of the ticks from the monotonic clock's grid of ``period_s`` (s),
            taken modulo the period.
        """
        if period_s <= 0:
            raise ValueError(f"period must be > 0, got {period_s}")
        if not math.isfinite(phase_s):
            raise ValueError(f"phase must be finite, got {phase_s}")
        if not 0 <= realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be 0 (off) to 99, got {realtime_priority}")
        self._period = period_s
        self._phase = phase_s % period_s
        self._realtime_priority = realtime_priority
        self.realtime = False
        """True once the loop thread runs SCHED_FIFO."""
        self.realtime_error = ""
        """Why SCHED_FIFO was refused ('' when not asked or granted)."""
        self._body = body
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.jitter = LatencyStats(size=2000)
        """Lateness of each tick against its deadline (s)."""
        self.overruns = 0
        self.errors = 0
        self.last_error = ""
        self.due_wall = 0.0
        """Wall-clock time (s) at which the tick now running was due: tick k of the loop's
        schedule, whatever the thread's lateness. A stream computed one period per tick (a
        limited command) is stamped with it, so n ticks apart always read as n periods."""
        self.due_mono = 0.0
        """``due_wall`` on the monotonic clock (s)."""

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

    def _tune_thread(self) -> None:
        """Timer slack and, when asked, SCHED_FIFO for the calling (loop) thread."""
        _set_timer_slack_ns(1000)
        if self._realtime_priority <= 0:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self._realtime_priority))
            self.realtime = True
        except (OSError, AttributeError) as exc:
            self.realtime_error = f"SCHED_FIFO {self._realtime_priority} refused: {exc}"

    def _run(self) -> None:
        self._tune_thread()
        start = first_grid_deadline(time.monotonic(), self._period, self._phase)
        k = 0
        while not self._stop.is_set():
            deadline = start + k * self._period
            delay = deadline - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            now_mono, now_wall = time.monotonic(), time.time()
            late = now_mono - deadline
            self.jitter.add(max(late, 0.0))
            self.due_wall = now_wall - late
            self.due_mono = deadline
            try:
                self._body(now_wall)
            except Exception as exc:  # keep the loop alive; the owner reports it
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            k += 1
            behind = int((time.monotonic() - start) / self._period) - k
            if behind > 0:
                self.overruns += behind
                k += behind


def first_grid_deadline(now_s: float, period_s: float, phase_s: float) -> float:
    """The first time >= ``now_s`` of the form ``n * period_s + phase_s`` (s, one clock)."""
    n = math.ceil((now_s - phase_s) / period_s - 1e-9)  # a time on the grid stays on it
    return n * period_s + phase_s


_PR_SET_TIMERSLACK = 29


def _set_timer_slack_ns(slack_ns: int) -> bool:
    """``prctl(PR_SET_TIMERSLACK)`` for the calling thread; False where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(slack_ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
