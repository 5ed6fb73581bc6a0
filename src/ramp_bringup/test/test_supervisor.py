"""The process supervisor behind ``ramp up`` (ROS-free: plain Python child processes)."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

from ramp_bringup.core.plan import NodeLaunch
from ramp_bringup.core.supervisor import Supervisor

CHILD = """
import os, signal, sys, time
mode = sys.argv[1]
stop = []
signal.signal(signal.SIGINT, lambda *_: stop.append(1))
print("up", os.getpid(), flush=True)
if mode == "exit-now":
    sys.exit(4)
if mode == "exit-soon":  # after its neighbours are up
    time.sleep(0.5)
    sys.exit(4)
if mode == "stubborn":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
while not stop:
    time.sleep(0.02)
print("bye", flush=True)
"""


def node(tmp_path: Path, name: str, mode: str, required: bool) -> NodeLaunch:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    launch = NodeLaunch(name, "pkg", name, "unused", required)
    launch.command = lambda python: [python, str(script), mode]  # type: ignore[method-assign]
    return launch


def run(supervisor: Supervisor, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not supervisor.poll():
            return False
        time.sleep(0.05)
    return True


def test_a_clean_stop_sends_sigint_and_prefixes_output(tmp_path):
    events: list[tuple[str, str]] = []
    out = io.StringIO()
    sup = Supervisor(
        [node(tmp_path, "a", "run", True), node(tmp_path, "b", "run", False)],
        os.environ,
        lambda *e: events.append(e),
        output=out,
    )
    sup.start()
    assert run(sup, 1.0)
    codes = sup.stop()
    assert codes == {"a": 0, "b": 0}
    assert "[a] up" in out.getvalue() and "[b] bye" in out.getvalue()
    assert not [e for e in events if e[0] == "error"], events


def test_a_required_node_exiting_stops_the_stack(tmp_path):
    events: list[tuple[str, str]] = []
    sup = Supervisor(
        [node(tmp_path, "bridge", "exit-soon", True), node(tmp_path, "cam", "run", False)],
        os.environ,
        lambda *e: events.append(e),
        output=io.StringIO(),
    )
    sup.start()
    assert not run(sup, 10.0)
    assert "bridge exited with code 4" in (sup.failed or "")
    assert sup.stop()["cam"] == 0


def test_an_optional_node_respawns_then_gives_up(tmp_path):
    events: list[tuple[str, str]] = []
    out = io.StringIO()
    sup = Supervisor(
        [node(tmp_path, "cam", "exit-now", False)],
        os.environ,
        lambda *e: events.append(e),
        respawn_delay_s=0.1,
        max_respawns=2,
        output=out,
    )
    sup.start()
    assert not run(sup, 20.0)
    assert out.getvalue().count("[cam] up") == 3  # first start + two respawns
    assert "after 2 respawns" in (sup.failed or "")
    sup.stop()


def test_a_node_ignoring_sigint_is_escalated(tmp_path):
    events: list[tuple[str, str]] = []
    sup = Supervisor(
        [node(tmp_path, "stuck", "stubborn", True)],
        os.environ,
        lambda *e: events.append(e),
        sigterm_timeout_s=0.5,
        output=io.StringIO(),
    )
    sup.start()
    time.sleep(0.5)
    codes = sup.stop()
    assert codes["stuck"] == -signal.SIGTERM
    assert any("sending SIGTERM" in text for _, text in events), events
    assert any("exited with code" in text for _, text in events), events


def test_an_exit_is_announced_as_it_happens_and_a_stop_is_not(tmp_path):
    """``on_exit`` fires from the output thread the moment the process dies (SIGKILL here),
    without waiting for ``poll``; the exits that ``stop`` causes are not announced."""
    exits: list[tuple[str, int, float]] = []
    sup = Supervisor(
        [node(tmp_path, "policy", "run", False), node(tmp_path, "cam", "run", False)],
        os.environ,
        lambda *e: None,
        respawn_delay_s=30.0,  # no respawn within the test
        output=io.StringIO(),
        on_exit=lambda name, code: exits.append((name, code, time.monotonic())),
    )
    sup.start()
    time.sleep(1.0)  # both up
    killed_at = time.monotonic()
    os.kill(sup.pids["policy"], signal.SIGKILL)
    deadline = killed_at + 10.0
    while not exits and time.monotonic() < deadline:  # no poll() in this loop
        time.sleep(0.005)
    assert [(n, c) for n, c, _ in exits] == [("policy", -signal.SIGKILL)]
    assert sup.stop()["cam"] == 0
    time.sleep(0.2)
    assert len(exits) == 1, exits
