"""The model card contract (``ramp-model-card/1``, docs/model_card.md): parse, validate, write.

A card is a YAML file beside its ``.onnx`` that names the model, its joints and cameras, how a
camera frame becomes the images input, and every ONNX input/output with the role a node fills it
from. Nothing here imports onnxruntime, torch or rclpy; the ONNX session side lives in
``onnx_runtime.py``.

Every error is a :class:`ModelCardError` whose text names the card file and the field.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

if TYPE_CHECKING:
    from ramp_models.onnx_runtime import LoadedModel

CARD_FORMAT = "ramp-model-card/1"
KINDS = ("world_model", "policy")
INPUT_ROLES = ("images", "joint_state", "wm_state")
OUTPUT_ROLES = ("wm_state", "value", "action_chunk")
DTYPES = ("float32",)
"""Tensor dtypes a node fills and reads (images, joint states and latents are float32 there)."""
COLORS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
CHUNK_ACTIONS = ("absolute_joint_position",)

_MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED_FIELDS = (
    "format",
    "model_id",
    "kind",
    "onnx_file",
    "sha256",
    "joints",
    "cameras",
    "inputs",
    "outputs",
)
_KNOWN_FIELDS = (*_REQUIRED_FIELDS, "created", "producer", "image", "chunk", "batch")
DYNAMIC_BATCH = "dynamic"
"""Card ``batch`` value of a model whose ONNX has a symbolic first axis of any size."""


class ModelCardError(ValueError):
    """A card or model that cannot be used; the text names the file, the field and the problem."""


@dataclass(frozen=True)
class TensorSpec:
    """One ONNX input or output: its graph name, the role a node fills it from, dtype, shape."""

    name: str
    role: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "dtype": self.dtype,
            "shape": list(self.shape),
        }


@dataclass(frozen=True)
class ImageSpec:
    """How a camera frame (H x W x 3 uint8 RGB) becomes the images input.

    ``x = (pixel * scale - mean[c]) / std[c]`` per channel ``c`` of the ``color`` order fed to the
    model; ``height``/``width`` in pixels; ``layout`` is the per-camera layout (NCHW: (3, H, W)).
    """

    height: int
    width: int
    color: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "width": self.width,
            "color": self.color,
            "layout": self.layout,
            "scale": self.scale,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class ChunkSpec:
    """Action chunk timing: ``length`` steps H, ``step_dt`` s apart.

    Step k (0-based) targets observation time + (k + 1) * step_dt.
    """

    length: int
    step_dt: float
    action: str = "absolute_joint_position"

    def to_dict(self) -> dict[str, Any]:
        return {"length": self.length, "step_dt": self.step_dt, "action": self.action}


@dataclass(frozen=True)
class ModelCard:
    """A validated model card.

    ``path`` is the card file (None for a card built in memory and not yet written);
    ``onnx_path`` is the model file (absolute when the card came from disk).
    """

    path: Path | None
    model_id: str
    kind: str
    onnx_path: Path
    sha256: str
    joints: tuple[str, ...]
    cameras: tuple[str, ...]
    image: ImageSpec | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    chunk: ChunkSpec | None = None
    created: str = ""
    producer: str = ""
    format: str = field(default=CARD_FORMAT)
    batch: int | str = 1
    """How many observations one call takes along the first axis of every input and output:
    1 (fixed; the default, and every card written before batching), ``"dynamic"`` (any number,
    the ONNX axis is symbolic) or an int N > 1 (dynamic up to N, e.g. a TensorRT profile's
    maximum). Tensor ``shape`` entries always give the shape of one observation (leading 1)."""

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, card_path: str | os.PathLike[str]) -> ModelCard:
        """Read and validate a card file. Raises ModelCardError naming the file and field."""
        path = Path(card_path).expanduser().absolute()
        if not path.is_file():
            raise ModelCardError(f"{path}: model card not found")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ModelCardError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, card_path: str | os.PathLike[str] | None) -> ModelCard:
        """Validate a parsed card (as read from YAML). ``card_path`` locates ``onnx_file``."""
        path = Path(card_path).absolute() if card_path is not None else None
        p = _Parser(str(path) if path is not None else "<model card>")
        if not isinstance(data, Mapping):
            p.fail("", f"expected a mapping at the top level, got {type(data).__name__}")
        for key in _REQUIRED_FIELDS:
            if key not in data:
                p.fail(key, "missing required field")
        unknown = sorted(str(k) for k in data if k not in _KNOWN_FIELDS)
        if unknown:
            p.fail(unknown[0], f"unknown field (known: {', '.join(_KNOWN_FIELDS)})")

        fmt = p.string(data, "format")
        if fmt != CARD_FORMAT:
            p.fail("format", f"expected {CARD_FORMAT!r}, got {fmt!r}")
        model_id = p.string(data, "model_id")
        if not _MODEL_ID_RE.match(model_id):
            p.fail("model_id", f"{model_id!r} must match {_MODEL_ID_RE.pattern}")
        kind = p.choice(data, "kind", KINDS)
        onnx_file = p.string(data, "onnx_file")
        if Path(onnx_file).is_absolute():
            p.fail("onnx_file", f"{onnx_file!r} must be relative to the card's folder")
        base = path.parent if path is not None else Path()
        onnx_path = (
            Path(os.path.normpath(base / onnx_file)) if path is not None else Path(onnx_file)
        )
        sha = p.string(data, "sha256")
        if not _SHA256_RE.match(sha):
            p.fail("sha256", f"{sha!r} is not 64 lowercase hex digits")
        joints = p.name_list(data, "joints", allow_empty=False)
        cameras = p.name_list(data, "cameras", allow_empty=True)
        if isinstance(data.get("created"), (datetime.date, datetime.datetime)):
            created = data["created"].isoformat()  # an unquoted YAML timestamp
        else:
            created = p.string(data, "created", optional=True)
        producer = p.string(data, "producer", optional=True)
        inputs = p.tensors(data, "inputs", INPUT_ROLES)
        outputs = p.tensors(data, "outputs", OUTPUT_ROLES)
        image = p.image(data["image"]) if data.get("image") is not None else None
        chunk = p.chunk(data["chunk"]) if data.get("chunk") is not None else None
        batch = p.batch(data.get("batch", 1))

        card = cls(
            path=path,
            model_id=model_id,
            kind=kind,
            onnx_path=onnx_path,
            sha256=sha,
            joints=joints,
            cameras=cameras,
            image=image,
            inputs=inputs,
            outputs=outputs,
            chunk=chunk,
            created=created,
            producer=producer,
            batch=batch,
        )
        _check_consistency(card, p)
        return card

    # ----------------------------------------------------------------- access
    @property
    def source(self) -> str:
        """The card file name for messages (or a placeholder for an unwritten card)."""
        return str(self.path) if self.path is not None else "<model card>"

    def input_by_role(self, role: str) -> TensorSpec | None:
        """The input filled from ``role``, or None when the model takes no such input."""
        return next((t for t in self.inputs if t.role == role), None)

    def output_by_role(self, role: str) -> TensorSpec | None:
        """The output with ``role``, or None when the model has no such output."""
        return next((t for t in self.outputs if t.role == role), None)

    @property
    def max_batch(self) -> int | None:
        """Most observations per call: 1 for a fixed-batch card, None for ``batch: dynamic``."""
        if self.batch == DYNAMIC_BATCH:
            return None
        return int(self.batch)

    @property
    def batched(self) -> bool:
        """True when one call may take more than one observation (``batch`` dynamic or N > 1)."""
        return self.max_batch != 1

    @property
    def input_roles(self) -> tuple[str, ...]:
        return tuple(t.role for t in self.inputs)

    @property
    def output_roles(self) -> tuple[str, ...]:
        return tuple(t.role for t in self.outputs)

    # ----------------------------------------------------------------- writing
    def to_dict(self) -> dict[str, Any]:
        """The card as plain YAML-able data; ``onnx_file`` relative to the card's folder."""
        if not self.onnx_path.is_absolute():
            onnx_file = str(self.onnx_path)
        elif self.path is not None:
            onnx_file = os.path.relpath(self.onnx_path, self.path.parent)
        else:
            onnx_file = self.onnx_path.name
        data: dict[str, Any] = {
            "format": self.format,
            "model_id": self.model_id,
            "kind": self.kind,
            "onnx_file": Path(onnx_file).as_posix(),
            "sha256": self.sha256,
            "created": self.created,
            "producer": self.producer,
            "joints": list(self.joints),
            "cameras": list(self.cameras),
        }
        if self.image is not None:
            data["image"] = self.image.to_dict()
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        if self.chunk is not None:
            data["chunk"] = self.chunk.to_dict()
        if self.batch != 1:
            data["batch"] = self.batch
        return data

    def to_yaml(self) -> str:
        """The card as YAML text (block style, with flow-style tensor entries)."""
        return yaml.dump(self.to_dict(), Dumper=_CardDumper, sort_keys=False, width=100)

    def write(self, card_path: str | os.PathLike[str] | None = None) -> ModelCard:
        """Validate and write the card (to ``card_path`` or ``self.path``); -> the written card.

        The card is validated by parsing what is written, so an invalid card is never written.
        """
        target = Path(card_path) if card_path is not None else self.path
        if target is None:
            raise ModelCardError("<model card>: no card path to write to")
        target = target.absolute()
        placed = replace(self, path=target)
        written = ModelCard.from_dict(yaml.safe_load(placed.to_yaml()), target)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(placed.to_yaml(), encoding="utf-8")
        os.replace(tmp, target)
        return written

    def verify_sha256(self) -> None:
        """Refuse a missing, truncated or swapped .onnx (hash differs from the card's)."""
        if not self.onnx_path.is_file():
            raise ModelCardError(f"{self.source}: onnx_file {self.onnx_path} not found")
        actual = sha256_file(self.onnx_path)
        if actual != self.sha256:
            raise ModelCardError(
                f"{self.source}: sha256 of {self.onnx_path} is {actual}, card says {self.sha256}"
                " (truncated, corrupted or swapped model file)"
            )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_against_robot(
    card: ModelCard, joint_names: Sequence[str], camera_names: Sequence[str]
) -> None:
    """Refuse a model whose joints or cameras differ from the robot config's.

    Joints must be the robot's joints in the robot's order (every joint vector is in that order).
    Every camera the card lists must be one of the robot's cameras (the node feeds the card's
    cameras in the card's order; extra robot cameras are not fed).
    """
    joints, robot = list(card.joints), list(joint_names)
    if joints != robot:
        missing = [j for j in joints if j not in robot]
        extra = [j for j in robot if j not in joints]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"model joints not on the robot: {missing}")
            if extra:
                parts.append(f"robot joints the model lacks: {extra}")
            detail = "; ".join(parts)
        else:
            detail = "same joints in a different order"
        raise ModelCardError(
            f"{card.source}: field 'joints': model {joints} != robot {robot} ({detail})"
        )
    missing_cams = [c for c in card.cameras if c not in camera_names]
    if missing_cams:
        raise ModelCardError(
            f"{card.source}: field 'cameras': model cameras {missing_cams} are not among the "
            f"robot's cameras {list(camera_names)}"
        )


def check_compatible(world_model: ModelCard, policy: ModelCard) -> None:
    """Refuse a world model / policy pair whose joints or wm_state shapes differ."""
    if world_model.kind != "world_model" or policy.kind != "policy":
        raise ModelCardError(
            f"{world_model.source} / {policy.source}: expected a world_model and a policy card,"
            f" got {world_model.kind!r} and {policy.kind!r}"
        )
    if world_model.joints != policy.joints:
        raise ModelCardError(
            f"{policy.source}: field 'joints' {list(policy.joints)} != world model "
            f"{world_model.source} joints {list(world_model.joints)}"
        )
    wm_out = world_model.output_by_role("wm_state")
    pol_in = policy.input_by_role("wm_state")
    if pol_in is not None and wm_out is not None and wm_out.shape != pol_in.shape:
        raise ModelCardError(
            f"{policy.source}: input {pol_in.name!r} (role wm_state) has shape "
            f"{list(pol_in.shape)} but world model {world_model.source} outputs "
            f"{list(wm_out.shape)}"
        )


def load_model(
    card_path: str | os.PathLike[str],
    providers: Sequence[str] = ("CPUExecutionProvider",),
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    expected_kind: str | None = None,
    intra_op_threads: int = 1,
) -> LoadedModel:
    """Load and check a card and its ONNX session (see ``onnx_runtime.load_model``)."""
    from ramp_models.onnx_runtime import load_model as _load

    return _load(card_path, providers, provider_options, expected_kind, intra_op_threads)


# --------------------------------------------------------------------------- internals
class _CardDumper(yaml.SafeDumper):
    """Tensor entries and short number lists in flow style, like the documented example."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(x, (int, float, str)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
    flow = set(data) == {"name", "role", "dtype", "shape"}
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_CardDumper.add_representer(list, _represent_list)
_CardDumper.add_representer(dict, _represent_dict)


class _Parser:
    """Field readers that raise ModelCardError naming the card file and the field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, fieldname: str, message: str) -> NoReturn:
        where = f" field '{fieldname}':" if fieldname else ""
        raise ModelCardError(f"{self.source}:{where} {message}")

    def string(self, data: Mapping[str, Any], key: str, *, optional: bool = False) -> str:
        value = data.get(key)
        if value is None and optional:
            return ""
        if not isinstance(value, str) or (not value and not optional):
            self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def choice(self, data: Mapping[str, Any], key: str, allowed: Sequence[str]) -> str:
        value = data.get(key)
        if value not in allowed:
            self.fail(key, f"{value!r} is not one of {list(allowed)}")
        return value

    def name_list(self, data: Mapping[str, Any], key: str, *, allow_empty: bool) -> tuple[str, ...]:
        value = data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"expected a list of names, got {value!r}")
        if not value and not allow_empty:
            self.fail(key, "must not be empty")
        dupes = sorted({v for v in value if value.count(v) > 1})
        if dupes:
            self.fail(key, f"duplicate names {dupes}")
        return tuple(value)

    def number(self, data: Mapping[str, Any], key: str, where: str, *, positive: bool) -> float:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(f"{where}.{key}", f"expected a number, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):
            self.fail(f"{where}.{key}", f"expected a finite number, got {value!r}")
        if positive and value <= 0:
            self.fail(f"{where}.{key}", f"must be > 0, got {value!r}")
        return float(value)

    def integer(self, data: Mapping[str, Any], key: str, where: str) -> int:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            self.fail(f"{where}.{key}", f"expected a positive integer, got {value!r}")
        return value

    def triple(self, data: Mapping[str, Any], key: str, where: str, *, positive: bool) -> tuple:
        value = data.get(key)
        if not isinstance(value, list) or len(value) != 3:
            self.fail(f"{where}.{key}", f"expected a list of 3 numbers, got {value!r}")
        items = {str(i): v for i, v in enumerate(value)}
        return tuple(
            self.number(items, str(i), f"{where}.{key}", positive=positive) for i in range(3)
        )

    def batch(self, value: Any) -> int | str:
        if value == DYNAMIC_BATCH:
            return DYNAMIC_BATCH
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.fail(
                "batch",
                f"expected {DYNAMIC_BATCH!r} or a positive integer (the most observations per "
                f"call), got {value!r}",
            )
        return value

    def image(self, data: Any) -> ImageSpec:
        if not isinstance(data, Mapping):
            self.fail("image", f"expected a mapping, got {data!r}")
        for key in data:
            if key not in ("height", "width", "color", "layout", "scale", "mean", "std"):
                self.fail(f"image.{key}", "unknown field")
        for key in ("height", "width", "color", "layout", "scale", "mean", "std"):
            if key not in data:
                self.fail(f"image.{key}", "missing required field")
        if data["color"] not in COLORS:
            self.fail("image.color", f"{data['color']!r} is not one of {list(COLORS)}")
        if data["layout"] not in LAYOUTS:
            self.fail("image.layout", f"{data['layout']!r} is not one of {list(LAYOUTS)}")
        return ImageSpec(
            height=self.integer(data, "height", "image"),
            width=self.integer(data, "width", "image"),
            color=data["color"],
            layout=data["layout"],
            scale=self.number(data, "scale", "image", positive=True),
            mean=self.triple(data, "mean", "image", positive=False),
            std=self.triple(data, "std", "image", positive=True),
        )

    def chunk(self, data: Any) -> ChunkSpec:
        if not isinstance(data, Mapping):
            self.fail("chunk", f"expected a mapping, got {data!r}")
        for key in data:
            if key not in ("length", "step_dt", "action"):
                self.fail(f"chunk.{key}", "unknown field")
        for key in ("length", "step_dt", "action"):
            if key not in data:
                self.fail(f"chunk.{key}", "missing required field")
        if data["action"] not in CHUNK_ACTIONS:
            self.fail("chunk.action", f"{data['action']!r} is not one of {list(CHUNK_ACTIONS)}")
        return ChunkSpec(
            length=self.integer(data, "length", "chunk"),
            step_dt=self.number(data, "step_dt", "chunk", positive=True),
            action=data["action"],
        )

    def tensors(
        self, data: Mapping[str, Any], key: str, roles: Sequence[str]
    ) -> tuple[TensorSpec, ...]:
        entries = data.get(key)
        if not isinstance(entries, list) or not entries:
            self.fail(key, f"expected a non-empty list of tensors, got {entries!r}")
        specs: list[TensorSpec] = []
        for i, entry in enumerate(entries):
            where = f"{key}[{i}]"
            if not isinstance(entry, Mapping):
                self.fail(where, f"expected a mapping, got {entry!r}")
            for k in ("name", "role", "dtype", "shape"):
                if k not in entry:
                    self.fail(f"{where}.{k}", "missing required field")
            name = entry["name"]
            if not isinstance(name, str) or not name:
                self.fail(f"{where}.name", f"expected a non-empty string, got {name!r}")
            role = entry["role"]
            if role not in roles:
                self.fail(
                    f"{where}.role",
                    f"tensor {name!r}: role {role!r} is not one a node can fill "
                    f"(allowed for {key}: {list(roles)})",
                )
            if entry["dtype"] not in DTYPES:
                self.fail(
                    f"{where}.dtype",
                    f"tensor {name!r}: {entry['dtype']!r} is not one the nodes fill or read "
                    f"{list(DTYPES)} (export float32 inputs/outputs; fp16 runs inside TensorRT)",
                )
            shape = entry["shape"]
            if (
                not isinstance(shape, list)
                or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
            ):
                self.fail(
                    f"{where}.shape",
                    f"tensor {name!r}: expected a list of positive integers, got {shape!r}",
                )
            if shape[0] != 1:
                self.fail(
                    f"{where}.shape",
                    f"tensor {name!r}: batch must be 1, got {shape} (shapes give one "
                    "observation; a model that takes several per call declares that with the "
                    "top-level field 'batch: dynamic' or 'batch: N')",
                )
            specs.append(TensorSpec(name, role, entry["dtype"], tuple(shape)))
        for attr in ("name", "role"):
            values = [getattr(s, attr) for s in specs]
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                self.fail(key, f"duplicate tensor {attr}s {dupes}")
        return tuple(specs)


def _check_consistency(card: ModelCard, p: _Parser) -> None:
    """Joints, cameras, image and chunk against the tensor shapes; roles against the kind."""
    d = len(card.joints)

    def spec_where(spec: TensorSpec, group: str) -> str:
        specs = card.inputs if group == "inputs" else card.outputs
        return f"{group}[{specs.index(spec)}].shape"

    js = card.input_by_role("joint_state")
    if js is not None and js.shape != (1, d):
        p.fail(
            spec_where(js, "inputs"),
            f"joint_state input {js.name!r} has shape {list(js.shape)}, expected [1, {d}] "
            f"for joints {list(card.joints)}",
        )
    wm_specs = (
        ("inputs", card.input_by_role("wm_state")),
        ("outputs", card.output_by_role("wm_state")),
    )
    for group, spec in wm_specs:
        if spec is not None and len(spec.shape) != 3:
            p.fail(
                spec_where(spec, group),
                f"wm_state tensor {spec.name!r} must be (1, tokens, dim), got {list(spec.shape)}",
            )
    val = card.output_by_role("value")
    if val is not None and val.shape != (1, 1):
        p.fail(spec_where(val, "outputs"), f"value output {val.name!r} must be [1, 1]")

    images = card.input_by_role("images")
    if images is not None:
        if card.image is None:
            p.fail("image", f"required because input {images.name!r} has role images")
        if not card.cameras:
            p.fail("cameras", f"must not be empty: input {images.name!r} has role images")
        n, h, w = len(card.cameras), card.image.height, card.image.width
        expected = (1, n, 3, h, w) if card.image.layout == "NCHW" else (1, n, h, w, 3)
        if images.shape != expected:
            p.fail(
                spec_where(images, "inputs"),
                f"images input {images.name!r} has shape {list(images.shape)}, expected "
                f"{list(expected)} for {n} cameras {list(card.cameras)} and a "
                f"{h}x{w} {card.image.layout} image",
            )

    if card.kind == "world_model":
        if card.output_by_role("wm_state") is None:
            p.fail("outputs", "a world_model must have an output with role wm_state")
        if card.output_by_role("action_chunk") is not None:
            p.fail("outputs", "a world_model has no action_chunk output (kind: policy?)")
    else:
        act = card.output_by_role("action_chunk")
        if act is None:
            p.fail("outputs", "a policy must have an output with role action_chunk")
        if card.chunk is None:
            p.fail("chunk", "missing required field for kind policy")
        expected = (1, card.chunk.length, d)
        if act.shape != expected:
            p.fail(
                spec_where(act, "outputs"),
                f"action_chunk output {act.name!r} has shape {list(act.shape)}, expected "
                f"{list(expected)} (chunk.length {card.chunk.length}, {d} joints)",
            )
