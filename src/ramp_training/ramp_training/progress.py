"""Progress lines for long loops (training steps, episodes): count, percent, elapsed, ETA."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def stderr_log(text: str) -> None:
    """Default log sink: one line on stderr, flushed."""
    print(text, file=sys.stderr, flush=True)


class Progress:
    """Reports ``label done/total (pct) elapsed, eta | extra`` at most every ``every_s`` seconds
    (and always for the last item)."""

    def __init__(
        self,
        total: int,
        label: str,
        log: Callable[[str], None] = stderr_log,
        every_s: float = 5.0,
    ) -> None:
        self.total = max(1, int(total))
        self.label = label
        self.log = log
        self.every_s = every_s
        self.started = time.monotonic()
        self._last = -float("inf")

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def due(self, done: int) -> bool:
        """True when ``update(done)`` would print a line now."""
        return done >= self.total or time.monotonic() - self._last >= self.every_s

    def update(self, done: int, extra: str = "", force: bool = False) -> bool:
        """Print a progress line if one is due (or ``force``); True when it printed."""
        now = time.monotonic()
        if not force and not self.due(done):
            return False
        self._last = now
        elapsed = now - self.started
        eta = elapsed / done * (self.total - done) if done > 0 else float("nan")
        line = (
            f"{self.label} {done}/{self.total} ({100.0 * done / self.total:.0f}%) "
            f"{_fmt(elapsed)} elapsed, eta {_fmt(eta)}"
        )
        self.log(line + (f" | {extra}" if extra else ""))
        return True


def _fmt(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    minutes, sec = divmod(round(seconds), 60)
    return f"{minutes}:{sec:02d}"
