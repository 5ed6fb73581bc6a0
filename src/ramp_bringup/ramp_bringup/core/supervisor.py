"""One process per node, supervised the way ``ros2 launch`` does it, ROS-free.

``ramp up`` uses this where no launch system is installed (a fresh machine), and by default
everywhere, so both layouts behave the same:

- every node is a child process with its name prefixed to each output line;
- a node whose ``on_exit`` is ``shutdown`` (the bridge, the arbiter) ends the whole stack when
  it exits; the others respawn after a delay (at most ``max_respawns`` within a minute, then
  the stack stops: a node that cannot stay up is a fault to report, not to loop on);
- stopping sends SIGINT to every node, SIGTERM after ``sigterm_timeout_s``, SIGKILL after
  ``sigkill_timeout_s`` more (launch's escalation; just before SIGKILL a SIGUSR1 makes our nodes
  print every thread's stack), and reports any unclean exit;
- the nodes carry ``RAMP_PARENT_PID``: if this process is killed outright they end too;
- ``on_exit(name, code)`` is called the moment a node's process ends by itself (from the thread
  that reads its output, which sees the pipe close; not for the exits that ``stop`` causes):
  ``ramp up`` announces it on ``ramp/node_exited`` so the control path holds at once
  (``ramp_common.node_exits``), where polling would add up to its period.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ramp_bringup.core.plan import NodeLaunch

RESPAWN_WINDOW_S = 60.0


@dataclass
class _Child:
    launch: NodeLaunch
    proc: subprocess.Popen
    started: float
    reader: threading.Thread
    respawns: list[float] = field(default_factory=list)


class Supervisor:
    """Starts, watches and stops the node processes of one stack."""

    def __init__(
        self,
        nodes: list[NodeLaunch],
        env: Mapping[str, str],
        on_event: Callable[[str, str], None],
        python: str = sys.executable,
        respawn_delay_s: float = 1.0,
        max_respawns: int = 5,
        sigterm_timeout_s: float = 5.0,
        sigkill_timeout_s: float = 5.0,
        output=None,
        on_exit: Callable[[str, int], None] | None = None,
    ) -> None:
        """``on_event(level, text)`` receives what happens ("info" / "error"); ``on_exit(name,
        exit code)`` each exit of a node process not caused by :meth:`stop`, as it happens (on
        an output thread: keep it short)."""
        self._nodes = nodes
        self._env = dict(env)
        self._on_event = on_event
        self._python = python
        self._respawn_delay = respawn_delay_s
        self._max_respawns = max_respawns
        self._sigterm_timeout = sigterm_timeout_s
        self._sigkill_timeout = sigkill_timeout_s
        self._out = output if output is not None else sys.stderr
        self._out_lock = threading.Lock()
        self._on_exit = on_exit
        self._stopping = False
        self._children: dict[str, _Child] = {}
        self._pending_respawn: dict[str, float] = {}
        self.exit_codes: dict[str, int] = {}
        self.failed: str | None = None
        """Why the stack stopped by itself (a required node exited, respawns exhausted)."""

    @property
    def pids(self) -> dict[str, int]:
        return {name: child.proc.pid for name, child in self._children.items()}

    def start(self) -> None:
        for node in self._nodes:
            self._spawn(node, [])

    def _spawn(self, node: NodeLaunch, respawns: list[float]) -> None:
        proc = subprocess.Popen(
            node.command(self._python),
            env=self._env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=None,  # the terminal stays with the children (teleop keys)
        )
        reader = threading.Thread(
            target=self._pump, args=(node.name, proc), name=f"out-{node.name}", daemon=True
        )
        reader.start()
        self._children[node.name] = _Child(node, proc, time.monotonic(), reader, respawns)

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._out_lock:
                try:
                    self._out.write(f"[{name}] {line}\n")
                    self._out.flush()
                except (OSError, ValueError):
                    pass
        proc.stdout.close()
        code = proc.wait()  # the pipe closes when the process ends: this returns at once
        if self._on_exit is not None and not self._stopping:
            try:
                self._on_exit(name, code)
            except Exception as exc:
                self._on_event("error", f"announcing the exit of {name} failed: {exc}")

    def poll(self) -> bool:
        """Handle exits and due respawns; False once the stack must stop (see ``failed``)."""
        now = time.monotonic()
        for name, due in list(self._pending_respawn.items()):
            if now >= due:
                del self._pending_respawn[name]
                child = self._children[name]
                self._on_event("info", f"respawning {name}")
                self._spawn(child.launch, child.respawns)
        for name, child in list(self._children.items()):
            code = child.proc.poll()
            if code is None or name in self._pending_respawn or name in self.exit_codes:
                continue
            if child.launch.required:
                self.exit_codes[name] = code
                self.failed = f"{name} exited with code {code}; the stack never runs without it"
                self._on_event("error", self.failed)
                return False
            recent = [t for t in child.respawns if now - t < RESPAWN_WINDOW_S]
            if len(recent) >= self._max_respawns:
                self.exit_codes[name] = code
                self.failed = (
                    f"{name} exited with code {code} after {len(recent)} respawns within "
                    f"{RESPAWN_WINDOW_S:.0f} s; stopping"
                )
                self._on_event("error", self.failed)
                return False
            self._on_event(
                "error", f"{name} exited with code {code}; respawn in {self._respawn_delay} s"
            )
            child.respawns[:] = [*recent, now]
            self._pending_respawn[name] = now + self._respawn_delay
        return True

    def _dump_stacks(self, child: _Child) -> None:
        """Ask a node that ignored SIGINT and SIGTERM to print its threads' stacks before it is
        killed, so its output says where it hung; its output thread gets 0.3 s to pass it on."""
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(DUMP_STACKS_SIGNAL)
        time.sleep(0.3)

    def stop(self) -> dict[str, int]:
        """SIGINT to every running node, then SIGTERM, then SIGKILL; returns exit codes."""
        self._stopping = True
        self._pending_respawn.clear()
        running = {n: c for n, c in self._children.items() if c.proc.poll() is None}
        for sig, wait_s in (
            (signal.SIGINT, self._sigterm_timeout),
            (signal.SIGTERM, self._sigkill_timeout),
            (signal.SIGKILL, 5.0),
        ):
            for name, child in running.items():
                if child.proc.poll() is None:
                    if sig != signal.SIGINT:
                        self._on_event(
                            "error", f"{name} still running; sending {signal.Signals(sig).name}"
                        )
                    if sig == signal.SIGKILL:
                        self._dump_stacks(child)
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(sig)
            deadline = time.monotonic() + wait_s
            for child in running.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(max(deadline - time.monotonic(), 0.0))
            if all(c.proc.poll() is not None for c in running.values()):
                break
        for name, child in self._children.items():
            child.reader.join(2.0)
            self.exit_codes.setdefault(name, child.proc.poll())
            code = self.exit_codes[name]
            if name in running and code != 0:
                self._on_event("error", f"{name} exited with code {code} at stop")
        return dict(self.exit_codes)


DUMP_STACKS_SIGNAL = signal.SIGUSR1
"""What our nodes print every thread's stack on (``ramp_common.node_tools``; not imported here:
this module stays ROS-free)."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def terminate_on_signals(stop: threading.Event) -> None:
    """SIGINT, SIGTERM and SIGHUP (any number, any order) set ``stop``; nothing else."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: stop.set())


def ignore_stop_signals() -> None:
    """Once stopping: further stop signals are ignored (Python restores SIG_DFL at exit, so one
    arriving while the interpreter finalises would kill the process after a clean stop)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
