"""An untrained model pair shaped for a robot config: the policy holds the measured pose.

For a robot that has no trained models yet (e.g. the G1 before its first demonstrations), this
exports a world model and a chunk policy whose cards match the robot's joints and cameras, so the
whole stack runs end to end on that robot (or its fake) while holding position: the policy's
output layer starts at zero, so every chunk is the current joint state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from ramp_models.model_card import ChunkSpec, ImageSpec
from ramp_training.export import CardFields, export_onnx
from ramp_training.models import ChunkPolicy, WorldModelEncoder

IMAGE_SIZE = 96
TOKENS, DIM, HORIZON, STEP_DT = 8, 32, 20, 0.02


def export_holding_pair(robot_config: Path, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Export world_model/policy (.onnx + card) for the robot described by ``robot_config``.

    ``robot_config`` is a ramp_bringup robot config (ROS params YAML); its ``/**`` section gives
    joint_names, position_lower/upper, max_velocity and camera_names. Returns the two card paths.
    """
    shared = yaml.safe_load(Path(robot_config).read_text())["/**"]["ros__parameters"]
    joints = list(shared["joint_names"])
    cameras = list(shared["camera_names"])
    lower, upper = list(shared["position_lower"]), list(shared["position_upper"])
    torch.manual_seed(seed)
    world_model = WorldModelEncoder(
        num_cameras=len(cameras),
        image_height=IMAGE_SIZE,
        image_width=IMAGE_SIZE,
        joint_dim=len(joints),
        tokens=TOKENS,
        dim=DIM,
        action_horizon=HORIZON,
        joint_lower=lower,
        joint_upper=upper,
    ).eval()
    policy = ChunkPolicy(
        joint_lower=lower,
        joint_upper=upper,
        max_velocity=[min(v, 1.0) for v in shared["max_velocity"]],
        step_dt=STEP_DT,
        tokens=TOKENS,
        dim=DIM,
        horizon=HORIZON,
    ).eval()
    images = torch.rand((1, len(cameras), 3, IMAGE_SIZE, IMAGE_SIZE)) * 2.0 - 1.0
    home = torch.from_numpy(((np.array(lower) + np.array(upper)) / 2).astype(np.float32))[None]
    with torch.no_grad():
        latent, _ = world_model(images, home)
    out = Path(out_dir)
    name = Path(robot_config).stem
    wm_card = export_onnx(
        world_model,
        (images, home),
        out / "world_model.onnx",
        CardFields(
            kind="world_model",
            model_id=f"{name}-untrained-wm",
            joints=joints,
            cameras=cameras,
            inputs={"images": "images", "joint_state": "joint_state"},
            outputs={"latent": "wm_state", "value": "value"},
            image=ImageSpec(height=IMAGE_SIZE, width=IMAGE_SIZE),
        ),
        seed=seed,
    )
    policy_card = export_onnx(
        policy,
        (latent, home),
        out / "policy.onnx",
        CardFields(
            kind="policy",
            model_id=f"{name}-untrained-policy",
            joints=joints,
            cameras=cameras,
            inputs={"wm_state": "wm_state", "joint_state": "joint_state"},
            outputs={"action_chunk": "action_chunk"},
            chunk=ChunkSpec(length=HORIZON, step_dt=STEP_DT),
        ),
        seed=seed,
    )
    return wm_card, policy_card
