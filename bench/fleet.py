"""K robots served by one inference host: K separate inference pairs vs one batched pair.

For K = 1, 2, 4 (``--robots``), on this machine (one DDS domain, a namespace per robot), both
layouts in one run:

- robot sides, ``--robot-sides``:

  - ``stand-in`` (default): ONE process (``bench/fleet_standin.py``) with a node per robot that
    publishes what a PiPER robot side publishes to the inference nodes (two synthetic cameras
    160x120 rgb8 at 15 Hz, ``joint_states`` at 100 Hz with the PiPER joint names; the same topics
    and QoS) and records each robot's chunks: capture -> chunk computed as the health report
    does (``ramp_bringup.core.report.RunRecorder``), over the measured period only. It also
    reports its own publish rates and timer lateness, so one can see it kept up. This measures
    the inference host: K robot stacks on the robot cores would otherwise be what saturates
    (seen at K = 4, docs/fleet.md);
  - ``stack``: K x ``ramp up --robot piper --fake-hardware --role robot --namespace robotN``
    (the PiPER bridge against its protocol fake, synthetic cameras, the chunk executor; each
    with its own health report, whose figures cover the whole run, start-up included);

- ``separate``: K x ``ramp up ... --role inference --namespace robotN`` (a world-model and a
  policy process per robot, K model sessions each);
- ``batched``: one ``ramp up --fleet FILE`` (one world-model and one policy process for all K
  robots, one forward pass per round, issue #12), its sessions with ``--batched-threads``
  intra-op threads (default: the inference cores; the separate sessions have 1 each).

``--split-cores`` (default): the robot sides run on all cores but the last, the inference
processes (either layout) on the last one, as if the inference host were its own computer; so
the layouts compete for the inference core only, not with the robots' processes through the
scheduler's fair share (one batched process would get less CPU than 2K separate ones).

Prints per robot the chunk rate, the robot side's own rate (stack: joint_command Hz; stand-in:
the lower of its two camera publish rates, Hz), capture -> wm_state p50 and capture -> chunk
p50/p99 (robot clock, ms; p50 also as a ratio to robot1 of the same layout's K = 1 run); per run
the inference processes' CPU (% of one core, the node processes; the ``ramp up`` supervisors with
their health monitors, one per robot in the separate layout and one in the batched, apart as
"ramp CPU"), the robot sides' CPU (% of one core, all their processes) and the delivered
chunks/s of all robots; the stand-in's publish rates and timer lateness; the model nodes' last
diagnostics (inference time, batch size, hops); the batched/separate ratio of throughput per K.
Then a capacity check without ROS: observations/s of the model pair run as K sessions at batch
1 vs one session at batch K.

Trimmed to fit two cores: cameras 160x120 at 15 Hz (the world model takes 96x96). With
``stack`` sides also: the fake arm a thread of the bridge process, bridge and executor at
100 Hz instead of 200 Hz, no operator console (the PiPER config's node list without it:
``LEAN_NODES``), no arbiter/teleop/recorder (the PiPER config has none); at K = 4 that is still
4 x (bridge, camera, executor, the ``ramp`` monitor writing the health report) on the robot
core. With ``stand-in`` sides there is no bridge, fake arm, chunk executor or monitor at all:
nothing consumes the chunks but the stand-in, and there is no joint_command. With ``--pair
reference`` the model nodes' ``max_input_age_s`` is 1 s (a saturated host would otherwise
deliver nothing).

    python bench/fleet.py [--robots 1 2 4] [--duration 20] [--pair demo|reference]
                          [--robot-sides stand-in|stack] [--domain-id N]
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

import numpy as np
import psutil
import yaml

LAYOUTS = ("separate", "batched")
CPUS = sorted(os.sched_getaffinity(0))
ROBOT_CPUS: set[int] = set(CPUS)
"""Cores of the robot sides; with ``--split-cores`` all but the last one."""
INFERENCE_CPUS: set[int] = set(CPUS)
"""Cores of the inference processes (the inference host); with ``--split-cores`` the last one."""


def _pinned(cpus: set[int]):
    """preexec_fn that pins the child (and everything it starts) to ``cpus``."""
    return lambda: os.sched_setaffinity(0, cpus)


LEAN_NODES = ["piper_bridge", "camera_node", "worldmodel_node", "policy_node", "chunk_executor"]
"""The PiPER stack without its operator console (a web server per robot: not what is measured)."""

TRIM = [
    "-p", "camera_node.width:=160", "-p", "camera_node.height:=120",
    "-p", "camera_node.rate_hz:=15.0", "-p", "piper_bridge.feedback_timeout_s:=0.5",
    "-p", "piper_bridge.control_rate_hz:=100.0", "-p", "piper_bridge.state_rate_hz:=100.0",
    "-p", "chunk_executor.control_rate_hz:=100.0",
]  # fmt: skip


def lean_config(tmp: Path) -> Path:
    """config/piper.yaml with the node list trimmed to LEAN_NODES, written into ``tmp``."""
    from ramp_bringup.stack import STACK_KEY, config_path

    data = yaml.safe_load(config_path("piper").read_text())
    data[STACK_KEY]["ros__parameters"]["nodes"] = LEAN_NODES
    path = tmp / "piper_lean.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def ramp_up(
    role: str, robot: str, domain: int, extra: list[str], report: Path | None
) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ramp_bringup.cli", "up", "--fake-hardware"]
    cmd += ["--role", role, "--namespace", robot, "--domain-id", str(domain), *TRIM, *extra]
    if report is not None:
        cmd += ["--report", str(report)]
    cpus = ROBOT_CPUS if role == "robot" else INFERENCE_CPUS
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pinned(cpus)
    )


def ramp_fleet(
    robots: list[str], domain: int, extra: list[str], tmp: Path, threads: int
) -> subprocess.Popen:
    """One batched inference pair for ``robots`` (a fleet file written to ``tmp``); its model
    sessions get ``threads`` intra-op threads (the host's cores: it is the only inference
    process, where the separate layout runs K single-thread sessions side by side)."""
    fleet = tmp / "fleet.yaml"
    fleet.write_text("ramp_fleet:\n  robot: piper\n  robots: [" + ", ".join(robots) + "]\n")
    cmd = [sys.executable, "-m", "ramp_bringup.cli", "up", "--fleet", str(fleet)]
    cmd += ["--domain-id", str(domain), *extra]
    cmd += ["-p", f"intra_op_threads:={threads}"]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_pinned(INFERENCE_CPUS),
    )


STANDIN_CAMERA_HZ = 15.0
"""The stand-in's camera rate (Hz), as TRIM sets camera_node's."""
CAMERA_TOPICS = ("camera/front/image_raw", "camera/wrist/image_raw")


def standin(k: int, domain: int, out: Path) -> subprocess.Popen:
    """The K stand-in robot sides (bench/fleet_standin.py), one process on the robot cores,
    writing its per-robot figures to ``out`` when it gets SIGINT."""
    cmd = [sys.executable, str(Path(__file__).with_name("fleet_standin.py"))]
    cmd += ["--robots", str(k), "--out", str(out), "--domain-id", str(domain)]
    cmd += ["--width", "160", "--height", "120", "--camera-hz", str(STANDIN_CAMERA_HZ)]
    cmd += ["--joint-hz", "100"]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pinned(ROBOT_CPUS)
    )


def process_tree_cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time (user + system, s) of ``proc`` and every process it started."""
    total = 0.0
    try:
        parent = psutil.Process(proc.pid)
        for p in [parent, *parent.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
    except psutil.Error:
        pass
    return total


def node_cpu_seconds(procs: list[subprocess.Popen]) -> tuple[float, float]:
    """CPU time (user + system, s) of the node processes these ``ramp up`` processes started,
    and of the ``ramp up`` processes themselves (supervisor and health monitor)."""
    nodes = supervisors = 0.0
    for proc in procs:
        try:
            parent = psutil.Process(proc.pid)
            times = parent.cpu_times()
            supervisors += times.user + times.system
            for p in parent.children(recursive=True):
                times = p.cpu_times()
                nodes += times.user + times.system
        except psutil.Error:
            continue
    return nodes, supervisors


def run(
    layout: str,
    k: int,
    duration_s: float,
    domain: int,
    extra: list[str],
    tmp: Path,
    threads: int,
    sides: str,
) -> dict:
    """One layout at K robots: start-up (15 s), then ``duration_s`` measured; the figures."""
    robots = [f"robot{i + 1}" for i in range(k)]
    if layout == "batched":
        inference = [ramp_fleet(robots, domain, extra, tmp, threads)]
    else:
        inference = [ramp_up("inference", r, domain, extra, None) for r in robots]
    if sides == "stack":
        robot_sides = [ramp_up("robot", r, domain, extra, tmp / f"{r}.json") for r in robots]
    else:
        robot_sides = [standin(k, domain, tmp / "standin.json")]
    time.sleep(15.0)  # start-up: sessions, discovery, the first chunks
    if sides == "stand-in":
        robot_sides[0].send_signal(signal.SIGUSR1)  # its figures start now
    (cpu0, sup0), t0 = node_cpu_seconds(inference), time.monotonic()
    robot_cpu0 = sum(process_tree_cpu_seconds(p) for p in robot_sides)
    time.sleep(duration_s)
    cpu1, sup1 = node_cpu_seconds(inference)
    robot_cpu1 = sum(process_tree_cpu_seconds(p) for p in robot_sides)
    elapsed = time.monotonic() - t0
    cpu = (cpu1 - cpu0) / elapsed * 100.0
    supervisor_cpu = (sup1 - sup0) / elapsed * 100.0
    for proc in robot_sides + inference:
        proc.send_signal(signal.SIGINT)
    for proc in robot_sides + inference:
        proc.wait(60)
    per_robot: dict[str, dict] = {}
    diagnostics: dict = {}
    if sides == "stack":
        for robot in robots:
            report = json.loads((tmp / f"{robot}.json").read_text())
            topics = report["topics"]
            chunk = report["latency_ms"].get("capture_to_chunk") or {}
            wm = report["latency_ms"].get("capture_to_wm_state") or {}
            per_robot[robot] = {
                "chunk_hz": topics.get("ramp/action_chunk", {}).get("rate_hz", 0.0),
                "side_hz": topics.get("joint_command", {}).get("rate_hz", 0.0),
                "capture_to_chunk_p50_ms": chunk.get("p50", float("nan")),
                "capture_to_chunk_p99_ms": chunk.get("p99", float("nan")),
                "capture_to_wm_state_p50_ms": wm.get("p50", float("nan")),
            }
            diagnostics.update(report.get("diagnostics", {}))
    else:
        out = json.loads((tmp / "standin.json").read_text())
        for robot, r in out["robots"].items():
            chunk, wm = r["capture_to_chunk_ms"], r["capture_to_wm_state_ms"]
            published = r["published"]
            per_robot[robot] = {
                "chunk_hz": r["chunk_hz"],
                "side_hz": min(published.get(t, {}).get("rate_hz", 0.0) for t in CAMERA_TOPICS),
                "joint_pub_hz": published.get("joint_states", {}).get("rate_hz", 0.0),
                "timer_late_p99_ms": max(
                    t["late_ms"].get("p99", float("nan")) for t in r["timers"].values()
                ),
                "timer_overruns": sum(t["overruns"] for t in r["timers"].values()),
                "capture_to_chunk_p50_ms": chunk.get("p50", float("nan")),
                "capture_to_chunk_p99_ms": chunk.get("p99", float("nan")),
                "capture_to_wm_state_p50_ms": wm.get("p50", float("nan")),
                "standin": {"published": published, "timers": r["timers"]},
                "wm_state_hz": r["wm_state_hz"],
            }
        diagnostics = {n: {"values": v} for n, v in out["model_diagnostics"].items()}
    return {
        "robots": per_robot,
        "inference_cpu_percent": cpu,
        "supervisor_cpu_percent": supervisor_cpu,
        "robot_side_cpu_percent": (robot_cpu1 - robot_cpu0) / elapsed * 100.0,
        "chunks_per_s": sum(r["chunk_hz"] for r in per_robot.values()),
        "model_diagnostics": model_figures(diagnostics),
    }


MODEL_KEYS = (
    "inference_ms_p50",
    "batch_size_mean",
    "hop_input_ms_p50",
    "hop_wait_ms_p50",
    "hop_inference_ms_p50",
    "hop_publish_ms_p50",
)
"""Diagnostics values of the model nodes the bench keeps (ms; batch size in observations)."""


def model_figures(diagnostics: dict) -> dict[str, dict[str, float]]:
    """Per model node (diagnostics status name), the MODEL_KEYS values it last reported."""
    out: dict[str, dict[str, float]] = {}
    for name, diag in diagnostics.items():
        if "worldmodel" not in name and "policy" not in name:
            continue
        values = diag.get("values", {})
        figures = {}
        for key in MODEL_KEYS:
            try:
                figures[key] = float(values[key])
            except (KeyError, TypeError, ValueError):
                continue
        if figures:
            out[name] = figures
    return out


def capacity(folder: Path, ks: list[int], threads: int, seconds: float = 3.0) -> dict:
    """Observations/s of the world model + policy, zero inputs, in this one process.

    ``separate``: K single-thread sessions at batch 1, run one after the other, times
    min(K, inference cores) (K processes run side by side on the cores; an upper bound);
    ``batched``: one session with ``threads`` intra-op threads at batch K.
    """
    from ramp_models.onnx_runtime import load_model

    cores = len(INFERENCE_CPUS)
    out: dict = {}
    for k in ks:
        rates = {}
        for layout in LAYOUTS:
            n_sessions, batch = (k, 1) if layout == "separate" else (1, k)
            n_threads = 1 if layout == "separate" else threads
            pairs = [
                [
                    load_model(folder / f"{m}.yaml", intra_op_threads=n_threads)
                    for m in ("world_model", "policy")
                ]
                for _ in range(n_sessions)
            ]
            if batch > 1 and not pairs[0][0].card.batched:
                rates[layout] = float("nan")
                continue
            feeds = [
                {s.role: np.zeros((batch, *s.shape[1:]), np.float32) for s in m.card.inputs}
                for m in pairs[0]
            ]
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                for wm, policy in pairs:
                    wm.run(feeds[0])
                    policy.run(feeds[1])
                    done += batch
            rate = done / (time.perf_counter() - start)
            rates[layout] = rate * min(k, cores) if layout == "separate" else rate
        out[k] = rates
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--robots", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--domain-id", type=int, default=97, help="ROS domain of the run (not the shell's)"
    )
    parser.add_argument("--pair", choices=("demo", "reference"), default="demo")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument(
        "--split-cores",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="robot sides on all cores but the last, inference on the last one (an inference "
        "host apart from the robot computers); --no-split-cores: everything shares every core",
    )
    parser.add_argument(
        "--batched-threads",
        type=int,
        default=0,
        help="intra-op threads of the batched sessions (default: the inference cores)",
    )
    parser.add_argument(
        "--robot-sides",
        choices=("stand-in", "stack"),
        default="stand-in",
        help="stand-in (default): one process publishing K robots' cameras and joint_states "
        "and recording their chunks (bench/fleet_standin.py), so the robot cores are not what "
        "limits the inference host; stack: K full `ramp up --role robot` PiPER sides",
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    global ROBOT_CPUS, INFERENCE_CPUS
    if args.split_cores and len(CPUS) >= 2:
        ROBOT_CPUS, INFERENCE_CPUS = set(CPUS[:-1]), {CPUS[-1]}
    if args.batched_threads <= 0:
        args.batched_threads = len(INFERENCE_CPUS)
    folder = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / args.pair
    config_dir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    extra = [
        "--config", str(lean_config(config_dir)),
        "-p", f"worldmodel_node.model_card:={(folder / 'world_model.yaml').resolve()}",
        "-p", f"policy_node.model_card:={(folder / 'policy.yaml').resolve()}",
    ]  # fmt: skip
    if args.pair == "reference":
        # 47 ms per world-model call: once the two cores saturate, capture -> wm_state passes the
        # default 0.25 s input age and the policy would refuse every observation (no chunk at
        # all); a longer age keeps both layouts delivering, so their throughput can be compared
        extra += ["-p", "worldmodel_node.max_input_age_s:=1.0"]
        extra += ["-p", "policy_node.max_input_age_s:=1.0"]
    nan = float("nan")
    load_before = os.getloadavg()
    results: dict = {layout: {} for layout in args.layouts}
    for k in args.robots:
        for layout in args.layouts:
            with tempfile.TemporaryDirectory() as tmp:
                results[layout][k] = run(
                    layout,
                    k,
                    args.duration,
                    args.domain_id,
                    extra,
                    Path(tmp),
                    args.batched_threads,
                    args.robot_sides,
                )
    load_after = os.getloadavg()
    cap = capacity(folder, args.robots, args.batched_threads)
    base_p50 = {
        layout: next(iter(results[layout][args.robots[0]]["robots"].values()))[
            "capture_to_chunk_p50_ms"
        ]
        for layout in args.layouts
    }
    side_col = "cmd Hz" if args.robot_sides == "stack" else "cam Hz"
    print(
        f"K robots on one inference host ({args.pair} pair), {os.cpu_count()} cores, load "
        f"average {load_before[0]:.2f} before / {load_after[0]:.2f} after; robot sides: "
        f"{args.robot_sides}; p50 ratio against the layout's K={args.robots[0]} robot1; batched "
        f"sessions {args.batched_threads} threads, separate 1; robot sides on cores "
        f"{sorted(ROBOT_CPUS)}, inference on {sorted(INFERENCE_CPUS)}"
    )
    print(
        f"{'layout':9s} {'K':>2s} {'robot':8s} {'chunk Hz':>9s} {side_col:>8s} {'wm p50':>7s} "
        f"{'p50 ms':>8s} {'p99 ms':>8s} {'p50/K=1':>8s} {'infer CPU %':>12s} {'chunks/s':>9s} "
        f"{'ramp CPU %':>10s} {'robot CPU %':>11s}"
    )
    for k in args.robots:
        for layout in args.layouts:
            result = results[layout][k]
            for i, (robot, r) in enumerate(result["robots"].items()):
                tail = (
                    f"{result['inference_cpu_percent']:12.0f} {result['chunks_per_s']:9.1f} "
                    f"{result['supervisor_cpu_percent']:10.0f} "
                    f"{result['robot_side_cpu_percent']:11.0f}"
                    if i == 0
                    else ""
                )
                print(
                    f"{layout:9s} {k:2d} {robot:8s} {r['chunk_hz']:9.1f} {r['side_hz']:8.1f} "
                    f"{r['capture_to_wm_state_p50_ms']:7.1f} "
                    f"{r['capture_to_chunk_p50_ms']:8.1f} {r['capture_to_chunk_p99_ms']:8.1f} "
                    f"{r['capture_to_chunk_p50_ms'] / base_p50[layout]:8.2f} {tail}"
                )
    if args.robot_sides == "stand-in":
        print(
            "stand-in publishing, per run (configured: cameras 15 Hz, joint_states 100 Hz): "
            "min camera / joint_states Hz over robots; timers' lateness p99 (ms), overruns"
        )
        for k in args.robots:
            for layout in args.layouts:
                rs = results[layout][k]["robots"].values()
                print(
                    f"  {layout:9s} K={k}: cameras {min(r['side_hz'] for r in rs):.1f} Hz, "
                    f"joint_states {min(r['joint_pub_hz'] for r in rs):.1f} Hz, late p99 "
                    f"{max(r['timer_late_p99_ms'] for r in rs):.1f} ms, overruns "
                    f"{max(r['timer_overruns'] for r in rs)}"
                )
    print(
        "model nodes (last diagnostics; ms): inference p50, batch size mean; hops p50: input "
        "(stamp -> arrival), wait (arrival -> inference start), inference, publish"
    )
    for k in args.robots:
        for layout in args.layouts:
            for name, f in sorted(results[layout][k]["model_diagnostics"].items()):
                v = {key: f.get(key, nan) for key in MODEL_KEYS}
                print(
                    f"  {layout:9s} K={k} {name}: infer {v['inference_ms_p50']:.1f}, batch "
                    f"{v['batch_size_mean']:.2f}; hops input {v['hop_input_ms_p50']:.1f}, wait "
                    f"{v['hop_wait_ms_p50']:.1f}, inference {v['hop_inference_ms_p50']:.1f}, "
                    f"publish {v['hop_publish_ms_p50']:.1f}"
                )
    if set(LAYOUTS) <= set(args.layouts):
        print("batched / separate, per K: delivered chunks/s; inference CPU; capacity (obs/s)")
        for k in args.robots:
            b, s = results["batched"][k], results["separate"][k]
            print(
                f"  K={k}: chunks {b['chunks_per_s'] / max(s['chunks_per_s'], 1e-9):.2f}  "
                f"CPU {b['inference_cpu_percent'] / max(s['inference_cpu_percent'], 1e-9):.2f}  "
                f"capacity {cap[k]['batched']:.0f} / {cap[k]['separate']:.0f} obs/s = "
                f"{cap[k]['batched'] / cap[k]['separate']:.2f}"
            )
    if args.json:
        payload = {
            "pair": args.pair,
            "robot_sides": args.robot_sides,
            "batched_threads": args.batched_threads,
            "robot_cpus": sorted(ROBOT_CPUS),
            "inference_cpus": sorted(INFERENCE_CPUS),
            "load_average": [load_before, load_after],
            "results": results,
            "capacity_obs_per_s": cap,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
