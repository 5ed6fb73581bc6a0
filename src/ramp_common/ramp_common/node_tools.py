"""Small helpers every node uses: path expansion, log-once, main() (parameters: ``params``)."""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions


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


PARENT_PID_ENV = "RAMP_PARENT_PID"
"""Set by ``ros2 launch`` (our launch files) and ``ramp up`` to their own PID: a node whose parent
is that process ends when it dies (Linux ``PR_SET_PDEATHSIG``), so a launch killed by SIGTERM or
SIGKILL never leaves orphaned nodes driving a robot."""

SHUTDOWN_TIMEOUT_ENV = "RAMP_SHUTDOWN_TIMEOUT_S"
DEFAULT_SHUTDOWN_TIMEOUT_S = 4.0
"""Bound on a node's clean-up after a stop signal, s. Below launch's 5 s SIGINT -> SIGTERM
escalation, so a node that hangs is reported by itself (exit 3, naming the step) before launch
has to kill it."""

DUMP_STACKS_SIGNAL = signal.SIGUSR1
"""A node prints every thread's stack on this signal (``faulthandler``, from C: also when its
main thread is stuck in a C call), then goes on."""

EXIT_SHUTDOWN_HUNG = 3
EXIT_NODE_FAILED = 4
"""Exit code of a node that reported a fatal failure at run time (``node.fatal()``)."""
_PR_SET_PDEATHSIG = 1


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP set one event, however often and in whatever order they come.

    Replaces rclpy's own handler (which shuts the context down from the signal, under callbacks
    that are still running) and Python's default (a KeyboardInterrupt raised wherever the main
    thread happens to be, e.g. inside ``destroy_node``): the spin loop ends between callbacks and
    the clean-up runs once, uninterrupted.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: list[str] = []
        self.on_first: Callable[[], None] | None = None
        """Called (in the main thread) when the first stop signal arrives."""
        self._parent_pid = os.getppid()

    def install(self) -> StopSignals:
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)
        return self

    def ignore_further(self) -> None:
        """Ignore stop signals from now on (the stop is under way).

        At interpreter exit Python puts SIG_DFL back for signals it had handlers for, so a
        second Ctrl-C arriving while the process finalises would kill it (exit -2, "process
        has died" in launch) after a clean stop; an ignored signal stays ignored.
        """
        for signum in self.SIGNALS:
            signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received.append(signal.Signals(signum).name)
        if os.getppid() != self._parent_pid:
            _silence_output()  # our parent (launch) is gone and nobody reads our pipes
        first = not self.event.is_set()
        self.event.set()
        if first and self.on_first is not None:
            self.on_first()


def _silence_output() -> None:
    """Point stdout/stderr at /dev/null: writes to a dead parent's pipe would fail at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def exit_with_parent(stop: StopSignals) -> None:
    """When started by launch or ``ramp up`` (``RAMP_PARENT_PID``), end with that process.

    The kernel sends SIGTERM when the parent dies (``PR_SET_PDEATHSIG``). Only applied when the
    parent really is that process (not under a prefix such as gdb); a parent that died before
    this call leaves us re-parented to init or a subreaper, which counts as a stop.
    """
    want = os.environ.get(PARENT_PID_ENV, "")
    if not want.isdigit() or not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    if parent != int(want):
        if parent == 1:  # already orphaned
            stop.event.set()
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # died between the check and prctl
        stop.event.set()


def _shutdown_timeout_s() -> float:
    try:
        return float(os.environ.get(SHUTDOWN_TIMEOUT_ENV, DEFAULT_SHUTDOWN_TIMEOUT_S))
    except ValueError:
        return DEFAULT_SHUTDOWN_TIMEOUT_S


class _ShutdownGuard:
    """Ends the process (exit 3, naming the step, with every thread's stack) if the stop takes
    longer than its bound, counted from the first stop signal (or from the start of clean-up
    when the loop ended otherwise): a callback that never returns cannot hold the node up."""

    def __init__(self, node_name: str, timeout_s: float) -> None:
        self.step = "spin loop: a callback has not returned"
        self._name = node_name
        self._timeout = timeout_s
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True
        self._started = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._timer.start()
            # The timer needs the GIL; a stop stuck inside a C call that holds it (a DDS
            # teardown) would never end. faulthandler's watchdog is a C thread: one second
            # after the timer's bound it prints every thread's stack and exits 1 by itself.
            faulthandler.dump_traceback_later(self._timeout + 1.0, exit=True, file=sys.stderr)

    def cancel(self) -> None:
        self._timer.cancel()
        faulthandler.cancel_dump_traceback_later()

    def _expire(self) -> None:
        try:
            sys.stderr.write(
                f"[{self._name}] stop did not finish within {self._timeout:.1f} s "
                f"(stuck in: {self.step}); exiting {EXIT_SHUTDOWN_HUNG}; thread stacks:\n"
            )
            sys.stderr.flush()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        finally:
            os._exit(EXIT_SHUTDOWN_HUNG)


def run_node(factory: Callable[[], Node], args: Sequence[str] | None = None) -> int:
    """Standard ``main()``: init, build the node, spin it (single-threaded executor, see below).

    SIGINT (once, twice, to the process or its group), SIGTERM and SIGHUP all end it the same
    way: the spin loop stops between callbacks, then ``node.close()`` (when it has one),
    ``destroy_node`` and the context shutdown run once, within ``RAMP_SHUTDOWN_TIMEOUT_S``
    (default 4 s from the first signal, a callback that never returns included; past it the
    process exits 3 naming the step that hung and printing every thread's stack; stuck where
    Python cannot run, faulthandler's C watchdog exits 1 a second later, stacks printed). A
    ``DUMP_STACKS_SIGNAL`` (SIGUSR1) prints every thread's stack at any time. A clean stop
    exits 0 with no traceback; a start-up error is logged and returns 1.

    A node may have ``fatal() -> str | None``, polled every spin (<= 0.1 s): a reason ends the
    node the same clean way (``close()`` first: a bridge leaves its robot holding) and exits
    ``EXIT_NODE_FAILED`` (4) with the reason logged, instead of living on without doing its job
    (e.g. a bridge whose control loop died).
    """
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = StopSignals().install()
    # SIGUSR1 prints every thread's stack from C (no GIL needed): `ramp up` sends it to a node
    # that ignored SIGINT and SIGTERM, just before SIGKILL, so a hung stop says where it hung.
    faulthandler.register(DUMP_STACKS_SIGNAL, file=sys.stderr, all_threads=True)
    exit_with_parent(stop)
    node: Node | None = None
    name = getattr(factory, "__name__", "ramp")
    try:
        node = factory()
    except Exception as exc:  # start-up refused: say why, exit non-zero
        rclpy.logging.get_logger(name).fatal(f"start-up failed: {exc}")
        rclpy.try_shutdown()
        return 1
    # Single-threaded on purpose: every node does its heavy work on its own threads
    # (inference workers, control loops, camera readers), so callbacks are short. rclpy's
    # MultiThreadedExecutor busy-spins at 100 % CPU when a ready entity's callback group is
    # busy (ros2/rclpy#1452, not fixed in the Jazzy 7.1 wheels; seen here with two nodes
    # spinning for minutes), which starves every other process on a small robot computer.
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    guard = _ShutdownGuard(node.get_name(), _shutdown_timeout_s())
    stop.on_first = guard.start
    fatal = getattr(node, "fatal", None)
    code = 0
    try:
        # spin_once returns at least every 0.1 s, so a stop signal ends the loop within that.
        while not stop.event.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
            reason = fatal() if callable(fatal) else None
            if reason:
                node.get_logger().fatal(f"{reason}; stopping (exit {EXIT_NODE_FAILED})")
                code = EXIT_NODE_FAILED
                break
    except ExternalShutdownException:
        pass
    except RCLError:
        # The context was shut down under a running callback (e.g. by a test's own context
        # teardown): the normal end, not a crash; with the context still up it is a real error.
        if rclpy.ok():
            raise
    finally:
        stop.ignore_further()
        guard.start()
        close = getattr(node, "close", None)
        if callable(close):
            guard.step = f"{type(node).__name__}.close()"
            close()
        guard.step = "executor shutdown"
        executor.shutdown(timeout_sec=1.0)
        guard.step = "destroy_node"
        node.destroy_node()
        guard.step = "context shutdown"
        rclpy.try_shutdown()
        guard.cancel()
    return code
