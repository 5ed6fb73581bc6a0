"""K robots served by inference processes on one host: rates, latency and inference CPU.

For K = 1, 2, 4 (``--robots``), on this machine (one DDS domain, a namespace per robot):
K robot sides (``ramp up --robot piper --fake-hardware --role robot --namespace robotN``: the
PiPER bridge against its protocol fake, synthetic cameras trimmed to 160x120 at 15 Hz, the
chunk executor; each with its own health report) and the inference side of each robot
(``--role inference``: world model + policy, one pair of processes per robot: the "K separate
sessions" layout). Prints per robot the chunk rate, capture -> chunk p50/p99 (robot clock), the
joint_command rate, and the inference processes' CPU (% of one core, summed), with the K = 1
figures as the baseline of the run.

One batched inference process for all robots (issue #12) is not built yet; this is the
baseline it has to beat. What was trimmed to fit 2 cores: no arbiter/teleop/recorder (the PiPER
config has none), small synthetic frames, the fake arm in the bridge process.

    python bench/fleet.py [--robots 1 2 4] [--duration 20] [--pair demo|reference]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

TRIM = [
    "-p", "camera_node.width:=160", "-p", "camera_node.height:=120",
    "-p", "camera_node.rate_hz:=15.0", "-p", "piper_bridge.feedback_timeout_s:=0.5",
]  # fmt: skip


def ramp_up(role: str, robot: str, domain: int, extra: list[str], report: Path | None):
    cmd = [sys.executable, "-m", "ramp_bringup.cli", "up", "--robot", "piper", "--fake-hardware"]
    cmd += ["--role", role, "--namespace", robot, "--domain-id", str(domain), *TRIM, *extra]
    if report is not None:
        cmd += ["--report", str(report)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """CPU time (user + system, s) of these processes and all their children."""
    total = 0.0
    for proc in procs:
        try:
            parent = psutil.Process(proc.pid)
            for p in [parent, *parent.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def run(k: int, duration_s: float, domain: int, extra: list[str], tmp: Path) -> dict:
    robots = [f"robot{i + 1}" for i in range(k)]
    inference = [ramp_up("inference", r, domain, extra, None) for r in robots]
    robot_sides = [ramp_up("robot", r, domain, extra, tmp / f"{r}.json") for r in robots]
    time.sleep(15.0)  # start-up: sessions, discovery, the first chunks
    cpu0, t0 = cpu_seconds(inference), time.monotonic()
    time.sleep(duration_s)
    cpu = (cpu_seconds(inference) - cpu0) / (time.monotonic() - t0) * 100.0
    for proc in robot_sides + inference:
        proc.send_signal(signal.SIGINT)
    for proc in robot_sides + inference:
        proc.wait(60)
    per_robot = {}
    for robot in robots:
        report = json.loads((tmp / f"{robot}.json").read_text())
        topics = report["topics"]
        chunk = report["latency_ms"].get("capture_to_chunk") or {}
        per_robot[robot] = {
            "chunk_hz": topics.get("ramp/action_chunk", {}).get("rate_hz", 0.0),
            "command_hz": topics.get("joint_command", {}).get("rate_hz", 0.0),
            "capture_to_chunk_p50_ms": chunk.get("p50", float("nan")),
            "capture_to_chunk_p99_ms": chunk.get("p99", float("nan")),
        }
    return {"robots": per_robot, "inference_cpu_percent": cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 63)))
    parser.add_argument("--pair", choices=("demo", "reference"), default="demo")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    extra = []
    if args.pair != "demo":
        folder = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / args.pair
        extra = [
            "-p", f"worldmodel_node.model_card:={folder / 'world_model.yaml'}",
            "-p", f"policy_node.model_card:={folder / 'policy.yaml'}",
        ]  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.robots:
            results[k] = run(k, args.duration, args.domain_id, extra, Path(tmp))
    base = results[args.robots[0]]
    base_p50 = next(iter(base["robots"].values()))["capture_to_chunk_p50_ms"]
    print(f"K robots, one inference process pair per robot ({args.pair} pair), 2 cores")
    print(
        f"{'K':>3s} {'robot':8s} {'chunk Hz':>9s} {'cmd Hz':>8s} {'p50 ms':>8s} {'p99 ms':>8s} "
        f"{'p50/K=1':>8s} {'inference CPU %':>16s}"
    )
    for k, result in results.items():
        for i, (robot, r) in enumerate(result["robots"].items()):
            cpu = f"{result['inference_cpu_percent']:16.0f}" if i == 0 else ""
            print(
                f"{k:3d} {robot:8s} {r['chunk_hz']:9.1f} {r['command_hz']:8.1f} "
                f"{r['capture_to_chunk_p50_ms']:8.1f} {r['capture_to_chunk_p99_ms']:8.1f} "
                f"{r['capture_to_chunk_p50_ms'] / base_p50:8.2f} {cpu}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
