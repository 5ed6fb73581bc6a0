"""``ramp-train``: export the demo model pair, verify model cards.

ramp-train export-demo --out DIR [--seed N] [--steps N]
ramp-train verify DIR_OR_CARD
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ramp_worldmodel_node.core.model_card import ModelCard, ModelCardError, check_compatible
from ramp_worldmodel_node.core.onnx_runtime import CPU, LoadedModel, load_model


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ramp-train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "export-demo",
        help="train the waypoint-cycle demo policy and export world_model/policy .onnx + .yaml",
    )
    demo.add_argument("--out", required=True, type=Path, help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="seed for weights and data (0)")
    demo.add_argument(
        "--steps", type=_positive_int, default=None, help="policy training steps (default 2500)"
    )
    demo.add_argument(
        "--no-check", action="store_true", help="skip the closed-loop check and timing"
    )

    verify = sub.add_parser(
        "verify", help="load every model card in a folder (or one card) and check it on CPU"
    )
    verify.add_argument("path", type=Path, help="folder with *.yaml cards, or one card file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 refused model, 2 usage error)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "export-demo":
            return _export_demo(args)
        return _verify(args.path)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _export_demo(args: argparse.Namespace) -> int:
    from ramp_training.demo import (  # torch is imported only for this command
        PIPER_HOME,
        PIPER_LOWER,
        PIPER_UPPER,
        DemoConfig,
        closed_loop_rollout,
        export_demo,
        load_demo,
        waypoint_distances,
    )

    config = DemoConfig(seed=args.seed)
    if args.steps is not None:
        config = DemoConfig(seed=args.seed, steps=args.steps)
    result = export_demo(args.out, config)
    print(f"trained in {result.train_seconds:.1f} s, final loss {result.final_loss:.5f}")
    if args.no_check:
        return 0
    world_model, policy = load_demo(args.out)
    trajectory = closed_loop_rollout(policy, world_model, PIPER_HOME, iterations=60)
    inside = bool(np.all((trajectory >= PIPER_LOWER) & (trajectory <= PIPER_UPPER)))
    dist = waypoint_distances(trajectory)
    print(
        f"closed loop, 60 x 0.2 s from home: closest approach to each waypoint "
        f"{np.round(dist, 3).tolist()} rad, within joint limits: {inside}"
    )
    for model in (world_model, policy):
        print(f"{model.model_id}: {_time_per_call(model) * 1e3:.2f} ms per call (CPU, 1 thread)")
    return 0


def _time_per_call(model: LoadedModel, calls: int = 50) -> float:
    """Median inference wall time in seconds on zero inputs (after warm-up)."""
    feeds = {s.role: np.zeros(s.shape, dtype=s.dtype) for s in model.card.inputs}
    times = []
    for i in range(calls + 5):
        model.run(feeds)
        if i >= 5:
            times.append(model.last_inference_s)
    return float(np.median(times))


def _verify(path: Path) -> int:
    cards = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not cards:
        print(f"error: no model cards (*.yaml) in {path}", file=sys.stderr)
        return 1
    loaded: list[ModelCard] = []
    try:
        for card_path in cards:
            model = load_model(card_path, [CPU])
            loaded.append(model.card)
            print(f"ok  {card_path}  {model.card.kind} {model.model_id}")
        world_models = [c for c in loaded if c.kind == "world_model"]
        policies = [c for c in loaded if c.kind == "policy"]
        for wm in world_models:
            for policy in policies:
                check_compatible(wm, policy)
    except (ModelCardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
