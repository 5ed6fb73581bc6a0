"""Fault campaign harness: ``ramp up --robot sim`` (one process per node) under a probe.

Used by ``bench/faults.py`` (the campaign, many trials) and ``tests/test_faults.py`` (the CI-sized
cases). The figures are computed by the ROS-free ``ramp_bringup.core.faults``; definitions in
docs/reliability.md.

The stack runs with the UDP-only Fast DDS profile (``fastdds_udp.xml``): a participant killed
with SIGKILL while it holds a shared-memory port lock can block later participants of the domain
(eProsima/Fast-DDS#1144, see ``tests/rosutil.killable_env``), which would measure the transport,
not the stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from ramp_bringup.core.faults import hold_time, step_figures
from ramp_common.node_exits import subscribe_node_exits
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from tests.rosutil import ROOT, SIM_CONFIG, UDP_PROFILE, NodeProcess, call_service

REQUIRED_NODES = ("sim_bridge", "intervention_arbiter")
"""Nodes whose exit stops the stack by design (docs/launch.md)."""
MOTION_THRESHOLD = 0.01
"""rad/s (m/s for the gripper): below it on every joint the robot counts as holding still."""
STEP_EPS = 1e-5
"""rad: a sent command changing less than this per tick counts as a held command."""
SETTLE_S = 0.3
"""s: a hold counts once it lasted this long."""


def sim_limits(config: Path = SIM_CONFIG) -> dict[str, list]:
    """joint_names, position_lower/upper, max_velocity of the sim config's shared parameters."""
    shared = yaml.safe_load(config.read_text())["/**"]["ros__parameters"]
    return {
        k: shared[k] for k in ("joint_names", "position_lower", "position_upper", "max_velocity")
    }


@dataclass
class Stream:
    """What the probe received on one JointState topic: receive time, stamp, positions, speeds."""

    names: list[str]
    recv: list[float] = field(default_factory=list)
    stamp: list[float] = field(default_factory=list)
    pos: list[np.ndarray] = field(default_factory=list)
    vel: list[np.ndarray] = field(default_factory=list)

    def add(self, msg: JointState) -> None:
        index = {n: i for i, n in enumerate(msg.name)}
        if any(n not in index for n in self.names) or len(msg.position) < len(msg.name):
            return
        self.recv.append(time.time())
        self.stamp.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        self.pos.append(np.array([msg.position[index[n]] for n in self.names]))
        if len(msg.velocity) == len(msg.name):
            self.vel.append(np.array([msg.velocity[index[n]] for n in self.names]))
        else:
            self.vel.append(np.full(len(self.names), np.nan))

    def window(self, t0: float, t1: float = float("inf")) -> tuple[np.ndarray, ...]:
        """(recv, stamp, pos, vel) arrays of the messages received in [t0, t1)."""
        recv = np.array(self.recv)
        sel = (recv >= t0) & (recv < t1) if len(recv) else np.zeros(0, dtype=bool)
        n = len(self.names)
        pos = np.array(self.pos).reshape(-1, n)[sel]
        vel = np.array(self.vel).reshape(-1, n)[sel]
        return recv[sel], np.array(self.stamp)[sel], pos, vel


def _largest_stamp_gap(stamps: np.ndarray, t0: float, t1: float) -> float:
    """Largest gap (s) between consecutive stamps that overlaps [t0, t1); 0 for < 2 stamps."""
    stamps = np.sort(np.asarray(stamps, dtype=float))
    if len(stamps) < 2:
        return 0.0
    gaps = np.diff(stamps)
    overlaps = (stamps[1:] >= t0) & (stamps[:-1] < t1)
    return float(gaps[overlaps].max()) if overlaps.any() else 0.0


class SimStack:
    """``ramp up --robot sim`` as a process, its node pids, and a probe recording its topics."""

    def __init__(
        self,
        probe: Node,
        log_dir: Path,
        extra: tuple[str, ...] = (),
        dds: str = "udp",
    ) -> None:
        """``dds``: ``udp`` (fastdds_udp.xml, the discovery range of the environment) or
        ``udp-loopback`` (bench/fastdds_udp_loopback.xml with the SUBNET range: no shared memory
        at all, see that file)."""
        self.probe = probe
        self.log_dir = log_dir
        self.episodes_dir = log_dir / "episodes"
        self.report_path = log_dir / "report.json"
        self.limits = sim_limits()
        names = self.limits["joint_names"]
        self.lock = threading.Lock()
        self.streams = {
            "joint_states": Stream(names),
            "joint_command": Stream(names),
            "ramp/sent_command": Stream(names),
            "ramp/policy_command": Stream(names),
        }
        self.chunks: list[float] = []
        self.start_notes: list[str] = []
        for topic in self.streams:
            qos = STATE_QOS if topic == "joint_states" else COMMAND_QOS
            probe.create_subscription(JointState, topic, self._recorder(topic), qos)
        probe.create_subscription(JointTrajectory, "ramp/action_chunk", self._on_chunk, COMMAND_QOS)
        self.exits: list[tuple[float, str]] = []
        """(receive wall time, node name) of every exit announced on ramp/node_exited."""
        self.diagnostics: dict[str, dict[str, str]] = {}
        """Latest diagnostic values per node name (hardware_id)."""
        subscribe_node_exits(probe, self._on_exit)
        probe.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 50)
        self.clients = {
            "start": probe.create_client(Trigger, "ramp/episode/start"),
            "stop": probe.create_client(SetBool, "ramp/episode/stop"),
            "reset": probe.create_client(Trigger, "sim/reset"),
            "estop": probe.create_client(SetBool, "ramp/estop"),
            "pause": probe.create_client(SetBool, "ramp/pause"),
        }
        self.arbiter_state = ""
        probe.create_subscription(String, "ramp/arbiter_state", self._on_arbiter, LATCHED_QOS)
        profile = str(UDP_PROFILE)
        env = dict(os.environ)
        if dds == "udp-loopback":
            profile = str(ROOT / "bench/fastdds_udp_loopback.xml")
            env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
        args = [sys.executable, "-m", "ramp_bringup.cli", "up", "--robot", "sim"]
        args += ["--domain-id", os.environ["ROS_DOMAIN_ID"], "--dds-profile", profile]
        args += ["--report", str(self.report_path)]
        args += ["-p", f"episode_recorder.output_dir:={self.episodes_dir}"]
        args += ["-p", "episode_recorder.min_free_disk_mb:=50.0", *extra]
        self.proc = NodeProcess(args, log_dir, "ramp_up", env)

    # ------------------------------------------------------------------ probe callbacks
    def _recorder(self, topic: str):
        def callback(msg: JointState) -> None:
            with self.lock:
                self.streams[topic].add(msg)

        return callback

    def _on_exit(self, name: str) -> None:
        with self.lock:
            self.exits.append((time.time(), name))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                self.diagnostics[status.hardware_id] = {kv.key: kv.value for kv in status.values}

    def diagnostic(self, node: str, key: str) -> str | None:
        """The latest value of ``key`` in ``node``'s diagnostics, or None."""
        with self.lock:
            return self.diagnostics.get(node, {}).get(key)

    def _on_arbiter(self, msg: String) -> None:
        with contextlib.suppress(ValueError, AttributeError):
            self.arbiter_state = str(json.loads(msg.data).get("state", ""))

    def _on_chunk(self, _msg: JointTrajectory) -> None:
        with self.lock:
            self.chunks.append(time.time())

    # ------------------------------------------------------------------ processes
    def node_pids(self) -> dict[str, int]:
        """Node name -> pid of the live child processes of ``ramp up``."""
        out: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid != self.proc.proc.pid:
                    continue
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            for arg in args:
                if arg.startswith(b"__node:="):
                    out[arg.split(b"=", 1)[1].decode()] = int(entry.name)
        return out

    def alive(self) -> bool:
        return self.proc.alive()

    def kill(self, node: str) -> tuple[int, float]:
        """SIGKILL the node's process; (pid, wall time of the kill)."""
        pid = self.node_pids()[node]
        t = time.time()
        os.kill(pid, signal.SIGKILL)
        return pid, t

    def stop(self) -> int:
        return self.proc.stop(30.0)

    # ------------------------------------------------------------------ services
    def call(self, name: str, request: Any, timeout_s: float = 10.0) -> Any | None:
        """Call one of the stack's services; None when it is not there or does not answer."""
        return call_service(self.clients[name], request, timeout_s)

    def start_episode(self, timeout_s: float = 30.0) -> str | None:
        """Bag folder of the started episode, or None (with the reason on stderr).

        Retried until ``timeout_s`` while the service does not answer: a respawned recorder's
        service exists a few seconds after its process, and a request sent before the client
        matched the new server is lost (then the call is repeated; one served late makes the
        next answer "already recording", which names the episode). The recorder's notes
        (``<folder>; <old>: repaired ...``) are kept in ``start_notes``.
        """
        deadline = time.monotonic() + timeout_s
        response = None
        while response is None and time.monotonic() < deadline:
            response = self.call("start", Trigger.Request(), timeout_s=5.0)
        if response is not None and not response.success:
            # an earlier request of this loop was served after its call gave up
            late = re.match(r"episode (\S+) is already recording", response.message)
            if late:
                return str(self.episodes_dir / late.group(1))
        if response is None or not response.success:
            print(f"episode start failed: {response and response.message}", file=sys.stderr)
            return None
        folder, _, notes = response.message.partition("; ")
        if notes:
            self.start_notes.append(notes)
        return folder

    def stop_episode(self) -> bool:
        response = self.call("stop", SetBool.Request(data=True))
        return bool(response and response.success)

    def reset_sim(self) -> bool:
        response = self.call("reset", Trigger.Request())
        return bool(response and response.success)

    def reset_episode(self, timeout_s: float = 10.0) -> bool:
        """Start an episode from home the way the evaluation does (``ramp_training.sim_stack``):
        e-stop, ``sim/reset``, e-stop off, resume the arbiter (it comes out of an e-stop
        PAUSED). The executor and the arbiter restart from the measured home pose, so the
        command stream and the arm agree, as on a real robot. A bare ``sim/reset`` teleports
        the arm away from the command stream, and the bridge then drives it back at its limits
        for up to ~0.5 s: a hold measured then is that convergence, not the stack's reaction."""
        on = self.call("estop", SetBool.Request(data=True), timeout_s)
        time.sleep(0.2)  # the bridge brakes and holds, the executor and the arbiter latch
        ok = bool(on and on.success) and self.reset_sim()
        time.sleep(0.3)  # fresh frames of the reset scene
        off = self.call("estop", SetBool.Request(data=False), timeout_s)
        ok = ok and bool(off and off.success)
        deadline = time.monotonic() + timeout_s
        while self.arbiter_state != "PAUSED" and time.monotonic() < deadline:
            time.sleep(0.02)
        resumed = self.call("pause", SetBool.Request(data=False), timeout_s)
        return ok and bool(resumed and resumed.success)

    # ------------------------------------------------------------------ waiting
    def count(self, topic: str, since: float) -> int:
        with self.lock:
            if topic == "ramp/action_chunk":
                return sum(1 for t in self.chunks if t >= since)
            return sum(1 for t in self.streams[topic].recv if t >= since)

    def wait_flowing(self, since: float, timeout_s: float) -> float | None:
        """Wall time at which chunks and policy commands both flowed (>= 3 each) after
        ``since``; None on timeout."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.count("ramp/action_chunk", since) >= 3 and (
                self.count("ramp/policy_command", since) >= 3
            ):
                return time.time()
            time.sleep(0.05)
        return None

    def wait_respawned(self, node: str, old_pid: int, timeout_s: float) -> bool:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            pid = self.node_pids().get(node)
            if pid is not None and pid != old_pid:
                return True
            time.sleep(0.05)
        return False

    # ------------------------------------------------------------------ figures
    def figures(self, t0: float, t_fault: float, t1: float = float("inf")) -> dict[str, Any]:
        """Hold times after ``t_fault`` and the command steps within [t0, t1)."""
        vmax = self.limits["max_velocity"]
        with self.lock:
            js = self.streams["joint_states"].window(t_fault, t1)
            sent = self.streams["ramp/sent_command"].window(t0, t1)
            cmd = self.streams["joint_command"].window(t0, t1)
            before = self.streams["joint_states"].window(t_fault - 0.2, t_fault)
            sent_after = self.streams["ramp/sent_command"].window(t_fault, t1)
            policy_after = self.streams["ramp/policy_command"].window(t_fault, t1)
            cmd_after = self.streams["joint_command"].window(t_fault, t1)
            cmd_around = self.streams["joint_command"].window(t_fault - 0.5, t1)[1]
            sent_around = self.streams["ramp/sent_command"].window(t_fault - 0.5, t1)[1]
            announced = [t - t_fault for t, _ in self.exits if t >= t_fault and t < t1]
        moving = bool(len(before[3]) and np.nanmax(np.abs(before[3])) > 5 * MOTION_THRESHOLD)
        # Holds are timed by the messages' own stamps (the sim's state time, each stage's tick
        # due time), all on this machine's wall clock like t_fault: a probe that is itself
        # late (its process busy) must not read as a late hold.
        motion_hold = hold_time(js[1], js[3], t_fault, MOTION_THRESHOLD, SETTLE_S)
        steps = np.abs(np.diff(sent_after[2], axis=0)) if len(sent_after[2]) > 1 else None
        command_hold = None
        if steps is not None:
            command_hold = hold_time(sent_after[1][1:], steps, t_fault, STEP_EPS, SETTLE_S)
        stage_holds = {}
        for key, (_recv, stamps, positions, _v) in (
            ("policy_command_hold_s", policy_after),
            ("joint_command_hold_s", cmd_after),
        ):
            stage_holds[key] = (
                hold_time(
                    stamps[1:], np.abs(np.diff(positions, axis=0)), t_fault, STEP_EPS, SETTLE_S
                )
                if len(stamps) > 1
                else None
            )
        # Both control loops (the arbiter's, the bridge's) without a tick for this long right
        # after the fault: the computer stalled every process (seen here: ~1 s, now and then),
        # which no part of the stack can hold through; reported beside the hold figures.
        loop_stall = min(
            _largest_stamp_gap(cmd_around, t_fault, t_fault + 1.5),
            _largest_stamp_gap(sent_around, t_fault, t_fault + 1.5),
        )
        with self.lock:
            chunk_times = [t for t in self.chunks if t < t1]
        last_chunk = None
        if motion_hold is not None:
            t_hold = t_fault + motion_hold
            last_chunk = max((t for t in chunk_times if t <= t_hold), default=None)
        sent_steps = step_figures(sent[1], sent[2], vmax)
        cmd_steps = step_figures(cmd[1], cmd[2], vmax)
        return {
            "moving_at_fault": moving,
            "motion_hold_s": motion_hold,
            "command_hold_s": command_hold,
            **stage_holds,
            "announced_s": min(announced) if announced else None,
            "loop_stall_s": loop_stall,
            "hold_after_last_chunk_s": (
                t_fault + motion_hold - last_chunk if last_chunk is not None else None
            ),
            "sent_largest_step": sent_steps.largest_step,
            "sent_jumps": sent_steps.jumps,
            "command_largest_step": cmd_steps.largest_step,
            "command_jumps": cmd_steps.jumps,
            "command_speed_ratio": max(sent_steps.largest_speed_ratio, 0.0),
            "joint_states_after": len(js[0]),
        }


def check_bag(path: str | Path) -> dict[str, Any]:
    """Open an episode bag the way ``ramp-bag info`` does (repairing it first if a killed
    recorder left it open); readable, status, end reason, messages, the repair note."""
    from ramp_hilr_teleop.core.bag_reader import episode_info
    from ramp_hilr_teleop.core.repair import needs_repair, repair_bag

    path = Path(path)
    out: dict[str, Any] = {"path": str(path), "repaired_now": False}
    try:
        if needs_repair(path):
            repair_bag(path)
            out["repaired_now"] = True
        info = episode_info(path)
    except Exception as exc:  # the figure is whether it reads; any failure is the answer
        out.update(readable=False, error=f"{type(exc).__name__}: {exc}")
        return out
    meta = (
        yaml.safe_load((path / "episode.yaml").read_text())
        if (path / "episode.yaml").exists()
        else {}
    )
    out.update(
        readable=True,
        status=info["status"],
        end_reason=(meta or {}).get("end_reason"),
        messages=info["messages"],
        dropped=info["dropped"],
        error=info["error"],
    )
    return out


# ---------------------------------------------------------------------------- malformed input
BAD_NAMES = (["nope"], ["joint1", "joint1"], [], ["joint1"] * 7, ["JOINT1"], ["joint1", ""])
BAD_ENCODINGS = ("", "bayer_rggb8", "16UC1", "mono16", "rgb8 ", "yuv422", "\x00", "rgba8")


def _bad_stamp(rng: np.random.Generator):
    from builtin_interfaces.msg import Time

    kind = rng.integers(5)
    now = time.time()
    if kind == 0:
        return Time()  # zero
    if kind == 1:
        return Time(sec=int(now) - int(rng.integers(10, 10**6)))  # far past
    if kind == 2:
        return Time(sec=min(int(now) + int(rng.integers(10, 10**8)), 2**31 - 1))  # future
    return Time(sec=int(now), nanosec=int(now % 1 * 1e9))  # fresh (the payload is the fault)


def _bad_floats(rng: np.random.Generator, n: int) -> list[float]:
    values = rng.normal(0.0, 1.0, n)
    kind = rng.integers(6)
    if kind == 0 and n:
        values[rng.integers(n)] = np.nan
    elif kind == 1 and n:
        values[rng.integers(n)] = np.inf * rng.choice([-1, 1])
    elif kind == 2:
        values = values * 1e6  # far outside every limit
    elif kind == 3:
        values = np.full(n, np.finfo(np.float64).max)
    return [float(v) for v in values]


def _bad_names(rng: np.random.Generator, names: list[str]) -> list[str]:
    kind = rng.integers(4)
    if kind == 0:
        return list(BAD_NAMES[rng.integers(len(BAD_NAMES))])
    if kind == 1:
        return [*names, names[0]]  # duplicated
    if kind == 2:
        return [str(n) for n in rng.permutation(names)]  # a valid order, other payload faults
    return list(names)


def bad_joint_state(rng: np.random.Generator, names: list[str]) -> JointState:
    """A JointState with one or more faults: names, lengths, NaN/inf/huge values, stamps."""
    msg = JointState()
    msg.header.stamp = _bad_stamp(rng)
    msg.name = _bad_names(rng, names)
    n = len(msg.name)
    length = int(
        rng.choice([n, n, n, 0, max(n - 1, 0), n + 3, 20000 if rng.random() < 0.02 else n])
    )
    msg.position = _bad_floats(rng, length)
    if rng.random() < 0.5:
        msg.velocity = _bad_floats(rng, int(rng.choice([length, 1, 0])))
    return msg


def bad_trajectory(rng: np.random.Generator, names: list[str]) -> JointTrajectory:
    """A JointTrajectory (action chunk) with faults: point sizes, NaN, order of times, stamps."""
    from trajectory_msgs.msg import JointTrajectoryPoint

    msg = JointTrajectory()
    msg.header.stamp = _bad_stamp(rng)
    msg.joint_names = _bad_names(rng, names)
    n_points = int(rng.choice([0, 1, 8, 16, 2000 if rng.random() < 0.02 else 16]))
    times = np.sort(rng.uniform(0.0, 2.0, n_points))
    kind = rng.integers(4)
    if kind == 0:
        times = times[::-1]  # out of order
    elif kind == 1 and n_points:
        times[:] = 0.0  # all at once
    for i in range(n_points):
        point = JointTrajectoryPoint()
        width = len(msg.joint_names) + int(rng.choice([0, 0, 0, -1, 2]))
        point.positions = _bad_floats(rng, max(width, 0))
        t = float(times[i]) if np.isfinite(times[i]) else 0.0
        point.time_from_start.sec = max(int(t), 0)
        point.time_from_start.nanosec = int((t % 1) * 1e9)
        msg.points.append(point)
    return msg


def bad_image(rng: np.random.Generator) -> Any:
    """An Image with faults: encodings, steps, sizes, data length, endianness, stamps."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp = _bad_stamp(rng)
    msg.header.frame_id = str(rng.choice(["front", "wrist", "", "x" * 300]))
    msg.height = int(rng.choice([0, 1, 48, 240, 65535]))
    msg.width = int(rng.choice([0, 1, 64, 320, 65535]))
    good = rng.random() < 0.3
    msg.encoding = "rgb8" if good else str(rng.choice(BAD_ENCODINGS))
    msg.step = int(rng.choice([msg.width * 3, msg.width * 3 + 1, 0, msg.width]))
    msg.is_bigendian = int(rng.integers(2))
    size = min(msg.step * msg.height, 1 << 20)
    size = int(rng.choice([size, max(size - 7, 0), 0, 3]))
    msg.data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    return msg


def bad_joy(rng: np.random.Generator) -> Any:
    """A Joy message with faults: empty, huge, NaN axes, odd button values."""
    from sensor_msgs.msg import Joy

    msg = Joy()
    msg.header.stamp = _bad_stamp(rng)
    msg.axes = [
        float(v)
        for v in np.array(_bad_floats(rng, int(rng.choice([0, 2, 8, 5000]))), dtype=np.float32)
    ]
    msg.buttons = [
        int(v) for v in rng.integers(-(2**31), 2**31 - 1, int(rng.choice([0, 3, 12, 5000])))
    ]
    return msg
