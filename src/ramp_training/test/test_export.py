"""Reference models, ONNX export with cards, the demo pair and the ramp-train CLI."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ramp_models.model_card import ModelCard, ModelCardError, sha256_file
from ramp_models.onnx_runtime import NonFiniteOutputError
from ramp_training import cli
from ramp_training.demo import (
    DEMO_WAYPOINTS,
    PIPER_HOME,
    PIPER_JOINTS,
    PIPER_LOWER,
    PIPER_UPPER,
    POLICY_MAX_VELOCITY,
    DemoConfig,
    build_policy,
    closed_loop_rollout,
    export_demo,
    load_demo,
    scripted_chunks,
)
from ramp_training.export import CardFields, ExportVerificationError, export_onnx
from ramp_training.models import WorldModelEncoder

TINY = DemoConfig(seed=3, steps=150, samples=4096, latent_bank=64, log_every=50)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    export_demo(out, TINY, log=lambda _line: None)
    return out


def test_demo_cards(demo_dir: Path) -> None:
    wm = ModelCard.load(demo_dir / "world_model.yaml")
    policy = ModelCard.load(demo_dir / "policy.yaml")
    assert wm.kind == "world_model" and policy.kind == "policy"
    for card in (wm, policy):
        assert card.joints == PIPER_JOINTS
        assert card.cameras == ("front", "wrist")
        assert card.sha256 == sha256_file(card.onnx_path)
        assert card.model_id.endswith(card.sha256[:8])
    assert wm.input_by_role("images").shape == (1, 2, 3, 96, 96)
    assert wm.output_by_role("wm_state").shape == (1, 8, 32)
    assert wm.output_by_role("value").shape == (1, 1)
    assert wm.image.mean == (0.5, 0.5, 0.5) and wm.image.std == (0.5, 0.5, 0.5)
    assert policy.input_by_role("wm_state").shape == (1, 8, 32)
    assert policy.output_by_role("action_chunk").shape == (1, 20, 7)
    assert policy.chunk.length == 20 and policy.chunk.step_dt == pytest.approx(0.02)


def test_demo_pair_is_exported_with_a_dynamic_batch_axis(demo_dir: Path) -> None:
    """Batched serving: the cards say ``batch: dynamic``, the ONNX axes are symbolic, and a batch
    of 3 gives row by row what three batch-1 calls give."""
    import onnxruntime as ort

    world_model, policy = load_demo(demo_dir)
    for model in (world_model, policy):
        assert model.card.batch == "dynamic"
        session = ort.InferenceSession(str(model.card.onnx_path))
        for arg in (*session.get_inputs(), *session.get_outputs()):
            assert arg.shape[0] == "batch", (arg.name, arg.shape)
        rng = np.random.default_rng(0)
        feeds = {
            s.role: rng.normal(size=(3, *s.shape[1:])).astype(np.float32) for s in model.card.inputs
        }
        batched = model.run(feeds)
        for i in range(3):
            single = model.run({role: x[i : i + 1] for role, x in feeds.items()})
            for role, value in single.items():
                np.testing.assert_allclose(batched[role][i : i + 1], value, rtol=1e-4, atol=1e-5)


class _BatchOneOnly(torch.nn.Module):
    def forward(self, joint_state: torch.Tensor) -> torch.Tensor:
        return joint_state.reshape(1, 1, 7) * 0.5  # a fixed batch of 1 baked into the graph


def test_a_model_that_only_runs_batch_one_exports_with_batch_one(tmp_path: Path) -> None:
    fields = _fields({"q": "joint_state"})
    # refused either by the card check (torch fixed the output's first axis) or at batch 3
    with pytest.raises((ModelCardError, ExportVerificationError), match="batch"):
        export_onnx(_BatchOneOnly(), (torch.zeros(1, 7),), tmp_path / "dyn.onnx", fields)
    assert not (tmp_path / "dyn.onnx").exists() and not (tmp_path / "dyn.yaml").exists()
    fixed = replace(fields, batch=1)
    card = ModelCard.load(
        export_onnx(_BatchOneOnly(), (torch.zeros(1, 7),), tmp_path / "b1.onnx", fixed)
    )
    assert card.batch == 1 and "batch" not in card.to_dict()


def test_closed_loop_rollout_moves_within_limits(demo_dir: Path) -> None:
    world_model, policy = load_demo(demo_dir)
    trajectory = closed_loop_rollout(policy, world_model, PIPER_HOME, iterations=30)
    assert np.all(np.isfinite(trajectory))
    assert np.all(trajectory >= PIPER_LOWER - 1e-6) and np.all(trajectory <= PIPER_UPPER + 1e-6)
    assert np.max(np.abs(trajectory - PIPER_HOME)) > 0.05
    # Each 0.2 s iteration moves no joint faster than the policy's hard bound.
    per_iteration = np.abs(np.diff(trajectory, axis=0))
    assert np.all(per_iteration <= np.array(POLICY_MAX_VELOCITY) * 0.2 + 1e-5)


def test_verify_cli(demo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify", str(demo_dir)]) == 0
    assert "ok" in capsys.readouterr().out
    broken = tmp_path / "broken"
    shutil.copytree(demo_dir, broken)
    onnx_path = broken / "policy.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:-10])
    assert cli.main(["verify", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "sha256" in err and str(onnx_path) in err
    assert cli.main(["verify", str(tmp_path / "empty")]) == 1


def test_demo_training_leaves_its_loss_curve_beside_its_report(demo_dir: Path) -> None:
    import json
    import struct

    report = json.loads((demo_dir / "training_report.json").read_text())
    (key,) = report["history"]
    history = report["history"][key]
    assert report["steps"] == len(history) == TINY.steps
    # The final loss is the mean of the last logging window (log_every steps).
    assert report["final_losses"][key] == pytest.approx(np.mean(history[-TINY.log_every :]))
    assert np.mean(history[-20:]) < np.mean(history[:20])  # it learned
    png = (demo_dir / report["curves"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert struct.unpack(">II", png[16:24]) == (405, 288)  # one panel, 4.5 x 3.2 in at 90 dpi


def test_export_demo_command_writes_report_and_curves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert cli.main(["export-demo", "--out", str(out), "--steps", "30", "--no-check"]) == 0
    assert "training_report.json and its loss curve" in capsys.readouterr().out
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["verify", str(out)]) == 0  # the extra files do not disturb the cards


def test_export_is_deterministic(demo_dir: Path, tmp_path: Path) -> None:
    export_demo(tmp_path, TINY, log=lambda _line: None)
    for name in ("world_model.onnx", "policy.onnx"):
        assert sha256_file(tmp_path / name) == sha256_file(demo_dir / name)


def test_scripted_chunks_cycle_at_bounded_speed() -> None:
    chunks = scripted_chunks(DEMO_WAYPOINTS[:1], horizon=100, step_dt=0.02)
    steps = np.abs(np.diff(np.concatenate([DEMO_WAYPOINTS[:1, None], chunks], axis=1), axis=1))
    assert np.all(steps <= np.array([0.5] * 6 + [0.05]) * 0.02 + 1e-9)
    # From waypoint 0 the demo reaches waypoint 1 and heads on toward waypoint 2.
    dist = np.max(np.abs(chunks[0] - DEMO_WAYPOINTS[1]), axis=-1)
    reached = int(np.argmin(dist))
    assert dist[reached] < 1e-9
    assert np.max(np.abs(chunks[0, -1] - DEMO_WAYPOINTS[2])) < np.max(
        np.abs(DEMO_WAYPOINTS[1] - DEMO_WAYPOINTS[2])
    )


def test_policy_bounds_hold_for_any_weights() -> None:
    torch.manual_seed(0)
    policy = build_policy(DemoConfig()).eval()
    latent = torch.randn(4, 8, 32)
    q = torch.from_numpy(np.clip(PIPER_HOME + 0.5, PIPER_LOWER, PIPER_UPPER)).float().repeat(4, 1)
    with torch.no_grad():
        assert torch.allclose(policy(latent, q), q[:, None].expand(-1, 20, -1))  # untrained: hold
        for p in policy.parameters():
            p.normal_(0.0, 5.0)  # a badly trained policy
        chunk = policy(latent, q)
    steps = torch.diff(torch.cat([q[:, None], chunk], dim=1), dim=1).abs()
    assert torch.all(steps <= policy.max_step + 1e-6)
    assert torch.all(chunk >= policy.joint_lower) and torch.all(chunk <= policy.joint_upper)


def test_world_model_future_heads() -> None:
    model = WorldModelEncoder(image_height=32, image_width=48, future_horizons=(1, 4))
    images = torch.randn(2, 2, 3, 32, 48)
    latent, value = model(images, torch.zeros(2, 7))
    assert latent.shape == (2, 8, 32) and value.shape == (2, 1)
    futures = model.predict_future(latent, torch.zeros(2, 20, 7))
    assert sorted(futures) == [1, 4] and futures[4].shape == (2, 8, 32)


class _Sqrt(torch.nn.Module):
    def forward(self, joint_state: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(joint_state - 1.0).reshape(-1, 1, 7)


class _Hold(torch.nn.Module):
    def forward(self, latent: torch.Tensor, joint_state: torch.Tensor) -> torch.Tensor:
        return joint_state.unsqueeze(1).expand(-1, 2, 7) + 0.0 * latent.mean()


def _fields(inputs: dict[str, str]) -> CardFields:
    from ramp_models.model_card import ChunkSpec

    return CardFields(
        kind="policy",
        model_id="test",
        joints=PIPER_JOINTS,
        cameras=(),
        inputs=inputs,
        outputs={"action_chunk": "action_chunk"},
        chunk=ChunkSpec(length=2, step_dt=0.02) if len(inputs) == 2 else ChunkSpec(1, 0.02),
    )


def test_export_refuses_nan_model(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteOutputError, match="NaN"):
        export_onnx(
            _Sqrt(), (torch.zeros(1, 7),), tmp_path / "nan.onnx", _fields({"q": "joint_state"})
        )
    assert not (tmp_path / "nan.onnx").exists() and not (tmp_path / "nan.yaml").exists()


def test_export_verification_failure_removes_files(tmp_path: Path) -> None:
    inputs = (torch.zeros(1, 4, 6), torch.zeros(1, 7))
    fields = _fields({"latent": "wm_state", "q": "joint_state"})
    card = export_onnx(_Hold(), inputs, tmp_path / "ok.onnx", fields)
    assert ModelCard.load(card).output_by_role("action_chunk").shape == (1, 2, 7)
    with pytest.raises(ExportVerificationError, match="differs from torch"):
        export_onnx(_Hold(), inputs, tmp_path / "bad.onnx", fields, atol=-1.0)
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "bad.yaml").exists()


def test_reference_preset_exports_a_pair_of_realistic_size(tmp_path: Path) -> None:
    """``ramp-train export-demo --preset reference``: the ResNet-style encoder on 2 x 224 x 224
    frames and the wide policy head, exported and verified like the demo pair (2 training steps
    here; its inference cost is measured in bench/e2e_latency.py, not in a test)."""
    out = tmp_path / "reference"
    code = cli.main(
        ["export-demo", "--preset", "reference", "--steps", "2", "--out", str(out), "--no-check"]
    )
    assert code == 0
    wm = ModelCard.load(out / "world_model.yaml")
    policy = ModelCard.load(out / "policy.yaml")
    assert wm.model_id.startswith("reference-wm-")
    assert policy.model_id.startswith("reference-policy-")
    assert wm.input_by_role("images").shape == (1, 2, 3, 224, 224)
    assert wm.output_by_role("wm_state").shape == (1, 16, 64)
    assert policy.input_by_role("wm_state").shape == (1, 16, 64)
    assert cli.main(["verify", str(out)]) == 0
