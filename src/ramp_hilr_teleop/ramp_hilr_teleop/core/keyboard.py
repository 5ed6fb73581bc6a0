"""Operator keys in a terminal (ROS-free): the key map and a cbreak-mode key reader.

The terminal is put in cbreak mode (no line buffering, no echo) while reading and restored on
exit; Ctrl-C still raises SIGINT there, so the node ends cleanly.
"""

from __future__ import annotations

import os
import select
import termios
import tty
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class KeyBinding:
    """One operator key and the action it triggers."""

    key: str
    action: str
    description: str


KEY_BINDINGS: tuple[KeyBinding, ...] = (
    KeyBinding("t", "takeover", "take over (operator in control)"),
    KeyBinding("h", "handback", "hand back to the policy"),
    KeyBinding("p", "pause_toggle", "pause (hold) / resume"),
    KeyBinding("s", "episode_start", "start an episode"),
    KeyBinding("y", "episode_success", "stop the episode: success"),
    KeyBinding("n", "episode_failure", "stop the episode: failure"),
    KeyBinding("c", "episode_cancel", "cancel the episode (discard)"),
    KeyBinding(" ", "estop", "E-STOP (space)"),
    KeyBinding("r", "estop_release", "release the e-stop"),
    KeyBinding("?", "help", "show the keys"),
)
"""Every operator key (lower case; upper case works too)."""

_BY_KEY = {binding.key: binding.action for binding in KEY_BINDINGS}


def action_for_key(key: str) -> str | None:
    """The action bound to ``key`` (case-insensitive), or None."""
    return _BY_KEY.get(key.lower() if key.strip() else key)


def help_text() -> str:
    """One line per key, for the operator's terminal."""
    lines = ["operator keys:"]
    for binding in KEY_BINDINGS:
        label = "space" if binding.key == " " else binding.key
        lines.append(f"  {label:>5}  {binding.description}")
    return "\n".join(lines)


class TerminalKeys:
    """Reads single key presses from a terminal file descriptor in cbreak mode.

    Use as a context manager; the terminal settings are restored on exit (also after an
    exception). ``restore`` may be called again from another thread or at exit; it is idempotent.
    """

    def __init__(self, fd: int) -> None:
        if not os.isatty(fd):
            raise ValueError(f"file descriptor {fd} is not a terminal")
        self._fd = fd
        self._saved: list | None = None

    def __enter__(self) -> TerminalKeys:
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd, termios.TCSANOW)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the terminal settings back as they were before ``__enter__``."""
        saved, self._saved = self._saved, None
        if saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, saved)

    def read_key(self, timeout_s: float) -> str | None:
        """The next key (one character), or None after ``timeout_s`` without one.

        Raises EOFError when the terminal closed.
        """
        ready, _, _ = select.select([self._fd], [], [], timeout_s)
        if not ready:
            return None
        data = os.read(self._fd, 1)
        if not data:
            raise EOFError("terminal closed")
        return data.decode("utf-8", errors="ignore") or None
