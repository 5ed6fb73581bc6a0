"""Training of the world model + conditioned chunk policy, checkpoints, ONNX export, reports.

One ``RampModels`` bundle is trained end to end (CPU-sized, seeded):

- the world-model encoder (camera images + joint state -> latent tokens) with its heads: future
  latents at several horizons (conditioned on the action chunk, targets are the encoder's own
  latents of those future frames, not back-propagated), a value (discounted success return),
  and, where simulated demonstrations know it, the cube position (an auxiliary probe, not
  exported);
- the chunk policy on (latent, joint state, indicator), with the latent replaced by a learned
  mask token for ``latent_mask_probability`` of the samples, predicting H-step chunks.

Indicator = 1 for positive frames (expert, operator corrections, successful episodes); for the
rest it is 1 where the world model's advantage estimate ``gamma^n V(t + n) - V(t)`` is positive
(``advantage_indicators``), else 0. The exported policy fixes it at 1 ("act like the positive
data"), so the deployed model card needs no new input role.

Each run writes into its output folder: ``world_model.onnx/.yaml``, ``policy.onnx/.yaml``,
``policy_no_wm.onnx/.yaml`` (same weights, latent masked, no world-model input),
``checkpoint.npz`` + ``checkpoint.json`` (weights as plain arrays, no pickle; the start of a
continual run), ``training_report.json`` and ``training_curves.png``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ramp_models.model_card import ChunkSpec, ImageSpec
from ramp_training import __version__
from ramp_training.dataset import Samples
from ramp_training.export import CardFields, export_onnx
from ramp_training.models import (
    ConditionedChunkPolicy,
    PolicyWithoutWorldModel,
    WorldModelEncoder,
)
from ramp_training.progress import Progress, stderr_log

WORLD_MODEL_FILE = "world_model.onnx"
POLICY_FILE = "policy.onnx"
POLICY_NO_WM_FILE = "policy_no_wm.onnx"
CHECKPOINT_WEIGHTS = "checkpoint.npz"
CHECKPOINT_CONFIG = "checkpoint.json"
REPORT_FILE = "training_report.json"
CURVES_FILE = "training_curves.png"
CUBE_CENTER = (0.36, 0.11)
"""Cube probe target normalisation: (xy - center) / scale, m."""
CUBE_SCALE = 0.05


@dataclass(frozen=True)
class ModelConfig:
    """Sizes and the robot contract of a model pair (fixed for a line of continual runs)."""

    joint_names: tuple[str, ...]
    cameras: tuple[str, ...]
    joint_lower: tuple[float, ...]
    joint_upper: tuple[float, ...]
    max_velocity: tuple[float, ...]
    """Policy's per-joint speed bound, rad/s (m/s): no chunk step moves faster."""
    image_size: int = 64
    tokens: int = 8
    dim: int = 32
    horizon: int = 10
    step_dt: float = 0.1
    future_horizons: tuple[int, ...] = (1, 5, 10)
    """Frames ahead the world model's future heads predict."""
    policy_hidden: int = 256
    model_prefix: str = "ramp"

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"model config: unknown fields {unknown}")
        tuples = {k: tuple(v) for k, v in data.items() if isinstance(v, list)}
        return cls(**{**data, **tuples})


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one run (defaults: a few minutes on 2 CPU cores)."""

    seed: int = 0
    steps: int = 3000
    value_steps: int = 0
    """Steps fitting only the world-model heads before the advantage indicators are computed
    (0 = indicators from the labels alone)."""
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    gamma_per_s: float = 0.8
    advantage_horizon_s: float = 1.0
    latent_mask_probability: float = 0.25
    intervention_oversample: float = 3.0
    """Sampling weight of an intervention frame relative to others."""
    shift_pixels: int = 3
    """Random image shift augmentation, pixels."""
    value_weight: float = 1.0
    future_weight: float = 0.5
    cube_weight: float = 1.0
    policy_weight: float = 1.0
    threads: int = 2
    log_every_s: float = 10.0


class RampModels(nn.Module):
    """World model, conditioned policy and the training-only cube probe."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = len(config.joint_names)
        self.world_model = WorldModelEncoder(
            num_cameras=len(config.cameras),
            image_height=config.image_size,
            image_width=config.image_size,
            joint_dim=d,
            tokens=config.tokens,
            dim=config.dim,
            future_horizons=config.future_horizons,
            action_horizon=config.horizon,
            joint_lower=config.joint_lower,
            joint_upper=config.joint_upper,
        )
        self.policy = ConditionedChunkPolicy(
            joint_lower=config.joint_lower,
            joint_upper=config.joint_upper,
            max_velocity=config.max_velocity,
            step_dt=config.step_dt,
            tokens=config.tokens,
            dim=config.dim,
            horizon=config.horizon,
            hidden=config.policy_hidden,
        )
        self.cube_probe = nn.Sequential(nn.Linear(config.dim, 64), nn.GELU(), nn.Linear(64, 2))

    def image_spec(self) -> ImageSpec:
        size = self.config.image_size
        return ImageSpec(height=size, width=size)


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(models: RampModels, out_dir: Path, extra: dict | None = None) -> Path:
    """Weights as ``checkpoint.npz`` (plain float arrays) + config as ``checkpoint.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().numpy() for k, v in models.state_dict().items()}
    np.savez(out_dir / CHECKPOINT_WEIGHTS, **state)
    doc = {"model_config": asdict(models.config), "producer": f"ramp_training {__version__}"}
    doc.update(extra or {})
    (out_dir / CHECKPOINT_CONFIG).write_text(json.dumps(doc, indent=2))
    return out_dir / CHECKPOINT_WEIGHTS


def load_checkpoint(model_dir: str | os.PathLike[str]) -> RampModels:
    """The models of a training run's folder (``checkpoint.npz`` + ``checkpoint.json``).

    Raises ValueError naming the file when it is missing or does not fit the config.
    """
    folder = Path(model_dir)
    config_path = folder / CHECKPOINT_CONFIG
    weights_path = folder / CHECKPOINT_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ValueError(f"{path}: missing (not a ramp-train output folder?)")
    doc = json.loads(config_path.read_text())
    models = RampModels(ModelConfig.from_dict(doc["model_config"]))
    with np.load(weights_path, allow_pickle=False) as data:
        state = {k: torch.from_numpy(data[k].copy()) for k in data.files}
    try:
        models.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights_path}: does not fit {config_path}: {exc}") from exc
    return models


# --------------------------------------------------------------------------- batches
class _Batcher:
    """Draws seeded mini-batches of samples as torch tensors (images normalised, augmented)."""

    def __init__(
        self, samples: Samples, config: TrainConfig, weights: np.ndarray, models: RampModels
    ) -> None:
        self.samples = samples
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()
        self.max_step = models.policy.max_step.numpy()

    def images(self, idx: np.ndarray, augment: bool) -> torch.Tensor:
        """(B, N, 3, h, w) float32 normalised as the card says: (pixel / 255 - 0.5) / 0.5."""
        raw = self.samples.images[idx]  # (B, N, h, w, 3) uint8
        if augment and self.config.shift_pixels > 0:
            raw = self._shift(raw)
        x = torch.from_numpy(raw).float().permute(0, 1, 4, 2, 3)
        return x * (2.0 / 255.0) - 1.0

    def _shift(self, raw: np.ndarray) -> np.ndarray:
        pad = self.config.shift_pixels
        b, n, h, w, _ = raw.shape
        padded = np.pad(raw, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
        out = np.empty_like(raw)
        dy = self.rng.integers(0, 2 * pad + 1, size=(b, n))
        dx = self.rng.integers(0, 2 * pad + 1, size=(b, n))
        for i in range(b):
            for j in range(n):
                out[i, j] = padded[i, j, dy[i, j] : dy[i, j] + h, dx[i, j] : dx[i, j] + w]
        return out

    def draw(self) -> np.ndarray:
        return self.rng.choice(self.samples.count, size=self.config.batch_size, p=self.p)


def _fraction_targets(state: np.ndarray, chunks: np.ndarray, max_step: np.ndarray) -> np.ndarray:
    steps = np.diff(np.concatenate([state[:, None], chunks], axis=1), axis=1)
    return np.clip(steps / max_step, -0.98, 0.98).astype(np.float32)


# --------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """Loss history (per step) and timings of one training run."""

    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    indicator_positive_fraction: float = float("nan")
    advantage: dict[str, float] = field(default_factory=dict)


def world_model_values(models: RampModels, samples: Samples, batch: int = 256) -> np.ndarray:
    """The world model's value estimate of every sample (no augmentation), (F,)."""
    models.eval()
    out = np.empty(samples.count, dtype=np.float32)
    with torch.no_grad():
        for start in range(0, samples.count, batch):
            idx = np.arange(start, min(samples.count, start + batch))
            x = torch.from_numpy(samples.images[idx]).float().permute(0, 1, 4, 2, 3)
            x = x * (2.0 / 255.0) - 1.0
            q = torch.from_numpy(samples.state[idx])
            out[idx] = models.world_model(x, q)[1][:, 0].numpy()
    return out


def advantage_indicators(
    samples: Samples, values: np.ndarray, fps: float, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(indicator (F,) float32, advantage (F,) float32).

    A(t) = gamma^n V(t + n) - V(t) with n = advantage_horizon_s * fps frames; past an episode's
    last frame V is its outcome (1 success, 0 failure). Indicator: 1 for positive frames, 0 for
    negative ones, else A(t) > 0.
    """
    n = max(1, round(config.advantage_horizon_s * fps))
    discount = config.gamma_per_s ** (n / fps)
    adv = np.zeros(samples.count, dtype=np.float32)
    for ep in np.unique(samples.episode):
        rows = np.flatnonzero(samples.episode == ep)
        v = values[rows]
        outcome = float(samples.value_target[rows[-1]] > 0.5)
        ahead = np.concatenate([v[n:], np.full(min(n, len(v)), outcome)])[: len(v)]
        adv[rows] = discount * ahead - v
    indicator = (samples.positive | ((adv > 0) & ~samples.negative)).astype(np.float32)
    return indicator, adv


def train(
    models: RampModels,
    samples: Samples,
    fps: float,
    config: TrainConfig,
    log: Callable[[str], None] = stderr_log,
) -> TrainResult:
    """Train ``models`` in place on ``samples`` (see the module docstring); seeded."""
    horizons = models.world_model.future_horizons
    if samples.future.shape[1] != len(horizons) or samples.chunks.shape[1] != models.policy.horizon:
        raise ValueError(
            f"samples were built for {samples.future.shape[1]} future horizons and chunks of "
            f"{samples.chunks.shape[1]}; the models predict {len(horizons)} horizons {horizons} "
            f"and chunks of {models.policy.horizon}"
        )
    torch.manual_seed(config.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    result = TrainResult()
    started = time.monotonic()
    try:
        weights = np.where(samples.intervention, config.intervention_oversample, 1.0)
        batcher = _Batcher(samples, config, weights, models)
        fractions = _fraction_targets(samples.state, samples.chunks, batcher.max_step)
        indicator = samples.positive.astype(np.float32)
        if config.value_steps > 0:
            log(f"fitting the world-model heads for {config.value_steps} steps")
            _run_steps(
                models,
                samples,
                batcher,
                fractions,
                indicator,
                config,
                config.value_steps,
                "world model",
                result,
                policy=False,
                log=log,
            )
            values = world_model_values(models, samples)
            indicator, adv = advantage_indicators(samples, values, fps, config)
            others = ~samples.positive & ~samples.negative
            result.advantage = {
                "mean": float(adv.mean()),
                "positive_fraction_of_other_frames": (
                    float((adv[others] > 0).mean()) if others.any() else float("nan")
                ),
                "other_frames": int(others.sum()),
            }
            log(
                f"advantage: {int(samples.positive.sum())} frames positive, "
                f"{int(samples.negative.sum())} negative (before a takeover), "
                f"{result.advantage['other_frames']} by advantage: "
                f"{100 * result.advantage['positive_fraction_of_other_frames']:.0f}% of them "
                "get indicator 1"
            )
        result.indicator_positive_fraction = float(indicator.mean())
        _run_steps(
            models,
            samples,
            batcher,
            fractions,
            indicator,
            config,
            config.steps,
            "train",
            result,
            policy=True,
            log=log,
        )
    finally:
        torch.set_num_threads(threads)
        models.eval()
    result.seconds = time.monotonic() - started
    return result


def _run_steps(
    models: RampModels,
    samples: Samples,
    batcher: _Batcher,
    fractions: np.ndarray,
    indicator: np.ndarray,
    config: TrainConfig,
    steps: int,
    label: str,
    result: TrainResult,
    policy: bool,
    log: Callable[[str], None],
) -> None:
    params = [p for n, p in models.named_parameters() if policy or not n.startswith("policy.")]
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda i: (
            min(1.0, (i + 1) / warmup) * 0.5 * (1.0 + np.cos(np.pi * min(1.0, i / max(1, steps))))
        ),
    )
    wm = models.world_model
    horizons = list(wm.future_horizons)
    cube_center = torch.tensor(CUBE_CENTER)
    progress = Progress(steps, label, log, every_s=config.log_every_s)
    window: dict[str, list[float]] = {}
    models.train()
    for step in range(1, steps + 1):
        idx = batcher.draw()
        images = batcher.images(idx, augment=True)
        q = torch.from_numpy(samples.state[idx])
        latent = wm.encode(images, q)
        losses: dict[str, torch.Tensor] = {}
        value = wm.value(latent)[:, 0]
        losses["value"] = F.mse_loss(value, torch.from_numpy(samples.value_target[idx]))

        pick = batcher.rng.integers(0, len(horizons), size=len(idx))
        future_idx = samples.future[idx, pick]
        with torch.no_grad():
            target = wm.encode(
                batcher.images(future_idx, augment=True),
                torch.from_numpy(samples.state[future_idx]),
            )
        chunk = torch.from_numpy(samples.chunks[idx])
        predicted = wm.predict_future(latent, chunk)
        stacked = torch.stack([predicted[h] for h in horizons], dim=1)
        chosen = stacked[torch.arange(len(idx)), torch.from_numpy(pick)]
        losses["future"] = F.mse_loss(chosen, target)

        env = samples.env_target[idx]
        known = np.isfinite(env[:, 0])
        if known.any():
            probe = models.cube_probe(latent[torch.from_numpy(known)].mean(dim=1))
            goal = (torch.from_numpy(env[known]) - cube_center) / CUBE_SCALE
            losses["cube"] = F.mse_loss(probe, goal)

        total = config.value_weight * losses["value"] + config.future_weight * losses["future"]
        if "cube" in losses:
            total = total + config.cube_weight * losses["cube"]
        if policy:
            b = len(idx)
            mask = batcher.rng.uniform(size=(b, 1)) < config.latent_mask_probability
            pred = models.policy.conditioned_fractions(
                latent,
                q,
                torch.from_numpy(indicator[idx][:, None]),
                torch.from_numpy(mask.astype(np.float32)),
            )
            losses["policy"] = F.mse_loss(pred, torch.from_numpy(fractions[idx]))
            total = total + config.policy_weight * losses["policy"]
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        for key, loss in losses.items():
            value_f = float(loss.detach())
            result.history.setdefault(f"{label}/{key}", []).append(value_f)
            window.setdefault(key, []).append(value_f)
        result.steps += 1
        if progress.due(step):
            text = " ".join(f"{k} {np.mean(v):.4f}" for k, v in window.items())
            progress.update(step, f"loss {text}", force=True)
            window = {}
    models.eval()


# --------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ExportedPair:
    """Cards written by ``export_models``."""

    world_model: Path
    policy: Path
    policy_no_wm: Path


def export_models(models: RampModels, out_dir: Path, seed: int = 0) -> ExportedPair:
    """Write the ONNX models with their cards into ``out_dir`` (each verified against torch)."""
    cfg = models.config
    models.eval()
    d = len(cfg.joint_names)
    gen = torch.Generator().manual_seed(seed)
    size = cfg.image_size
    images = torch.rand((1, len(cfg.cameras), 3, size, size), generator=gen) * 2.0 - 1.0
    q = torch.tensor(
        [(lo + hi) / 2 for lo, hi in zip(cfg.joint_lower, cfg.joint_upper, strict=True)]
    ).reshape(1, d)
    with torch.no_grad():
        latent, _ = models.world_model(images, q)
    prefix = cfg.model_prefix
    wm_card = export_onnx(
        models.world_model,
        (images, q),
        out_dir / WORLD_MODEL_FILE,
        CardFields(
            kind="world_model",
            model_id=f"{prefix}-wm",
            joints=cfg.joint_names,
            cameras=cfg.cameras,
            inputs={"images": "images", "joint_state": "joint_state"},
            outputs={"latent": "wm_state", "value": "value"},
            image=models.image_spec(),
        ),
        seed=seed,
    )
    chunk = ChunkSpec(length=cfg.horizon, step_dt=cfg.step_dt)
    policy_card = export_onnx(
        models.policy,
        (latent, q),
        out_dir / POLICY_FILE,
        CardFields(
            kind="policy",
            model_id=f"{prefix}-policy",
            joints=cfg.joint_names,
            cameras=cfg.cameras,
            inputs={"wm_state": "wm_state", "joint_state": "joint_state"},
            outputs={"action_chunk": "action_chunk"},
            chunk=chunk,
        ),
        seed=seed,
    )
    no_wm_card = export_onnx(
        PolicyWithoutWorldModel(models.policy),
        (q,),
        out_dir / POLICY_NO_WM_FILE,
        CardFields(
            kind="policy",
            model_id=f"{prefix}-policy-nowm",
            joints=cfg.joint_names,
            cameras=(),
            inputs={"joint_state": "joint_state"},
            outputs={"action_chunk": "action_chunk"},
            chunk=chunk,
        ),
        seed=seed,
    )
    return ExportedPair(wm_card, policy_card, no_wm_card)


def write_report(
    out_dir: Path,
    result: TrainResult,
    config: TrainConfig,
    models: RampModels,
    exported: ExportedPair,
    data: dict,
) -> Path:
    """``training_report.json`` + ``training_curves.png`` (loss curves) in ``out_dir``."""
    from ramp_models.model_card import ModelCard

    ids = {
        name: ModelCard.load(path).model_id
        for name, path in (
            ("world_model", exported.world_model),
            ("policy", exported.policy),
            ("policy_no_wm", exported.policy_no_wm),
        )
    }
    final = {
        key: float(np.mean(values[-max(1, len(values) // 20) :]))
        for key, values in result.history.items()
    }
    report = {
        "producer": f"ramp_training {__version__}",
        "model_ids": ids,
        "cards": {k: str(v) for k, v in asdict(exported).items()},
        "train_config": asdict(config),
        "model_config": asdict(models.config),
        "data": data,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "final_losses": final,
        "indicator_positive_fraction": result.indicator_positive_fraction,
        "advantage": result.advantage,
        "curves": CURVES_FILE,
    }
    path = out_dir / REPORT_FILE
    path.write_text(json.dumps(report, indent=2))
    plot_curves(result.history, out_dir / CURVES_FILE)
    return path


def plot_curves(history: dict[str, list[float]], path: Path) -> None:
    """Loss curves (log scale, moving average over ~2% of the steps) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(history)
    cols = min(3, max(1, len(keys)))
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys, strict=False):
        values = np.asarray(history[key])
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(len(values)), values, color="0.8", linewidth=0.5)
        ax.plot(np.arange(window - 1, len(values)), smooth, color="C0")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def with_overrides(config: TrainConfig, **overrides: object) -> TrainConfig:
    """``config`` with the given fields replaced (None values ignored)."""
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def default_model_config(
    joint_names: Sequence[str],
    cameras: Sequence[str],
    joint_lower: Sequence[float],
    joint_upper: Sequence[float],
    max_velocity: Sequence[float],
    **overrides: object,
) -> ModelConfig:
    """A model config for a robot (sizes from ``overrides`` or the defaults)."""
    return ModelConfig(
        joint_names=tuple(joint_names),
        cameras=tuple(cameras),
        joint_lower=tuple(float(x) for x in joint_lower),
        joint_upper=tuple(float(x) for x in joint_upper),
        max_velocity=tuple(float(x) for x in max_velocity),
        **{k: v for k, v in overrides.items() if v is not None},  # type: ignore[arg-type]
    )
