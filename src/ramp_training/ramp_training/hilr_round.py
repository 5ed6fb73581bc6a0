"""One human-in-the-loop round in simulation: roll out, correct, record, export, train, evaluate.

``collect_stack`` runs the current models on the simulated stack (``sim_stack.SimStack``, all
nodes of ``config/sim.yaml`` in this process) with the scripted operator
(``operator.ScriptedOperator``) taking over through the teleop interfaces when the robot goes
off track: it streams a virtual leader arm on ``leader/joint_states`` (teleop_node in leader
mode) and calls ``ramp/takeover``; the intervention arbiter blends and publishes
``ramp/intervention``. Each episode is recorded by ``episode_recorder``
(``ramp/episode/start``, ``ramp/episode/stop`` with the success label) and the bags are exported
with ``ramp-bag export``'s exporter (LeRobot v3, per-frame intervention flags, episode success).

``collect_sim`` does the same in the synchronous simulator (operator chunks go straight to the
chunk executor) and writes a demo set with the intervention flags: fast, for CI and sweeps.

``hilr_round`` then trains a continual run from the current model's checkpoint on the
demonstrations plus the new data and evaluates the new models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ramp_training.operator import OperatorConfig, ScriptedOperator
from ramp_training.pipeline import HILR_SEED_BASE, RunResult, training_run
from ramp_training.progress import Progress, stderr_log
from ramp_training.task import TaskDistribution

COLLECT_BACKENDS = ("stack", "sim")


@dataclass
class CollectSummary:
    dataset: Path
    episodes: int
    successes: int
    interventions: int
    episodes_with_intervention: int
    intervention_frames: int
    frames: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dataset"] = str(self.dataset)
        return d


def _cards(model_dir: Path) -> tuple[Path, Path]:
    wm, policy = model_dir / "world_model.yaml", model_dir / "policy.yaml"
    for card in (wm, policy):
        if not card.is_file():
            raise FileNotFoundError(f"{card}: missing (is {model_dir} a ramp-train output?)")
    return wm, policy


def collect_stack(
    model_dir: Path,
    out_dir: Path,
    episodes: int,
    seed: int = 0,
    task: TaskDistribution | None = None,
    operator: OperatorConfig | None = None,
    max_duration_s: float = 20.0,
    fps: int = 10,
    domain_id: int | None = None,
    log: Callable[[str], None] = stderr_log,
    scripted: ScriptedOperator | None = None,
    seed_base: int = HILR_SEED_BASE,
    label: str = "hilr rollouts",
) -> CollectSummary:
    """Roll out on the real stack with the scripted operator, record, export (see module doc).

    Bags go to ``out_dir/bags``, the dataset to ``out_dir/dataset``. ``scripted`` replaces the
    default ``ScriptedOperator(operator)`` (e.g. ``demonstrator()`` for demonstrations).
    """
    from ramp_hilr_teleop.core.export import ExportConfig, export_lerobot
    from ramp_training.sim_stack import SimStack, StackOperator

    wm_card, policy_card = _cards(model_dir)
    bags = out_dir / "bags"
    bags.mkdir(parents=True, exist_ok=True)
    progress = Progress(episodes, label, log, every_s=0.0)
    successes = interventions = with_intervention = 0
    with SimStack(
        wm_card, policy_card, task=task, record_dir=bags, domain_id=domain_id, log=log
    ) as stack:
        if not (stack.has_arbiter and stack.has_recorder):
            raise RuntimeError(
                f"{stack.config_file}: the stack needs intervention_arbiter, teleop_node and "
                "episode_recorder for a HILR round"
            )
        person = StackOperator(stack, scripted or ScriptedOperator(operator))
        for i in range(episodes):
            episode_seed = seed_base + seed * 10_000 + i
            result = stack.run_episode(episode_seed, max_duration_s, operator=person, record=True)
            successes += result.success
            interventions += result.interventions
            with_intervention += result.interventions > 0
            progress.update(
                i + 1,
                f"seed {episode_seed} {'success' if result.success else 'failure'} "
                f"{result.duration_s:.1f} s, {result.interventions} takeovers -> {result.bag}",
            )
        joint_names = list(stack.driver.joint_names)
        cameras = list(stack.driver.camera_names)
    dataset = out_dir / "dataset"
    report = export_lerobot(
        [bags],
        dataset,
        ExportConfig(fps=fps, cameras=cameras, joint_names=joint_names, robot_type="sim"),
        progress=log,
    )
    from ramp_training.dataset import load_episodes

    eps, _ = load_episodes([dataset], (8, 8), cameras, joint_names)
    return CollectSummary(
        dataset,
        report.episodes,
        successes,
        interventions,
        with_intervention,
        int(sum(e.intervention.sum() for e in eps)),
        report.frames,
    )


def collect_sim(
    model_dir: Path,
    out_dir: Path,
    episodes: int,
    seed: int = 0,
    task: TaskDistribution | None = None,
    operator: OperatorConfig | None = None,
    max_duration_s: float = 20.0,
    image_size: int = 64,
    log: Callable[[str], None] = stderr_log,
) -> CollectSummary:
    """The same round in the synchronous simulator; the dataset is a demo set in
    ``out_dir/dataset`` with per-frame intervention flags."""
    from ramp_models.onnx_runtime import load_model
    from ramp_training.dataset import episode_from_record, save_demo_set
    from ramp_training.simloop import OnnxPolicySource, SimEpisodeRunner

    wm_card, policy_card = _cards(model_dir)
    source = OnnxPolicySource(
        load_model(wm_card, expected_kind="world_model"),
        load_model(policy_card, expected_kind="policy"),
    )
    scripted = ScriptedOperator(operator)
    runner = SimEpisodeRunner(
        max_duration_s=max_duration_s, store_size=(image_size, image_size), task=task
    )
    progress = Progress(episodes, "hilr rollouts (sim)", log, every_s=0.0)
    records = []
    interventions = 0
    try:
        for i in range(episodes):
            episode_seed = HILR_SEED_BASE + seed * 10_000 + i
            scripted.reset(episode_seed)
            record = runner.run(source, episode_seed, record=True, operator=scripted.offline())
            records.append(episode_from_record(record, f"hilr_{i:04d}", "hilr"))
            interventions += scripted.interventions
            progress.update(
                i + 1,
                f"seed {episode_seed} {'success' if record.success else 'failure'} "
                f"{record.duration:.1f} s, {scripted.interventions} takeovers",
            )
    finally:
        runner.close()
    dataset = out_dir / "dataset"
    save_demo_set(
        dataset,
        records,
        runner.settings.joint_names,
        runner.settings.cameras,
        extra={"source": "hilr round (synchronous simulator)", "models": str(model_dir)},
    )
    return CollectSummary(
        dataset,
        len(records),
        sum(r.success for r in records),
        interventions,
        sum(bool(r.intervention.any()) for r in records),
        int(sum(r.intervention.sum() for r in records)),
        sum(r.length for r in records),
    )


def hilr_round(
    model_dir: Path,
    demos: Sequence[Path],
    out_dir: Path,
    episodes: int,
    train_config,
    backend: str = "stack",
    seed: int = 0,
    task: TaskDistribution | None = None,
    operator: OperatorConfig | None = None,
    eval_episodes: int = 0,
    eval_backend: str = "sim",
    domain_id: int | None = None,
    log: Callable[[str], None] = stderr_log,
) -> tuple[CollectSummary, RunResult, dict | None]:
    """Collect (``backend``), train a continual run on ``demos`` + the new data, evaluate.

    Writes ``out_dir/hilr_round.json``. -> (collection summary, training run, eval or None).
    """
    from ramp_training.evaluate import eval_seeds, evaluate

    if backend not in COLLECT_BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {COLLECT_BACKENDS}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if backend == "stack":
        collected = collect_stack(
            model_dir, out_dir, episodes, seed, task, operator, domain_id=domain_id, log=log
        )
    else:
        from ramp_training.train import load_checkpoint

        size = load_checkpoint(model_dir).config.image_size
        collected = collect_sim(
            model_dir, out_dir, episodes, seed, task, operator, image_size=size, log=log
        )
    log(
        f"collected {collected.episodes} episodes ({collected.successes} successful, "
        f"{collected.interventions} takeovers, {collected.intervention_frames} of "
        f"{collected.frames} frames corrected) -> {collected.dataset}"
    )
    run = training_run(
        [*demos, collected.dataset], out_dir / "model", train_config, init=model_dir, log=log
    )
    evaluation = None
    if eval_episodes > 0:
        summary = evaluate(
            run.world_model_card,
            run.policy_card,
            eval_seeds(eval_episodes),
            backend=eval_backend,
            label="after HILR round",
            task=task,
            log=log,
            domain_id=domain_id,
        )
        summary.write(out_dir / "eval.json")
        evaluation = summary.to_dict()
    doc = {
        "models_in": str(model_dir),
        "collection": {"backend": backend, **collected.to_dict()},
        "models_out": str(run.out_dir),
        "model_ids": run.model_ids,
        "evaluation": evaluation,
    }
    (out_dir / "hilr_round.json").write_text(json.dumps(doc, indent=2))
    return collected, run, evaluation
