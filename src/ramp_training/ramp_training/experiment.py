"""The RAMP loop in simulation, measured, with one command (``ramp-train experiment``).

Stages (each writes into its own folder under ``--out``; the next stage reads only that):

1. ``demos``: scripted-expert demonstrations in the synchronous simulator (demo set);
2. ``base``: pre-training of the world model + conditioned policy on them (ONNX pair + cards);
3. ``hilr``: one HILR round with the base models on the real stack: scripted operator taking
   over through teleop, episodes recorded by ``episode_recorder``, exported with the
   ``ramp-bag export`` exporter, continual training on demos + HILR data (``hilr/model``);
   ``hilr_sim``: the same round from the same base models in the synchronous simulator
   (operator chunks straight to the chunk executor, demo-set data), a diagnostic that separates
   what the corrections are worth from what the real-time stack does to the data;
4. ``control``: the same continual training budget on the demonstrations alone (so a gain of
   (c) over (a) is not just more training steps);
5. evaluations of (a) base policy, (b) base policy without world model (latent masked, no
   ``wm_state`` input), (c) after the HILR round, (c') after the simulator's HILR round,
   (d) control: ``sim_episodes`` each in the synchronous simulator (same ONNX sessions and
   chunk executor, independent of machine load) and ``stack_episodes`` each through the real
   nodes in real time. Each condition is compared with (a) on the same backend (difference and
   the two-sided p-value of a two-proportion z-test).

Results: ``experiment.json`` (every number, model ids, seeds, timings) and ``results.md`` (the
table for docs/experiment.md).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ramp_training.operator import OperatorConfig
from ramp_training.progress import stderr_log
from ramp_training.task import TaskDistribution

if TYPE_CHECKING:
    from ramp_training.hilr_round import CollectSummary
    from ramp_training.pipeline import RunResult
    from ramp_training.train import TrainConfig

HILR_BACKENDS = ("stack", "sim")
HILR_FOLDERS = {"stack": "hilr", "sim": "hilr_sim"}
"""Folder of each backend's HILR round under the experiment folder."""
HILR_CONDITIONS = {
    "stack": ("c_after_hilr", "(c) after one HILR round"),
    "sim": ("c2_after_hilr_sim", "(c') after one HILR round, rollouts in the synchronous sim"),
}


@dataclass(frozen=True)
class ExperimentConfig:
    demo_episodes: int = 5
    image_size: int = 64
    tokens: int = 8
    dim: int = 32
    policy_hidden: int = 256
    pretrain_steps: int = 4000
    continual_steps: int = 1500
    value_steps: int = 300
    hilr_episodes: int = 30
    hilr_backends: tuple[str, ...] = ("stack", "sim")
    """Where HILR rounds roll out, each from the base models: condition (c) for ``stack`` (the
    robot's path), (c') for ``sim`` (a diagnostic: the same round without the real nodes)."""
    hilr_max_duration_s: float = 20.0
    sim_episodes: int = 200
    stack_episodes: int = 20
    eval_max_duration_s: float = 20.0
    control: bool = True
    threads: int = 2

    def __post_init__(self) -> None:
        unknown = [b for b in self.hilr_backends if b not in HILR_BACKENDS]
        if (
            not self.hilr_backends
            or unknown
            or len(set(self.hilr_backends)) != len(self.hilr_backends)
        ):
            raise ValueError(
                f"hilr_backends {self.hilr_backends!r}: want distinct values of {HILR_BACKENDS}"
            )

    @classmethod
    def quick(cls) -> ExperimentConfig:
        """CI-sized: tiny models, a few short episodes, the HILR round still on the stack."""
        return cls(
            demo_episodes=3,
            image_size=32,
            tokens=4,
            dim=16,
            policy_hidden=64,
            pretrain_steps=30,
            continual_steps=20,
            value_steps=10,
            hilr_episodes=2,
            hilr_backends=("stack",),
            hilr_max_duration_s=4.0,
            sim_episodes=2,
            stack_episodes=0,
            eval_max_duration_s=4.0,
            control=False,
        )


def run_experiment(
    out_dir: Path,
    config: ExperimentConfig | None = None,
    seed: int = 0,
    task: TaskDistribution | None = None,
    domain_id: int | None = None,
    log: Callable[[str], None] = stderr_log,
) -> Path:
    """Run every stage (see the module docstring); -> ``experiment.json``."""
    from ramp_training.pipeline import generate_demos, training_run

    config = config or ExperimentConfig()
    task = task or TaskDistribution()
    out_dir = Path(out_dir)
    if (out_dir / "experiment.json").exists():
        raise ValueError(f"{out_dir}: holds an experiment already; choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    timer = _StageTimer(log)
    base_cfg, continual_cfg = _train_configs(config, seed)

    with timer.stage("demonstrations"):
        demos = out_dir / "demos"
        generate_demos(
            demos, config.demo_episodes, seed=seed, task=task, image_size=config.image_size, log=log
        )
    with timer.stage("pre-training"):
        sizes = {
            "image_size": config.image_size,
            "tokens": config.tokens,
            "dim": config.dim,
            "policy_hidden": config.policy_hidden,
        }
        base = training_run([demos], out_dir / "base", base_cfg, model_overrides=sizes, log=log)
    hilr_runs: dict[str, tuple[CollectSummary, RunResult]] = {}
    for backend in config.hilr_backends:
        with timer.stage(f"HILR round ({backend} rollouts)"):
            hilr_runs[backend] = _hilr_round(
                backend, out_dir, demos, base, continual_cfg, config, seed, task, domain_id, log
            )
    control = None
    if config.control:
        with timer.stage("control (continual training on demonstrations only)"):
            control = training_run(
                [demos], out_dir / "control", continual_cfg, init=base.out_dir, log=log
            )
    conditions = _conditions(base, hilr_runs, control)
    results = _evaluate_conditions(conditions, out_dir, config, task, domain_id, timer, log)

    doc = {
        "config": asdict(config),
        "seed": seed,
        "task": asdict(task),
        **_provenance(demos, base, hilr_runs, control),
        "results": results,
        "versus_base": versus_base(results),
        "timings_s": timer.timings,
        "total_s": round(time.monotonic() - timer.started, 1),
    }
    path = out_dir / "experiment.json"
    path.write_text(json.dumps(doc, indent=2))
    (out_dir / "results.md").write_text(results_table(doc))
    log(results_table(doc))
    return path


class _StageTimer:
    """Logs each stage's start and records its duration (s) under its name."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._log = log
        self.timings: dict[str, float] = {}
        self.started = time.monotonic()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        self._log(f"=== {name} ===")
        yield
        self.timings[name] = round(time.monotonic() - t0, 1)


def _train_configs(config: ExperimentConfig, seed: int) -> tuple[TrainConfig, TrainConfig]:
    """(pre-training, continual training) settings."""
    from ramp_training.train import TrainConfig

    base_cfg = TrainConfig(seed=seed, steps=config.pretrain_steps, threads=config.threads)
    continual_cfg = TrainConfig(
        seed=seed + 1,
        steps=config.continual_steps,
        value_steps=config.value_steps,
        threads=config.threads,
    )
    return base_cfg, continual_cfg


def _hilr_round(
    backend: str,
    out_dir: Path,
    demos: Path,
    base: RunResult,
    continual_cfg: TrainConfig,
    config: ExperimentConfig,
    seed: int,
    task: TaskDistribution,
    domain_id: int | None,
    log: Callable[[str], None],
) -> tuple[CollectSummary, RunResult]:
    """One HILR round with the base models on ``backend``, then continual training on demos +
    the round's data; -> (what was collected, the trained models)."""
    from ramp_training.hilr_round import collect_sim, collect_stack
    from ramp_training.pipeline import training_run

    hilr_dir = out_dir / HILR_FOLDERS[backend]
    collect = collect_stack if backend == "stack" else collect_sim
    extra = {"domain_id": domain_id} if backend == "stack" else {"image_size": config.image_size}
    collected = collect(
        base.out_dir,
        hilr_dir,
        config.hilr_episodes,
        seed,
        task,
        OperatorConfig(),
        max_duration_s=config.hilr_max_duration_s,
        log=log,
        **extra,
    )
    hilr = training_run(
        [demos, collected.dataset],
        hilr_dir / "model",
        continual_cfg,
        init=base.out_dir,
        log=log,
    )
    return collected, hilr


_Condition = tuple[str, str, "Path | None", Path]
"""(key, label, world-model card or None, policy card)."""


def _conditions(
    base: RunResult,
    hilr_runs: dict[str, tuple[CollectSummary, RunResult]],
    control: RunResult | None,
) -> list[_Condition]:
    """The evaluated conditions (a), (b), (c) per HILR backend, (d), with their model cards."""
    conditions: list[_Condition] = [
        ("a_base", "(a) base policy", base.world_model_card, base.policy_card),
        ("b_no_world_model", "(b) base, no world model", None, base.policy_no_wm_card),
    ]
    for backend, (_, hilr) in hilr_runs.items():
        key, label = HILR_CONDITIONS[backend]
        conditions.append((key, label, hilr.world_model_card, hilr.policy_card))
    if control is not None:
        conditions.append(
            (
                "d_control",
                "(d) control: same steps, demos only",
                control.world_model_card,
                control.policy_card,
            )
        )
    return conditions


def _evaluate_conditions(
    conditions: list[_Condition],
    out_dir: Path,
    config: ExperimentConfig,
    task: TaskDistribution,
    domain_id: int | None,
    timer: _StageTimer,
    log: Callable[[str], None],
) -> dict[str, dict]:
    """Evaluate every condition on each backend with episodes; -> results[key][backend]."""
    from ramp_training.evaluate import eval_seeds, evaluate

    results: dict[str, dict] = {}
    for backend, episodes in (("sim", config.sim_episodes), ("stack", config.stack_episodes)):
        if episodes <= 0:
            continue
        for key, label, wm, policy in conditions:
            with timer.stage(f"eval {label} [{backend}]"):
                summary = evaluate(
                    wm,
                    policy,
                    eval_seeds(episodes),
                    backend=backend,
                    label=label,
                    task=task,
                    max_duration_s=config.eval_max_duration_s,
                    log=log,
                    domain_id=domain_id,
                )
                summary.write(out_dir / "eval" / f"{key}_{backend}.json")
                results.setdefault(key, {})[backend] = summary.to_dict()
    return results


def _provenance(
    demos: Path,
    base: RunResult,
    hilr_runs: dict[str, tuple[CollectSummary, RunResult]],
    control: RunResult | None,
) -> dict:
    """Where each stage wrote, the model ids, and what each HILR round collected."""
    return {
        "stages": {
            "demos": str(demos),
            "base": str(base.out_dir),
            **{
                f"hilr_{backend}": {"dataset": str(c.dataset), "model": str(h.out_dir)}
                for backend, (c, h) in hilr_runs.items()
            },
            "control": str(control.out_dir) if control else None,
        },
        "model_ids": {
            "base": base.model_ids,
            **{f"after_hilr_{backend}": h.model_ids for backend, (_, h) in hilr_runs.items()},
            "control": control.model_ids if control else None,
        },
        "hilr_collection": {backend: c.to_dict() for backend, (c, _) in hilr_runs.items()},
    }


def _p_text(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def results_table(doc: dict) -> str:
    """Markdown table of the success rates in an ``experiment.json``."""
    lines = [
        "| condition | backend | success | 95% CI (Wilson) | vs (a): points, p | "
        "mean time to success |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    versus = doc.get("versus_base", {})
    for key, by_backend in doc["results"].items():
        for backend, r in by_backend.items():
            lo, hi = r["ci95"]
            tts = r["mean_time_to_success_s"]
            v = versus.get(key, {}).get(backend)
            vs = "-" if v is None else f"{v['difference_points']:+.0f}, {_p_text(v['p_value'])}"
            lines.append(
                f"| {r['label']} | {backend} | {r['successes']}/{r['trials']} "
                f"({100 * r['success_rate']:.0f}%) | {100 * lo:.0f}-{100 * hi:.0f}% | {vs} | "
                f"{'-' if tts != tts else f'{tts:.1f} s'} |"
            )
    return "\n".join(lines) + "\n"


def two_proportion_p(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test (are two success rates equal?)."""
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / trials_a + 1.0 / trials_b))
    if se == 0.0:
        return 1.0
    z = (successes_b / trials_b - successes_a / trials_a) / se
    return math.erfc(abs(z) / math.sqrt(2.0))


def versus_base(results: dict[str, dict]) -> dict[str, dict]:
    """Each condition against (a), per backend: difference in points and the test's p-value."""
    base = results.get("a_base", {})
    out: dict[str, dict] = {}
    for key, by_backend in results.items():
        if key == "a_base":
            continue
        for backend, r in by_backend.items():
            a = base.get(backend)
            if a is None:
                continue
            p = two_proportion_p(a["successes"], a["trials"], r["successes"], r["trials"])
            out.setdefault(key, {})[backend] = {
                "difference_points": round(100 * (r["success_rate"] - a["success_rate"]), 1),
                "p_value": float(f"{p:.3g}"),
            }
    return out
