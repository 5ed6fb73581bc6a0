"""What ONNX Runtime settings change the cost of a model pair, on this CPU.

For each model of a pair (default: the demo pair and the reference pair of realistic cost,
``ramp-train export-demo --preset reference``), times one call on seeded random inputs under:
intra-op threads 1 and 2, graph optimisation basic / extended / all, and int8 dynamic
quantisation (weights int8, activations quantised at run time; its accuracy is reported as the
largest output difference to fp32 on the same inputs). Prints median and p90 per call and the
ratio of each median to the shipped default (1 thread, all optimisations: what the model nodes
use), measured in the same run. fp16 is not offered: the CPU provider runs fp16 graphs slower.

    python bench/onnx_settings.py [--pairs models/demo models/reference] [--calls 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
DEFAULT = ("fp32", 1, "all")


HOME = np.array([0.0, 0.6, -0.9, 0.0, 0.5, 0.0, 0.04], dtype=np.float32)
"""A pose inside the PiPER limits: random joint inputs would mostly be clipped at a limit by the
policy's output and hide any quantisation error."""


def feeds_for(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        if i.name == "joint_state" and shape[-1] == len(HOME):
            feeds[i.name] = (HOME + rng.uniform(-0.05, 0.05, shape)).astype(np.float32)
        else:
            feeds[i.name] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def session(path: Path, threads: int, level: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = LEVELS[level]
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_calls(sess: ort.InferenceSession, feeds: dict, calls: int) -> tuple[float, float]:
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3, float(np.percentile(times, 90)) * 1e3


def quantized(path: Path, out_dir: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = out_dir / (path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    return out


def bench_model(card_path: Path, calls: int, tmp: Path) -> None:
    card = yaml.safe_load(card_path.read_text())
    fp32 = card_path.parent / card["onnx_file"]
    int8 = quantized(fp32, tmp)
    reference = session(fp32, 1, "all")
    feeds = feeds_for(reference)
    want = reference.run(None, feeds)
    print(f"\n{card['model_id']} ({card['kind']})")
    print(
        f"  {'setting':28s} {'median ms':>10s} {'p90 ms':>8s} {'/default':>9s} {'max |diff|':>11s}"
    )
    rows = []
    for precision, path in (("fp32", fp32), ("int8-dynamic", int8)):
        for threads in (1, 2):
            for level in LEVELS:
                sess = session(path, threads, level)
                median, p90 = time_calls(sess, feeds, calls)
                got = sess.run(None, feeds)
                diff = max(float(np.max(np.abs(a - b))) for a, b in zip(got, want, strict=True))
                rows.append(((precision, threads, level), median, p90, diff))
    base = next(r[1] for r in rows if r[0] == DEFAULT)
    for (precision, threads, level), median, p90, diff in rows:
        label = f"{precision}, {threads} thread(s), {level}"
        print(f"  {label:34s} {median:10.2f} {p90:8.2f} {median / base:9.2f} {diff:11.2e}")


def main() -> int:
    model_dir = Path(os.environ.get("RAMP_MODEL_DIR", "models"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pairs", nargs="+", type=Path, default=[model_dir / "demo", model_dir / "reference"]
    )
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            if not (pair / "world_model.yaml").is_file():
                print(
                    f"\n{pair}: no model pair (ramp-train export-demo --preset reference "
                    f"--out {pair})"
                )
                continue
            for name in ("world_model.yaml", "policy.yaml"):
                bench_model(pair / name, args.calls, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
