"""worldmodel_node: latest camera frames + joint state -> world-model latent on ``ramp/wm_state``.

Thin rclpy adapter: message conversion and scheduling here; model loading, validation,
preprocessing and input synchronisation live in ``ramp_worldmodel_node.core``.

Publishes ``ramp/wm_state`` (sensor_msgs/Image, 32FC1, rows = latent tokens, cols = latent dim,
header.stamp = observation time = oldest capture stamp used, frame_id = model id).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rclpy import Parameter
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from ramp_common.conversions import (
    MessageError,
    image_to_numpy,
    joint_state_positions,
    numpy_to_image,
    sec_to_stamp,
    stamp_to_sec,
)
from ramp_common.diagnostics import (
    ERROR,
    OK,
    WARN,
    DiagnosticsPublisher,
    LatencyStats,
    NodeHealth,
    RateMeter,
)
from ramp_common.node_tools import LogOnce, declare, expand_path, require_positive, run_node
from ramp_common.qos import SENSOR_QOS, STATE_QOS
from ramp_common.worker import TriggeredWorker
from ramp_worldmodel_node.core.model_card import check_against_robot
from ramp_worldmodel_node.core.observation import ObservationBuffer, StaleInputError
from ramp_worldmodel_node.core.onnx_runtime import NonFiniteOutputError, load_model
from ramp_worldmodel_node.core.preprocess import ImagePreprocessor

JOINT_KEY = "joint_state"


def camera_key(name: str) -> str:
    """Observation-buffer key of a camera."""
    return f"camera/{name}"


class WorldModelNode(Node):
    """Runs the world-model encoder at ``rate_hz`` on the latest synchronised inputs."""

    def __init__(self, node_name: str = "worldmodel_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        card_path = expand_path(
            declare(
                self, "model_card", "", "Path of the world-model card (YAML next to the .onnx)."
            )
        )
        providers = declare(
            self,
            "providers",
            ["CPUExecutionProvider"],
            "onnxruntime execution providers in order of preference; unavailable ones are "
            "skipped with a log line (TensorrtExecutionProvider, CUDAExecutionProvider, "
            "CPUExecutionProvider).",
        )
        self._rate_hz = require_positive(
            "rate_hz", declare(self, "rate_hz", 15.0, "Encoder inference rate, Hz.")
        )
        self._max_age_s = require_positive(
            "max_input_age_s",
            declare(self, "max_input_age_s", 0.25, "Inputs older than this (s) are not used."),
        )
        self._joint_names = list(
            declare(
                self,
                "joint_names",
                Parameter.Type.STRING_ARRAY,
                "Robot joint order (must match the model card).",
            )
        )
        camera_names = list(
            declare(
                self,
                "camera_names",
                Parameter.Type.STRING_ARRAY,
                "Robot cameras (must match the model card).",
            )
        )
        threads = declare(self, "intra_op_threads", 1, "onnxruntime intra-op threads.")
        if not card_path:
            raise ValueError("parameter model_card is empty: give the world-model card path")

        self._model = load_model(
            card_path, list(providers), expected_kind="world_model", intra_op_threads=threads
        )
        card = self._model.card
        check_against_robot(card, self._joint_names, camera_names)
        self.get_logger().info(
            f"world model {card.model_id} from {card_path}: {self._model.provider_summary}"
        )
        self._cameras = list(card.cameras)
        self._preprocess = ImagePreprocessor(card.image)
        self._needs_joints = card.input_by_role("joint_state") is not None
        keys = [camera_key(c) for c in self._cameras]
        if self._needs_joints:
            keys.append(JOINT_KEY)
        self._inputs = ObservationBuffer(keys)
        self._last_used: tuple | None = None

        self._health = NodeHealth()
        self._health.set_value("model_id", card.model_id)
        self._health.set_value("providers", ",".join(self._model.active_providers))
        self._log_once = LogOnce(self)
        self._inference_ms = LatencyStats()
        self._obs_age = LatencyStats()
        self._out_rate = RateMeter()

        io_group = ReentrantCallbackGroup()
        for name in self._cameras:
            self.create_subscription(
                Image,
                f"camera/{name}/image_raw",
                lambda msg, n=name: self._on_image(n, msg),
                SENSOR_QOS,
                callback_group=io_group,
            )
        self.create_subscription(
            JointState, "joint_states", self._on_joint_state, STATE_QOS, callback_group=io_group
        )
        self._pub = self.create_publisher(Image, "ramp/wm_state", STATE_QOS)
        # Inference on its own thread, woken by new frames: never blocks an input callback.
        self._worker = TriggeredWorker(
            self._infer, 1.0 / self._rate_hz, max_wait_s=0.1, name="worldmodel_inference"
        )
        self._worker.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)

    # -- inputs -------------------------------------------------------------------------------
    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            if msg.encoding not in ("rgb8", "bgr8"):
                raise MessageError(f"encoding {msg.encoding!r}, expected rgb8 or bgr8")
            frame = image_to_numpy(msg)
            if msg.encoding == "bgr8":
                frame = frame[:, :, ::-1]
        except MessageError as exc:
            self._health.count("dropped_images")
            self._log_once.warn(f"img-{camera}", f"dropping frame from camera {camera}: {exc}")
            return
        self._inputs.put(camera_key(camera), stamp_to_sec(msg.header.stamp), frame)
        self._worker.poke()

    def _on_joint_state(self, msg: JointState) -> None:
        if not self._needs_joints:
            return
        try:
            q = joint_state_positions(msg, self._joint_names)
        except MessageError as exc:
            self._health.count("dropped_joint_states")
            self._log_once.warn("joints", f"dropping joint_states: {exc}")
            return
        self._inputs.put(JOINT_KEY, stamp_to_sec(msg.header.stamp), q)

    # -- inference ----------------------------------------------------------------------------
    def _infer(self) -> None:
        now = time.time()
        try:
            obs = self._inputs.observation(now, self._max_age_s)
        except StaleInputError as exc:
            self._health.set_status(WARN, f"waiting: {exc}")
            return
        used = obs.key_stamps()
        if used == self._last_used:
            return  # nothing new since the last inference
        self._last_used = used
        feeds: dict[str, np.ndarray] = {
            "images": self._preprocess([obs.samples[camera_key(c)].value for c in self._cameras])
        }
        if self._needs_joints:
            feeds["joint_state"] = obs.samples[JOINT_KEY].value.astype(np.float32)[None, :]
        start = time.perf_counter()
        try:
            outputs = self._model.run(feeds)
        except NonFiniteOutputError as exc:
            self._health.count("nonfinite_outputs")
            self._health.set_status(ERROR, f"model output not finite: {exc}")
            self._log_once.error("nan", f"world model produced non-finite output: {exc}")
            return
        self._inference_ms.add(time.perf_counter() - start)
        latent = np.ascontiguousarray(outputs["wm_state"][0], dtype=np.float32)
        msg = numpy_to_image(latent, "32FC1", sec_to_stamp(obs.stamp), self._model.card.model_id)
        self._pub.publish(msg)
        self._obs_age.add(time.time() - obs.stamp)
        self._out_rate.tick()
        if "value" in outputs:
            self._health.set_value("value", float(np.asarray(outputs["value"]).ravel()[0]))
        self._health.set_status(OK, "running")

    def _update_health(self) -> None:
        self._health.set_value("rate_hz", self._out_rate.rate_hz())
        for key, value in self._inference_ms.percentiles_ms().items():
            self._health.set_value(f"inference_ms_{key}", value)
        for key, value in self._obs_age.percentiles_ms().items():
            self._health.set_value(f"observation_age_ms_{key}", value)

    def close(self) -> None:
        """Stop the inference thread (called on shutdown)."""
        self._worker.stop()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``worldmodel_node``."""
    return run_node(WorldModelNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
