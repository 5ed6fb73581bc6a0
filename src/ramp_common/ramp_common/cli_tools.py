"""Small helpers for the command-line tools (``ramp``, ``ramp-bag``, ``ramp-train``)."""

from __future__ import annotations

import os
import sys

EXIT_CLOSED_PIPE = 141
"""What a shell reports for a process killed by SIGPIPE (128 + 13)."""


def closed_pipe() -> int:
    """Stdout's reader went away (``ramp-bag info ... | head``): stop quietly.

    Points stdout at /dev/null so the interpreter's final flush does not raise again (Python
    would print "Exception ignored ... BrokenPipeError"), and returns 141 like a shell would.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return EXIT_CLOSED_PIPE
