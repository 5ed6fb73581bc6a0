"""Batched serving core (``ramp_models.batching``) and the card's ``batch`` field, without ROS.

The graph is a tiny policy built with ``onnx`` whose first axis is symbolic (``batch``):
chunk[b, k, j] = joint_state[b, j] + 0.01 * (k + 1) * mean(wm_state[b]); each output row depends
on its own input row only, so a batched call must equal the per-robot calls row by row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramp_models.batching import FleetInputs, Ready, groups, run_batched, split_outputs
from ramp_models.inputs import JOINT_KEY, WM_KEY, InputPlan
from ramp_models.model_card import ModelCard, ModelCardError, sha256_file
from ramp_models.observation import Observation, Sample
from ramp_models.onnx_runtime import CPU, InferenceInputError, load_model

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]


def policy_onnx(path: Path, axis: int | str = "batch", poison: bool = False) -> Path:
    """wm_state (B,4,6), joint_state (B,7) -> chunk (B,3,7); ``axis``: first axis (int: fixed).

    With ``poison``, rows whose joint_state[:, 0] is > 100 come out as NaN (sqrt of negative).
    """
    steps = numpy_helper.from_array(np.array([[[0.01], [0.02], [0.03]]], np.float32), "steps")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["wm_state"], ["m"], axes=[1, 2], keepdims=1),
        helper.make_node("Mul", ["steps", "m"], ["offset"]),
        helper.make_node("Unsqueeze", ["joint_state", "axes"], ["q"]),
        helper.make_node("Add", ["q", "offset"], ["raw" if poison else "chunk"]),
    ]
    inits = [steps, axes]
    if poison:
        # chunk = raw * sqrt(100 - q0): NaN where q0 > 100, raw * finite elsewhere
        hundred = numpy_helper.from_array(np.array(100.0, np.float32), "hundred")
        idx = numpy_helper.from_array(np.array([0], dtype=np.int64), "idx")
        inits += [hundred, idx]
        nodes += [
            helper.make_node("Gather", ["q", "idx"], ["q0"], axis=2),
            helper.make_node("Sub", ["hundred", "q0"], ["d"]),
            helper.make_node("Sqrt", ["d"], ["s"]),
            helper.make_node("Mul", ["raw", "s"], ["chunk"]),
        ]
    graph = helper.make_graph(
        nodes,
        "tiny_batched_policy",
        [
            helper.make_tensor_value_info("wm_state", TensorProto.FLOAT, [axis, 4, 6]),
            helper.make_tensor_value_info("joint_state", TensorProto.FLOAT, [axis, 7]),
        ],
        [helper.make_tensor_value_info("chunk", TensorProto.FLOAT, [axis, 3, 7])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def policy_card(tmp_path: Path, batch: object = "dynamic", **graph: object) -> Path:
    onnx_path = policy_onnx(tmp_path / "policy.onnx", **graph)
    data = {
        "format": "ramp-model-card/1",
        "model_id": "tiny-batched-policy",
        "kind": "policy",
        "onnx_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "joints": JOINTS,
        "cameras": [],
        "inputs": [
            {"name": "wm_state", "role": "wm_state", "dtype": "float32", "shape": [1, 4, 6]},
            {"name": "joint_state", "role": "joint_state", "dtype": "float32", "shape": [1, 7]},
        ],
        "outputs": [
            {"name": "chunk", "role": "action_chunk", "dtype": "float32", "shape": [1, 3, 7]},
        ],
        "chunk": {"length": 3, "step_dt": 0.02, "action": "absolute_joint_position"},
    }
    if batch is not None:
        data["batch"] = batch
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def observation(stamp: float, seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        stamp,
        {
            WM_KEY: Sample(stamp, rng.normal(size=(4, 6)).astype(np.float32)),
            JOINT_KEY: Sample(stamp, rng.normal(size=7).astype(np.float32)),
        },
    )


# --------------------------------------------------------------------------- the card field
def test_card_batch_field(tmp_path: Path) -> None:
    card = ModelCard.load(policy_card(tmp_path, "dynamic"))
    assert card.batch == "dynamic" and card.max_batch is None and card.batched
    assert card.to_dict()["batch"] == "dynamic"
    assert ModelCard.load(policy_card(tmp_path, 4)).max_batch == 4
    old = ModelCard.load(policy_card(tmp_path, None))  # a card written before batching
    assert old.batch == 1 and not old.batched and "batch" not in old.to_dict()
    for bad in (0, -2, "many", True, 1.5):
        with pytest.raises(ModelCardError, match=r"policy\.yaml: field 'batch':"):
            ModelCard.load(policy_card(tmp_path, bad))


def test_card_shapes_still_give_one_observation(tmp_path: Path) -> None:
    path = policy_card(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["inputs"][1]["shape"] = [4, 7]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelCardError, match=r"batch must be 1.*'batch: dynamic'"):
        ModelCard.load(path)


def test_dynamic_card_on_a_fixed_onnx_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match=r"declares batch 'dynamic' but ONNX.*fixes"):
        load_model(policy_card(tmp_path, "dynamic", axis=1), [CPU])


def test_batch_one_card_loads_a_dynamic_onnx_and_refuses_two(tmp_path: Path) -> None:
    model = load_model(policy_card(tmp_path, None), [CPU])
    wm, q = np.zeros((2, 4, 6), np.float32), np.zeros((2, 7), np.float32)
    assert model.run({"wm_state": wm[:1], "joint_state": q[:1]})["action_chunk"].shape == (1, 3, 7)
    with pytest.raises(InferenceInputError, match="batch 2 but the card allows at most 1"):
        model.run({"wm_state": wm, "joint_state": q})


def test_run_checks_batch_consistency_and_limit(tmp_path: Path) -> None:
    model = load_model(policy_card(tmp_path, 3), [CPU])
    wm, q = np.zeros((4, 4, 6), np.float32), np.zeros((4, 7), np.float32)
    assert model.run({"wm_state": wm[:3], "joint_state": q[:3]})["action_chunk"].shape == (3, 3, 7)
    with pytest.raises(InferenceInputError, match="batch 2, other feeds have 3"):
        model.run({"wm_state": wm[:3], "joint_state": q[:2]})
    with pytest.raises(InferenceInputError, match="at most 3"):
        model.run({"wm_state": wm, "joint_state": q})
    with pytest.raises(InferenceInputError, match=r"\[3, 5, 6\].*first axis: batch"):
        model.run({"wm_state": np.zeros((3, 5, 6), np.float32), "joint_state": q[:3]})


# --------------------------------------------------------------------------- the fleet core
def test_gather_serves_ready_robots_and_skips_stale_ones() -> None:
    fleet = FleetInputs(["r1", "r2", "r3"], (WM_KEY, JOINT_KEY), min_period_s=0.1)
    z = np.zeros(7, np.float32)
    for robot in ("r1", "r2", "r3"):
        fleet.put(robot, JOINT_KEY, 10.0, z)
    fleet.put("r1", WM_KEY, 10.0, np.zeros((4, 6), np.float32))
    fleet.put("r2", WM_KEY, 9.0, np.zeros((4, 6), np.float32))  # too old at 10.05
    ready = fleet.gather(10.05, max_age_s=0.25)
    assert [r.robot for r in ready] == ["r1"]
    assert fleet.status("r2").skipped == 1 and "stale" in fleet.status("r2").waiting
    assert fleet.status("r3").skipped == 1 and "no data yet" in fleet.status("r3").waiting
    assert fleet.status("r1").served == 1 and fleet.status("r1").waiting == ""
    # the same observation is never served twice, and the rate limit holds r1 back
    fleet.put("r1", WM_KEY, 10.07, np.zeros((4, 6), np.float32))
    assert fleet.gather(10.08, max_age_s=0.25) == []
    assert fleet.next_due_in(10.08) == pytest.approx(0.07)  # r1 is held back until 10.15
    # a robot that joins late is served from its first complete observation
    fleet.put("r3", WM_KEY, 10.16, np.zeros((4, 6), np.float32))
    fleet.put("r3", JOINT_KEY, 10.16, z)
    ready = fleet.gather(10.17, max_age_s=0.25)
    assert [r.robot for r in ready] == ["r1", "r3"]
    assert ready[0].observation.samples[WM_KEY].stamp == 10.07
    assert fleet.gather(10.2, max_age_s=0.25) == []  # nothing new
    assert fleet.next_due_in(10.2) == pytest.approx(0.07)  # r1 and r3 next at 10.27


def test_gather_applies_the_per_robot_due_rule() -> None:
    fleet = FleetInputs(["a", "b"], (JOINT_KEY,), min_period_s=0.0)
    for robot in ("a", "b"):
        fleet.put(robot, JOINT_KEY, 1.0, np.zeros(7, np.float32))
    ready = fleet.gather(1.0, 0.25, due=lambda robot, now: robot == "b")
    assert [r.robot for r in ready] == ["b"]
    assert fleet.status("a").skipped == 0  # not due is not skipped


def test_gather_waits_per_robot_for_a_complete_frame_set() -> None:
    """Two cameras per robot: a robot whose second frame is still on its way waits (at most
    ``sync_timeout_s``) without holding up a robot whose frame set is complete."""
    cams = ("image/front", "image/wrist")
    fleet = FleetInputs(["a", "b"], cams, 0.0, sync_keys=cams, sync_timeout_s=0.05)
    img = np.zeros((2, 2, 3), np.uint8)
    for robot in ("a", "b"):
        for cam in cams:
            fleet.put(robot, cam, 1.0, img)
    assert [r.robot for r in fleet.gather(1.01, 0.25)] == ["a", "b"]  # first sets complete
    fleet.put("a", "image/front", 1.1, img)
    fleet.put("b", "image/front", 1.1, img)
    fleet.put("b", "image/wrist", 1.1, img)
    assert [r.robot for r in fleet.gather(1.11, 0.25)] == ["b"]  # a: wrist frame pending
    assert fleet.status("a").skipped == 0
    fleet.put("a", "image/wrist", 1.102, img)
    ready = fleet.gather(1.12, 0.25)
    assert [r.robot for r in ready] == ["a"]
    assert ready[0].observation.stamp == 1.1  # one frame set, not a new frame + an old one
    fleet.put("a", "image/front", 1.2, img)  # the wrist camera died: served after the timeout
    assert fleet.gather(1.21, 0.25) == []
    assert [r.robot for r in fleet.gather(1.27, 0.25)] == ["a"]


def test_fleet_refuses_bad_robot_lists() -> None:
    with pytest.raises(ValueError, match="at least one robot"):
        FleetInputs([], (JOINT_KEY,), 0.1)
    with pytest.raises(ValueError, match="named twice"):
        FleetInputs(["a", "a"], (JOINT_KEY,), 0.1)


def test_groups_and_split() -> None:
    items = [Ready(f"r{i}", observation(0.0, i)) for i in range(5)]
    assert [len(g) for g in groups(items, None)] == [5]
    assert [len(g) for g in groups(items, 2)] == [2, 2, 1]
    assert groups([], 3) == []
    parts = split_outputs({"x": np.arange(6).reshape(3, 2)}, 3)
    assert [p["x"].tolist() for p in parts] == [[[0, 1]], [[2, 3]], [[4, 5]]]
    with pytest.raises(ValueError, match="batch 3, expected 2"):
        split_outputs({"x": np.zeros((3, 2))}, 2)


def test_batched_run_equals_per_robot_runs(tmp_path: Path) -> None:
    model = load_model(policy_card(tmp_path, 2), [CPU])
    card = ModelCard.load(tmp_path / "policy.yaml")
    plan = InputPlan.from_card(card)
    ready = [Ready(f"r{i}", observation(float(i), i)) for i in range(5)]
    served = run_batched(model, plan, ready)
    assert [s.robot for s in served] == [r.robot for r in ready]
    for item, result in zip(ready, served, strict=True):
        alone = model.run(plan.feeds(item.observation))["action_chunk"]
        assert result.error == "" and result.observation is item.observation
        np.testing.assert_allclose(result.outputs["action_chunk"], alone, rtol=1e-6, atol=1e-6)


def test_a_non_finite_row_fails_only_its_robot(tmp_path: Path) -> None:
    model = load_model(policy_card(tmp_path, "dynamic", poison=True), [CPU])
    plan = InputPlan.from_card(ModelCard.load(tmp_path / "policy.yaml"))
    obs = [observation(1.0, i) for i in range(3)]
    obs[1].samples[JOINT_KEY].value[0] = 500.0  # poisons robot b's row only
    served = run_batched(model, plan, [Ready(n, o) for n, o in zip("abc", obs, strict=True)])
    assert [s.error != "" for s in served] == [False, True, False]
    assert served[1].outputs is None and "non-finite" in served[1].error
    assert all(np.all(np.isfinite(s.outputs["action_chunk"])) for s in (served[0], served[2]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["r1", "r2", "r3", "r4"]), st.floats(0.0, 2.0)),
        max_size=30,
    ),
    st.floats(0.0, 2.5),
    st.floats(0.01, 0.5),
)
def test_gather_property(puts: list[tuple[str, float]], now: float, max_age: float) -> None:
    """Served robots have complete inputs, all within max_age of now, with the observation
    stamp = the oldest of them; a robot not served has a missing or stale input."""
    robots = ["r1", "r2", "r3", "r4"]
    fleet = FleetInputs(robots, (WM_KEY, JOINT_KEY), min_period_s=0.0)
    latest: dict[tuple[str, str], float] = {}
    for i, (robot, stamp) in enumerate(puts):
        key = WM_KEY if i % 2 else JOINT_KEY
        fleet.put(robot, key, stamp, np.zeros(1, np.float32))
        latest[(robot, key)] = max(stamp, latest.get((robot, key), -1.0))
    ready = {r.robot: r.observation for r in fleet.gather(now, max_age)}
    for robot in robots:
        stamps = [latest.get((robot, k)) for k in (WM_KEY, JOINT_KEY)]
        complete = all(s is not None and now - s <= max_age for s in stamps)
        assert (robot in ready) == complete
        if complete:
            assert ready[robot].stamp == min(stamps)


def test_a_bad_input_fails_only_its_robot(tmp_path: Path) -> None:
    model = load_model(policy_card(tmp_path), [CPU])
    plan = InputPlan.from_card(ModelCard.load(tmp_path / "policy.yaml"))
    good = [observation(1.0, 0), observation(1.0, 1)]
    wrong = observation(1.0, 2)
    wrong.samples[WM_KEY] = Sample(1.0, np.zeros((5, 6), np.float32))  # not (4, 6)
    served = run_batched(model, plan, [Ready("a", good[0]), Ready("b", wrong), Ready("c", good[1])])
    by_robot = {s.robot: s for s in served}
    assert "bad input" in by_robot["b"].error and by_robot["b"].outputs is None
    assert by_robot["a"].outputs is not None and by_robot["c"].outputs is not None
