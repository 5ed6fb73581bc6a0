"""worldmodel_node: latest camera frames + joint state -> world-model latent on ``ramp/wm_state``.

Thin rclpy adapter: message conversion and scheduling here; model loading, validation,
preprocessing and input synchronisation live in ``ramp_worldmodel_node.core``.

Publishes ``ramp/wm_state`` (sensor_msgs/Image, 32FC1, rows = latent tokens, cols = latent dim,
header.stamp = observation time = oldest capture stamp used, frame_id = model id).

Hot reload (``ramp_models.hot_swap``): ``~/reload`` (std_srvs/Trigger: load the
card at ``model_card`` again), a new value of the ``model_card`` parameter, or, with
``watch_model: true``, a change of the card file on disk load and check a new model next to the
running one (card, sha256, session, robot joints and cameras, same wiring); the inference thread
switches to it between two inferences. A refused model leaves the old one running and says why
(log, service answer, parameter result, diagnostics ``last_reload``). The diagnostics'
``model_id`` is the model the last inference ran.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy import Parameter
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

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
from ramp_models.hot_swap import HotSwap, check_same_interface
from ramp_models.model_card import ModelCardError, check_against_robot
from ramp_models.observation import ObservationBuffer, StaleInputError
from ramp_models.onnx_runtime import LoadedModel, NonFiniteOutputError, load_model
from ramp_models.preprocess import ImagePreprocessor

JOINT_KEY = "joint_state"


def camera_key(name: str) -> str:
    """Observation-buffer key of a camera."""
    return f"camera/{name}"


@dataclass(frozen=True)
class _Setup:
    """A loaded world model and what the node derived from its card."""

    model: LoadedModel
    preprocess: ImagePreprocessor
    cameras: tuple[str, ...]
    needs_joints: bool
    card_path: str


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
        self._threads = declare(self, "intra_op_threads", 1, "onnxruntime intra-op threads.")
        watch = bool(
            declare(
                self,
                "watch_model",
                False,
                "Reload when the model_card file changes on disk (polled every watch_period_s).",
            )
        )
        watch_period = require_positive(
            "watch_period_s",
            declare(self, "watch_period_s", 1.0, "How often the card file is checked, s."),
        )
        if not card_path:
            raise ValueError("parameter model_card is empty: give the world-model card path")
        self._providers = list(providers)
        self._camera_names = camera_names

        setup = self._load(card_path)
        card = setup.model.card
        self.get_logger().info(
            f"world model {card.model_id} from {card_path}: {setup.model.provider_summary}"
        )
        self._swap = HotSwap(setup, card_path)
        self._cameras = list(setup.cameras)
        self._needs_joints = setup.needs_joints
        keys = [camera_key(c) for c in self._cameras]
        if self._needs_joints:
            keys.append(JOINT_KEY)
        self._inputs = ObservationBuffer(keys)
        self._last_used: tuple | None = None

        self._health = NodeHealth()
        self._health.set_value("model_id", card.model_id)
        self._health.set_value("model_card", card_path)
        self._health.set_value("providers", ",".join(setup.model.active_providers))
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

        reload_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reload", self._on_reload, callback_group=reload_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if watch:
            self.create_timer(watch_period, self._watch_card, callback_group=reload_group)

    # -- models ---------------------------------------------------------------------------------
    def _load(self, card_path: str, current: _Setup | None = None) -> _Setup:
        """Load and check a world model; raises ModelCardError / ValueError naming the problem."""
        model = load_model(
            card_path,
            self._providers,
            expected_kind="world_model",
            intra_op_threads=self._threads,
        )
        card = model.card
        check_against_robot(card, self._joint_names, self._camera_names)
        if current is not None:
            check_same_interface(current.model.card, card, current.cameras)
        return _Setup(
            model=model,
            preprocess=ImagePreprocessor(card.image),
            cameras=tuple(card.cameras),
            needs_joints=card.input_by_role("joint_state") is not None,
            card_path=card_path,
        )

    def _reload(self, card_path: str, why: str) -> tuple[bool, str]:
        """Load, check and stage a new model (the old one runs on meanwhile); -> (ok, message)."""
        current = self._swap.active
        try:
            setup = self._load(card_path, current)
        except (ModelCardError, ValueError, OSError) as exc:
            message = f"reload ({why}) refused, still running {current.model.model_id}: {exc}"
            self._swap.refuse(card_path, message)
            self.get_logger().error(message)
            return False, message
        message = (
            f"reload ({why}): {setup.model.model_id} from {card_path} staged, replaces "
            f"{current.model.model_id} at the next inference"
        )
        self._swap.stage(setup, card_path, message)
        self._health.set_value("model_card", card_path)
        self.get_logger().info(message)
        self._worker.poke()
        return True, message

    def _on_reload(self, _request: Trigger.Request, response: Trigger.Response) -> Any:
        response.success, response.message = self._reload(self._swap.card_path, "service")
        return response

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        for param in params:
            if param.name == "model_card":
                path = expand_path(str(param.value))
                if not path:
                    return SetParametersResult(successful=False, reason="model_card is empty")
                ok, message = self._reload(path, "parameter model_card")
                return SetParametersResult(successful=ok, reason=message)
        return SetParametersResult(successful=True)

    def _watch_card(self) -> None:
        if self._swap.card_changed():
            self._reload(self._swap.card_path, "card file changed")

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
        if JOINT_KEY not in self._inputs.keys:
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
        setup, switched = self._swap.take()
        if switched:
            self._health.set_value("model_id", setup.model.model_id)
            self._health.set_value("providers", ",".join(setup.model.active_providers))
            self.get_logger().info(f"now running world model {setup.model.model_id}")
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
            "images": setup.preprocess([obs.samples[camera_key(c)].value for c in setup.cameras])
        }
        if setup.needs_joints:
            feeds["joint_state"] = obs.samples[JOINT_KEY].value.astype(np.float32)[None, :]
        start = time.perf_counter()
        try:
            outputs = setup.model.run(feeds)
        except NonFiniteOutputError as exc:
            self._health.count("nonfinite_outputs")
            self._health.set_status(ERROR, f"model output not finite: {exc}")
            self._log_once.error("nan", f"world model produced non-finite output: {exc}")
            return
        self._inference_ms.add(time.perf_counter() - start)
        latent = np.ascontiguousarray(outputs["wm_state"][0], dtype=np.float32)
        msg = numpy_to_image(latent, "32FC1", sec_to_stamp(obs.stamp), setup.model.model_id)
        self._pub.publish(msg)
        self._obs_age.add(time.time() - obs.stamp)
        self._out_rate.tick()
        if "value" in outputs:
            self._health.set_value("value", float(np.asarray(outputs["value"]).ravel()[0]))
        self._health.set_status(OK, "running")

    def _update_health(self) -> None:
        self._health.set_value("rate_hz", self._out_rate.rate_hz())
        self._health.set_value("reloads", self._swap.reloads)
        self._health.set_value("reloads_refused", self._swap.refused)
        if self._swap.last_message:
            self._health.set_value("last_reload", self._swap.last_message)
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
