"""Fault campaign on the simulated arm, one process per node (``ramp up --robot sim``).

Not part of CI (the CI-sized cases are tests/test_faults.py). Prints ONE table: a figure per case,
the goal beside it. Cases (definitions in docs/reliability.md):

1. kill -9 of each node process in turn, mid-episode, ``--trials`` times per node: time from the
   kill to the robot holding (measured speed and sent command), the largest command step, jumps,
   the episode bag readable afterwards and its status, recovery after the respawn. The bridge
   and the arbiter stop the stack by design: there the figures are the hold / the sim stopping,
   the exit code and the error naming the node.
2. malformed input to the subscriptions of the nodes (``--fuzz N`` messages per handler): nodes
   alive, commands within limits, log lines per node (bench/faults_fuzz.py).
3. model faults while running: truncated ONNX, sha256 mismatch, wrong output shape, NaN outputs,
   each hot-reloaded into the running node (bench/faults_model.py).
4. recorder faults: SIGKILL mid-write, disk full (tmpfs), unwritable folder, slow disk; every
   bag readable or repaired, drops counted, none silent (bench/faults_recorder.py).
5. DDS faults: a flooding publisher, a link down between the robot and the inference host
   (network namespaces); the robot holds and recovers (bench/faults_dds.py).

    python bench/faults.py [--quick] [--trials 3] [--fuzz 10000] [--cases kill fuzz model]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESPAWNED = (
    "camera_node",
    "worldmodel_node",
    "policy_node",
    "chunk_executor",
    "teleop_node",
    "episode_recorder",
)
REQUIRED = ("sim_bridge", "intervention_arbiter")
UNCOUPLED = ("teleop_node", "episode_recorder")
CASES = ("kill", "fuzz", "model", "recorder", "dds")
"""Nodes outside the policy's control path: killing one must change nothing for the robot."""


def setup_env(domain_id: int) -> None:
    """The isolation the test suite's conftest gives: own domain, localhost discovery."""
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    os.environ.setdefault("RAMP_MODEL_DIR", str(ROOT / "models"))


def fmt(value, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * (1000 if unit == 'ms' else 1):.{digits}f}{' ' + unit if unit else ''}"
    return f"{value}{' ' + unit if unit else ''}"


def respawn_trial(stack, node: str, log) -> dict:
    """One kill of a respawned node mid-episode; its figures."""
    if not stack.reset_episode():
        log(f"{node}: the episode reset (e-stop, sim/reset, release, resume) did not complete")
    t0 = time.time()
    bag = stack.start_episode()
    flowing = stack.wait_flowing(t0, 30.0) is not None
    if not flowing:
        log(f"{node}: the stack was not flowing before the kill")
    time.sleep(0.5)  # the demo policy reaches its goal within ~1-2 s of a reset: kill moving
    pid, t_kill = stack.kill(node)
    respawned = stack.wait_respawned(node, pid, 15.0)
    t_back = None
    extra_bags: list[str] = []
    if respawned and node == "episode_recorder":
        # recovered = the respawned recorder starts the next episode, repairing the killed one
        bag_next = stack.start_episode()
        if bag_next:
            t_back = time.time()
            extra_bags.append(bag_next)
    elif respawned and node == "teleop_node":
        t_back = time.time()  # the operator source is idle in policy mode; nothing to resume
    elif respawned:
        t_back = stack.wait_flowing(t_kill + 0.5, 40.0)
    time.sleep(1.5)
    figures = stack.figures(t0, t_kill, time.time())
    stack.stop_episode()
    figures.update(
        node=node,
        respawned=respawned,
        recovered=t_back is not None,
        recover_s=(t_back - t_kill) if t_back else None,
        bags=[b for b in [bag, *extra_bags] if b],
        episode_started=bag is not None,
        flowing_before=flowing,
        stack_alive=stack.alive(),
    )
    return figures


def required_trial(
    probe_factory, node: str, workdir: Path, log, extra: tuple = (), dds: str = "udp"
) -> dict:
    """A fresh stack; kill the bridge or the arbiter mid-episode; the stack must stop."""
    from tests.faultkit import SimStack

    workdir.mkdir(parents=True)
    with probe_factory(f"fault_probe_{node}") as probe:
        stack = SimStack(probe, workdir, extra, dds)
        try:
            flowing = stack.wait_flowing(time.time(), 120.0)
            stack.reset_episode()
            t_reset = time.time()  # the reset moves the arm home: not a command jump
            bag = stack.start_episode()
            time.sleep(0.5)  # kill while the arm moves after the reset
            _pid, t_kill = stack.kill(node)
            try:
                code = stack.proc.proc.wait(60.0)
            except Exception:
                code = None
            t_end = time.time()
            time.sleep(0.2)
            figures = stack.figures(max(t_kill - 3.0, t_reset + 0.2), t_kill, t_end)
            with stack.lock:
                js = stack.streams["joint_states"].recv
                last_state = max((t for t in js if t >= t_kill), default=None)
        finally:
            stack.stop()
    report = json.loads(stack.report_path.read_text()) if stack.report_path.exists() else {}
    errors = report.get("errors", [])
    named = any(f"{node} exited with code -9" in e for e in errors)
    figures.update(
        node=node,
        flowing_before=flowing is not None,
        exit_code=code,
        stop_s=t_end - t_kill,
        error_names_node=named,
        last_joint_state_s=(last_state - t_kill) if last_state else None,
        bags=[bag] if bag else [],
        episode_started=bag is not None,
    )
    return figures


def kill_campaign(
    trials: int,
    workdir: Path,
    log,
    nodes: tuple[str, ...],
    extra: tuple = (),
    dds: str = "udp",
) -> list[dict]:
    from tests.faultkit import SimStack
    from tests.rosutil import probe_node

    results = []
    # a fresh stack per node: a respawn that never recovers (see docs/reliability.md) must not
    # turn the trials of the next nodes into trials of a stack that is not driving
    for node in [n for n in RESPAWNED if n in nodes]:
        run_dir = workdir / f"respawn_{node}"
        run_dir.mkdir(parents=True)
        with probe_node(f"fault_probe_{node}") as probe:
            stack = SimStack(probe, run_dir, extra, dds)
            try:
                if stack.wait_flowing(time.time(), 120.0) is None:
                    raise RuntimeError(f"the stack never flowed; see {run_dir}/ramp_up.err")
                for i in range(trials):
                    result = respawn_trial(stack, node, log)
                    log(f"kill {node} #{i + 1}: {json.dumps(result, default=str)}")
                    results.append(result)
                    if not stack.alive():
                        log(f"ramp up ended after killing {node}")
                        break
                    time.sleep(1.0)
            finally:
                stack.stop()
    for node in [n for n in REQUIRED if n in nodes]:
        for i in range(trials):
            result = required_trial(probe_node, node, workdir / f"{node}_{i}", log, extra, dds)
            log(f"kill {node} #{i + 1}: {json.dumps(result, default=str)}")
            results.append(result)
    from tests.faultkit import check_bag

    for result in results:
        result["bag_checks"] = [check_bag(b) for b in result["bags"]]
    return results


STALL_S = 0.2
"""s: the arbiter's and the bridge's loops both without a tick this long after a kill."""


def summarize_kills(results: list[dict]) -> list[tuple[str, str, str, bool]]:
    """Rows (case, figure, goal, met) of the kill campaign."""
    from ramp_bringup.core.faults import percentile

    rows = []
    for node in (*RESPAWNED, *REQUIRED):
        rs = [r for r in results if r["node"] == node]
        if not rs:
            continue
        n = len(rs)
        moving = sum(r["moving_at_fault"] for r in rs)
        # a still arm "holds" at once: the hold figures count the trials killed while it moved
        mv = [r for r in rs if r["moving_at_fault"]]
        holds = [r["motion_hold_s"] for r in mv]
        cmd_holds = [r["command_hold_s"] for r in mv]
        jumps = sum(r["sent_jumps"] + r["command_jumps"] for r in rs)
        step = max(max(r["sent_largest_step"], r["command_largest_step"]) for r in rs)
        bags = [c for r in rs for c in r["bag_checks"]]
        unreadable = sum(not c["readable"] for c in bags)
        lost = sum(not r["episode_started"] for r in rs)
        statuses = sorted({str(c.get("status")) for c in bags if c["readable"]})

        def p50(key: str, trials: list[dict] = mv) -> str:
            return fmt(percentile([r.get(key) for r in trials], 50), "ms")

        settle = [
            r["motion_hold_s"] - r["command_hold_s"]
            for r in mv
            if r["motion_hold_s"] is not None and r["command_hold_s"] is not None
        ]
        stalls = [r.get("loop_stall_s") or 0.0 for r in rs]
        stalled = sum(s >= STALL_S for s in stalls)
        hold_text = (
            f"hold p50 {fmt(percentile(holds, 50), 'ms')} max {fmt(percentile(holds, 100), 'ms')}"
            f" (p50 of each stage: exit announced {p50('announced_s')}, executor out "
            f"{p50('policy_command_hold_s')}, arbiter out {p50('joint_command_hold_s')}, "
            f"sent to the arm {p50('command_hold_s')}, the arm settled "
            f"{fmt(percentile(settle, 50), 'ms')} after its command; sent max "
            f"{fmt(percentile(cmd_holds, 100), 'ms')}; over the {moving}/{n} kills while moving)"
            + (
                f"; {stalled} with every control loop stopped "
                f"{fmt(percentile(stalls, 100), 's', 1)} at the kill (the computer stalled)"
                if stalled
                else ""
            )
        )
        if node in REQUIRED:
            stopped = sum(r["exit_code"] == 1 and r["error_names_node"] for r in rs)
            stop = percentile([r["stop_s"] for r in rs], 100)
            rows.append(
                (
                    f"kill -9 {node} x{n}",
                    f"stack stopped, error names it: {stopped}/{n} (max {fmt(stop, 'ms')}); "
                    + (
                        "sim gone: last joint_states "
                        f"{fmt(percentile([r['last_joint_state_s'] for r in rs], 100), 'ms')} "
                        "after the kill ('-': none)"
                        if node == "sim_bridge"
                        else hold_text
                    ),
                    "stack stops with a clear error; robot holds <= 100 ms",
                    stopped == n
                    and (
                        node == "sim_bridge" or all(h is not None and h <= 0.1 for h in cmd_holds)
                    ),
                )
            )
        elif node in UNCOUPLED:
            recovered = sum(r["recovered"] for r in rs)
            what = "next episode started" if node == "episode_recorder" else "respawned"
            rows.append(
                (
                    f"kill -9 {node} x{n}",
                    f"not in the control path (no hold expected); {what} {recovered}/{n} "
                    f"(p50 {fmt(percentile([r['recover_s'] for r in rs], 50), 's', 1)})",
                    "robot unaffected; recovers",
                    recovered == n,
                )
            )
        else:
            recovered = sum(r["recovered"] for r in rs)
            upstream = node != "chunk_executor"
            rows.append(
                (
                    f"kill -9 {node} x{n}",
                    ("[executor holds on the announced exit] " if upstream else "")
                    + f"{hold_text}; recovered {recovered}/{n} "
                    f"(p50 {fmt(percentile([r['recover_s'] for r in rs], 50), 's', 1)})",
                    "hold <= 100 ms; recovers",
                    recovered == n and all(h is None or h <= 0.1 for h in holds),
                )
            )
        rows.append(
            (
                f"  jumps / bags ({node})",
                f"largest step {step:.4f} rad, {jumps} jumps; bags {len(bags) - unreadable}/"
                f"{len(bags)} readable ({', '.join(statuses)}), {lost} episodes lost",
                "0 jumps, 0 unreadable, 0 lost",
                jumps == 0 and unreadable == 0 and lost == 0,
            )
        )
    return rows


def print_table(rows: list[tuple[str, str, str, bool]]) -> None:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    print(f"{'case':{w0}s}  {'figure':{w1}s}  {'goal':{w2}s}  met")
    for case, figure, goal, met in rows:
        print(f"{case:{w0}s}  {figure:{w1}s}  {goal:{w2}s}  {'yes' if met else 'NO'}")


def save(path: str | None, everything: dict) -> None:
    """Every trial's figures so far (written after each case: a later case failing keeps them)."""
    if path:
        Path(path).write_text(json.dumps(everything, indent=1, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 trial per node, 1000 messages")
    parser.add_argument("--trials", type=int, default=3, help="kills per node")
    parser.add_argument("--fuzz", type=int, default=10000, help="malformed messages per handler")
    parser.add_argument(
        "--cases",
        nargs="+",
        default=list(CASES),
        choices=list(CASES),
    )
    parser.add_argument(
        "--recorder-kills", type=int, default=10, help="recorder processes killed mid-write"
    )
    parser.add_argument(
        "--domain-id", type=int, default=int(os.environ.get("RAMP_TEST_DOMAIN_ID", 77))
    )
    parser.add_argument("--nodes", nargs="+", default=[*RESPAWNED, *REQUIRED], help="nodes to kill")
    parser.add_argument(
        "--stack-args",
        type=shlex.split,
        default=[],
        help="more ramp up options for the kill case, one string: "
        "--stack-args='-p NODE.PARAM:=VALUE -p ...'",
    )
    parser.add_argument(
        "--dds",
        choices=["udp", "udp-loopback"],
        default="udp",
        help="the stack's transport: fastdds_udp.xml with localhost discovery (its transports "
        "are overridden: shared memory + UDP), or bench/fastdds_udp_loopback.xml (UDP only)",
    )
    parser.add_argument("--json", help="write every trial's figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, bags)")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.fuzz = 1, 1000
    setup_env(args.domain_id)
    t_start = time.time()

    def log(text: str) -> None:
        print(f"[{time.time() - t_start:7.1f} s] {text}", file=sys.stderr, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="ramp_faults_"))
    log(f"work folder {workdir}")
    rows: list[tuple[str, str, str, bool]] = []
    everything: dict[str, object] = {}
    if "kill" in args.cases:
        kills = kill_campaign(
            args.trials, workdir / "kill", log, tuple(args.nodes), tuple(args.stack_args), args.dds
        )
        everything["kill"] = kills
        rows += summarize_kills(kills)
        save(args.json, everything)
    if "fuzz" in args.cases:
        from bench.faults_fuzz import fuzz_campaign

        fuzz_rows, fuzz_results = fuzz_campaign(args.fuzz, workdir / "fuzz", log, dds=args.dds)
        everything["fuzz"] = fuzz_results
        rows += fuzz_rows
        save(args.json, everything)
    if "model" in args.cases:
        from bench.faults_model import model_campaign

        model_rows, model_results = model_campaign(workdir / "model", log, args.dds)
        everything["model"] = model_results
        rows += model_rows
        save(args.json, everything)
    if "recorder" in args.cases:
        from bench.faults_recorder import recorder_campaign

        kills = 3 if args.quick else args.recorder_kills
        recorder_rows, recorder_results = recorder_campaign(kills, workdir / "recorder", log)
        everything["recorder"] = recorder_results
        rows += recorder_rows
        save(args.json, everything)
    if "dds" in args.cases:
        from bench.faults_dds import dds_campaign

        seconds, cycles = (3.0, 1) if args.quick else (5.0, 3)
        dds_rows, dds_results = dds_campaign(workdir / "dds", log, seconds, cycles, 3.0, args.dds)
        everything["dds"] = dds_results
        rows += dds_rows
        save(args.json, everything)
    print(
        f"\nfault campaign, {time.time() - t_start:.0f} s on this machine ({os.cpu_count()} cores)"
    )
    print_table(rows)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
