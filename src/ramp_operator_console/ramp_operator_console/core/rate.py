"""Per-viewer rate limiting (ROS-free).

Every viewer of the console gets frames and state updates at most at its own rate. A viewer
that falls behind (slow network, slow browser) is never sent a backlog: the limiter has no
catch-up, so after a stall the next item is due at once and the one after a full period later,
and the sender always sends the newest item, skipping the ones it missed.
"""

from __future__ import annotations


class RateLimiter:
    """Allows at most one event per ``1 / rate_hz`` seconds, without bursts after a stall.

    Times are monotonic seconds supplied by the caller (testable without a clock).
    """

    def __init__(self, rate_hz: float) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz={rate_hz!r} must be > 0")
        self.period_s = 1.0 / rate_hz
        self._next_s: float | None = None

    def wait_s(self, now: float) -> float:
        """Seconds until the next event is allowed (0 when it is due now)."""
        if self._next_s is None:
            return 0.0
        return max(0.0, self._next_s - now)

    def due(self, now: float) -> bool:
        """True when an event is allowed at ``now``."""
        return self.wait_s(now) == 0.0

    def mark(self, now: float) -> None:
        """Record an event at ``now``; the next is allowed one period later.

        Deadlines advance from the previous deadline while the sender keeps up (no drift from
        scheduling jitter) and restart from ``now`` after a stall (no burst to catch up).
        """
        if self._next_s is None or now - self._next_s > self.period_s:
            self._next_s = now + self.period_s
        else:
            self._next_s = max(self._next_s + self.period_s, now)

    def take(self, now: float) -> bool:
        """``due(now)`` and, if so, ``mark(now)``; returns whether the event may happen."""
        if not self.due(now):
            return False
        self.mark(now)
        return True


def clamp_rate(requested: float | None, default_hz: float, max_hz: float) -> float:
    """A viewer's requested rate (Hz) bounded to (0, max_hz]; ``default_hz`` when unset/invalid."""
    try:
        rate = float(requested) if requested is not None else default_hz
    except (TypeError, ValueError):
        rate = default_hz
    if not rate > 0 or rate != rate:  # NaN, zero, negative
        rate = default_hz
    return min(rate, max_hz)
