"""InputPlan / observation_id: which inputs a card needs and the feeds built from an observation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ramp_models.inputs import JOINT_KEY, WM_KEY, InputPlan, camera_key, observation_id
from ramp_models.model_card import ModelCard
from ramp_models.observation import ObservationBuffer

DEMO = Path(__file__).resolve().parents[3] / "models" / "demo"


def _card(name: str) -> ModelCard:
    path = DEMO / name
    if not path.is_file():
        pytest.skip(f"{path} missing: run scripts/setup.sh (exports the demo models)")
    return ModelCard.load(path)


def _fill(plan: InputPlan, card: ModelCard, stamp: float) -> ObservationBuffer:
    buffer = ObservationBuffer(plan.keys)
    rng = np.random.default_rng(0)
    for key in plan.keys:
        if key == WM_KEY:
            shape = card.input_by_role("wm_state").shape[1:]
            buffer.put(key, stamp, rng.standard_normal(shape).astype(np.float64))
        elif key == JOINT_KEY:
            buffer.put(key, stamp, rng.standard_normal(len(card.joints)))
        else:
            buffer.put(key, stamp, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return buffer


def test_world_model_plan_takes_its_cameras_and_joints_in_card_order() -> None:
    card = _card("world_model.yaml")
    plan = InputPlan.from_card(card)
    assert plan.cameras == tuple(card.cameras)
    assert plan.preprocess is not None
    assert [camera_key(c) for c in card.cameras] == [k for k in plan.keys if "/" in k]
    assert (JOINT_KEY in plan.keys) == (card.input_by_role("joint_state") is not None)
    assert WM_KEY not in plan.keys
    assert plan.wm_shape == ()
    assert plan.trigger_keys == {camera_key(c) for c in card.cameras}, "frames wake the encoder"


def test_policy_plan_is_woken_by_the_world_model_state() -> None:
    card = _card("policy.yaml")
    plan = InputPlan.from_card(card)
    assert WM_KEY in plan.keys
    assert plan.wm_shape == tuple(card.input_by_role("wm_state").shape[1:])
    assert plan.trigger_keys == {WM_KEY}


def test_feeds_match_the_card_and_run() -> None:
    from ramp_models.onnx_runtime import CPU, load_model

    for name in ("world_model.yaml", "policy.yaml"):
        card = _card(name)
        plan = InputPlan.from_card(card)
        obs = _fill(plan, card, 5.0).observation(5.0, 1.0)
        feeds = plan.feeds(obs)
        assert sorted(feeds) == sorted(card.input_roles)
        for role, array in feeds.items():
            spec = card.input_by_role(role)
            assert array.shape[0] == 1, role
            assert array.ndim == len(spec.shape), role
            if role != "images":
                assert array.dtype == np.float32, role
        # the real session accepts them (shapes, dtypes, roles)
        outputs = load_model(DEMO / name, [CPU]).run(feeds)
        assert all(np.isfinite(v).all() for v in outputs.values())


def test_images_arrive_rgb_and_in_card_camera_order() -> None:
    card = _card("world_model.yaml")
    if len(card.cameras) < 2:
        pytest.skip("needs a two-camera card")
    plan = InputPlan.from_card(card)
    buffer = ObservationBuffer(plan.keys)
    for i, cam in enumerate(card.cameras):
        buffer.put(camera_key(cam), 1.0, np.full((48, 64, 3), 40 * (i + 1), np.uint8))
    if JOINT_KEY in plan.keys:
        buffer.put(JOINT_KEY, 1.0, np.zeros(len(card.joints)))
    images = plan.feeds(buffer.observation(1.0, 1.0))["images"]
    means = [float(images[0, i].mean()) for i in range(len(card.cameras))]
    assert means == sorted(means), "camera i holds frame i"


def test_observation_id_follows_the_world_model_state_when_there_is_one() -> None:
    buffer = ObservationBuffer([WM_KEY, JOINT_KEY])
    buffer.put(WM_KEY, 1.0, np.zeros((2, 3)))
    buffer.put(JOINT_KEY, 1.0, np.zeros(3))
    first = observation_id(buffer.observation(1.0, 1.0))
    buffer.put(JOINT_KEY, 1.01, np.ones(3))
    assert observation_id(buffer.observation(1.01, 1.0)) == first, "a joint state alone is old"
    buffer.put(WM_KEY, 1.02, np.zeros((2, 3)))
    assert observation_id(buffer.observation(1.02, 1.0)) != first

    cams = ObservationBuffer([camera_key("front"), JOINT_KEY])
    cams.put(camera_key("front"), 1.0, np.zeros((4, 4, 3), np.uint8))
    cams.put(JOINT_KEY, 1.0, np.zeros(3))
    first = observation_id(cams.observation(1.0, 1.0))
    cams.put(JOINT_KEY, 1.01, np.zeros(3))
    assert observation_id(cams.observation(1.01, 1.0)) != first, "without wm_state any key counts"
