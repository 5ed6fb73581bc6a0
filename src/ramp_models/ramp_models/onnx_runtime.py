"""ONNX Runtime sessions checked against their model card (ROS-free).

``load_model`` reads the card, verifies the .onnx sha256, opens an ``onnxruntime.InferenceSession``
with the requested execution providers that this onnxruntime build offers (TensorRT and CUDA on a
robot computer with a GPU, CPU always last as the fallback) and checks every session input and
output against the card. ``LoadedModel.run`` takes and returns arrays keyed by card role.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ramp_models.model_card import ModelCard, ModelCardError, TensorSpec

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
DEFAULT_TRT_CACHE = "~/.cache/ramp/trt"

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


class InferenceInputError(ValueError):
    """A feed that does not match the card (missing/unknown role, wrong shape or dtype)."""


class NonFiniteOutputError(RuntimeError):
    """The model produced NaN or Inf; the output must not reach the robot."""


def default_provider_options(provider: str) -> dict[str, str]:
    """Defaults applied under the caller's options for TensorRT and CUDA (strings, as ORT wants).

    TensorRT: FP16 and a persistent engine cache (building an engine takes minutes on a Jetson,
    so the cache makes the second start fast). CUDA: heuristic cuDNN algorithm search so the first
    inference does not stall on an exhaustive benchmark; device 0.
    """
    if provider == TENSORRT:
        return {
            "trt_fp16_enable": "True",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(Path(DEFAULT_TRT_CACHE).expanduser()),
        }
    if provider == CUDA:
        return {
            "device_id": "0",
            "cudnn_conv_algo_search": "HEURISTIC",
            "do_copy_in_default_stream": "True",
        }
    return {}


@dataclass(frozen=True)
class ProviderPlan:
    """Which providers to ask the session for, with options, and which requested ones are absent."""

    providers: list[str]
    options: list[dict[str, str]]
    unavailable: list[str]


def plan_providers(
    requested: Sequence[str],
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    available: Sequence[str] | None = None,
) -> ProviderPlan:
    """Requested providers this build offers, order kept, CPU last; options merged over defaults.

    Raises ValueError for a name onnxruntime does not know (a typo in the config).
    """
    known = set(ort.get_all_providers())
    available = list(ort.get_available_providers() if available is None else available)
    provider_options = provider_options or {}
    for name in (*requested, *provider_options):
        if name not in known:
            raise ValueError(
                f"unknown onnxruntime execution provider {name!r}; known: {sorted(known)}"
            )
    chosen: list[str] = []
    unavailable: list[str] = []
    for name in requested:
        if name in chosen or name == CPU:
            continue
        (chosen if name in available else unavailable).append(name)
    chosen.append(CPU)
    options = []
    for name in chosen:
        merged = default_provider_options(name)
        merged.update({k: _option_str(v) for k, v in provider_options.get(name, {}).items()})
        if "trt_engine_cache_path" in merged:
            merged["trt_engine_cache_path"] = os.path.expanduser(merged["trt_engine_cache_path"])
        options.append(merged)
    return ProviderPlan(chosen, options, unavailable)


def _option_str(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


@dataclass
class LoadedModel:
    """A checked ONNX session plus its card; ``run`` maps roles to arrays."""

    card: ModelCard
    session: ort.InferenceSession
    active_providers: list[str]
    """Providers the session actually got, in priority order."""
    provider_summary: str
    """One line for the log: which providers the session got, which requested ones it did not."""
    last_inference_s: float | None = None
    """Wall time of the last ``run`` call in seconds (None before the first)."""
    _output_names: list[str] = field(default_factory=list, repr=False)

    @property
    def model_id(self) -> str:
        return self.card.model_id

    def run(
        self, feeds_by_role: Mapping[str, np.ndarray], *, check_finite: bool = True
    ) -> dict[str, np.ndarray]:
        """Run one inference. Feeds and results are keyed by card role.

        Every feed's first axis is the batch: 1, or for a card with ``batch`` dynamic / N any
        1..N observations, the same number in every feed (the outputs have it too; row i of
        every output belongs to row i of the feeds).

        Raises InferenceInputError for a missing or unknown role or a feed whose shape or dtype
        differs from the card (no silent casts) or whose batch the card does not allow, and
        NonFiniteOutputError when an output holds NaN or Inf (unless ``check_finite`` is False:
        a batched caller checks each robot's row itself, ``ramp_models.batching``).
        """
        src = self.card.source
        unknown = sorted(set(feeds_by_role) - set(self.card.input_roles))
        if unknown:
            raise InferenceInputError(
                f"{src}: feeds for roles {unknown} the model does not take "
                f"(inputs: {list(self.card.input_roles)})"
            )
        feeds: dict[str, np.ndarray] = {}
        batch: int | None = None
        for spec in self.card.inputs:
            if spec.role not in feeds_by_role:
                raise InferenceInputError(f"{src}: no feed for role {spec.role!r}")
            array = feeds_by_role[spec.role]
            if not isinstance(array, np.ndarray):
                raise InferenceInputError(
                    f"{src}: role {spec.role!r}: expected a numpy array, got {type(array).__name__}"
                )
            n = array.shape[0] if array.ndim else 0
            if (
                array.shape[1:] != spec.shape[1:]
                or array.ndim != len(spec.shape)
                or array.dtype != np.dtype(spec.dtype)
                or n < 1
            ):
                raise InferenceInputError(
                    f"{src}: role {spec.role!r} (input {spec.name!r}): got {array.dtype} "
                    f"{list(array.shape)}, expected {spec.dtype} {list(spec.shape)}"
                    + (" (first axis: batch)" if self.card.batched else "")
                )
            if batch is None:
                batch = n
            elif n != batch:
                raise InferenceInputError(
                    f"{src}: role {spec.role!r} (input {spec.name!r}): batch {n}, other feeds "
                    f"have {batch} (every feed stacks the same observations)"
                )
            feeds[spec.name] = array
        limit = self.card.max_batch
        if batch is not None and limit is not None and batch > limit:
            raise InferenceInputError(
                f"{src}: batch {batch} but the card allows at most {limit} observations per "
                f"call (field 'batch': {self.card.batch!r})"
            )
        start = time.perf_counter()
        results = self.session.run(self._output_names, feeds)
        self.last_inference_s = time.perf_counter() - start
        out: dict[str, np.ndarray] = {}
        for spec, value in zip(self.card.outputs, results, strict=True):
            if value.shape != (batch, *spec.shape[1:]):
                raise ModelCardError(
                    f"{src}: output {spec.name!r} (role {spec.role}) came back with shape "
                    f"{list(value.shape)} for batch {batch}, card says {list(spec.shape)}"
                )
            if (
                check_finite
                and np.issubdtype(value.dtype, np.floating)
                and not np.all(np.isfinite(value))
            ):
                bad = int(np.count_nonzero(~np.isfinite(value)))
                raise NonFiniteOutputError(
                    f"{src}: model {self.card.model_id} output {spec.name!r} (role {spec.role}) "
                    f"holds {bad} NaN/Inf values of {value.size}"
                )
            out[spec.role] = value
        return out


def load_model(
    card_path: str | os.PathLike[str],
    providers: Sequence[str] = (CPU,),
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    expected_kind: str | None = None,
    intra_op_threads: int = 1,
) -> LoadedModel:
    """Load a card, verify its .onnx, open a session and check it against the card.

    ``providers`` in priority order; those this onnxruntime build lacks are skipped (and named in
    ``provider_summary``), CPU is always appended as the fallback. ``provider_options`` maps a
    provider name to its options, applied over ``default_provider_options``.
    ``intra_op_threads`` defaults to 1: the robot computer runs many nodes.

    Raises ModelCardError naming the file and mismatch, ValueError for an unknown provider name.
    """
    card = ModelCard.load(card_path)
    if expected_kind is not None and card.kind != expected_kind:
        raise ModelCardError(
            f"{card.source}: field 'kind': expected {expected_kind!r}, got {card.kind!r}"
        )
    card.verify_sha256()
    plan = plan_providers(providers, provider_options)
    if TENSORRT in plan.providers:
        cache = plan.options[plan.providers.index(TENSORRT)].get("trt_engine_cache_path")
        if cache:
            Path(cache).mkdir(parents=True, exist_ok=True)

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(intra_op_threads)
    options.inter_op_num_threads = 1
    # Idle intra-op threads would otherwise spin between calls, burning cores the robot's other
    # processes need (seen: a 2-thread session idling at 100 % of a core between 15 Hz calls).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = ort.InferenceSession(
            str(card.onnx_path),
            sess_options=options,
            providers=plan.providers,
            provider_options=plan.options,
        )
    except Exception as exc:  # onnxruntime raises its own exception types for a bad model
        raise ModelCardError(
            f"{card.source}: onnxruntime cannot load {card.onnx_path}: {exc}"
        ) from exc

    _check_session(card, session)
    got = list(session.get_providers())
    report = _provider_summary(card, providers, plan, got)
    model = LoadedModel(card, session, got, report)
    model._output_names = [spec.name for spec in card.outputs]
    return model


def _provider_summary(
    card: ModelCard, requested: Sequence[str], plan: ProviderPlan, got: list[str]
) -> str:
    parts = [f"model {card.model_id} ({card.onnx_path.name}) runs on {', '.join(got)}"]
    missing = [f"{p} (not in this onnxruntime build)" for p in plan.unavailable]
    # A provider can be in the build yet fail to start (no GPU, missing CUDA/TensorRT libraries);
    # onnxruntime then drops it with only a warning.
    missing += [f"{p} (failed to initialise)" for p in plan.providers if p not in got]
    if missing:
        parts.append(f"requested but unavailable: {', '.join(missing)}")
    else:
        parts.append(f"requested: {', '.join(requested) or CPU}")
    return "; ".join(parts)


def _check_session(card: ModelCard, session: ort.InferenceSession) -> None:
    """Every session input must be on the card and vice versa; card outputs must exist."""
    src = card.source
    sess_inputs = {i.name: i for i in session.get_inputs()}
    sess_outputs = {o.name: o for o in session.get_outputs()}
    extra = sorted(set(sess_inputs) - {s.name for s in card.inputs})
    if extra:
        raise ModelCardError(
            f"{src}: ONNX {card.onnx_path.name} has inputs {extra} the card does not list "
            f"(card inputs: {[s.name for s in card.inputs]})"
        )
    for group, specs, actual in (
        ("input", card.inputs, sess_inputs),
        ("output", card.outputs, sess_outputs),
    ):
        for spec in specs:
            if spec.name not in actual:
                raise ModelCardError(
                    f"{src}: {group} {spec.name!r} (role {spec.role}) is not in ONNX "
                    f"{card.onnx_path.name} ({group}s there: {sorted(actual)})"
                )
            _check_tensor(card, group, spec, actual[spec.name])


def _check_tensor(card: ModelCard, group: str, spec: TensorSpec, arg: Any) -> None:
    src = card.source
    dtype = _ORT_TYPES.get(arg.type, arg.type)
    if dtype != spec.dtype:
        raise ModelCardError(
            f"{src}: {group} {spec.name!r}: dtype expected {spec.dtype} (card), actual {dtype} "
            f"(ONNX {card.onnx_path.name})"
        )
    shape = list(arg.shape)
    if card.batched and shape and isinstance(shape[0], int):
        raise ModelCardError(
            f"{src}: {group} {spec.name!r}: the card declares batch {card.batch!r} but ONNX "
            f"{card.onnx_path.name} fixes the first axis to {shape[0]} (export with a dynamic "
            "batch axis, or write batch: 1 on the card)"
        )
    # A symbolic dimension (dynamic axis) accepts the card's fixed size; run() checks feeds.
    compatible = len(shape) == len(spec.shape) and all(
        not isinstance(a, int) or a == e for a, e in zip(shape, spec.shape, strict=True)
    )
    if not compatible:
        raise ModelCardError(
            f"{src}: {group} {spec.name!r}: shape expected {list(spec.shape)} (card), actual "
            f"{shape} (ONNX {card.onnx_path.name})"
        )
