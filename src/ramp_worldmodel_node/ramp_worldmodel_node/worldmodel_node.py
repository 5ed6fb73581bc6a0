"""worldmodel_node: latest camera frames + joint state -> world-model latent on ``ramp/wm_state``.

Thin rclpy adapter on :class:`ramp_models.ros.model_node.ModelNode`, which owns the parameters,
loading, hot reload (``~/reload``, the ``model_card`` parameter, ``watch_model``), input
handling, the inference thread (woken by new camera frames, at most ``rate_hz``) and health.
This node adds what a world model publishes:

``ramp/wm_state`` (sensor_msgs/Image, 32FC1, rows = latent tokens, cols = latent dim,
header.stamp = observation time = oldest capture stamp used, frame_id = model id), and the
value head's estimate (diagnostics ``value``) when the card has one. The diagnostics'
``model_id`` is the model the last inference ran. With ``robots`` (batched serving, one
encoder pass for several robots) each robot's latent goes to ``/<ns>/ramp/wm_state`` with that
robot's observation stamp, its value to ``<ns>.value``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from ramp_common.image_wire import encode_image
from ramp_common.node_tools import run_node
from ramp_common.params import Param
from ramp_common.qos import STATE_QOS
from ramp_models.observation import Observation
from ramp_models.ros.model_node import Lane, ModelNode, ModelSetup, model_node_params

PARAMS: tuple[Param, ...] = model_node_params("world-model", 15.0, "Encoder inference rate.")


class WorldModelNode(ModelNode):
    """Runs the world-model encoder at ``rate_hz`` on the latest synchronised inputs."""

    KIND = "world_model"
    LABEL = "world model"
    WORKER_NAME = "worldmodel_inference"
    MAX_WAIT_S = 0.1
    RATE_KEY = "rate_hz"
    AGE_KEY = "observation_age_ms"

    def __init__(self, node_name: str = "worldmodel_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, PARAMS, **node_kwargs)

    def _create_output(self, prefix: str) -> Any:
        return self.create_publisher(Image, f"{prefix}ramp/wm_state", STATE_QOS)

    def _publish(
        self, setup: ModelSetup, lane: Lane, obs: Observation, outputs: dict[str, Any]
    ) -> None:
        latent = np.ascontiguousarray(outputs["wm_state"][0], dtype=np.float32)
        # serialized (ramp_common.image_wire): no rclpy message object on the hot path
        lane.output.publish(encode_image(latent, "32FC1", obs.stamp, setup.model.model_id))
        if "value" in outputs:
            value = float(np.asarray(outputs["value"]).ravel()[0])
            self._health.set_value(lane.key("value"), value)


def main(args: list[str] | None = None) -> int:
    """Console entry point ``worldmodel_node``."""
    return run_node(WorldModelNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
