"""Test helpers: node processes that always end, and an isolated rclpy context for probes.

The session conftest (repo root) has already set an own ROS_DOMAIN_ID, localhost-only
discovery and the DDS profile in os.environ; child processes inherit them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

ROOT = Path(__file__).resolve().parents[1]
SIM_CONFIG = ROOT / "src/ramp_bringup/config/sim.yaml"
UDP_PROFILE = ROOT / "src/ramp_bringup/dds/fastdds_udp.xml"


TEARDOWN_HANG = re.compile(
    r"\[(?P<node>[\w-]+)\] Timeout \(0:00:\d\d\)!\n(?:\[(?P=node)\] .*\n)*?"
    r"\[(?P=node)\]\s+File \".*/rclpy/node\.py\", line \d+ in destroy_node"
)
"""A node's stop stuck in rclpy's ``destroy_node`` (the rcl node's destruction, inside a C call
that holds the GIL), ended by the node's C watchdog after its bound with every thread's stack
(``ramp_common.node_tools``); ``node`` is the output prefix (``name`` under ``ramp up``,
``name-N`` under ``ros2 launch``). Seen after a link flap between network namespaces in about
one run in three, and once in ~30 stops of a whole ``ros2 launch`` stack; not caused by our
code (docs/fleet.md)."""


def assert_ramp_up_ended_cleanly(code: int, report: dict, stderr: str) -> None:
    """A ``ramp up`` run ended cleanly: exit 0, no error in its report, every node exit 0.

    The one fault accepted is the known, bounded DDS teardown hang (``TEARDOWN_HANG``): such a
    node exits 1 from its watchdog with its stacks in the output, after ``ramp up`` said it was
    still running. Nothing else may appear in the report's errors.
    """
    hung = {m.group("node") for m in TEARDOWN_HANG.finditer(stderr)}
    accepted = {f"{n} still running; sending SIGTERM" for n in hung}
    accepted |= {f"{n} exited with code 1 at stop" for n in hung}
    assert all(error in accepted for error in report["errors"]), (report["errors"], stderr[-3000:])
    assert code == 0 or (hung and not report["ok"]), stderr[-5000:]
    for node, exit_code in report["exit_codes"].items():
        assert exit_code == 0 or (exit_code == 1 and node in hung), (report["exit_codes"], hung)


def killable_env() -> dict[str, str]:
    """Environment for a node process a test will SIGKILL: Fast DDS without shared memory.

    A participant killed while it holds a shared-memory port's lock can block every later
    participant of the domain - the test's own probe included, whose creation then never returns
    and takes the whole test session with it (eProsima/Fast-DDS#1144; see fastdds_udp.xml).
    Over UDP a kill leaves nothing shared behind; the other nodes keep the shipped profile.
    """
    profile = str(UDP_PROFILE)
    return dict(
        os.environ, FASTRTPS_DEFAULT_PROFILES_FILE=profile, FASTDDS_DEFAULT_PROFILES_FILE=profile
    )


def start_sim_stack(
    procs: list[NodeProcess],
    log_dir: Path,
    config: Path = SIM_CONFIG,
    to_be_killed: Collection[str] = (),
) -> dict[str, NodeProcess]:
    """Start every node of the config's stack as its own process (as ros2 launch does).

    Nodes named in ``to_be_killed`` get :func:`killable_env`.
    """
    from ramp_bringup.stack import stack_nodes

    started = {}
    for spec in stack_nodes(config):
        name, module = spec.name, spec.factory.split(":")[0]
        env = killable_env() if name in to_be_killed else None
        proc = NodeProcess.module(module, ["--params-file", str(config)], log_dir, name, env)
        procs.append(proc)
        started[name] = proc
    return started


class NodeProcess:
    """A ROS node (or the runner) in its own process group; stop() ends all of it."""

    def __init__(
        self, args: list[str], log_dir: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self._out = self.stdout_path.open("wb")
        self._err = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=self._out,
            stderr=self._err,
            start_new_session=True,
            env=dict(os.environ) if env is None else env,
        )

    @classmethod
    def module(
        cls,
        module: str,
        ros_args: list[str],
        log_dir: Path,
        name: str,
        env: dict[str, str] | None = None,
    ) -> NodeProcess:
        return cls([sys.executable, "-m", module, "--ros-args", *ros_args], log_dir, name, env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGINT, wait, then SIGKILL the whole group; returns the exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._out.close()
        self._err.close()
        return self.proc.returncode

    def wait(self, timeout_s: float) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def processes(log_dir: Path) -> Iterator[list[NodeProcess]]:
    """A list to append NodeProcess objects to; every one is stopped on exit."""
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            proc.stop()


@contextmanager
def spun_node(make: Callable[[Context], Node]) -> Iterator[Node]:
    """The node ``make(context)`` builds in its own rclpy context, spun on a background thread;
    closed (``close()`` when it has one) and destroyed on exit."""
    context = Context()
    rclpy.init(context=context)
    node: Node | None = None
    try:
        node = make(context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        stop = threading.Event()

        def spin() -> None:
            while not stop.is_set() and context.ok():
                executor.spin_once(timeout_sec=0.05)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        try:
            yield node
        finally:
            stop.set()
            thread.join(2.0)
            executor.shutdown()
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        rclpy.shutdown(context=context)


def probe_node(name: str = "test_probe") -> AbstractContextManager[Node]:
    """An rclpy node in its own context, spun on a background thread."""
    return spun_node(lambda context: rclpy.create_node(name, context=context))


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def call_service(client: Any, request: Any, timeout_s: float) -> Any | None:
    """Call a service from a node spun on another thread (``probe_node``): its answer, or None
    when the service is not there within ``timeout_s`` or does not answer within it."""
    if not client.wait_for_service(timeout_sec=timeout_s):
        return None
    future = client.call_async(request)
    deadline = time.monotonic() + timeout_s
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.02)
    return future.result() if future.done() else None


def call(node: Node, srv_type: type, name: str, request: Any, timeout_s: float = 30.0) -> Any:
    """``call_service`` on a new client of ``node`` for ``name``; fails the test naming the
    service when it is not there or does not answer."""
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout_s), f"service {name} not available"
    response = call_service(client, request, timeout_s)
    assert response is not None, f"service {name} did not answer within {timeout_s} s"
    return response
