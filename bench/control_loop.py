"""Control-loop period jitter of the chunk executor at 200 Hz and 500 Hz.

The executor's loop (``ramp_common.rate_loop.RateLoop`` driving ``ChunkExecutor.step``, with
chunks submitted at 10 Hz from another thread, as in the node) runs for ``--seconds`` per case:
alone; with model inference in the same process (the demo world model and policy in onnxruntime,
back to back on a worker thread: the single-process layout, ``ramp up --single-process``); and
with the same inference in another process (the process-per-node layout, ``ramp up`` /
``ros2 launch``). Prints the lateness of each tick against its absolute deadline, p50/p99/max,
overruns, and the ratio of each p99 to the p99 alone (the baseline measured in the same run).
Two more cases put a thread running Python bytecode back to back beside the loop (a node's
executor thread dispatching messages), at CPython's default GIL switch interval (5 ms, what the
nodes run with) and at 0.5 ms: the loop waits up to one interval for the GIL (docs/latency.md
says why the nodes keep the default). With ``--rt-priority N`` (root or an rtprio limit) a
last case runs the loop thread at SCHED_FIFO N with the inference in another process
(``RateLoop(realtime_priority=N)``, the bridges' and executor's ``control_rt_priority``).

    python bench/control_loop.py [--seconds 10] [--models models/demo] [--rt-priority 80]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ramp_common.limits import JointLimits
from ramp_common.rate_loop import RateLoop
from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import ChunkExecutor

LIMITS = JointLimits.from_lists(
    ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"],
    [-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0],
    [2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07],
    [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 0.2],
    [15.0, 15.0, 15.0, 20.0, 20.0, 20.0, 2.0],
)
SHORT_GIL_SWITCH_INTERVAL_S = 0.0005
"""The shorter GIL switch interval the "Python work in the same process" case also tries (s)."""
HOME = np.array([0.0, 0.6, -0.9, 0.0, 0.5, 0.0, 0.04])


def inference_load(model_dir: Path, stop: threading.Event) -> threading.Thread:
    """Runs both demo models back to back until ``stop`` (as the encoder and policy would)."""
    from ramp_models.onnx_runtime import load_model

    wm = load_model(str(model_dir / "world_model.yaml"), ["CPUExecutionProvider"])
    policy = load_model(str(model_dir / "policy.yaml"), ["CPUExecutionProvider"])
    rng = np.random.default_rng(0)

    def feeds(model) -> dict[str, np.ndarray]:
        return {
            spec.role: rng.standard_normal(spec.shape).astype(np.float32)
            for spec in model.card.inputs
        }

    wm_feeds, policy_feeds = feeds(wm), feeds(policy)
    policy_feeds["joint_state"][:] = HOME

    def run() -> None:
        while not stop.is_set():
            wm.run(wm_feeds)
            policy.run(policy_feeds)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def python_load(stop: threading.Event) -> threading.Thread:
    """A thread running Python bytecode back to back (as a node's executor thread does while it
    dispatches and converts messages): it holds the GIL except when made to drop it."""

    def run() -> None:
        total = 0
        while not stop.is_set():
            for i in range(1000):
                total += i * i

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def inference_process(model_dir: Path) -> subprocess.Popen:
    """The same inference load in a separate process (as the model nodes run in production)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--inference-worker", "--models", str(model_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "ready": models loaded, inference running
    return proc


def measure(
    rate_hz: float,
    seconds: float,
    model_dir: Path | None,
    layout: str = "same-process",
    rt_priority: int = 0,
    switch_interval_s: float | None = None,
) -> dict[str, float]:
    executor = ChunkExecutor(LIMITS, 1.0 / rate_hz, strategy="crossfade", gripper_indices=[6])
    executor.update_measured(HOME, time.time())
    stop = threading.Event()
    load = inference_load(model_dir, stop) if model_dir and layout == "same-process" else None
    worker = inference_process(model_dir) if model_dir and layout == "other-process" else None
    python = python_load(stop) if layout == "python-same-process" else None

    def submitter() -> None:
        k = 0
        while not stop.wait(0.1):
            now = time.time()
            t = 0.02 * np.arange(1, 21)
            pos = HOME + 0.3 * np.sin(0.5 * (now + t))[:, None] * np.ones(7) * [1, 1, 1, 1, 1, 1, 0]
            executor.submit(ActionChunk(now - 0.03, t, pos, "bench"), now)
            k += 1

    feeder = threading.Thread(target=submitter, daemon=True)
    feeder.start()
    loop = RateLoop(
        1.0 / rate_hz, lambda now: executor.step(now), "bench_loop", realtime_priority=rt_priority
    )
    loop.start()
    if switch_interval_s is not None:
        sys.setswitchinterval(switch_interval_s)
    time.sleep(seconds)
    loop.stop()
    stop.set()
    feeder.join(1)
    if load:
        load.join(5)
    if python:
        python.join(5)
    if worker:
        worker.terminate()
        worker.wait(10)
    if rt_priority and not loop.realtime:
        raise SystemExit(loop.realtime_error)
    pct = loop.jitter.percentiles_ms()
    return {**pct, "overruns": loop.overruns}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    default_models = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / "demo"
    parser.add_argument("--models", type=Path, default=default_models)
    parser.add_argument("--rt-priority", type=int, default=0, help="add a SCHED_FIFO case")
    parser.add_argument("--rates", type=float, nargs="+", default=[200.0, 500.0])
    parser.add_argument("--inference-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inference_worker:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        thread = inference_load(args.models, stop)
        print("ready", flush=True)
        stop.wait()
        thread.join(5)  # out of onnxruntime before the interpreter exits
        return 0
    head = f"{'case':54s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'overruns':>9s}"
    print(f"{head} {'p99/alone':>9s}")
    default_switch = sys.getswitchinterval()  # CPython's 5 ms
    cases = [
        ("alone", None, "same-process", 0, None),
        ("inference in the same process", args.models, "same-process", 0, None),
        ("inference in another process", args.models, "other-process", 0, None),
        (
            f"Python work in the same process, GIL {default_switch * 1e3:.1f} ms",
            None,
            "python-same-process",
            0,
            default_switch,
        ),
        (
            f"Python work in the same process, GIL {SHORT_GIL_SWITCH_INTERVAL_S * 1e3:.1f} ms",
            None,
            "python-same-process",
            0,
            SHORT_GIL_SWITCH_INTERVAL_S,
        ),
    ]
    if args.rt_priority:
        label = f"inference in another process, FIFO {args.rt_priority}"
        cases.append((label, args.models, "other-process", args.rt_priority, None))
    for rate in args.rates:
        base = None
        for label, models, layout, priority, switch in cases:
            sys.setswitchinterval(default_switch)
            r = measure(rate, args.seconds, models, layout, priority, switch)
            base = base or r
            print(
                f"{f'{rate:.0f} Hz, {label}':54s} {r['p50']:8.3f} {r['p99']:8.3f} "
                f"{r['max']:8.3f} {r['overruns']:9d} {r['p99'] / base['p99']:9.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
