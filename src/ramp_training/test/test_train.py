"""Models, training steps, advantages, checkpoints, export with cards, Wilson intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ramp_models.model_card import ModelCard
from ramp_models.onnx_runtime import load_model
from ramp_training.dataset import EpisodeData, build_samples
from ramp_training.demo import PIPER_HOME, PIPER_JOINTS, PIPER_LOWER, PIPER_UPPER
from ramp_training.evaluate import wilson_interval
from ramp_training.train import (
    RampModels,
    TrainConfig,
    advantage_indicators,
    default_model_config,
    export_models,
    load_checkpoint,
    save_checkpoint,
    train,
    write_report,
)

CAMERAS = ("front", "wrist")


def _config():
    return default_model_config(
        PIPER_JOINTS, CAMERAS, PIPER_LOWER, PIPER_UPPER, [1.0] * 6 + [0.1],
        image_size=16, tokens=2, dim=8, policy_hidden=16, horizon=4,
    )  # fmt: skip


def _episodes() -> list[EpisodeData]:
    rng = np.random.default_rng(0)
    out = []
    for n, success in ((12, True), (10, False)):
        q = PIPER_HOME + 0.01 * np.cumsum(rng.normal(size=(n, 7)), axis=0)
        out.append(
            EpisodeData(
                name=f"e{n}",
                fps=10.0,
                state=q,
                action=q + 0.01,
                images={c: rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8) for c in CAMERAS},
                intervention=np.arange(n) < 3,
                success=success,
                env_state=np.tile([0.36, 0.1, 0.36, -0.14], (n, 1)),
            )
        )
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    models = RampModels(_config())
    cfg = models.config
    samples = build_samples(
        _episodes(), CAMERAS, cfg.horizon, cfg.step_dt, cfg.future_horizons, 0.8
    )
    config = TrainConfig(steps=6, value_steps=3, batch_size=4, log_every_s=0.0)
    result = train(models, samples, 10.0, config, log=lambda _l: None)
    out = tmp_path_factory.mktemp("run")
    exported = export_models(models, out)
    save_checkpoint(models, out)
    write_report(out, result, config, models, exported, {"frames": samples.count})
    return models, result, exported, out


def test_training_records_every_loss(trained) -> None:
    _, result, _, _ = trained
    assert result.steps == 9
    for key in ("world model/value", "world model/future", "world model/cube", "train/policy"):
        assert key in result.history and np.all(np.isfinite(result.history[key]))
    assert "train/policy" in result.history and "world model/policy" not in result.history
    assert 0.0 < result.indicator_positive_fraction <= 1.0


def test_export_writes_three_checked_models(trained) -> None:
    _, _, exported, out = trained
    wm = load_model(exported.world_model, expected_kind="world_model")
    policy = load_model(exported.policy, expected_kind="policy")
    no_wm = load_model(exported.policy_no_wm, expected_kind="policy")
    assert wm.card.output_by_role("wm_state").shape == (1, 2, 8)
    assert wm.card.image.height == 16 and wm.card.cameras == CAMERAS
    assert policy.card.input_by_role("wm_state").shape == (1, 2, 8)
    assert policy.card.chunk.length == 4 and policy.card.chunk.step_dt == pytest.approx(0.1)
    assert no_wm.card.input_roles == ("joint_state",) and no_wm.card.cameras == ()
    q = PIPER_HOME.astype(np.float32)[None]
    images = np.zeros((1, 2, 3, 16, 16), np.float32)
    latent = wm.run({"images": images, "joint_state": q})["wm_state"]
    chunk = policy.run({"wm_state": latent, "joint_state": q})["action_chunk"]
    steps = np.abs(np.diff(np.concatenate([q[:, None], chunk], axis=1), axis=1))
    assert np.all(steps <= np.array([0.1] * 6 + [0.01]) + 1e-5)  # max_velocity * step_dt
    assert (out / "training_curves.png").stat().st_size > 1000
    report = (out / "training_report.json").read_text()
    assert wm.model_id in report and no_wm.model_id in report


def test_checkpoint_round_trip(trained) -> None:
    models, _, _, out = trained
    loaded = load_checkpoint(out)
    assert loaded.config == models.config
    q = torch.from_numpy(PIPER_HOME.astype(np.float32))[None]
    images = torch.zeros(1, 2, 3, 16, 16)
    with torch.no_grad():
        a = models.policy(models.world_model(images, q)[0], q)
        b = loaded.policy(loaded.world_model(images, q)[0], q)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(out / "nowhere")


def test_masked_policy_ignores_the_latent(trained) -> None:
    models, _, _, _ = trained
    q = torch.from_numpy(PIPER_HOME.astype(np.float32))[None].repeat(2, 1)
    latents = torch.randn(2, 2, 8)
    with torch.no_grad():
        masked = models.policy.conditioned(latents, q, 1.0, mask_latent=True)
    assert torch.allclose(masked[0], masked[1])


def test_advantage_indicators() -> None:
    samples = build_samples(_episodes(), CAMERAS, 4, 0.1, (1,), 0.8)
    values = np.linspace(0.0, 0.5, samples.count).astype(np.float32)
    config = TrainConfig(advantage_horizon_s=0.2, gamma_per_s=1.0)
    indicator, adv = advantage_indicators(samples, values, 10.0, config)
    failed = samples.episode == 1
    # Failed episode: rising values give positive advantages, the last frames see outcome 0.
    assert (adv[failed][:-2] > 0).all() and (adv[failed][-2:] < 0).all()
    assert not indicator[failed][-2:].any()
    assert indicator[samples.intervention].all()  # corrected frames are positive
    # After the correction, the successful episode's frames follow the advantage: outcome 1.
    succeeded = ~failed & ~samples.intervention
    assert np.array_equal(indicator[succeeded] > 0, adv[succeeded] > 0)
    assert indicator[succeeded][-2:].all()


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_card_ids_differ_between_runs(trained, tmp_path: Path) -> None:
    models, _, exported, _ = trained
    with torch.no_grad():
        for p in models.policy.head.parameters():
            p.add_(0.01)
    again = export_models(models, tmp_path)
    assert ModelCard.load(again.policy).model_id != ModelCard.load(exported.policy).model_id
