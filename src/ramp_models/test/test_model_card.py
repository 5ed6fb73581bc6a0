"""Model card parsing/validation and checked ONNX sessions (no torch: graphs built with onnx)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from ramp_models.model_card import (
    ChunkSpec,
    ImageSpec,
    ModelCard,
    ModelCardError,
    TensorSpec,
    check_against_robot,
    check_compatible,
    sha256_file,
)
from ramp_models.onnx_runtime import (
    CPU,
    CUDA,
    TENSORRT,
    InferenceInputError,
    NonFiniteOutputError,
    load_model,
    plan_providers,
)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper")
CAMERAS = ("front", "wrist")
DOC = Path(__file__).resolve().parents[3] / "docs" / "model_card.md"


# --------------------------------------------------------------------------- tiny ONNX graphs
def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def world_model_onnx(path: Path, latent_shape=(1, 4, 6), double_value: bool = False) -> Path:
    """Images (1,2,3,8,8), joint_state (1,7) -> latent = joint_state @ W, value = mean(images)."""
    tokens, dim = latent_shape[1], latent_shape[2]
    w = numpy_helper.from_array(
        np.linspace(-1, 1, 7 * tokens * dim, dtype=np.float32).reshape(7, tokens * dim), "w"
    )
    shape = numpy_helper.from_array(np.array(latent_shape, dtype=np.int64), "latent_shape")
    vshape = numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "value_shape")
    nodes = [
        helper.make_node("MatMul", ["joint_state", "w"], ["flat"]),
        helper.make_node("Reshape", ["flat", "latent_shape"], ["latent"]),
        helper.make_node("ReduceMean", ["images"], ["m"], axes=[1, 2, 3, 4], keepdims=0),
        helper.make_node("Reshape", ["m", "value_shape"], ["v" if double_value else "value"]),
    ]
    if double_value:
        nodes.append(helper.make_node("Cast", ["v"], ["value"], to=TensorProto.DOUBLE))
    graph = helper.make_graph(
        nodes,
        "tiny_wm",
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 2, 3, 8, 8]),
            helper.make_tensor_value_info("joint_state", TensorProto.FLOAT, [1, 7]),
        ],
        [
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, list(latent_shape)),
            helper.make_tensor_value_info(
                "value", TensorProto.DOUBLE if double_value else TensorProto.FLOAT, [1, 1]
            ),
        ],
        initializer=[w, shape, vshape],
    )
    return _save(graph, path)


def policy_onnx(path: Path, nan: bool = False) -> Path:
    """wm_state (1,4,6), joint_state (1,7) -> chunk (1,3,7) = joint_state + 0.01*(k+1)*mean(wm).

    With ``nan`` the chunk is sqrt(-1 - |...|): every element NaN.
    """
    steps = numpy_helper.from_array(np.array([[[0.01], [0.02], [0.03]]], np.float32), "steps")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["wm_state"], ["m"], axes=[1, 2], keepdims=1),
        helper.make_node("Mul", ["steps", "m"], ["offset"]),
        helper.make_node("Unsqueeze", ["joint_state", "axes"], ["q"]),
        helper.make_node("Add", ["q", "offset"], ["chunk" if not nan else "raw"]),
    ]
    initializers = [steps, axes]
    if nan:
        minus_one = numpy_helper.from_array(np.array(-1.0, np.float32), "minus_one")
        initializers.append(minus_one)
        nodes += [
            helper.make_node("Abs", ["raw"], ["a"]),
            helper.make_node("Sub", ["minus_one", "a"], ["neg"]),
            helper.make_node("Sqrt", ["neg"], ["chunk"]),
        ]
    graph = helper.make_graph(
        nodes,
        "tiny_policy",
        [
            helper.make_tensor_value_info("wm_state", TensorProto.FLOAT, [1, 4, 6]),
            helper.make_tensor_value_info("joint_state", TensorProto.FLOAT, [1, 7]),
        ],
        [helper.make_tensor_value_info("chunk", TensorProto.FLOAT, [1, 3, 7])],
        initializer=initializers,
    )
    return _save(graph, path)


def wm_card_dict(onnx_path: Path) -> dict:
    return {
        "format": "ramp-model-card/1",
        "model_id": "tiny-wm-1",
        "kind": "world_model",
        "onnx_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "created": "2026-01-01T00:00:00Z",
        "producer": "test",
        "joints": list(JOINTS),
        "cameras": list(CAMERAS),
        "image": {
            "height": 8,
            "width": 8,
            "color": "RGB",
            "layout": "NCHW",
            "scale": 1 / 255,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        "inputs": [
            {"name": "images", "role": "images", "dtype": "float32", "shape": [1, 2, 3, 8, 8]},
            {"name": "joint_state", "role": "joint_state", "dtype": "float32", "shape": [1, 7]},
        ],
        "outputs": [
            {"name": "latent", "role": "wm_state", "dtype": "float32", "shape": [1, 4, 6]},
            {"name": "value", "role": "value", "dtype": "float32", "shape": [1, 1]},
        ],
    }


def policy_card_dict(onnx_path: Path) -> dict:
    return {
        "format": "ramp-model-card/1",
        "model_id": "tiny-policy-1",
        "kind": "policy",
        "onnx_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "joints": list(JOINTS),
        "cameras": list(CAMERAS),
        "inputs": [
            {"name": "wm_state", "role": "wm_state", "dtype": "float32", "shape": [1, 4, 6]},
            {"name": "joint_state", "role": "joint_state", "dtype": "float32", "shape": [1, 7]},
        ],
        "outputs": [
            {"name": "chunk", "role": "action_chunk", "dtype": "float32", "shape": [1, 3, 7]},
        ],
        "chunk": {"length": 3, "step_dt": 0.02, "action": "absolute_joint_position"},
    }


def write_card(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def wm(tmp_path: Path) -> Path:
    onnx_path = world_model_onnx(tmp_path / "wm.onnx")
    return write_card(tmp_path / "wm.yaml", wm_card_dict(onnx_path))


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    onnx_path = policy_onnx(tmp_path / "policy.onnx")
    return write_card(tmp_path / "policy.yaml", policy_card_dict(onnx_path))


# --------------------------------------------------------------------------- card parsing
def test_round_trip(wm: Path, tmp_path: Path) -> None:
    card = ModelCard.load(wm)
    assert card.kind == "world_model"
    assert card.joints == JOINTS and card.cameras == CAMERAS
    assert card.onnx_path == tmp_path / "wm.onnx"
    assert card.input_by_role("images") == TensorSpec(
        "images", "images", "float32", (1, 2, 3, 8, 8)
    )
    assert card.output_by_role("wm_state").shape == (1, 4, 6)
    assert card.input_by_role("wm_state") is None
    assert card.image == ImageSpec(8, 8, "RGB", "NCHW", 1 / 255, (0.5,) * 3, (0.5,) * 3)

    copy_path = tmp_path / "sub" / "copy.yaml"
    written = card.write(copy_path)
    again = ModelCard.load(copy_path)
    assert again == written
    assert again.onnx_path == card.onnx_path  # onnx_file rewritten relative to the new folder
    assert yaml.safe_load(copy_path.read_text())["onnx_file"] == "../wm.onnx"
    for field in ("model_id", "sha256", "inputs", "outputs", "image", "chunk", "created"):
        assert getattr(again, field) == getattr(card, field)
    assert ModelCard.from_dict(yaml.safe_load(card.to_yaml()), wm) == card


def test_policy_card_round_trip(policy: Path) -> None:
    card = ModelCard.load(policy)
    assert card.chunk == ChunkSpec(3, 0.02, "absolute_joint_position")
    assert card.image is None
    assert ModelCard.from_dict(yaml.safe_load(card.to_yaml()), policy) == card


@pytest.mark.skipif(not DOC.is_file(), reason="docs/model_card.md not beside the sources")
def test_documented_example_is_valid(tmp_path: Path) -> None:
    text = DOC.read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    data = yaml.safe_load(example.replace("sha256: 5e1c...", "sha256: " + "a" * 64))
    card = ModelCard.from_dict(data, tmp_path / "world_model.yaml")
    assert card.output_by_role("wm_state").shape == (1, 8, 32)
    assert card.image.scale == pytest.approx(1 / 255)


def _mutate(data: dict, path: str, value: object) -> dict:
    data = copy.deepcopy(data)
    keys = path.split(".")
    target = data
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is _DELETE:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("sha256", _DELETE, "sha256", "missing"),
        ("joints", _DELETE, "joints", "missing"),
        ("format", "ramp-model-card/9", "format", "ramp-model-card/1"),
        ("kind", "planner", "kind", "planner"),
        ("model_id", "has space", "model_id", "has space"),
        ("sha256", "abc", "sha256", "hex"),
        ("onnx_file", "/abs/wm.onnx", "onnx_file", "relative"),
        ("inputs.1.role", "task", "inputs[1].role", "task"),
        ("outputs.1.role", "reward", "outputs[1].role", "reward"),
        ("inputs.1.dtype", "float8", "inputs[1].dtype", "float8"),
        ("outputs.1.dtype", "float16", "outputs[1].dtype", "float32"),
        ("inputs.1.shape", [2, 7], "inputs[1].shape", "batch must be 1"),
        ("inputs.1.shape", [1, -7], "inputs[1].shape", "positive integers"),
        ("inputs.1.shape", [1, 6], "inputs[1].shape", "expected [1, 7]"),
        ("inputs.0.shape", [1, 3, 3, 8, 8], "inputs[0].shape", "expected [1, 2, 3, 8, 8]"),
        ("outputs.0.shape", [1, 24], "outputs[0].shape", "tokens, dim"),
        ("outputs.1.shape", [1, 2], "outputs[1].shape", "[1, 1]"),
        ("image", _DELETE, "image", "role images"),
        ("image.color", "HSV", "image.color", "HSV"),
        ("image.std", [0.5, 0.0, 0.5], "image.std.1", "> 0"),
        ("image.height", 8.5, "image.height", "positive integer"),
        ("joints", ["joint1", "joint1"], "joints", "duplicate"),
        ("cameras", [], "cameras", "must not be empty"),
        ("surprise", 1, "surprise", "unknown field"),
        ("outputs", [], "outputs", "non-empty list"),
    ],
)
def test_card_refusals_name_file_and_field(
    wm: Path, path: str, value: object, field: str, words: str
) -> None:
    data = _mutate(yaml.safe_load(wm.read_text()), path, value)
    write_card(wm, data)
    with pytest.raises(ModelCardError) as err:
        ModelCard.load(wm)
    text = str(err.value)
    assert str(wm) in text
    assert f"field '{field}'" in text
    assert words in text


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        ("chunk", _DELETE, "chunk", "missing"),
        ("chunk.length", 4, "outputs[0].shape", "chunk.length 4"),
        ("chunk.action", "velocity", "chunk.action", "velocity"),
        ("chunk.step_dt", 0, "chunk.step_dt", "> 0"),
        ("outputs.0.role", "wm_state", "outputs", "action_chunk"),
    ],
)
def test_policy_card_refusals(
    policy: Path, path: str, value: object, field: str, words: str
) -> None:
    write_card(policy, _mutate(yaml.safe_load(policy.read_text()), path, value))
    with pytest.raises(ModelCardError, match=re.escape(f"field '{field}'")) as err:
        ModelCard.load(policy)
    assert words in str(err.value) and str(policy) in str(err.value)


def test_missing_card_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ModelCardError, match="model card not found") as err:
        ModelCard.load(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value)
    bad = tmp_path / "bad.yaml"
    bad.write_text("format: [unclosed\n")
    with pytest.raises(ModelCardError, match="not valid YAML"):
        ModelCard.load(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ModelCardError, match="mapping"):
        ModelCard.load(bad)


# --------------------------------------------------------------------------- robot checks
def test_check_against_robot(wm: Path) -> None:
    card = ModelCard.load(wm)
    check_against_robot(card, JOINTS, ("front", "wrist", "top"))
    with pytest.raises(ModelCardError, match="robot joints the model lacks: \\['joint7'\\]"):
        check_against_robot(card, (*JOINTS, "joint7"), CAMERAS)
    with pytest.raises(ModelCardError, match="model joints not on the robot: \\['gripper'\\]"):
        check_against_robot(card, JOINTS[:-1], CAMERAS)
    with pytest.raises(ModelCardError, match="different order"):
        check_against_robot(card, (JOINTS[1], JOINTS[0], *JOINTS[2:]), CAMERAS)
    with pytest.raises(ModelCardError, match="\\['wrist'\\] are not among"):
        check_against_robot(card, JOINTS, ("front",))


def test_check_compatible(wm: Path, policy: Path, tmp_path: Path) -> None:
    check_compatible(ModelCard.load(wm), ModelCard.load(policy))
    other = world_model_onnx(tmp_path / "wm2.onnx", latent_shape=(1, 4, 5))
    data = wm_card_dict(other)
    data["outputs"][0]["shape"] = [1, 4, 5]
    card2 = write_card(tmp_path / "wm2.yaml", data)
    with pytest.raises(ModelCardError, match="outputs \\[1, 4, 5\\]"):
        check_compatible(ModelCard.load(card2), ModelCard.load(policy))
    with pytest.raises(ModelCardError, match="expected a world_model and a policy"):
        check_compatible(ModelCard.load(policy), ModelCard.load(wm))


# --------------------------------------------------------------------------- sessions
def test_load_and_run(wm: Path, policy: Path) -> None:
    model = load_model(wm, [CPU], expected_kind="world_model")
    assert model.active_providers == [CPU]
    assert model.last_inference_s is None
    q = np.arange(7, dtype=np.float32)[None] / 10
    images = np.full((1, 2, 3, 8, 8), 0.25, dtype=np.float32)
    out = model.run({"images": images, "joint_state": q})
    assert set(out) == {"wm_state", "value"}
    assert out["wm_state"].shape == (1, 4, 6)
    assert out["value"] == pytest.approx(np.array([[0.25]]))
    assert model.last_inference_s is not None and model.last_inference_s > 0

    pol = load_model(policy, [CPU], expected_kind="policy")
    chunk = pol.run({"wm_state": out["wm_state"], "joint_state": q})["action_chunk"]
    mean = float(out["wm_state"].mean())
    expected = q[:, None, :] + np.array([0.01, 0.02, 0.03], np.float32)[None, :, None] * mean
    np.testing.assert_allclose(chunk, expected, rtol=1e-5, atol=1e-6)


def test_run_rejects_bad_feeds(wm: Path) -> None:
    model = load_model(wm, [CPU])
    images = np.zeros((1, 2, 3, 8, 8), np.float32)
    q = np.zeros((1, 7), np.float32)
    with pytest.raises(InferenceInputError, match=r"role 'joint_state'.*\[1, 6\].*\[1, 7\]"):
        model.run({"images": images, "joint_state": np.zeros((1, 6), np.float32)})
    with pytest.raises(InferenceInputError, match="float64 \\[1, 7\\], expected float32"):
        model.run({"images": images, "joint_state": q.astype(np.float64)})
    with pytest.raises(InferenceInputError, match="no feed for role 'images'"):
        model.run({"joint_state": q})
    with pytest.raises(InferenceInputError, match="\\['wm_state'\\]"):
        model.run({"images": images, "joint_state": q, "wm_state": q})


def test_missing_onnx(wm: Path, tmp_path: Path) -> None:
    (tmp_path / "wm.onnx").unlink()
    with pytest.raises(ModelCardError, match="not found") as err:
        load_model(wm, [CPU])
    assert str(tmp_path / "wm.onnx") in str(err.value)


@pytest.mark.parametrize("damage", ["truncate", "swap"])
def test_sha256_mismatch_names_file(wm: Path, tmp_path: Path, damage: str) -> None:
    onnx_path = tmp_path / "wm.onnx"
    if damage == "truncate":
        onnx_path.write_bytes(onnx_path.read_bytes()[:100])
    else:
        world_model_onnx(onnx_path, latent_shape=(1, 6, 4))
    with pytest.raises(ModelCardError, match="sha256") as err:
        load_model(wm, [CPU])
    assert str(onnx_path) in str(err.value) and str(wm) in str(err.value)


def _card_for(tmp_path: Path, data: dict) -> Path:
    return write_card(tmp_path / "wm.yaml", data)


def test_card_shape_differs_from_onnx(tmp_path: Path) -> None:
    onnx_path = world_model_onnx(tmp_path / "wm.onnx", latent_shape=(1, 4, 6))
    data = wm_card_dict(onnx_path)
    data["outputs"][0]["shape"] = [1, 8, 3]
    card = _card_for(tmp_path, data)
    with pytest.raises(ModelCardError) as err:
        load_model(card, [CPU])
    text = str(err.value)
    assert str(card) in text and "'latent'" in text
    assert "expected [1, 8, 3] (card), actual [1, 4, 6]" in text


def test_card_dtype_and_names_differ_from_onnx(tmp_path: Path) -> None:
    onnx_path = world_model_onnx(tmp_path / "wm.onnx")
    double = world_model_onnx(tmp_path / "double.onnx", double_value=True)
    data = wm_card_dict(double)
    with pytest.raises(
        ModelCardError, match=r"'value': dtype expected float32 \(card\), actual float64"
    ):
        load_model(_card_for(tmp_path, data), [CPU])
    data = wm_card_dict(onnx_path)
    data["inputs"][1]["name"] = "state"
    with pytest.raises(ModelCardError, match="inputs \\['joint_state'\\] the card does not list"):
        load_model(_card_for(tmp_path, data), [CPU])
    data = wm_card_dict(onnx_path)
    data["outputs"][0]["name"] = "tokens"
    with pytest.raises(ModelCardError, match="output 'tokens' \\(role wm_state\\) is not in ONNX"):
        load_model(_card_for(tmp_path, data), [CPU])


def test_expected_kind(wm: Path) -> None:
    with pytest.raises(ModelCardError, match="field 'kind': expected 'policy'"):
        load_model(wm, [CPU], expected_kind="policy")


def test_nan_output_detected(tmp_path: Path) -> None:
    onnx_path = policy_onnx(tmp_path / "nan.onnx", nan=True)
    card = write_card(tmp_path / "nan.yaml", policy_card_dict(onnx_path))
    model = load_model(card, [CPU])
    feeds = {
        "wm_state": np.zeros((1, 4, 6), np.float32),
        "joint_state": np.zeros((1, 7), np.float32),
    }
    with pytest.raises(NonFiniteOutputError, match="21 NaN/Inf values of 21"):
        model.run(feeds)


# --------------------------------------------------------------------------- providers
def test_provider_fallback_to_cpu(wm: Path) -> None:
    available = ort.get_available_providers()
    if TENSORRT in available or CUDA in available:
        pytest.skip("this onnxruntime build has GPU providers")
    model = load_model(wm, [TENSORRT, CUDA, CPU])
    assert model.active_providers == [CPU]
    assert "runs on CPUExecutionProvider" in model.provider_summary
    assert TENSORRT in model.provider_summary and CUDA in model.provider_summary
    assert "unavailable" in model.provider_summary


def test_provider_plan_order_defaults_and_options() -> None:
    plan = plan_providers(
        [TENSORRT, CUDA],
        {TENSORRT: {"trt_fp16_enable": False, "trt_engine_cache_path": "~/trt"}},
        available=[TENSORRT, CUDA, CPU],
    )
    assert plan.providers == [TENSORRT, CUDA, CPU]
    assert plan.unavailable == []
    trt = plan.options[0]
    assert trt["trt_fp16_enable"] == "False"
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(Path("~/trt").expanduser())
    assert plan.options[1]["cudnn_conv_algo_search"] == "HEURISTIC"
    assert plan.options[2] == {}

    plan = plan_providers([CPU, CUDA, TENSORRT], None, available=[CUDA, CPU])
    assert plan.providers == [CUDA, CPU] and plan.unavailable == [TENSORRT]
    assert plan.options[0]["device_id"] == "0"
    default_trt = plan_providers([TENSORRT], None, available=[TENSORRT, CPU]).options[0]
    assert default_trt["trt_engine_cache_path"] == str(Path("~/.cache/ramp/trt").expanduser())
    with pytest.raises(ValueError, match="unknown onnxruntime execution provider 'TensorRT'"):
        plan_providers(["TensorRT"])
