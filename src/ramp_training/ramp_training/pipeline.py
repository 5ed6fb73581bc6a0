"""The steps of the RAMP loop as functions: demonstrations, (continual) training runs.

``generate_demos`` runs the scripted expert in the synchronous simulator and writes a demo set;
``training_run`` loads datasets (demo sets and ``ramp-bag export`` LeRobot datasets), trains a
new model pair (or continues one), exports the ONNX models with their cards and writes the
training report. Every step prints progress and is seeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ramp_training.dataset import (
    build_samples,
    episode_from_record,
    load_episodes,
    save_demo_set,
)
from ramp_training.progress import Progress, stderr_log
from ramp_training.task import TaskDistribution

DEMO_SEED_BASE = 0
HILR_SEED_BASE = 50_000


def generate_demos(
    out_dir: Path,
    episodes: int,
    seed: int = 0,
    task: TaskDistribution | None = None,
    image_size: int = 64,
    noisy: bool = True,
    max_duration_s: float = 20.0,
    log: Callable[[str], None] = stderr_log,
) -> Path:
    """Expert demonstrations in the synchronous simulator -> a demo set in ``out_dir``.

    Episode i uses the seed ``seed * 10_000 + i`` (cube start, expert noise). Frames are stored
    at ``image_size`` pixels square (what the models take). -> the demo set's index file.
    """
    from ramp_training.simloop import ExpertSource, SimEpisodeRunner, make_expert

    task = task or TaskDistribution()
    runner = SimEpisodeRunner(
        max_duration_s=max_duration_s, store_size=(image_size, image_size), task=task
    )
    source = ExpertSource(make_expert(noisy=noisy))
    progress = Progress(episodes, "demos", log, every_s=0.0)
    records = []
    try:
        for i in range(episodes):
            episode_seed = DEMO_SEED_BASE + seed * 10_000 + i
            record = runner.run(source, episode_seed, record=True)
            records.append(episode_from_record(record, f"demo_{i:04d}", "expert"))
            ok = sum(r.success for r in records)
            progress.update(
                i + 1,
                f"seed {episode_seed} {'success' if record.success else 'failure'} "
                f"{record.duration:.1f} s ({ok}/{i + 1} successful)",
            )
    finally:
        runner.close()
    settings = runner.settings
    return save_demo_set(
        out_dir,
        records,
        settings.joint_names,
        settings.cameras,
        extra={"task": asdict(task), "source": "scripted expert (ramp_training.expert)"},
    )


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    world_model_card: Path
    policy_card: Path
    policy_no_wm_card: Path
    report: Path
    model_ids: dict


def training_run(
    data: Sequence[Path],
    out_dir: Path,
    train_config,
    init: Path | None = None,
    model_overrides: dict | None = None,
    log: Callable[[str], None] = stderr_log,
) -> RunResult:
    """Train on the datasets ``data`` (from ``init``'s checkpoint when given) and export.

    ``model_overrides`` (sizes, e.g. image_size) only apply to a new model (no ``init``).
    """
    import json

    import torch

    from ramp_training.demo import POLICY_MAX_VELOCITY
    from ramp_training.simloop import StackSettings
    from ramp_training.train import (
        RampModels,
        default_model_config,
        export_models,
        load_checkpoint,
        save_checkpoint,
        train,
        write_report,
    )

    out_dir = Path(out_dir)
    if (out_dir / "checkpoint.npz").exists():
        raise ValueError(f"{out_dir}: already holds a training run; choose another folder")
    if init is not None:
        models = load_checkpoint(init)
        log(f"continuing from {init}")
    else:
        settings = StackSettings.from_config()
        config = default_model_config(
            settings.joint_names,
            settings.cameras,
            settings.limits.lower,
            settings.limits.upper,
            POLICY_MAX_VELOCITY,
            **(model_overrides or {}),
        )
        torch.manual_seed(train_config.seed)  # the initial weights: a run is reproducible
        models = RampModels(config)
    cfg = models.config
    size = (cfg.image_size, cfg.image_size)
    episodes, infos = load_episodes(data, size, cfg.cameras, cfg.joint_names, progress=log)
    samples = build_samples(
        episodes,
        cfg.cameras,
        cfg.horizon,
        cfg.step_dt,
        cfg.future_horizons,
        train_config.gamma_per_s,
    )
    fps = infos[0].fps
    log(
        f"{samples.count} frames from {len(episodes)} episodes; "
        f"{int(samples.positive.sum())} positive, {int(samples.negative.sum())} negative, "
        f"{int(samples.intervention.sum())} intervention"
    )
    result = train(models, samples, fps, train_config, log=log)
    exported = export_models(models, out_dir, seed=train_config.seed)
    save_checkpoint(models, out_dir, {"init": str(init) if init else None})
    data_summary = {
        "datasets": [
            {"path": str(i.path), "kind": i.kind, "episodes": i.episodes, "frames": i.frames}
            for i in infos
        ],
        "frames": samples.count,
        "positive_frames": int(samples.positive.sum()),
        "negative_frames": int(samples.negative.sum()),
        "intervention_frames": int(samples.intervention.sum()),
        "successful_episodes": int(sum(e.success for e in episodes)),
        "episodes": len(episodes),
        "init": str(init) if init else None,
    }
    report = write_report(out_dir, result, train_config, models, exported, data_summary)
    ids = json.loads(report.read_text())["model_ids"]
    log(f"trained in {result.seconds:.0f} s; models {ids}; report {report}")
    return RunResult(
        out_dir, exported.world_model, exported.policy, exported.policy_no_wm, report, ids
    )
