"""End-to-end latency and rates of the stack on the simulated arm, per case, in one run.

Runs ``ramp up --robot sim`` for ``--duration`` seconds once per case (``--cases``):

- ``process-per-node``: the production layout (the processes ``ros2 launch`` starts), shipped
  rates (world model 15 Hz, policy 10 Hz) -- the baseline of the ratios;
- ``single-process``: every node in one process (``--single-process``);
- ``low-latency``: process per node, the low-latency configuration (:data:`LOW_LATENCY`);
- ``low-latency-loaded``: the same while an episode records (``ramp/episode/start``) and an
  outside subscriber (this process) reads every camera.

For each it prints the topic rates, p50/p99 of capture -> wm_state -> chunk -> the next joint
command after the chunk at the monitor (a lower bound) and -> the first joint command computed
from the frame (``capture_to_command``: the executor's first tick with the chunk plus the
arbiter's forward hop, ``ramp_common.hops.reflecting_command_ms``; all from the capture stamp of
the oldest frame used), the model inference times, the stack's own overhead (that latency minus
inference), the hop-by-hop decomposition, and the ratios of every case to the first one
(measured in the same run). ``--phases aligned random`` runs each case with the shipped
control-loop phases and with phases drawn at random.

``--camera-stamp delivery`` stamps the simulator's frames when their render is done (like a
V4L2 end-of-frame timestamp) instead of with the physics snapshot they show: the latency then
counts what the stack adds after a camera delivers a frame, without the software render.

With ``--pair reference`` the stack runs the reference model pair of realistic cost instead of
the demo pair (exported on first use: ``ramp-train export-demo --preset reference``), with the
RTC executor's committed prefix set to ``--inference-delay`` s.

    python bench/e2e_latency.py [--duration 30] [--cases process-per-node single-process ...]
                                [--camera-stamp snapshot|delivery] [--pair demo|reference]
                                [--inference-delay 0.1] [--rt-priority 50]
                                [--phases aligned random]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from ramp_common.hops import decompose, reflecting_command_ms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.rosutil

FRAME_PERIOD_MS = 1000.0 / 30.0
LOW_LATENCY = ["-p", "worldmodel_node.rate_hz:=60.0", "-p", "policy_node.rate_hz:=60.0"]
"""The low-latency configuration: inference caps at twice the camera rate, so they never bind on
a 30 Hz frame stream: the world model runs on each complete frame set and the policy on each new
latent, as soon as it arrives (the workers take the newest input and never queue)."""
CASES = {
    "process-per-node": [],
    "single-process": ["--single-process"],
    "low-latency": LOW_LATENCY,
    "low-latency-loaded": LOW_LATENCY,
}
LOADED = {"low-latency-loaded"}
STAGES = ("capture_to_wm_state", "capture_to_chunk", "capture_to_first_command")
RATE_TOPICS = ("camera/front/image_raw", "camera/wrist/image_raw", "joint_states", "joint_command")


def pair_overrides(pair: str, inference_delay_s: float | None) -> list[str]:
    """``-p`` options that point the model nodes at ``pair`` (exported here if missing)."""
    if pair == "demo":
        return []
    folder = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / pair
    if not (folder / "policy.yaml").is_file():
        print(f"exporting the {pair} pair to {folder} (once, ~2 min)", file=sys.stderr)
        subprocess.run(
            ["ramp-train", "export-demo", "--preset", pair, "--out", str(folder), "--no-check"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    out = [
        "-p",
        f"worldmodel_node.model_card:={folder / 'world_model.yaml'}",
        "-p",
        f"policy_node.model_card:={folder / 'policy.yaml'}",
    ]
    if inference_delay_s is not None:
        out += ["-p", f"chunk_executor.inference_delay_s:={inference_delay_s}"]
    return out


class OutsideLoad:
    """Records an episode and reads every camera from outside the stack, while it runs."""

    def __init__(self, domain_id: int, cameras: tuple[str, ...] = ("front", "wrist")) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from std_srvs.srv import SetBool, Trigger

        from ramp_common.qos import SENSOR_QOS

        os.environ["ROS_DOMAIN_ID"] = str(domain_id)
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self._node = rclpy.create_node("bench_outside_load", context=self._context)
        self.frames = dict.fromkeys(cameras, 0)
        for cam in cameras:
            self._node.create_subscription(
                Image, f"camera/{cam}/image_raw", lambda _m, c=cam: self._count(c), SENSOR_QOS
            )
        self._start = self._node.create_client(Trigger, "ramp/episode/start")
        self._stop = self._node.create_client(SetBool, "ramp/episode/stop")
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()
        self.episode = ""

    def _count(self, camera: str) -> None:
        self.frames[camera] += 1

    def _spin(self) -> None:
        while self._running:
            self._executor.spin_once(timeout_sec=0.1)

    def _call(self, client, request, timeout_s: float):
        from tests.rosutil import call_service

        return call_service(client, request, timeout_s)

    def start_episode(self, timeout_s: float = 30.0) -> None:
        from std_srvs.srv import Trigger

        result = self._call(self._start, Trigger.Request(), timeout_s)
        self.episode = "" if result is None else result.message
        print(f"  episode start: {self.episode or 'no answer'}", file=sys.stderr)

    def close(self) -> None:
        from std_srvs.srv import SetBool

        self._call(self._stop, SetBool.Request(data=True), 5.0)
        self._running = False
        self._thread.join(2.0)
        self._executor.shutdown()
        self._node.destroy_node()
        self._context.try_shutdown()


def run_case(case: str, duration_s: float, domain_id: int, extra: list[str]) -> dict:
    """One ``ramp up`` run; its health report (plus the outside load's frame counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "ramp_bringup.cli", "up", "--robot", "sim"]
        cmd += ["--duration", str(duration_s), "--report", str(report_path)]
        cmd += ["--domain-id", str(domain_id), *CASES[case], *extra]
        if case in LOADED:
            cmd += ["-p", f"episode_recorder.output_dir:={tmp}/episodes"]
        proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        load = OutsideLoad(domain_id) if case in LOADED else None
        try:
            if load is not None:
                load.start_episode()
            if proc.wait() != 0:
                raise SystemExit(f"ramp up failed in case {case} (exit {proc.returncode})")
        finally:
            if load is not None:
                load.close()
            if proc.poll() is None:
                proc.terminate()
                proc.wait(15)
        report = json.loads(report_path.read_text())
        if load is not None:
            report["outside_frames"] = dict(load.frames)
            report["episode"] = load.episode
        return report


def figures(report: dict) -> dict:
    """The numbers this benchmark compares, from one report."""
    lat = report["latency_ms"]
    inf = report["inference_ms"]
    wm_ms = inf.get("/worldmodel_node", {}).get("p50", 0.0)
    policy_ms = inf.get("/policy_node", {}).get("p50", 0.0)
    out = {
        "ok": report["ok"],
        "rates_hz": {t: report["topics"].get(t, {}).get("rate_hz", 0.0) for t in RATE_TOPICS},
        "latency_ms": {s: lat.get(s) or {} for s in STAGES},
        "inference_ms_p50": {"world_model": wm_ms, "policy": policy_ms},
    }
    e2e = lat.get("capture_to_first_command") or {}
    p50, p99 = reflecting_command_ms(report.get("diagnostics", {}))
    out["capture_to_command_ms"] = {} if p50 is None else {"p50": p50, "p99": p99}
    if p50 is not None:
        out["overhead_ms_p50"] = p50 - wm_ms - policy_ms
    out["command_smoothness"] = report.get("command_smoothness", {})
    out["loop_overruns"] = {}
    for name, diag in report.get("diagnostics", {}).items():
        values = diag.get("values", {})
        for key in ("loop_overruns", "state_loop_overruns"):
            if key in values:
                out["loop_overruns"][name.rsplit("/", 1)[-1]] = int(float(values[key]))
    if "outside_frames" in report:
        out["outside_frames"] = report["outside_frames"]
        out["episode"] = report["episode"]
    out["hops"] = [list(row) for row in decompose(report.get("diagnostics", {}), e2e)]
    return out


def splice_reference(seed: int = 0, duration_s: float = 20.0) -> dict[str, float]:
    """``bench/chunk_splice.py``'s RTC figures for its synthetic stream, computed here (rad/s):
    the largest velocity jump of the raw splice and of the PiPER-like limited command."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import chunk_splice as cs

    _reference, arrivals = cs.make_stream(seed, duration_s)
    raw = cs.replay(arrivals, cs.WIDE, "rtc", duration_s)
    limited = cs.replay(arrivals, cs.LIMITS, "rtc", duration_s)
    return {
        "raw": cs.jumps(raw.commands, raw.first_splice_tick)[0],
        "limited": cs.jumps(limited.commands, limited.first_splice_tick)[0],
    }


def print_table(results: dict[str, dict]) -> None:
    layouts = list(results)
    w = max(20, *(len(name) + 2 for name in layouts))
    print(f"{'':34s}" + "".join(f"{name:>{w}s}" for name in layouts))
    for topic in RATE_TOPICS:
        row = [results[name]["rates_hz"][topic] for name in layouts]
        print(f"{'rate ' + topic + ' (Hz)':34s}" + "".join(f"{v:{w}.1f}" for v in row))
    for stage in STAGES:
        for q in ("p50", "p99"):
            row = [results[name]["latency_ms"][stage].get(q, float("nan")) for name in layouts]
            print(f"{f'{stage} {q} (ms)':34s}" + "".join(f"{v:{w}.1f}" for v in row))
    for q in ("p50", "p99"):
        row = [results[name]["capture_to_command_ms"].get(q, float("nan")) for name in layouts]
        print(f"{f'capture_to_command {q} (ms)':34s}" + "".join(f"{v:{w}.1f}" for v in row))
    for model in ("world_model", "policy"):
        row = [results[name]["inference_ms_p50"][model] for name in layouts]
        print(f"{f'inference {model} p50 (ms)':34s}" + "".join(f"{v:{w}.2f}" for v in row))
    row = [results[name].get("overhead_ms_p50", float("nan")) for name in layouts]
    print(f"{'overhead p50 (ms)':34s}" + "".join(f"{v:{w}.1f}" for v in row))
    print(f"{'overhead / 33 ms frame':34s}" + "".join(f"{v / FRAME_PERIOD_MS:{w}.2f}" for v in row))
    for name in layouts:
        print(f"\ncapture -> first command hop by hop, {name} (ms; derived = difference of p50s):")
        for stage, p50, p99, how in results[name]["hops"]:
            p50_text = "      -" if p50 is None else f"{p50:7.1f}"
            p99_text = "" if p99 is None else f"  p99 {p99:7.1f}"
            print(f"  {stage:56s} p50 {p50_text}{p99_text}  ({how})")
    splice = splice_reference()
    print(
        f"\ncommand stream at the bridge (arm joints; chunk_splice.py rtc, same run: largest "
        f"velocity jump {splice['raw']:.3f} rad/s raw, {splice['limited']:.3f} limited):"
    )
    for name in layouts:
        smooth = results[name].get("command_smoothness") or {}
        if not smooth:
            continue
        jump = smooth.get("max_velocity_jump_rad_s", float("nan"))
        ticks, missed = smooth.get("ticks", 0), smooth.get("missed_ticks", 0)
        overruns = ", ".join(f"{n} {v}" for n, v in results[name]["loop_overruns"].items())
        print(f"  {name:20s} control-loop ticks skipped (each loop's own count): {overruns or '-'}")
        print(
            f"  {name:20s} seen at the monitor: commands {ticks:6d}  stamp gaps {missed:4d}"
            f"  largest velocity jump {jump:.3f} rad/s = {jump / splice['raw']:.2f}x rtc raw, "
            f"{jump / splice['limited']:.2f}x limited"
        )
    for name in layouts:
        if "outside_frames" in results[name]:
            print(
                f"\n{name}: outside subscriber got {results[name]['outside_frames']} frames; "
                f"episode: {results[name]['episode'] or 'not started'}"
            )
    base = results[layouts[0]]
    for name in layouts[1:]:
        other = results[name]
        print(f"\nratios {name} / {layouts[0]} (the baseline, same run):")
        for topic in RATE_TOPICS:
            b = base["rates_hz"][topic] or float("nan")
            print(f"  rate {topic:28s} {other['rates_hz'][topic] / b:6.2f}")
        for q in ("p50", "p99"):
            b = base["capture_to_command_ms"].get(q, float("nan"))
            o = other["capture_to_command_ms"].get(q, float("nan"))
            print(f"  capture -> command from the frame {q:3s} {o / b:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 61)))
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=list(CASES),
        default=["process-per-node", "single-process"],
        help="what to run (the first is the baseline of the ratios)",
    )
    parser.add_argument("--pair", choices=("demo", "reference"), default="demo")
    parser.add_argument(
        "--camera-stamp",
        choices=("snapshot", "delivery"),
        default="snapshot",
        help="sim_bridge.camera_stamp: 'delivery' leaves the software render out of the latency",
    )
    parser.add_argument(
        "--inference-delay", type=float, default=None, help="chunk_executor.inference_delay_s"
    )
    parser.add_argument(
        "--rt-priority",
        type=int,
        default=0,
        help="control_rt_priority of sim_bridge, chunk_executor and intervention_arbiter "
        "(SCHED_FIFO; needs root or an rtprio limit)",
    )
    parser.add_argument(
        "--phases",
        nargs="+",
        choices=("aligned", "random"),
        default=["aligned"],
        help="control-loop phases: the shipped ones (executor 0, arbiter 1 ms, bridge 2 ms) "
        "and/or drawn at random per run (loops started anywhere in the period, as before "
        "round 6); each case runs once per choice",
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    extra = pair_overrides(args.pair, args.inference_delay)
    extra += ["-p", f"sim_bridge.camera_stamp:={args.camera_stamp}"]
    if args.rt_priority:
        for node in ("sim_bridge", "chunk_executor", "intervention_arbiter"):
            extra += ["-p", f"{node}.control_rt_priority:={args.rt_priority}"]
    results = {}
    rng = random.Random()
    for case in args.cases:
        for phases in args.phases:
            name, case_extra = case, list(extra)
            if phases == "random":
                name = f"{case}/random-phase"
                for node in ("sim_bridge", "chunk_executor", "intervention_arbiter"):
                    phase = round(rng.uniform(0.0, 0.005), 5)
                    case_extra += ["-p", f"{node}.control_phase_s:={phase}"]
            results[name] = figures(run_case(case, args.duration, args.domain_id, case_extra))
    priority = f"SCHED_FIFO {args.rt_priority}" if args.rt_priority else "normal priority"
    print(
        f"stack on sim, {args.pair} model pair, camera stamp = {args.camera_stamp}, "
        f"control loops at {priority}, "
        f"{args.duration:.0f} s per case"
    )
    print_table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
