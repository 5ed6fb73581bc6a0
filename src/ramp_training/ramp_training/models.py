"""Torch reference models: a world-model encoder and a chunked-action policy.

Both are small enough to run in a few milliseconds on one CPU core through onnxruntime, and both
export to ONNX (opset 17, fixed batch 1) with plain ops (Conv, MatMul, Softmax, LayerNormalization)
that TensorRT also takes.

Units: joint positions in rad (revolute) or m (gripper), in the model card's joint order;
images are normalised per the card (``x = (pixel / 255 - 0.5) / 0.5``), shape (B, N, 3, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _joint_normaliser(
    joint_dim: int, lower: Sequence[float] | None, upper: Sequence[float] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(center, half_range) so that (q - center) / half_range is in [-1, 1] inside the limits."""
    if lower is None or upper is None:
        return torch.zeros(joint_dim), torch.ones(joint_dim)
    lo = torch.as_tensor(lower, dtype=torch.float32)
    hi = torch.as_tensor(upper, dtype=torch.float32)
    if lo.shape != (joint_dim,) or hi.shape != (joint_dim,) or bool(torch.any(hi <= lo)):
        raise ValueError(f"joint limits must be {joint_dim} pairs with lower < upper")
    return (hi + lo) / 2, (hi - lo) / 2


class _AttentionBlock(nn.Module):
    """Pre-norm transformer block with explicit matmul attention (exports to plain ONNX ops)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio), nn.GELU(), nn.Linear(dim * mlp_ratio, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out)
    )


class ResidualBackbone(nn.Module):
    """A ResNet-style image encoder of realistic cost (the reference pair's; ~30 ms on one CPU
    core at 2 x 160 x 160): a strided stem, then per stage a strided 3x3 conv and one residual
    block of two 3x3 convs, batch-normalised (folded into the convs by onnxruntime)."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), out_dim: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, widths[0], stride=2), nn.ReLU())
        ins = [widths[0], *widths[:-1]]
        self.downs = nn.ModuleList(
            nn.Sequential(_conv_bn(c_in, c_out, stride=2), nn.ReLU())
            for c_in, c_out in zip(ins, widths, strict=True)
        )
        self.residuals = nn.ModuleList(
            nn.Sequential(_conv_bn(w, w, stride=1), nn.ReLU(), _conv_bn(w, w, stride=1))
            for w in widths
        )
        self.out = nn.Sequential(nn.Conv2d(widths[-1], out_dim, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for down, residual in zip(self.downs, self.residuals, strict=True):
            x = down(x)
            x = torch.relu(x + residual(x))
        return self.out(x)


class WorldModelEncoder(nn.Module):
    """Camera images + joint state -> T latent tokens of dim C, plus a scalar value.

    Each camera goes through the same conv encoder (shared weights) into ``tokens_per_camera``
    tokens; with one joint-state token and T learned query tokens they pass a small transformer,
    whose query outputs are the latent (B, T, C). ``forward`` returns (latent, value) only (what
    is exported); ``predict_future`` holds the future-latent heads used in training.
    """

    def __init__(
        self,
        num_cameras: int = 2,
        image_height: int = 96,
        image_width: int = 96,
        joint_dim: int = 7,
        tokens: int = 8,
        dim: int = 32,
        heads: int = 4,
        layers: int = 2,
        tokens_per_camera: int = 4,
        future_horizons: Sequence[int] = (1, 5, 10),
        action_horizon: int = 20,
        joint_lower: Sequence[float] | None = None,
        joint_upper: Sequence[float] | None = None,
        backbone: str = "small",
        backbone_widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        """``backbone``: ``small`` (the demo's 4-conv encoder, well under 1 ms) or ``resnet``
        (:class:`ResidualBackbone` with ``backbone_widths``, the reference pair's cost)."""
        super().__init__()
        self.num_cameras = num_cameras
        self.image_size = (image_height, image_width)
        self.joint_dim = joint_dim
        self.tokens = tokens
        self.dim = dim
        self.tokens_per_camera = tokens_per_camera
        self.future_horizons = tuple(int(h) for h in future_horizons)
        self.action_horizon = action_horizon
        center, half_range = _joint_normaliser(joint_dim, joint_lower, joint_upper)
        self.register_buffer("joint_center", center)
        self.register_buffer("joint_half_range", half_range)

        if backbone not in ("small", "resnet"):
            raise ValueError(f"backbone {backbone!r}: one of small, resnet")
        self.conv = (
            ResidualBackbone(backbone_widths, dim)
            if backbone == "resnet"
            else nn.Sequential(
                nn.Conv2d(3, 16, 5, stride=2, padding=2),
                nn.GELU(),
                nn.Conv2d(16, 32, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(32, 32, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(32, dim, 3, stride=2, padding=1),
                nn.GELU(),
            )
        )
        with torch.no_grad():
            feat = self.conv(torch.zeros(1, 3, image_height, image_width)).numel()
        self.camera_tokens = nn.Linear(feat, tokens_per_camera * dim)
        self.camera_embed = nn.Parameter(torch.randn(num_cameras * tokens_per_camera, dim) * 0.02)
        self.joint_token = nn.Sequential(nn.Linear(joint_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.queries = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[_AttentionBlock(dim, heads) for _ in range(layers)])
        self.out_norm = nn.LayerNorm(dim)
        self.value_head = nn.Sequential(nn.Linear(dim, 64), nn.GELU(), nn.Linear(64, 1))
        self.action_embed = nn.Linear(action_horizon * joint_dim, dim)
        self.future_heads = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            for _ in self.future_horizons
        )

    def encode(self, images: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        """Images (B, N, 3, H, W) normalised, joint state (B, D) -> latent (B, T, C)."""
        b, n = images.shape[0], images.shape[1]
        feat = self.conv(images.reshape(b * n, *images.shape[2:])).reshape(b, n, -1)
        cam = self.camera_tokens(feat).reshape(b, n * self.tokens_per_camera, self.dim)
        cam = cam + self.camera_embed
        q = (joint_state - self.joint_center) / self.joint_half_range
        joint = self.joint_token(q).unsqueeze(1)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)
        x = self.blocks(torch.cat([queries, cam, joint], dim=1))
        return self.out_norm(x[:, : self.tokens])

    def value(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent (B, T, C) -> value (B, 1)."""
        return self.value_head(latent.mean(dim=1))

    def forward(
        self, images: torch.Tensor, joint_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, joint_state) -> (latent (B, T, C), value (B, 1)); the exported graph."""
        latent = self.encode(images, joint_state)
        return latent, self.value(latent)

    def predict_future(
        self, latent: torch.Tensor, action_chunk: torch.Tensor | None = None
    ) -> dict[int, torch.Tensor]:
        """Predicted latents (B, T, C) at each of ``future_horizons`` steps ahead.

        ``action_chunk`` (B, action_horizon, D), absolute joint targets, conditions the
        prediction on what the robot is about to do (zeros when not given).
        """
        b = latent.shape[0]
        if action_chunk is None:
            act = latent.new_zeros(b, self.dim)
        else:
            act = self.action_embed(action_chunk.reshape(b, -1))
        x = latent + act.unsqueeze(1)
        heads = zip(self.future_horizons, self.future_heads, strict=True)
        return {h: latent + head(x) for h, head in heads}


class ChunkPolicy(nn.Module):
    """(latent (B, T, C), joint state (B, D)) -> H x D absolute joint targets (B, H, D).

    The chunk is ``joint_state + cumsum(tanh(.) * max_velocity * step_dt)`` clipped to the joint
    limits: every step moves each joint by at most its velocity limit times ``step_dt``, so even
    an untrained or badly trained policy cannot command a far jump. The output head starts at
    zero, so an untrained policy holds the current position.
    """

    def __init__(
        self,
        joint_lower: Sequence[float],
        joint_upper: Sequence[float],
        max_velocity: Sequence[float],
        step_dt: float = 0.02,
        tokens: int = 8,
        dim: int = 32,
        horizon: int = 20,
        hidden: int = 256,
    ) -> None:
        super().__init__()
        joint_dim = len(joint_lower)
        center, half_range = _joint_normaliser(joint_dim, joint_lower, joint_upper)
        vmax = torch.as_tensor(max_velocity, dtype=torch.float32)
        if vmax.shape != (joint_dim,) or bool(torch.any(vmax <= 0)) or step_dt <= 0:
            raise ValueError(f"max_velocity must be {joint_dim} values > 0 and step_dt > 0")
        self.joint_dim = joint_dim
        self.horizon = horizon
        self.tokens = tokens
        self.dim = dim
        self.step_dt = float(step_dt)
        self.register_buffer("joint_center", center)
        self.register_buffer("joint_half_range", half_range)
        self.register_buffer("joint_lower", center - half_range)
        self.register_buffer("joint_upper", center + half_range)
        self.register_buffer("max_step", vmax * float(step_dt))
        # Cumulative sum as a matmul with a lower-triangular matrix: runs on every backend.
        self.register_buffer("cumulative", torch.tril(torch.ones(horizon, horizon)))

        self.latent_norm = nn.LayerNorm(dim)
        self.latent_proj = nn.Linear(tokens * dim, hidden)
        self.joint_proj = nn.Linear(joint_dim, hidden)
        self.trunk = nn.Sequential(
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
        )
        self.head = nn.Linear(hidden, horizon * joint_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def step_fractions(self, latent: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        """Per-step motion as a fraction of the per-step limit, (B, H, D) in (-1, 1)."""
        b = latent.shape[0]
        z = self.latent_proj(self.latent_norm(latent).reshape(b, -1))
        q = (joint_state - self.joint_center) / self.joint_half_range
        h = self.trunk(z + self.joint_proj(q))
        return torch.tanh(self.head(h)).reshape(b, self.horizon, self.joint_dim)

    def forward(self, latent: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        """Absolute joint targets (B, H, D); step k is for observation time + (k+1)*step_dt."""
        deltas = self.step_fractions(latent, joint_state) * self.max_step
        chunk = joint_state.unsqueeze(1) + self.cumulative @ deltas
        return torch.maximum(torch.minimum(chunk, self.joint_upper), self.joint_lower)


class ConditionedChunkPolicy(ChunkPolicy):
    """ChunkPolicy conditioned on an advantage/intervention indicator, with a maskable latent.

    Training feeds ``indicator`` 1 for behaviour to imitate (expert, operator corrections,
    successful or value-improving steps) and 0 for the rest, and replaces the world-model latent
    by a learned mask token at random, so the same weights also act without a world model.
    ``forward`` (what is exported) is the deployed behaviour: indicator 1, latent used.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.mask_token = nn.Parameter(torch.zeros(self.tokens, self.dim))
        self.indicator_proj = nn.Linear(1, self.latent_proj.out_features)

    def conditioned_fractions(
        self,
        latent: torch.Tensor,
        joint_state: torch.Tensor,
        indicator: torch.Tensor,
        latent_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Per-step motion fractions (B, H, D) in (-1, 1).

        ``indicator`` (B, 1) in [0, 1]; ``latent_mask`` (B, 1) in [0, 1], 1 = latent replaced by
        the mask token.
        """
        b = latent.shape[0]
        m = latent_mask.reshape(b, 1, 1)
        latent = m * self.mask_token.unsqueeze(0) + (1.0 - m) * latent
        z = self.latent_proj(self.latent_norm(latent).reshape(b, -1))
        q = (joint_state - self.joint_center) / self.joint_half_range
        h = self.trunk(z + self.joint_proj(q) + self.indicator_proj(indicator))
        return torch.tanh(self.head(h)).reshape(b, self.horizon, self.joint_dim)

    def chunk_from_fractions(self, joint_state: torch.Tensor, fractions: torch.Tensor):
        """Absolute joint targets (B, H, D) from fractions, clipped to the joint limits."""
        chunk = joint_state.unsqueeze(1) + self.cumulative @ (fractions * self.max_step)
        return torch.maximum(torch.minimum(chunk, self.joint_upper), self.joint_lower)

    def conditioned(
        self,
        latent: torch.Tensor,
        joint_state: torch.Tensor,
        indicator: float = 1.0,
        mask_latent: bool = False,
    ) -> torch.Tensor:
        """Absolute joint targets (B, H, D) with a fixed indicator and latent mask."""
        b = joint_state.shape[0]
        ind = joint_state.new_full((b, 1), float(indicator))
        mask = joint_state.new_full((b, 1), 1.0 if mask_latent else 0.0)
        return self.chunk_from_fractions(
            joint_state, self.conditioned_fractions(latent, joint_state, ind, mask)
        )

    def step_fractions(self, latent: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        b = joint_state.shape[0]
        return self.conditioned_fractions(
            latent, joint_state, joint_state.new_ones(b, 1), joint_state.new_zeros(b, 1)
        )


class PolicyWithoutWorldModel(nn.Module):
    """Export wrapper: the conditioned policy with its latent replaced by the mask token.

    Takes only the joint state (B, D), so its card has no ``wm_state`` input and the policy node
    runs it without a world model.
    """

    def __init__(self, policy: ConditionedChunkPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, joint_state: torch.Tensor) -> torch.Tensor:
        b = joint_state.shape[0]
        latent = self.policy.mask_token.unsqueeze(0).expand(b, -1, -1)
        return self.policy.conditioned(latent, joint_state, 1.0, mask_latent=True)
