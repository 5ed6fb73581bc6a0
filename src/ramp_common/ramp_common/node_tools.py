"""Small helpers every node uses: path expansion, log-once, main() (parameters: ``params``)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def expand_path(path: str) -> str:
    """Expand ``~`` and ``$VARS`` in a configured path (model paths use ``$RAMP_MODEL_DIR``)."""
    return os.path.expanduser(os.path.expandvars(path))


class LogOnce:
    """Logs a message once per key (a malformed input is reported once, then only counted).

    Silent once the node's context is shut down: a loop that fails to publish during Ctrl-C is
    the shutdown, not an error worth a red line in the operator's terminal.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._seen: set[str] = set()

    def warn(self, key: str, message: str) -> None:
        if key not in self._seen and self._node.context.ok():
            self._seen.add(key)
            self._node.get_logger().warning(message + " (further occurrences are only counted)")

    def error(self, key: str, message: str) -> None:
        if key not in self._seen and self._node.context.ok():
            self._seen.add(key)
            self._node.get_logger().error(message + " (further occurrences are only counted)")


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Standard ``main()``: init, build the node, spin it (single-threaded executor, see below).

    Ctrl-C or SIGTERM ends it cleanly (no traceback); a start-up error is logged and returns 1.
    """
    rclpy.init(args=args)
    signal.signal(signal.SIGTERM, lambda *_: _raise_keyboard_interrupt())
    node: Node | None = None
    try:
        try:
            node = factory()
        except Exception as exc:  # start-up refused: say why, exit non-zero
            name = getattr(factory, "__name__", "ramp")
            rclpy.logging.get_logger(name).fatal(f"start-up failed: {exc}")
            return 1
        # Single-threaded on purpose: every node does its heavy work on its own threads
        # (inference workers, control loops, camera readers), so callbacks are short. rclpy's
        # MultiThreadedExecutor busy-spins at 100 % CPU when a ready entity's callback group is
        # busy (ros2/rclpy#1452, not fixed in the Jazzy 7.1 wheels; seen here with two nodes
        # spinning for minutes), which starves every other process on a small robot computer.
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # Ctrl-C shuts the context down from rclpy's signal handler; a timer callback that was
        # already running then fails to publish ("publisher's context is invalid"). That is the
        # normal end, not a crash; with the context still up it is a real error.
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt
