"""Hot reload of a node's model: load and check beside the running one, switch between inferences.

ROS-free. A node keeps its active model (plus what it derived from the card, e.g. the image
preprocessor) in a :class:`HotSwap`. A reload (service, parameter change, or the card file
changed on disk) loads and checks the new model on the caller's thread while inference goes on
with the old one; only a model that passed every check is staged, and the inference thread
picks it up at the start of its next inference (:meth:`HotSwap.take`), so no inference ever
mixes two models and there is no pause. A refused model changes nothing but the counters and
``last_message``.

Checks a reload adds to the card/session/robot checks of loading
(:func:`check_same_interface`): the new model must keep the node's wiring: same kind, same
joints, the same input roles, cameras among the ones the node subscribes, and the same
``wm_state`` shapes (a world model feeds a running policy; a policy is fed by a running world
model). Image size, normalisation, chunk length and step may change.

A replacement must also answer: :func:`check_probe_inference` runs it on neutral inputs (zeros,
then a fixed pseudo-random draw in [0, 1)) and refuses one whose outputs are not finite (a
model that emits NaN would load, then every inference would be dropped and the robot would hold
on a model that cannot drive).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from ramp_models.model_card import ModelCard, ModelCardError

T = TypeVar("T")


@dataclass(frozen=True)
class FileStamp:
    """What identifies one version of a file on disk (mtime in ns, size, inode)."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileStamp | None:
        """The file's stamp, or None when it does not exist (or cannot be read)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


def check_same_interface(
    current: ModelCard, new: ModelCard, subscribed_cameras: Sequence[str]
) -> None:
    """Refuse a replacement that does not fit the running node's wiring (ModelCardError)."""
    src = new.source
    if new.kind != current.kind:
        raise ModelCardError(f"{src}: field 'kind': {new.kind!r}, the node runs a {current.kind!r}")
    if new.joints != current.joints:
        raise ModelCardError(
            f"{src}: field 'joints': {list(new.joints)} differ from the running model's "
            f"{list(current.joints)}"
        )
    if sorted(new.input_roles) != sorted(current.input_roles):
        raise ModelCardError(
            f"{src}: field 'inputs': roles {sorted(new.input_roles)} differ from the running "
            f"model's {sorted(current.input_roles)} (changing inputs needs a restart)"
        )
    if new.input_by_role("images") is not None:
        missing = [c for c in new.cameras if c not in subscribed_cameras]
        if missing:
            raise ModelCardError(
                f"{src}: field 'cameras': {missing} are not among the cameras this node "
                f"subscribes to {list(subscribed_cameras)} (changing cameras needs a restart)"
            )
    for label, old_spec, new_spec in (
        ("input", current.input_by_role("wm_state"), new.input_by_role("wm_state")),
        ("output", current.output_by_role("wm_state"), new.output_by_role("wm_state")),
    ):
        if old_spec is not None and new_spec is not None and old_spec.shape != new_spec.shape:
            raise ModelCardError(
                f"{src}: wm_state {label} {new_spec.name!r} has shape {list(new_spec.shape)}, "
                f"the running model's is {list(old_spec.shape)} (the model on the other side "
                "of ramp/wm_state would no longer fit; change both with a restart)"
            )


def check_probe_inference(model: Any) -> None:
    """Run ``model`` (an ``onnx_runtime.LoadedModel``) on neutral inputs before it may serve.

    Two inferences: every input zeros, then a fixed pseudo-random draw in [0, 1) (integer
    inputs: 0 and 1). Raises ModelCardError naming the model and the output when an output is
    NaN/Inf, or when the inference fails (ONNX Runtime error, an output shape the card does not
    declare).
    """
    from ramp_models.onnx_runtime import NonFiniteOutputError

    card = model.card
    rng = np.random.default_rng(0)
    for label in ("zeros", "random [0, 1)"):
        feeds = {}
        for spec in card.inputs:
            dtype = np.dtype(spec.dtype)
            if label == "zeros":
                feeds[spec.role] = np.zeros(spec.shape, dtype)
            elif np.issubdtype(dtype, np.floating):
                feeds[spec.role] = rng.random(spec.shape).astype(dtype)
            else:
                feeds[spec.role] = np.ones(spec.shape, dtype)
        try:
            model.run(feeds)
        except NonFiniteOutputError as exc:
            raise ModelCardError(f"probe inference on {label} inputs: {exc}") from None
        except ModelCardError:
            raise
        except Exception as exc:  # an ONNX Runtime failure is the model's fault here
            raise ModelCardError(
                f"{card.source}: probe inference on {label} inputs failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None


class HotSwap(Generic[T]):
    """The active setup of type ``T`` plus at most one staged replacement (thread-safe).

    ``card_path`` is the card the active (or last staged) setup came from; ``card_changed``
    compares the file on disk with the version seen at the last load attempt.
    """

    def __init__(self, active: T, card_path: str) -> None:
        self._lock = threading.Lock()
        self._active = active
        self._pending: T | None = None
        self._card_path = str(card_path)
        self._seen = FileStamp.of(card_path)
        self.reloads = 0
        """Replacements staged (accepted)."""
        self.refused = 0
        """Replacements refused (the old model kept running)."""
        self.switches = 0
        """Replacements taken over by the inference thread."""
        self.last_message = ""

    @property
    def active(self) -> T:
        with self._lock:
            return self._active

    @property
    def card_path(self) -> str:
        with self._lock:
            return self._card_path

    def take(self) -> tuple[T, bool]:
        """For the inference thread, before each inference: (setup to use, just switched)."""
        with self._lock:
            if self._pending is None:
                return self._active, False
            self._active, self._pending = self._pending, None
            self.switches += 1
            return self._active, True

    def stage(self, setup: T, card_path: str, message: str) -> None:
        """Stage a checked replacement; the next ``take`` switches to it."""
        with self._lock:
            self._pending = setup
            self._card_path = str(card_path)
            self._seen = FileStamp.of(card_path)
            self.reloads += 1
            self.last_message = message

    def refuse(self, card_path: str, message: str) -> None:
        """Record a refused replacement (the file version is remembered as seen)."""
        with self._lock:
            if os.path.abspath(card_path) == os.path.abspath(self._card_path):
                self._seen = FileStamp.of(card_path)
            self.refused += 1
            self.last_message = message

    def card_changed(self) -> bool:
        """True when the card file differs from the version seen at the last load attempt."""
        with self._lock:
            path, seen = self._card_path, self._seen
        now = FileStamp.of(path)
        return now is not None and now != seen
