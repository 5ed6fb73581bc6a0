"""Export a torch model to ONNX with its model card, then prove the ONNX matches torch.

``export_onnx`` writes ``<name>.onnx`` and ``<name>.yaml`` (the ``ramp-model-card/1`` contract,
docs/model_card.md) and loads them back through the same checks the robot nodes run
(``ramp_models.onnx_runtime.load_model``), comparing onnxruntime with torch.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ramp_models.model_card import (
    DYNAMIC_BATCH,
    ChunkSpec,
    ImageSpec,
    ModelCard,
    TensorSpec,
    sha256_file,
)
from ramp_models.onnx_runtime import CPU, load_model
from ramp_training import __version__

OPSET = 17
DEFAULT_ATOL = 1e-4


class ExportVerificationError(RuntimeError):
    """The exported ONNX does not reproduce the torch model; the files were removed."""


@dataclass(frozen=True)
class CardFields:
    """What the card says beyond what export measures (shapes, dtypes, sha256 are measured).

    ``inputs`` / ``outputs`` map ONNX tensor names to card roles, in the order of the model's
    ``forward`` arguments / returned tensors. ``model_id`` gets ``-<first 8 hex of sha256>``
    appended, so each exported file has its own id. ``batch``: ``"dynamic"`` (the default) gives
    every input and output a symbolic first axis named ``batch``, so one call can serve several
    robots (a batched model node); 1 fixes it (the cards written before batching).
    """

    kind: str
    model_id: str
    joints: Sequence[str]
    cameras: Sequence[str]
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    image: ImageSpec | None = None
    chunk: ChunkSpec | None = None
    producer: str = f"ramp_training {__version__}"
    batch: int | str = DYNAMIC_BATCH


def export_onnx(
    model: torch.nn.Module,
    example_inputs: Sequence[torch.Tensor],
    onnx_path: str | os.PathLike[str],
    card: CardFields,
    *,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
) -> Path:
    """Export ``model`` to ``onnx_path``, write the card beside it, verify; -> card path.

    The example inputs have batch 1 (the card's shapes); with ``card.batch`` dynamic the first
    axis of every input and output is exported as the symbolic ``batch``. Verification runs the
    exported model through onnxruntime (CPU, through the card checks the nodes use) on the
    example inputs and on seeded random inputs of the same shapes (and, for a batched card, a
    batch of 3); any output further than ``atol`` from torch raises ExportVerificationError and
    removes both files.
    """
    onnx_path = Path(onnx_path).absolute()
    card_path = onnx_path.with_suffix(".yaml")
    inputs = tuple(example_inputs)
    if len(inputs) != len(card.inputs):
        raise ValueError(f"{len(inputs)} example inputs for {len(card.inputs)} card inputs")
    for x in inputs:
        if x.shape[0] != 1:
            raise ValueError(f"example inputs must have batch 1, got shape {list(x.shape)}")

    model = model.eval()
    with torch.no_grad():
        reference = _as_tuple(model(*inputs))
    if len(reference) != len(card.outputs):
        raise ValueError(f"model returns {len(reference)} tensors for {len(card.outputs)} outputs")

    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = None
    if card.batch != 1:
        dynamic_axes = {name: {0: "batch"} for name in (*card.inputs, *card.outputs)}
    torch.onnx.export(
        model,
        inputs,
        str(onnx_path),
        input_names=list(card.inputs),
        output_names=list(card.outputs),
        opset_version=OPSET,
        do_constant_folding=True,
        dynamic_axes=dynamic_axes,
        dynamo=False,
    )
    sha = sha256_file(onnx_path)
    written = ModelCard(
        path=card_path,
        model_id=f"{card.model_id}-{sha[:8]}",
        kind=card.kind,
        onnx_path=onnx_path,
        sha256=sha,
        joints=tuple(card.joints),
        cameras=tuple(card.cameras),
        image=card.image,
        inputs=_specs(card.inputs, inputs),
        outputs=_specs(card.outputs, reference),
        chunk=card.chunk,
        created=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        producer=card.producer,
        batch=card.batch,
    )
    try:
        written.write()
        verify_export(model, card_path, inputs, atol=atol, seed=seed)
    except Exception:
        card_path.unlink(missing_ok=True)
        onnx_path.unlink(missing_ok=True)
        raise
    return card_path


def verify_export(
    model: torch.nn.Module,
    card_path: str | os.PathLike[str],
    example_inputs: Sequence[torch.Tensor],
    *,
    atol: float = DEFAULT_ATOL,
    seed: int = 0,
    random_trials: int = 2,
) -> float:
    """Largest |onnxruntime - torch| over the example and random inputs; raises above ``atol``.

    A batched card (``batch`` dynamic or N > 1) is also checked on a random batch of
    min(3, N) observations.
    """
    loaded = load_model(card_path, [CPU])
    generator = torch.Generator().manual_seed(seed)
    trials = [tuple(example_inputs)]
    batches = [1] * random_trials
    if loaded.card.batched:
        batches.append(min(3, loaded.card.max_batch or 3))
    for n in batches:
        trials.append(
            tuple(
                torch.randn((n, *x.shape[1:]), generator=generator, dtype=x.dtype)
                if x.is_floating_point()
                else x.expand(n, *x.shape[1:])
                for x in example_inputs
            )
        )
    worst = 0.0
    for trial in trials:
        with torch.no_grad():
            expected = _as_tuple(model(*trial))
        feeds = {
            spec.role: x.detach().cpu().numpy()
            for spec, x in zip(loaded.card.inputs, trial, strict=True)
        }
        batch = next(iter(feeds.values())).shape[0]
        try:
            got = loaded.run(feeds)
        except Exception as exc:  # onnxruntime's own error types for a graph that fixed batch 1
            if batch == 1:
                raise
            raise ExportVerificationError(
                f"{card_path}: the exported graph does not run a batch of {batch} ({exc}); make "
                "the model batch-generic (no fixed batch of 1 in reshapes) or export it with "
                "CardFields(batch=1)"
            ) from exc
        for spec, ref in zip(loaded.card.outputs, expected, strict=True):
            diff = float(np.max(np.abs(got[spec.role] - ref.detach().cpu().numpy())))
            worst = max(worst, diff)
            if not diff <= atol:
                raise ExportVerificationError(
                    f"{card_path}: ONNX output {spec.name!r} differs from torch by {diff:.3g} "
                    f"(tolerance {atol:g})"
                )
    return worst


def _as_tuple(result: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (result,) if isinstance(result, torch.Tensor) else tuple(result)


def _specs(names_to_roles: Mapping[str, str], tensors: Sequence[torch.Tensor]) -> tuple:
    return tuple(
        TensorSpec(name, role, str(t.dtype).removeprefix("torch."), tuple(int(d) for d in t.shape))
        for (name, role), t in zip(names_to_roles.items(), tensors, strict=True)
    )
