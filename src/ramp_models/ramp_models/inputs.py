"""Model inputs: the observation keys a model card needs and the feeds built from one observation.

ROS-free. A model node keeps the latest sample of every input in an ObservationBuffer
(``ramp_models.observation``) under the keys of :class:`InputPlan` (``wm_state``,
``joint_state``, ``camera/<name>``) and turns one synchronised observation into the feeds
``LoadedModel.run`` takes, keyed by card role:

- ``wm_state``: (1, tokens, dim) float32, the latest world-model state;
- ``joint_state``: (1, J) float32, rad / m in the card's joint order;
- ``images``: (1, cameras, 3, H, W) from :class:`ramp_models.preprocess.ImagePreprocessor`, the
  cameras in the card's order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ramp_models.model_card import ModelCard
from ramp_models.observation import Observation
from ramp_models.preprocess import ImagePreprocessor

WM_KEY = "wm_state"
"""Observation key (and card role) of the world-model state."""
JOINT_KEY = "joint_state"
"""Observation key (and card role) of the measured joint positions."""


def camera_key(name: str) -> str:
    """Observation key of a camera's latest frame."""
    return f"camera/{name}"


@dataclass(frozen=True)
class InputPlan:
    """What a model takes, derived from its card: observation keys and image preprocessing."""

    cameras: tuple[str, ...]
    """Cameras fed as ``images``, in card order (empty when the model takes no images)."""
    preprocess: ImagePreprocessor | None
    """None when the model takes no images."""
    keys: tuple[str, ...]
    """Observation keys the model needs (``wm_state``, ``joint_state``, ``camera/<name>``)."""
    wm_shape: tuple[int, ...] = ()
    """(tokens, dim) of the ``wm_state`` input; () when the model takes none."""

    @property
    def trigger_keys(self) -> frozenset[str]:
        """The inputs whose arrival wakes the inference thread: the world-model state when the
        model takes one, else the camera frames, else the joint state (the inputs that make an
        observation new, see :func:`observation_id`)."""
        if WM_KEY in self.keys:
            return frozenset({WM_KEY})
        cameras = frozenset(camera_key(c) for c in self.cameras)
        return cameras or frozenset(k for k in self.keys if k == JOINT_KEY)

    @classmethod
    def from_card(cls, card: ModelCard) -> InputPlan:
        """The inputs of ``card`` by role (``wm_state``, ``joint_state``, ``images``)."""
        roles = set(card.input_roles)
        images = "images" in roles
        cameras = tuple(card.cameras) if images else ()
        keys = [k for k in (WM_KEY, JOINT_KEY) if k in roles]
        keys += [camera_key(c) for c in cameras]
        wm = card.input_by_role("wm_state")
        return cls(
            cameras=cameras,
            preprocess=ImagePreprocessor(card.image) if images else None,
            keys=tuple(keys),
            wm_shape=tuple(wm.shape[1:]) if wm is not None else (),
        )

    def feeds(self, obs: Observation) -> dict[str, np.ndarray]:
        """The model feeds (keyed by role) from one observation holding every key of the plan."""
        feeds: dict[str, np.ndarray] = {}
        if WM_KEY in self.keys:
            feeds["wm_state"] = obs.samples[WM_KEY].value.astype(np.float32)[None]
        if JOINT_KEY in self.keys:
            feeds["joint_state"] = obs.samples[JOINT_KEY].value.astype(np.float32)[None]
        if self.preprocess is not None:
            feeds["images"] = self.preprocess(
                [obs.samples[camera_key(c)].value for c in self.cameras]
            )
        return feeds


def observation_id(obs: Observation) -> tuple:
    """What makes an observation new: the world-model state's stamp when the model takes one
    (a newer joint state or frame alone repeats the observation stamp), else every key's stamp.

    Two observations with equal ids would give the same inference; a node skips the second.
    """
    if WM_KEY in obs.samples:
        return ((WM_KEY, obs.samples[WM_KEY].stamp),)
    return obs.key_stamps()
