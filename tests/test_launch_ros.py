"""``ros2 launch ramp_bringup <robot>.launch.py``, as a user types it: one process per node, data
flowing at the configured rates, and a clean end whatever signal comes.

Runs the real ``ros2 launch`` (Jazzy's launch system; ``scripts/setup.sh`` installs it from
``../shared/ros2-launch`` where that folder exists, robot computers have it from ROS 2) in its own
process group, watched from a probe node in the test's own DDS domain.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ramp_bringup.stack import config_path, stack_nodes
from tests.rosutil import TEARDOWN_HANG, probe_node, wait_for

pytestmark = [
    pytest.mark.ros,
    pytest.mark.skipif(
        importlib.util.find_spec("launch_ros") is None
        or importlib.util.find_spec("ros2launch") is None,
        reason="ros2 launch is not installed: source a ROS 2 install (Humble/Jazzy), or run "
        "scripts/setup.sh on a development machine that provides the launch system",
    ),
]

RATE_TOLERANCE = 0.6
"""A rate check proves the data flows at its configured rate, not how well: the benchmarks
measure that (bench/e2e_latency.py); a loaded CI machine must not fail it."""
CAMERA_RATE_TOLERANCE = 0.3
"""Simulated cameras are rendered in software: their rate is what the CPU allows, not what the
stack does (the same code rendered 28 Hz on this 2-core machine one day and 15-22 Hz the next,
11.5 Hz in a CI run). The control topics keep RATE_TOLERANCE."""


class LaunchRun:
    """``ros2 launch`` in its own process group, its output in a file."""

    def __init__(self, tmp_path: Path, robot: str, *launch_args: str) -> None:
        self.robot = robot
        self.log_path = tmp_path / f"launch_{robot}.log"
        self._log = self.log_path.open("wb")
        self.expected = [s.executable for s in stack_nodes(config_path(robot))]
        args = ["ros2", "launch", "ramp_bringup", f"{robot}.launch.py", *launch_args]
        args.append(f"domain_id:={os.environ['ROS_DOMAIN_ID']}")
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.node_pids: dict[str, int] = {}

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def find_nodes(self) -> bool:
        """True once every node of the config runs as its own child process of launch."""
        import psutil

        found: dict[str, int] = {}
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    cmd = " ".join(child.cmdline())
                    for exe in self.expected:
                        if re.search(rf"/lib/\w+/{exe}( |$)", cmd):
                            found[exe] = child.pid
        self.node_pids = found
        return set(found) == set(self.expected)

    def alive_nodes(self) -> list[str]:
        import psutil

        alive = []
        for name, pid in self.node_pids.items():
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(name)
        return alive

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        import psutil

        for pid in self.node_pids.values():
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        self._log.close()


@contextlib.contextmanager
def launched(tmp_path: Path, robot: str, *launch_args: str) -> Iterator[LaunchRun]:
    run = LaunchRun(tmp_path, robot, *launch_args)
    try:
        wait_for(run.find_nodes, 60, f"every node of {robot} as its own process")
        yield run
    finally:
        run.kill()


def topic_counts(
    topics: dict[str, type], window_s: float, warm_up_s: float, settle_s: float = 0.0
) -> dict[str, float]:
    """Rates (Hz) of ``topics`` seen by a probe over ``window_s``, ``settle_s`` after the first
    message of each (model sessions and renderers warm up meanwhile)."""
    times: dict[str, list[float]] = {t: [] for t in topics}
    with probe_node("launch_probe") as probe:
        from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS

        for topic, msg_type in topics.items():
            qos = SENSOR_QOS if "camera" in topic else STATE_QOS
            qos = COMMAND_QOS if topic in ("joint_command", "ramp/action_chunk") else qos
            probe.create_subscription(
                msg_type,
                topic,
                lambda _m, t=topic: times[t].append(time.monotonic()),
                qos,
                raw=True,
            )
        wait_for(lambda: all(times.values()), warm_up_s, f"first messages on {sorted(topics)}")
        time.sleep(settle_s)
        start = time.monotonic()
        time.sleep(window_s)
        end = time.monotonic()
    return {t: sum(start <= x < end for x in ts) / (end - start) for t, ts in times.items()}


def assert_clean_end(run: LaunchRun, code: int | None) -> None:
    """Every node finished cleanly, except one whose only fault is the known, bounded DDS
    teardown hang (``TEARDOWN_HANG``: exit 1 from its watchdog, its stacks in the output)."""
    out = run.output()
    assert code is not None, f"ros2 launch did not end:\n{out[-3000:]}"
    assert "Traceback" not in out, out[-5000:]
    assert "Segmentation fault" not in out and "core dumped" not in out, out[-5000:]
    hung = {m.group("node") for m in TEARDOWN_HANG.finditer(out)}
    for died in re.finditer(r"\[(\S+)\]: process has died \[pid \d+, exit code (-?\d+)", out):
        assert died.group(2) == "1" and died.group(1) in hung, out[-5000:]
    for name in run.expected:
        assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", out) or any(
            h.rsplit("-", 1)[0] == name for h in hung
        ), f"{name} did not finish cleanly:\n{out[-5000:]}"
    assert not run.alive_nodes()


def configured_rates(robot: str) -> dict[str, float]:
    data = yaml.safe_load(config_path(robot).read_text())
    sim = data["sim_bridge"]["ros__parameters"]
    return {
        "camera/front/image_raw": data["camera_node"]["ros__parameters"]["rate_hz"],
        "joint_states": sim["state_rate_hz"],
        "joint_command": data["intervention_arbiter"]["ros__parameters"]["control_rate_hz"],
    }


def test_sim_launch_runs_a_process_per_node_at_rate_and_ends_on_sigint(tmp_path):
    from sensor_msgs.msg import Image, JointState
    from trajectory_msgs.msg import JointTrajectory

    with launched(tmp_path, "sim") as run:
        assert len(set(run.node_pids.values())) == len(run.expected)  # one process per node
        rates = topic_counts(
            {
                "camera/front/image_raw": Image,
                "joint_states": JointState,
                "joint_command": JointState,
                "ramp/action_chunk": JointTrajectory,
            },
            window_s=4.0,
            warm_up_s=60,
            settle_s=3.0,
        )
        for topic, want in configured_rates("sim").items():
            tolerance = CAMERA_RATE_TOLERANCE if topic.startswith("camera/") else RATE_TOLERANCE
            assert rates[topic] >= tolerance * want, (topic, rates)
        assert rates["ramp/action_chunk"] > 0, rates  # camera -> world model -> policy
        os.kill(run.proc.pid, signal.SIGINT)  # Ctrl-C to launch alone
        assert_clean_end(run, run.wait(30))


@pytest.mark.parametrize("how", ["sigint-to-group", "sigint-twice", "sigterm-to-launch"])
def test_sim_launch_ends_cleanly_whatever_the_signal(tmp_path, how):
    from sensor_msgs.msg import JointState

    with launched(tmp_path, "sim") as run:
        topic_counts({"joint_command": JointState}, window_s=0.5, warm_up_s=60)
        if how == "sigint-to-group":  # a terminal's Ctrl-C, `timeout -s INT`
            os.killpg(run.proc.pid, signal.SIGINT)
        elif how == "sigint-twice":
            os.kill(run.proc.pid, signal.SIGINT)
            time.sleep(0.3)
            os.killpg(run.proc.pid, signal.SIGINT)
        else:  # `docker stop` without STOPSIGNAL, systemd: launch exits at once
            os.kill(run.proc.pid, signal.SIGTERM)
        code = run.wait(30)
        if how == "sigterm-to-launch":
            # launch leaves its children behind on SIGTERM; they end with it (PDEATHSIG)
            assert code is not None, run.output()[-3000:]
            wait_for(lambda: not run.alive_nodes(), 15, "every node to end with launch")
        else:
            assert_clean_end(run, code)


def test_the_launch_ends_when_the_bridge_dies(tmp_path):
    from sensor_msgs.msg import JointState

    from ramp_common.node_exits import subscribe_node_exits

    announced: list[str] = []
    with launched(tmp_path, "sim") as run, probe_node("exit_probe") as probe:
        subscribe_node_exits(probe, announced.append)
        topic_counts({"joint_states": JointState}, window_s=0.5, warm_up_s=60)
        wait_for(lambda: probe.count_publishers("ramp/node_exited") > 0, 10, "the announcer")
        time.sleep(0.5)  # its side of the match too
        os.kill(run.node_pids["sim_bridge"], signal.SIGKILL)
        # the launch announces the exit on ramp/node_exited (the control path holds on it)
        wait_for(lambda: "sim_bridge" in announced, 10, "sim_bridge's exit announced")
        code = run.wait(30)
        out = run.output()
        assert code is not None, f"launch kept running without its robot:\n{out[-3000:]}"
        assert re.search(r"\[sim_bridge-\d+\]: process has died", out), out[-3000:]
        for name in run.expected:
            if name != "sim_bridge":
                assert re.search(rf"\[{name}-\d+\]: process has finished cleanly", out), (
                    f"{name}:\n{out[-5000:]}"
                )
        assert not run.alive_nodes()


ROBOT_FAKES = [
    pytest.param("piper", id="piper"),
    pytest.param(
        "g1",
        id="g1",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("unitree_sdk2py") is None,
            reason="needs cyclonedds 0.10.x + unitree_sdk2py: scripts/setup_g1_dds.sh",
        ),
    ),
]


@pytest.mark.parametrize("robot", ROBOT_FAKES)
def test_robot_launch_against_its_fake(tmp_path, robot):
    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    with launched(tmp_path, robot, "fake_hardware:=true") as run:
        rates = topic_counts(
            {
                "joint_states": JointState,
                "joint_command": JointState,
                "ramp/action_chunk": JointTrajectory,
            },
            window_s=3.0,
            warm_up_s=90,
        )
        assert all(rate > 0 for rate in rates.values()), rates
        os.kill(run.proc.pid, signal.SIGINT)
        assert_clean_end(run, run.wait(30))
