"""Success rate, time to success and a confidence interval over simulated episodes.

Two backends run the same exported models (world model + policy cards):

- ``stack``: the real ROS nodes of ``ramp up --robot sim`` built in this process
  (``sim_stack.SimStack``), real time; each episode: e-stop, ``sim/reset``, cube placed,
  release, run until the cube rests in the goal (``sim/task_success`` for ``settle_s``) or
  ``max_duration_s``;
- ``sim``: the synchronous simulator loop (``simloop``), faster than real time and independent
  of machine load, with the same onnxruntime sessions, preprocessing and chunk executor.

Seeds pick the cube's start (``task.TaskDistribution``); evaluation seeds start at
``EVAL_SEED_BASE``, away from the seeds used for demonstrations and HILR rounds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ramp_training.progress import Progress, stderr_log
from ramp_training.task import TaskDistribution

EVAL_SEED_BASE = 100_000
BACKENDS = ("stack", "sim")


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a success rate (95% for z = 1.96); (0, 1) for no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    center = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, center - half), min(1.0, center + half)


@dataclass
class EpisodeOutcome:
    seed: int
    success: bool
    time_to_success_s: float | None
    duration_s: float
    interventions: int = 0


@dataclass
class EvalSummary:
    """Outcome of an evaluation (JSON via ``to_dict``)."""

    label: str
    backend: str
    model_ids: dict[str, str]
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    task: str = "wide"
    max_duration_s: float = 20.0

    @property
    def trials(self) -> int:
        return len(self.episodes)

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return self.successes / self.trials if self.trials else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.trials)

    @property
    def mean_time_to_success_s(self) -> float:
        times = [e.time_to_success_s for e in self.episodes if e.success]
        return float(np.mean(times)) if times else float("nan")

    def line(self) -> str:
        lo, hi = self.interval
        return (
            f"{self.label}: {self.successes}/{self.trials} = {100 * self.success_rate:.0f}% "
            f"(95% CI {100 * lo:.0f}-{100 * hi:.0f}%), mean time to success "
            f"{self.mean_time_to_success_s:.1f} s [{self.backend}]"
        )

    def to_dict(self) -> dict:
        lo, hi = self.interval
        return {
            "label": self.label,
            "backend": self.backend,
            "task": self.task,
            "max_duration_s": self.max_duration_s,
            "model_ids": self.model_ids,
            "trials": self.trials,
            "successes": self.successes,
            "success_rate": self.success_rate,
            "ci95": [lo, hi],
            "mean_time_to_success_s": self.mean_time_to_success_s,
            "episodes": [asdict(e) for e in self.episodes],
        }

    def write(self, path: str | Path) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2))
        return out


def eval_seeds(episodes: int, offset: int = 0) -> list[int]:
    return [EVAL_SEED_BASE + offset + i for i in range(episodes)]


def _model_ids(world_model_card: Path | None, policy_card: Path) -> dict[str, str]:
    from ramp_models.model_card import ModelCard

    ids = {"policy": ModelCard.load(policy_card).model_id}
    if world_model_card is not None:
        ids["world_model"] = ModelCard.load(world_model_card).model_id
    return ids


def evaluate(
    world_model_card: Path | None,
    policy_card: Path,
    seeds: Sequence[int],
    backend: str = "stack",
    label: str = "policy",
    task: TaskDistribution | None = None,
    max_duration_s: float = 20.0,
    log: Callable[[str], None] = stderr_log,
    domain_id: int | None = None,
) -> EvalSummary:
    """Run one episode per seed with the given models; see the module docstring."""
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {BACKENDS}")
    task = task or TaskDistribution()
    summary = EvalSummary(
        label, backend, _model_ids(world_model_card, policy_card), [], task.name, max_duration_s
    )
    progress = Progress(len(seeds), f"eval {label}", log, every_s=0.0)

    def report(outcome: EpisodeOutcome) -> None:
        summary.episodes.append(outcome)
        lo, hi = summary.interval
        progress.update(
            len(summary.episodes),
            f"seed {outcome.seed} {'success' if outcome.success else 'failure'} "
            f"{outcome.duration_s:.1f} s; {summary.successes}/{summary.trials} "
            f"(CI {100 * lo:.0f}-{100 * hi:.0f}%)",
        )

    if backend == "sim":
        _evaluate_sim(world_model_card, policy_card, seeds, task, max_duration_s, report)
    else:
        from ramp_training.sim_stack import SimStack

        with SimStack(
            world_model_card, policy_card, task=task, domain_id=domain_id, log=log
        ) as stack:
            for seed in seeds:
                result = stack.run_episode(seed, max_duration_s)
                report(
                    EpisodeOutcome(
                        seed, result.success, result.time_to_success_s, result.duration_s
                    )
                )
    log(summary.line())
    return summary


def _evaluate_sim(
    world_model_card: Path | None,
    policy_card: Path,
    seeds: Sequence[int],
    task: TaskDistribution,
    max_duration_s: float,
    report: Callable[[EpisodeOutcome], None],
) -> None:
    from ramp_models.onnx_runtime import load_model
    from ramp_training.simloop import OnnxPolicySource, SimEpisodeRunner

    policy = load_model(policy_card, expected_kind="policy")
    world_model = None
    if policy.card.input_by_role("wm_state") is not None:
        if world_model_card is None:
            raise ValueError(f"{policy_card}: the policy takes wm_state; give the world model")
        world_model = load_model(world_model_card, expected_kind="world_model")
    source = OnnxPolicySource(world_model, policy)
    runner = SimEpisodeRunner(max_duration_s=max_duration_s, task=task)
    try:
        for seed in seeds:
            ep = runner.run(source, seed, record=False)
            report(EpisodeOutcome(seed, ep.success, ep.time_to_success, ep.duration))
    finally:
        runner.close()
