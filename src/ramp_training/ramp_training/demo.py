"""A demo model pair for the PiPER arm: a random world model and a policy that cycles waypoints.

The policy is trained by behaviour cloning on a scripted "waypoint cycle": from any joint state
near the cycle, the target chunk moves in a straight joint-space line toward the next waypoint at
no more than 0.5 rad/s (0.05 m/s for the gripper), then on to the one after. Run closed loop, the
exported policy makes the arm go round the waypoints. The world model stays randomly initialised
(its latent is an input the policy learns to ignore); real training comes from recorded episodes.

Units: joint positions rad (gripper m) in ``PIPER_JOINTS`` order; times in s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ramp_models.model_card import ChunkSpec, ImageSpec
from ramp_models.onnx_runtime import CPU, LoadedModel, load_model
from ramp_models.preprocess import ImagePreprocessor
from ramp_training.export import CardFields, export_onnx
from ramp_training.models import ChunkPolicy, WorldModelEncoder

PIPER_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper")
PIPER_LOWER = np.array([-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0])
PIPER_UPPER = np.array([2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07])
PIPER_HOME = np.array([0.0, 1.3, -1.45, 0.0, 1.0, 0.0, 0.04])
"""The simulated arm's ready pose (ramp_robots sim: gripper tip ~0.12 m above the table)."""
DEMO_CAMERAS = ("front", "wrist")

# Around home, each joint moving 0.1-0.4 rad (gripper 1-2 cm) between neighbours; checked in the
# simulated scene to keep the gripper 0.12-0.33 m above the table (no contact, no tracking error).
DEMO_WAYPOINTS = np.array(
    [
        [0.0, 1.3, -1.45, 0.0, 1.0, 0.0, 0.04],
        [0.4, 1.45, -1.5, 0.3, 1.0, 0.4, 0.06],
        [0.0, 1.6, -1.8, 0.0, 1.2, -0.3, 0.02],
        [-0.4, 1.45, -1.5, -0.3, 1.0, 0.3, 0.05],
    ]
)
DEMO_SPEED = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.05])
"""Scripted demo speed limit per joint (rad/s, gripper m/s)."""
POLICY_MAX_VELOCITY = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.1)
"""The policy's hard per-joint speed bound (rad/s, gripper m/s): tanh * this * step_dt per step."""

WORLD_MODEL_FILE = "world_model.onnx"
POLICY_FILE = "policy.onnx"


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and training settings of the demo pair (defaults: ~15 s training on one core)."""

    seed: int = 0
    steps: int = 2500
    batch_size: int = 256
    samples: int = 32768
    latent_bank: int = 512
    learning_rate: float = 2e-3
    image_size: int = 96
    tokens: int = 8
    dim: int = 32
    horizon: int = 20
    step_dt: float = 0.02
    policy_hidden: int = 256
    log_every: int = 500
    backbone: str = "small"
    """Image encoder: ``small`` (the demo's, well under 1 ms) or ``resnet`` (realistic cost)."""
    backbone_widths: tuple[int, ...] = (64, 128, 256, 512)
    """Stage widths of the ``resnet`` backbone."""
    model_id: str = "demo"
    """Prefix of the exported model ids (``<model_id>-wm``, ``<model_id>-policy``)."""


REFERENCE_CONFIG = DemoConfig(
    steps=600,
    batch_size=128,
    latent_bank=128,
    image_size=224,
    tokens=16,
    dim=64,
    policy_hidden=2048,
    log_every=100,
    backbone="resnet",
    model_id="reference",
)
"""The reference pair of realistic cost (``ramp-train export-demo --preset reference``): a
ResNet-style encoder on 2 x 224 x 224 frames (~20-60 ms per call on one core of the 2-core
development machine) and a 2048-wide policy head (a few ms): the cost class of real encoders, so
asynchronous chunking and RTC splicing run against real inference delays. Trained like the demo
pair (same scripted behaviour), fewer steps."""


@dataclass(frozen=True)
class DemoResult:
    world_model_card: Path
    policy_card: Path
    final_loss: float
    """Mean squared error of the per-step motion fractions over the last logging window."""
    train_seconds: float
    report: Path | None = None
    """``training_report.json`` (loss per step, settings); ``training_curves.png`` beside it."""


# --------------------------------------------------------------------------- scripted demo
def _segment_targets(q: np.ndarray, waypoints: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """Index of the waypoint each state heads for: the end of the nearest cycle segment.

    Distances are in seconds at the demo speed, so the gripper (m) weighs like the arm (rad).
    """
    k = len(waypoints)
    seg = (np.roll(waypoints, -1, axis=0) - waypoints) / speed  # (K, D)
    rel = (q[:, None, :] - waypoints[None]) / speed  # (B, K, D)
    t = np.clip(np.sum(rel * seg, axis=-1) / np.sum(seg * seg, axis=-1), 0.0, 1.0)
    dist = np.linalg.norm(rel - t[..., None] * seg, axis=-1)
    return (np.argmin(dist, axis=1) + 1) % k


def scripted_chunks(
    q: np.ndarray,
    horizon: int,
    step_dt: float,
    waypoints: np.ndarray = DEMO_WAYPOINTS,
    speed: np.ndarray = DEMO_SPEED,
) -> np.ndarray:
    """Demo chunks (B, H, D) for states ``q`` (B, D): straight lines from waypoint to waypoint.

    Each step moves toward the current target waypoint with the slowest-to-arrive joint at its
    ``speed``; on arrival the target becomes the next waypoint of the cycle.
    """
    q = np.asarray(q, dtype=np.float64)
    k = len(waypoints)
    target = _segment_targets(q, waypoints, speed)
    time_to_go = np.max(np.abs(waypoints[target] - q) / speed, axis=-1)
    target = np.where(time_to_go < step_dt, (target + 1) % k, target)
    current = q.copy()
    chunks = np.empty((q.shape[0], horizon, q.shape[1]))
    for step in range(horizon):
        diff = waypoints[target] - current
        time_to_go = np.max(np.abs(diff) / speed, axis=-1)
        fraction = np.minimum(1.0, step_dt / np.maximum(time_to_go, 1e-9))
        current = current + diff * fraction[:, None]
        target = np.where(time_to_go <= step_dt, (target + 1) % k, target)
        chunks[:, step] = current
    return chunks


def sample_states(
    rng: np.random.Generator, n: int, waypoints: np.ndarray = DEMO_WAYPOINTS
) -> np.ndarray:
    """States along the cycle with noise (70% close, 30% further off), within PiPER limits."""
    k = len(waypoints)
    seg = rng.integers(0, k, size=n)
    t = rng.uniform(0.0, 1.0, size=n)[:, None]
    q = waypoints[seg] + t * (np.roll(waypoints, -1, axis=0)[seg] - waypoints[seg])
    scale = np.where(rng.uniform(size=n) < 0.7, 0.02, 0.12)[:, None]
    noise = rng.standard_normal(q.shape) * scale * (DEMO_SPEED / DEMO_SPEED[0])
    return np.clip(q + noise, PIPER_LOWER, PIPER_UPPER)


# --------------------------------------------------------------------------- models
def build_world_model(config: DemoConfig) -> WorldModelEncoder:
    return WorldModelEncoder(
        num_cameras=len(DEMO_CAMERAS),
        image_height=config.image_size,
        image_width=config.image_size,
        joint_dim=len(PIPER_JOINTS),
        tokens=config.tokens,
        dim=config.dim,
        action_horizon=config.horizon,
        joint_lower=PIPER_LOWER.tolist(),
        joint_upper=PIPER_UPPER.tolist(),
        backbone=config.backbone,
        backbone_widths=config.backbone_widths,
    )


def build_policy(config: DemoConfig) -> ChunkPolicy:
    return ChunkPolicy(
        joint_lower=PIPER_LOWER.tolist(),
        joint_upper=PIPER_UPPER.tolist(),
        max_velocity=POLICY_MAX_VELOCITY,
        step_dt=config.step_dt,
        tokens=config.tokens,
        dim=config.dim,
        horizon=config.horizon,
        hidden=config.policy_hidden,
    )


def _latent_bank(
    world_model: WorldModelEncoder, config: DemoConfig, rng: np.random.Generator
) -> torch.Tensor:
    """World-model latents of random images and states: the policy learns they carry nothing."""
    latents = []
    with torch.no_grad():
        for start in range(0, config.latent_bank, 64):
            n = min(64, config.latent_bank - start)
            shape = (n, len(DEMO_CAMERAS), 3, config.image_size, config.image_size)
            images = torch.from_numpy(rng.uniform(-1.0, 1.0, size=shape).astype(np.float32))
            q = torch.from_numpy(sample_states(rng, n).astype(np.float32))
            latents.append(world_model.encode(images, q))
    return torch.cat(latents)


def train_policy(
    policy: ChunkPolicy,
    world_model: WorldModelEncoder,
    config: DemoConfig,
    log: Callable[[str], None] = print,
    history: list[float] | None = None,
) -> float:
    """Behaviour cloning on scripted chunks; returns the final loss (see DemoResult).

    ``history``, when given, receives the loss of every step.
    """
    rng = np.random.default_rng(config.seed)
    q = sample_states(rng, config.samples)
    chunks = scripted_chunks(q, config.horizon, config.step_dt)
    steps = np.diff(np.concatenate([q[:, None], chunks], axis=1), axis=1)
    max_step = policy.max_step.numpy().astype(np.float64)
    fractions = torch.from_numpy((steps / max_step).astype(np.float32))
    states = torch.from_numpy(q.astype(np.float32))
    bank = _latent_bank(world_model, config, rng)

    optimiser = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=max(config.steps, 1), pct_start=0.1
    )
    generator = torch.Generator().manual_seed(config.seed)
    policy.train()
    start, window, final = time.perf_counter(), [], float("nan")
    for step in range(1, config.steps + 1):
        idx = torch.randint(0, config.samples, (config.batch_size,), generator=generator)
        lat = bank[torch.randint(0, len(bank), (config.batch_size,), generator=generator)]
        pred = policy.step_fractions(lat, states[idx])
        loss = torch.nn.functional.mse_loss(pred, fractions[idx])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        window.append(loss.item())
        if history is not None:
            history.append(window[-1])
        if step % config.log_every == 0 or step == config.steps:
            log(
                f"policy step {step}/{config.steps}  loss {np.mean(window):.5f}  "
                f"({time.perf_counter() - start:.1f} s)"
            )
            final = float(np.mean(window))
            window = []
    policy.eval()
    return final


# --------------------------------------------------------------------------- export
def export_demo(
    out_dir: str | Path, config: DemoConfig | None = None, log: Callable[[str], None] = print
) -> DemoResult:
    """Build (seeded), train and export the demo pair into ``out_dir``; cards verified.

    Writes world_model.onnx/.yaml and policy.onnx/.yaml. Uses one torch thread while running.
    """
    config = config or DemoConfig()
    out = Path(out_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(config.seed)
        world_model = build_world_model(config).eval()
        policy = build_policy(config)
        log(
            f"world model {sum(p.numel() for p in world_model.parameters())} parameters, "
            f"policy {sum(p.numel() for p in policy.parameters())} parameters"
        )
        start = time.perf_counter()
        history: list[float] = []
        loss = train_policy(policy, world_model, config, log, history)
        train_seconds = time.perf_counter() - start

        gen = torch.Generator().manual_seed(config.seed)
        images = torch.rand(
            (1, len(DEMO_CAMERAS), 3, config.image_size, config.image_size), generator=gen
        )
        images = images * 2.0 - 1.0
        home = torch.from_numpy(PIPER_HOME.astype(np.float32))[None]
        with torch.no_grad():
            latent, _ = world_model(images, home)
        image_spec = ImageSpec(height=config.image_size, width=config.image_size)
        wm_card = export_onnx(
            world_model,
            (images, home),
            out / WORLD_MODEL_FILE,
            CardFields(
                kind="world_model",
                model_id=f"{config.model_id}-wm",
                joints=PIPER_JOINTS,
                cameras=DEMO_CAMERAS,
                inputs={"images": "images", "joint_state": "joint_state"},
                outputs={"latent": "wm_state", "value": "value"},
                image=image_spec,
            ),
            seed=config.seed,
        )
        log(f"wrote {wm_card}")
        policy_card = export_onnx(
            policy,
            (latent, home),
            out / POLICY_FILE,
            CardFields(
                kind="policy",
                model_id=f"{config.model_id}-policy",
                joints=PIPER_JOINTS,
                cameras=DEMO_CAMERAS,
                inputs={"wm_state": "wm_state", "joint_state": "joint_state"},
                outputs={"action_chunk": "action_chunk"},
                chunk=ChunkSpec(length=config.horizon, step_dt=config.step_dt),
            ),
            seed=config.seed,
        )
        log(f"wrote {policy_card}")
        report = write_demo_report(out, config, history, loss, train_seconds)
        log(f"wrote {report} and its loss curve")
    finally:
        torch.set_num_threads(threads)
    return DemoResult(wm_card, policy_card, loss, train_seconds, report)


def write_demo_report(
    out_dir: Path, config: DemoConfig, history: list[float], final_loss: float, seconds: float
) -> Path:
    """``training_report.json`` (settings, final loss, loss per step) and ``training_curves.png``
    in ``out_dir``, the files every ``ramp-train`` training run leaves (``train.write_report``)."""
    import json
    from dataclasses import asdict

    from ramp_training.train import CURVES_FILE, REPORT_FILE, plot_curves

    key = "policy/behaviour_cloning"
    doc = {
        "producer": "ramp-train export-demo",
        "demo_config": asdict(config),
        "steps": len(history),
        "seconds": round(seconds, 1),
        "final_losses": {key: final_loss},
        "curves": CURVES_FILE,
        "history": {key: [round(v, 8) for v in history]},
    }
    path = Path(out_dir) / REPORT_FILE
    path.write_text(json.dumps(doc, indent=2))
    plot_curves({key: history}, Path(out_dir) / CURVES_FILE)
    return path


# --------------------------------------------------------------------------- closed loop
def closed_loop_rollout(
    policy: LoadedModel,
    world_model: LoadedModel,
    q0: Sequence[float],
    iterations: int,
    execute_steps: int = 10,
    seed: int = 0,
) -> np.ndarray:
    """Run the ONNX pair closed loop on a perfect robot; -> joint states (iterations + 1, D).

    Each iteration feeds fixed random camera frames (RGB 120x160, resized per the card) and the
    current state to the world model, its latent and the state to the policy, and takes the
    chunk's step ``execute_steps - 1`` (``execute_steps * step_dt`` s later) as the next state.
    """
    if world_model.card.image is None:
        raise ValueError(f"{world_model.card.source}: world model card has no image section")
    rng = np.random.default_rng(seed)
    frames = [
        rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8) for _ in world_model.card.cameras
    ]
    images = ImagePreprocessor(world_model.card.image, world_model.card.cameras)(frames)
    q = np.asarray(q0, dtype=np.float32)[None]
    states = [q[0].copy()]
    for _ in range(iterations):
        latent = world_model.run({"images": images, "joint_state": q})["wm_state"]
        chunk = policy.run({"wm_state": latent, "joint_state": q})["action_chunk"]
        q = np.ascontiguousarray(chunk[:, execute_steps - 1])
        states.append(q[0].copy())
    return np.stack(states)


def load_demo(out_dir: str | Path) -> tuple[LoadedModel, LoadedModel]:
    """(world model, policy) from an export-demo folder, on CPU with one thread."""
    out = Path(out_dir)
    world_model = load_model(out / "world_model.yaml", [CPU], expected_kind="world_model")
    policy = load_model(out / "policy.yaml", [CPU], expected_kind="policy")
    return world_model, policy


def waypoint_distances(
    trajectory: np.ndarray, waypoints: np.ndarray = DEMO_WAYPOINTS
) -> np.ndarray:
    """Closest approach of the trajectory to each waypoint (max-norm over joints, rad / m)."""
    diff = np.abs(trajectory[:, None, :] - waypoints[None])
    return np.min(np.max(diff / (DEMO_SPEED / DEMO_SPEED[0]), axis=-1), axis=0)
