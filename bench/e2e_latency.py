"""End-to-end latency and rates of the stack on the simulated arm, per process layout.

Runs ``ramp up --robot sim`` for ``--duration`` seconds once per layout, in one run: one process
per node (the production layout, the default; the same processes ``ros2 launch`` starts) and
every node in one process (``--single-process``). For each it prints the topic rates, p50/p99 of
capture -> wm_state -> chunk -> first joint command (all measured from the capture stamp of the
oldest frame used), the model inference times, and the stack's own overhead (latency minus model
inference time) as a fraction of a 33 ms frame period; then the ratios of the single-process
layout to the process-per-node one (the baseline, measured in the same run).

With ``--pair reference`` the stack runs the reference model pair of realistic cost instead of
the demo pair (exported on first use: ``ramp-train export-demo --preset reference``), with the
RTC executor's committed prefix set to ``--inference-delay`` s.

    python bench/e2e_latency.py [--duration 30] [--layouts process-per-node single-process]
                                [--pair demo|reference] [--inference-delay 0.1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ramp_common.hops import decompose

FRAME_PERIOD_MS = 1000.0 / 30.0
LOW_LATENCY = ["-p", "worldmodel_node.rate_hz:=30.0", "-p", "policy_node.rate_hz:=30.0"]
"""The low-latency configuration: inference caps at the camera rate, so the world model runs on
each new frame set and the policy on each new latent (the workers take the newest input and
never queue)."""
LAYOUTS = {"process-per-node": [], "single-process": ["--single-process"]}
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


def run_layout(layout: str, duration_s: float, domain_id: int, extra: list[str]) -> dict:
    """One ``ramp up`` run; its health report."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "ramp_bringup.cli", "up", "--robot", "sim"]
        cmd += ["--duration", str(duration_s), "--report", str(report_path)]
        cmd += ["--domain-id", str(domain_id), *LAYOUTS[layout], *extra]
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        return json.loads(report_path.read_text())


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
    if e2e:
        out["overhead_ms_p50"] = e2e["p50"] - wm_ms - policy_ms
    out["command_smoothness"] = report.get("command_smoothness", {})
    out["hops"] = [list(row) for row in decompose(report.get("diagnostics", {}), e2e)]
    return out


def print_table(results: dict[str, dict]) -> None:
    layouts = list(results)
    print(f"{'':34s}" + "".join(f"{name:>20s}" for name in layouts))
    for topic in RATE_TOPICS:
        row = [results[name]["rates_hz"][topic] for name in layouts]
        print(f"{'rate ' + topic + ' (Hz)':34s}" + "".join(f"{v:20.1f}" for v in row))
    for stage in STAGES:
        for q in ("p50", "p99"):
            row = [results[name]["latency_ms"][stage].get(q, float("nan")) for name in layouts]
            print(f"{f'{stage} {q} (ms)':34s}" + "".join(f"{v:20.1f}" for v in row))
    for model in ("world_model", "policy"):
        row = [results[name]["inference_ms_p50"][model] for name in layouts]
        print(f"{f'inference {model} p50 (ms)':34s}" + "".join(f"{v:20.2f}" for v in row))
    row = [results[name].get("overhead_ms_p50", float("nan")) for name in layouts]
    print(f"{'overhead p50 (ms)':34s}" + "".join(f"{v:20.1f}" for v in row))
    print(f"{'overhead / 33 ms frame':34s}" + "".join(f"{v / FRAME_PERIOD_MS:20.2f}" for v in row))
    for name in layouts:
        print(f"\ncapture -> first command hop by hop, {name} (ms; derived = difference of p50s):")
        for stage, p50, p99, how in results[name]["hops"]:
            p50_text = "      -" if p50 is None else f"{p50:7.1f}"
            p99_text = "" if p99 is None else f"  p99 {p99:7.1f}"
            print(f"  {stage:56s} p50 {p50_text}{p99_text}  ({how})")
    if len(layouts) >= 2:
        base, other = results[layouts[0]], results[layouts[1]]
        print(f"\nratios {layouts[1]} / {layouts[0]} (the baseline, same run):")
        for topic in RATE_TOPICS:
            b = base["rates_hz"][topic] or float("nan")
            print(f"  rate {topic:28s} {other['rates_hz'][topic] / b:6.2f}")
        for q in ("p50", "p99"):
            b = base["latency_ms"]["capture_to_first_command"].get(q, float("nan"))
            o = other["latency_ms"]["capture_to_first_command"].get(q, float("nan"))
            print(f"  capture -> first command {q:10s} {o / b:6.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", 61)))
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--pair", choices=("demo", "reference"), default="demo")
    parser.add_argument(
        "--low-latency",
        action="store_true",
        help="world model and policy capped at the camera rate (30 Hz) instead of 15 / 10 Hz: "
        "each runs as soon as a new input arrives",
    )
    parser.add_argument(
        "--inference-delay", type=float, default=None, help="chunk_executor.inference_delay_s"
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    extra = pair_overrides(args.pair, args.inference_delay)
    if args.low_latency:
        extra += LOW_LATENCY
    results = {}
    for layout in args.layouts:
        results[layout] = figures(run_layout(layout, args.duration, args.domain_id, extra))
    mode = "low-latency" if args.low_latency else "shipped rates"
    print(f"stack on sim, {args.pair} model pair, {mode}, {args.duration:.0f} s per layout")
    print_table(results)
    print(
        "(latency includes waiting for the next encoder/policy tick: at 15 Hz and 10 Hz that "
        "alone averages ~33 + 50 ms)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
