"""run_node ends a node cleanly whatever stop signal comes, however often, and never outlives
the launch process that started it.

Before: rclpy's SIGINT handler shut the context down under a running callback (exit 1, "context
is invalid"), a second SIGINT raised KeyboardInterrupt inside ``destroy_node`` (a traceback from
every node on ``timeout -s INT ... ros2 launch``), and SIGTERM to ``ros2 launch`` left every node
running as an orphan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

NODE_SCRIPT = """
import sys, time
from rclpy.node import Node
from std_msgs.msg import String
from ramp_common.node_tools import run_node

HANG_IN_CLOSE = len(sys.argv) > 1 and sys.argv[1] == "hang"
STUCK_CALLBACK = len(sys.argv) > 1 and sys.argv[1] == "stuck"

class Busy(Node):
    def __init__(self):
        super().__init__("busy_publisher")
        self.pub = self.create_publisher(String, "busy", 10)
        self.create_timer(0.05, self.tick)
        self.ticks = 0

    def tick(self):
        self.ticks += 1
        if self.ticks == 1:
            print("in callback", flush=True)
        if STUCK_CALLBACK:
            __import__("threading").Event().wait()  # e.g. a lock a dead thread holds
        time.sleep(0.3)  # a callback busy when the signal comes (a render, a DDS call)
        self.pub.publish(String(data="late"))

    def close(self):
        print("close", flush=True)
        if HANG_IN_CLOSE:
            time.sleep(60)

raise SystemExit(run_node(Busy, sys.argv[:1]))
"""


def _start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    script = tmp_path / "busy_node.py"
    script.write_text(NODE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "in callback"
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 20.0) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.parametrize(
    "signals",
    [("SIGINT",), ("SIGINT", "SIGINT"), ("SIGTERM",), ("SIGINT", "SIGTERM", "SIGINT")],
    ids=lambda s: "+".join(s),
)
def test_stop_signals_end_the_node_cleanly(tmp_path: Path, signals: tuple[str, ...]) -> None:
    proc = _start(tmp_path)
    for name in signals:  # to the whole group, as a terminal's Ctrl-C or `kill -INT -PGID`
        os.killpg(proc.pid, getattr(signal, name))
        time.sleep(0.05)
    out, err = _finish(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    assert out.count("close") == 1, out  # the clean-up ran, once


def test_sigusr1_prints_every_threads_stack_and_the_node_goes_on(tmp_path: Path) -> None:
    """What ``ramp up`` sends a node that ignored SIGINT and SIGTERM, before SIGKILL: its
    stacks, printed from C (a main thread stuck in a C call cannot run a Python handler)."""
    from ramp_common.node_tools import DUMP_STACKS_SIGNAL

    proc = _start(tmp_path)
    os.kill(proc.pid, DUMP_STACKS_SIGNAL)
    time.sleep(0.5)
    assert proc.poll() is None, "the node ended on the stack-dump signal"
    os.killpg(proc.pid, signal.SIGINT)
    out, err = _finish(proc)
    assert proc.returncode == 0, err
    assert "most recent call first" in err and "busy_node.py" in err, err  # the main thread
    assert out.count("close") == 1, out


def test_a_hung_clean_up_is_bounded_and_named(tmp_path: Path) -> None:
    env = dict(os.environ, RAMP_SHUTDOWN_TIMEOUT_S="1.0")
    proc = _start(tmp_path, "hang", env=env)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = _finish(proc)
    assert time.monotonic() - t0 < 10.0
    assert proc.returncode == 3, err
    assert "Busy.close()" in err, err


def test_a_callback_that_never_returns_cannot_hold_the_stop_up(tmp_path: Path) -> None:
    env = dict(os.environ, RAMP_SHUTDOWN_TIMEOUT_S="1.0")
    proc = _start(tmp_path, "stuck", env=env)
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = _finish(proc)
    assert time.monotonic() - t0 < 10.0
    assert proc.returncode == 3, err
    assert "a callback has not returned" in err, err
    assert "tick" in err, err  # the stacks show where: Busy.tick


def test_the_node_ends_with_the_process_that_launched_it(tmp_path: Path) -> None:
    """A launcher killed outright (SIGKILL; SIGTERM to ``ros2 launch`` is the same: it exits at
    once) takes its nodes with it: the kernel sends them SIGTERM (PR_SET_PDEATHSIG)."""
    script = tmp_path / "busy_node.py"
    script.write_text(NODE_SCRIPT)
    pid_file = tmp_path / "node.pid"
    launcher = (
        "import os, subprocess, sys, time\n"
        "env = dict(os.environ, RAMP_PARENT_PID=str(os.getpid()))\n"
        f"p = subprocess.Popen([sys.executable, {str(script)!r}], env=env,\n"
        "                     stdout=subprocess.PIPE, text=True)\n"
        "p.stdout.readline()\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the launcher did not start its node"
            time.sleep(0.1)
        node_pid = int(pid_file.read_text())
        parent.kill()
        parent.wait(5)
        deadline = time.monotonic() + 10
        while _alive(node_pid):
            assert time.monotonic() < deadline, "the node outlived its launcher"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
