"""``ramp-train``: demonstrations, training, evaluation and HILR rounds for the RAMP stack.

ramp-train demos --out DIR [--episodes N] [--via sim|stack]   scripted-expert demonstrations
ramp-train pretrain --data DIR... --out DIR [--steps N]        new world model + policy
ramp-train train --data DIR... --out DIR [--init MODEL_DIR]   train (from scratch or a run)
ramp-train continual --init MODEL_DIR --data DIR... --out DIR  continue on HILR data
ramp-train eval --models DIR [--episodes N] [--backend stack|sim] [--no-wm] [--out FILE]
ramp-train hilr-round --models DIR --demos DIR --out DIR [--episodes N] [--backend stack|sim]
ramp-train experiment --out DIR [--quick]                      (a) base, (b) no WM, (c) HILR
ramp-train export-demo --out DIR [--seed N] [--steps N]       the waypoint-cycle demo pair
ramp-train export-demo --preset reference --out DIR           the same task at realistic cost
ramp-train verify DIR_OR_CARD

Datasets (--data) are demo sets (``ramp-train demos``) or LeRobot v3 datasets from
``ramp-bag export``. Every training run writes world_model/policy/policy_no_wm .onnx + .yaml,
checkpoint.npz/.json, training_report.json and training_curves.png into its --out folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ramp_common.cli_tools import closed_pipe
from ramp_models.model_card import ModelCard, ModelCardError, check_compatible
from ramp_models.onnx_runtime import CPU, LoadedModel, load_model


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_train_options(p: argparse.ArgumentParser, steps: int, value_steps: int) -> None:
    p.add_argument("--steps", type=_positive_int, default=steps, help=f"steps ({steps})")
    p.add_argument(
        "--value-steps",
        type=_non_negative_int,
        default=value_steps,
        help=f"world-model steps before advantages are computed ({value_steps})",
    )
    p.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (32)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed (0)")
    p.add_argument("--threads", type=_positive_int, default=2, help="torch threads (2)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ramp-train",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.split("\n")[2:]),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demos = sub.add_parser(
        "demos",
        help="scripted-expert demonstrations: in the synchronous sim (demo set), or through the "
        "stack (teleop, episode_recorder, ramp-bag export: LeRobot dataset)",
    )
    demos.add_argument("--out", required=True, type=Path, help="new demo-set folder")
    demos.add_argument("--episodes", type=_positive_int, default=20, help="episodes (20)")
    demos.add_argument("--seed", type=int, default=0, help="seed (0)")
    demos.add_argument("--image-size", type=_positive_int, default=64, help="stored px (64)")
    demos.add_argument("--task", default="wide", help="cube start: wide | sim (wide)")
    demos.add_argument("--clean", action="store_true", help="no expert noise")
    demos.add_argument("--via", choices=("sim", "stack"), default="sim", help="(sim)")
    demos.add_argument(
        "--models",
        type=Path,
        default=None,
        help="--via stack: models the stack runs while the expert demonstrates "
        "(default: $RAMP_MODEL_DIR/demo)",
    )
    demos.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (stack)")

    for name, helptext, steps, value_steps in (
        ("pretrain", "train a new model pair on demonstrations", 4000, 0),
        ("train", "train on datasets (new, or from --init)", 4000, 300),
        ("continual", "continue a model pair on new (HILR) data", 1500, 300),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--data", required=True, type=Path, nargs="+", help="dataset folders")
        p.add_argument("--out", required=True, type=Path, help="new output folder")
        p.add_argument(
            "--init", type=Path, required=name == "continual", help="start from this run"
        )
        if name != "continual":
            p.add_argument("--image-size", type=_positive_int, default=64, help="px (64)")
        _add_train_options(p, steps, value_steps)

    ev = sub.add_parser("eval", help="success rate over simulated episodes")
    ev.add_argument("--models", required=True, type=Path, help="training output folder")
    ev.add_argument("--episodes", type=_positive_int, default=20, help="episodes (20)")
    ev.add_argument(
        "--seed-offset",
        type=_non_negative_int,
        default=0,
        help="skip the first N evaluation seeds (0), to add episodes to an earlier evaluation",
    )
    ev.add_argument("--backend", choices=("stack", "sim"), default="stack", help="(stack)")
    ev.add_argument("--no-wm", action="store_true", help="policy without world model")
    ev.add_argument("--max-duration", type=float, default=20.0, help="s per episode (20)")
    ev.add_argument("--task", default="wide", help="cube start: wide | sim (wide)")
    ev.add_argument("--out", type=Path, help="write the result as JSON")
    ev.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (stack)")

    hr = sub.add_parser("hilr-round", help="rollouts with a scripted operator, train, evaluate")
    hr.add_argument("--models", required=True, type=Path, help="current training output")
    hr.add_argument("--demos", type=Path, nargs="*", default=[], help="datasets to keep")
    hr.add_argument("--out", required=True, type=Path, help="new round folder")
    hr.add_argument("--episodes", type=_positive_int, default=20, help="rollouts (20)")
    hr.add_argument("--backend", choices=("stack", "sim"), default="stack", help="(stack)")
    hr.add_argument("--eval-episodes", type=_non_negative_int, default=20, help="(20)")
    hr.add_argument("--eval-backend", choices=("stack", "sim"), default="stack", help="(stack)")
    hr.add_argument("--task", default="wide", help="cube start: wide | sim (wide)")
    hr.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (stack)")
    _add_train_options(hr, 1500, 300)

    ex = sub.add_parser("experiment", help="the whole loop, measured (docs/experiment.md)")
    ex.add_argument("--out", required=True, type=Path, help="new experiment folder")
    ex.add_argument("--quick", action="store_true", help="CI-sized: tiny models, few episodes")
    ex.add_argument("--seed", type=int, default=0, help="seed (0)")
    ex.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (stack)")
    ex.add_argument(
        "--hilr-backends",
        choices=("stack", "sim"),
        nargs="+",
        default=None,
        help="HILR rounds: stack -> (c), sim -> (c') (default: stack sim; quick: stack)",
    )
    ex.add_argument(
        "--stack-episodes",
        type=_non_negative_int,
        default=None,
        help="episodes per condition through the real stack (default: 20, quick: 0)",
    )

    demo = sub.add_parser(
        "export-demo",
        help="train the waypoint-cycle demo policy and export world_model/policy .onnx + .yaml",
    )
    demo.add_argument("--out", required=True, type=Path, help="output folder")
    demo.add_argument("--seed", type=int, default=0, help="seed for weights and data (0)")
    demo.add_argument(
        "--preset",
        choices=("demo", "reference"),
        default="demo",
        help="demo: tiny models (< 1 ms per call); reference: a ResNet-style encoder on "
        "2 x 224 x 224 frames and a wide policy head, the inference cost of real models",
    )
    demo.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="policy training steps (default: demo 2500, reference 600)",
    )
    demo.add_argument(
        "--no-check", action="store_true", help="skip the closed-loop check and timing"
    )

    holding = sub.add_parser(
        "export-untrained",
        help="export an untrained pair shaped for a robot config (the policy holds position)",
    )
    holding.add_argument("--robot-config", required=True, type=Path, help="robot config YAML")
    holding.add_argument("--out", required=True, type=Path, help="output folder")

    verify = sub.add_parser(
        "verify", help="load every model card in a folder (or one card) and check it on CPU"
    )
    verify.add_argument("path", type=Path, help="folder with *.yaml cards, or one card file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 refused input or failure, 2 usage)."""
    args = _parser().parse_args(argv)
    handlers = {
        "demos": _demos,
        "pretrain": _train,
        "train": _train,
        "continual": _train,
        "eval": _eval,
        "hilr-round": _hilr_round,
        "experiment": _experiment,
        "export-demo": _export_demo,
        "verify": lambda a: _verify(a.path),
        "export-untrained": _export_untrained,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return closed_pipe()
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"ramp-train {args.command}: error: {exc}", file=sys.stderr)
        return 1


def _export_untrained(args: argparse.Namespace) -> int:
    from ramp_training.robot_models import export_holding_pair

    for card in export_holding_pair(args.robot_config, args.out):
        print(f"wrote {card}")
    return 0


def _task(name: str):
    from ramp_training.task import TaskDistribution

    return TaskDistribution.named(name)


def _train_config(args: argparse.Namespace):
    from ramp_training.train import TrainConfig

    return TrainConfig(
        seed=args.seed,
        steps=args.steps,
        value_steps=args.value_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        threads=args.threads,
    )


def _demos(args: argparse.Namespace) -> int:
    from ramp_training.pipeline import generate_demos

    if args.via == "stack":
        return _demos_stack(args)
    index = generate_demos(
        args.out,
        args.episodes,
        seed=args.seed,
        task=_task(args.task),
        image_size=args.image_size,
        noisy=not args.clean,
    )
    print(index)
    return 0


def _demos_stack(args: argparse.Namespace) -> int:
    import os

    from ramp_training.expert import ExpertNoise, PushExpert
    from ramp_training.hilr_round import collect_stack
    from ramp_training.operator import OperatorConfig, ScriptedOperator
    from ramp_training.pipeline import DEMO_SEED_BASE

    models = args.models or Path(os.environ.get("RAMP_MODEL_DIR", "models")) / "demo"
    noise = ExpertNoise.none() if args.clean else ExpertNoise(perturb_probability=0.0)
    person = ScriptedOperator(OperatorConfig.demonstrator(), PushExpert(noise=noise))
    summary = collect_stack(
        models,
        args.out,
        args.episodes,
        seed=args.seed,
        task=_task(args.task),
        domain_id=args.domain_id,
        scripted=person,
        seed_base=DEMO_SEED_BASE,
        label="demos (stack)",
    )
    print(summary.dataset)
    return 0


def _train(args: argparse.Namespace) -> int:
    from ramp_training.pipeline import training_run

    overrides = {"image_size": getattr(args, "image_size", None)}
    run = training_run(
        args.data, args.out, _train_config(args), init=args.init, model_overrides=overrides
    )
    print(run.report)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ramp_training.evaluate import eval_seeds, evaluate

    wm = args.models / "world_model.yaml"
    policy = args.models / ("policy_no_wm.yaml" if args.no_wm else "policy.yaml")
    summary = evaluate(
        None if args.no_wm else wm,
        policy,
        eval_seeds(args.episodes, args.seed_offset),
        backend=args.backend,
        label=f"{args.models.name}{' (no world model)' if args.no_wm else ''}",
        task=_task(args.task),
        max_duration_s=args.max_duration,
        domain_id=args.domain_id,
    )
    if args.out:
        summary.write(args.out)
    print(summary.line())
    return 0


def _hilr_round(args: argparse.Namespace) -> int:
    from ramp_training.hilr_round import hilr_round

    _, run, _ = hilr_round(
        args.models,
        args.demos,
        args.out,
        args.episodes,
        _train_config(args),
        backend=args.backend,
        seed=args.seed,
        task=_task(args.task),
        eval_episodes=args.eval_episodes,
        eval_backend=args.eval_backend,
        domain_id=args.domain_id,
    )
    print(run.report)
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from ramp_training.experiment import ExperimentConfig, run_experiment

    config = ExperimentConfig.quick() if args.quick else ExperimentConfig()
    if args.stack_episodes is not None:
        config = replace(config, stack_episodes=args.stack_episodes)
    if args.hilr_backends is not None:
        config = replace(config, hilr_backends=tuple(args.hilr_backends))
    result = run_experiment(args.out, config, seed=args.seed, domain_id=args.domain_id)
    print(result)
    return 0


def _export_demo(args: argparse.Namespace) -> int:
    from ramp_training.demo import (  # torch is imported only for this command
        PIPER_HOME,
        PIPER_LOWER,
        PIPER_UPPER,
        REFERENCE_CONFIG,
        DemoConfig,
        closed_loop_rollout,
        export_demo,
        load_demo,
        waypoint_distances,
    )

    config = REFERENCE_CONFIG if args.preset == "reference" else DemoConfig()
    config = replace(config, seed=args.seed)
    if args.steps is not None:
        config = replace(config, steps=args.steps)
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
