"""Operator console cost: ten viewers vs none, on the simulated stack, in one run.

Starts the sim stack (one process per node, the console among them, as ``ros2 launch`` does),
then measures interleaved phases of ``--duration`` seconds: no viewer, ``--viewers`` WebSocket
viewers pulling camera frames and state at the default 10 fps (plain aiohttp clients in a child
process at nice 19, standing for browsers on the operators' computers; ``--viewers-here`` runs
them in this process at normal priority instead; ``--browser`` adds one headless chromium with
the real page), no viewer, ... for ``--rounds`` rounds.
Per phase: the camera topics' and ``joint_command``'s rates as received by a probe, the
console process's CPU (% of one core, from /proc), the whole stack's CPU, and the frames the
viewers got. Prints, per round, the watched phase as a ratio of the mean of the no-viewer
phases either side, and the median over rounds.

    python bench/console.py [--duration 10] [--rounds 3] [--viewers 10] [--browser] [--json f]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from ramp_common.qos import COMMAND_QOS, SENSOR_QOS  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
LINGER_S = 5.0  # operator_console keeps its live subscriptions this long after the last viewer


def cpu_seconds(pid: int) -> float:
    """Utime + stime of a process (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> set[int]:
    """Every live descendant process of ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def viewer_side_cpu(stack_pids: set[int]) -> float:
    """CPU seconds of this process (viewers, probe) and its non-stack children (chromium)."""
    total = cpu_seconds(os.getpid())
    for pid in descendants(os.getpid()) - stack_pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def chromium(tmp: Path):
    """A headless chromium (selenium + chromium-driver) with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(dir=tmp, prefix='chromium-')}")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def __call__(self, _raw: bytes) -> None:
        with self.lock:
            self.n += 1

    def read(self) -> int:
        with self.lock:
            return self.n


class Viewers:
    """``n`` WebSocket viewers on their own asyncio loop and thread; counts what they receive."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.n = url, n
        self.frames = [0] * n
        self.states = [0] * n
        self._stop: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    async def _viewer(self, i: int, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self.url + "ws") as ws:
            while not self._stop.is_set():
                try:
                    msg = await ws.receive(timeout=0.5)
                except asyncio.TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.frames[i] += 1
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    self.states[i] += 1
                else:
                    return

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(self._viewer(i, session) for i in range(self.n)))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class RemoteViewers:
    """The same viewers in a child process at nice 19: they stand for browsers on operators'
    computers, so what is measured on the stack is the console's own cost, not the viewers'
    (here they have to share the robot computer's two cores). Same interface as Viewers."""

    def __init__(self, url: str, n: int) -> None:
        self.url, self.n = url, n
        self._total = 0
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None

    @property
    def frames(self) -> list[int]:
        return [self._total]

    def start(self) -> None:
        cmd = [sys.executable, __file__, "--viewer-process", self.url, "--viewers", str(self.n)]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.nice(19)
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self._total = int(line)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(15)


def viewer_process(url: str, n: int) -> int:
    """Child of RemoteViewers: run the viewers, print the frame total twice a second."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    viewers = Viewers(url, n)
    viewers.start()
    while not stop.wait(0.5):
        print(sum(viewers.frames), flush=True)
    viewers.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--rounds", type=int, default=3, help="(none, watched) rounds")
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument("--browser", action="store_true", help="add one headless chromium")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 154)))
    parser.add_argument(
        "--viewers-here",
        action="store_true",
        help="run the viewers in this process at normal priority (they then compete with the "
        "stack for the cores) instead of a child at nice 19",
    )
    parser.add_argument(
        "--console-niceness", type=int, default=None, help="operator_console.niceness"
    )
    parser.add_argument("--viewer-process", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    if args.viewer_process:
        return viewer_process(args.viewer_process, args.viewers)
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    profile = str(ROOT / "src/ramp_bringup/dds/fastdds_shm.xml")
    os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", profile)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    from tests.rosutil import SIM_CONFIG, probe_node, processes, start_sim_stack, wait_for

    tmp = Path(tempfile.mkdtemp(prefix="ramp_console_bench_"))
    config = yaml.safe_load(SIM_CONFIG.read_text())
    config["teleop_node"]["ros__parameters"]["keyboard"] = False
    config["episode_recorder"]["ros__parameters"]["output_dir"] = str(tmp / "episodes")
    config["operator_console"]["ros__parameters"]["port"] = 0
    if args.console_niceness is not None:
        config["operator_console"]["ros__parameters"]["niceness"] = args.console_niceness
    config_file = tmp / "sim.yaml"
    config_file.write_text(yaml.safe_dump(config))
    counters = {t: Counter() for t in ("camera/front", "camera/wrist", "joint_command")}
    url = {"value": ""}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == "operator_console":
                url["value"] = next((kv.value for kv in status.values if kv.key == "url"), "")

    rows: list[tuple[str, dict[str, float]]] = []
    driver = None
    use_browser = bool(args.browser and shutil.which("chromium") and shutil.which("chromedriver"))
    label = f"{args.viewers} viewers" + (" + chromium" if use_browser else "")
    try:
        with processes(tmp) as procs, probe_node("console_bench_probe") as probe:
            nodes = start_sim_stack(procs, tmp, config_file)
            for cam in ("front", "wrist"):
                probe.create_subscription(
                    Image, f"camera/{cam}/image_raw", counters[f"camera/{cam}"], SENSOR_QOS,
                    raw=True,
                )  # fmt: skip
            probe.create_subscription(
                JointState, "joint_command", counters["joint_command"], COMMAND_QOS, raw=True
            )
            probe.create_subscription(DiagnosticArray, "diagnostics", on_diag, 50)
            wait_for(lambda: bool(url["value"]), 120, "the console's url")
            wait_for(lambda: counters["joint_command"].read() > 400, 120, "joint commands")
            time.sleep(5.0)  # settle
            console_pid = nodes["operator_console"].proc.pid
            pids = [p.proc.pid for p in procs]
            stack_pids = set(pids)
            for pid in pids:
                stack_pids |= descendants(pid)

            def phase(viewers: Viewers | None) -> dict[str, float]:
                c0 = {t: c.read() for t, c in counters.items()}
                cpu0, all0 = cpu_seconds(console_pid), sum(cpu_seconds(p) for p in pids)
                view0 = viewer_side_cpu(stack_pids)
                f0 = sum(viewers.frames) if viewers else 0
                t0 = time.monotonic()
                time.sleep(args.duration)
                dt = time.monotonic() - t0
                return {
                    **{f"{t}_hz": (c.read() - c0[t]) / dt for t, c in counters.items()},
                    "console_cpu_pct": 100 * (cpu_seconds(console_pid) - cpu0) / dt,
                    "stack_cpu_pct": 100 * (sum(cpu_seconds(p) for p in pids) - all0) / dt,
                    "viewer_side_cpu_pct": 100 * (viewer_side_cpu(stack_pids) - view0) / dt,
                    "viewer_fps_per_camera": ((sum(viewers.frames) - f0) / dt / viewers.n / 2)
                    if viewers
                    else 0.0,
                }

            def watched() -> dict[str, float]:
                nonlocal driver
                kind = Viewers if args.viewers_here else RemoteViewers
                viewers = kind(url["value"], args.viewers)
                viewers.start()
                if use_browser:
                    driver = chromium(tmp)
                    driver.get(url["value"])
                time.sleep(3.0)  # subscriptions, discovery, first frames
                out = phase(viewers)
                if driver is not None:
                    driver.quit()
                    driver = None
                viewers.stop()
                time.sleep(LINGER_S + 1.0)  # the console drops its live subscriptions
                return out

            # Interleaved (none, watched) rounds and a last none: each watched phase is compared
            # with the mean of the no-viewer phases either side, so slow drifts of a shared
            # machine's load cancel; the median over rounds is reported.
            rows.append(("none", phase(None)))
            for _ in range(args.rounds):
                rows.append((label, watched()))
                rows.append(("none", phase(None)))
            for name, row in rows:
                print(f"{name:24s}", json.dumps({k: round(v, 2) for k, v in row.items()}))
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)

    ratios: dict[str, list[float]] = {}
    for i in range(1, len(rows) - 1, 2):
        before, during, after = rows[i - 1][1], rows[i][1], rows[i + 1][1]
        for key in ("camera/front_hz", "camera/wrist_hz", "joint_command_hz", "stack_cpu_pct"):
            base = (before[key] + after[key]) / 2
            ratios.setdefault(key, []).append(during[key] / base)
    idle = [r for n, r in rows if n == "none"]
    busy = [r for n, r in rows if n != "none"]

    def median(key: str, group: list[dict[str, float]]) -> float:
        return statistics.median(r[key] for r in group)

    rounds = f"median of {args.rounds} interleaved rounds of {args.duration:g} s"
    print(f"\n{label} vs no viewer, {rounds}:")
    for key, values in ratios.items():
        shown = " ".join(f"{v:.3f}" for v in values)
        print(f"  {key:20s} ratio {statistics.median(values):.3f}  (rounds: {shown})")
    print(
        f"  console CPU          {median('console_cpu_pct', busy):.1f} % of a core watched, "
        f"{median('console_cpu_pct', idle):.1f} % unwatched"
    )
    print(
        f"  viewer side CPU      {median('viewer_side_cpu_pct', busy):.0f} % of a core watched "
        f"(same machine), {median('viewer_side_cpu_pct', idle):.0f} % unwatched (probe only)"
    )
    print(
        f"  frames per viewer    {median('viewer_fps_per_camera', busy):.1f} fps per camera "
        f"(limit 10)"
    )
    results = {"rows": rows, "ratios": ratios}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
