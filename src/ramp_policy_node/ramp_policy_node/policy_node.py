"""policy_node: world-model state + joint state -> action chunk on ``ramp/action_chunk``.

Thin rclpy adapter over the model-card contract of ``ramp_worldmodel_node.core``: it feeds the
inputs the policy's card names (``wm_state``, ``joint_state``, optionally ``images``) and publishes
the ``action_chunk`` output as trajectory_msgs/JointTrajectory with header.stamp = observation
time (the world-model state's stamp, itself the oldest capture stamp), time_from_start of step k =
(k+1) * step_dt, frame_id = policy model id.

Replanning (asynchronous chunking): inference starts when the chunk last published has fewer than
``replan_remaining_s`` seconds left, and at most at ``rate_hz``; with ``replan_remaining_s`` = 0 it
runs on every new world-model state, at most at ``rate_hz``. Inference runs on its own thread
(``ramp_common.worker.TriggeredWorker``), never in an input callback.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from rclpy import Parameter
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import (
    MessageError,
    image_to_numpy,
    joint_state_positions,
    numpy_to_trajectory,
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
from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS
from ramp_common.worker import TriggeredWorker
from ramp_worldmodel_node.core.model_card import check_against_robot
from ramp_worldmodel_node.core.observation import ObservationBuffer, StaleInputError
from ramp_worldmodel_node.core.onnx_runtime import NonFiniteOutputError, load_model
from ramp_worldmodel_node.core.preprocess import ImagePreprocessor

WM_KEY = "wm_state"
JOINT_KEY = "joint_state"


class PolicyNode(Node):
    """Runs the chunk policy and publishes ``ramp/action_chunk``."""

    def __init__(self, node_name: str = "policy_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        card_path = expand_path(
            declare(self, "model_card", "", "Path of the policy card (YAML next to the .onnx).")
        )
        providers = declare(
            self,
            "providers",
            ["CPUExecutionProvider"],
            "onnxruntime execution providers in order of preference; unavailable ones are skipped.",
        )
        self._rate_hz = require_positive(
            "rate_hz", declare(self, "rate_hz", 10.0, "Highest replan rate, Hz.")
        )
        self._replan_remaining_s = declare(
            self,
            "replan_remaining_s",
            0.0,
            "Start the next inference when the current chunk has less than this left (s); "
            "0 = replan at rate_hz.",
        )
        self._max_age_s = require_positive(
            "max_input_age_s",
            declare(self, "max_input_age_s", 0.25, "Inputs older than this (s) are not used."),
        )
        self._joint_names = list(
            declare(self, "joint_names", Parameter.Type.STRING_ARRAY, "Robot joint order.")
        )
        camera_names = list(
            declare(self, "camera_names", Parameter.Type.STRING_ARRAY, "Robot cameras.")
        )
        threads = declare(self, "intra_op_threads", 1, "onnxruntime intra-op threads.")
        if not card_path:
            raise ValueError("parameter model_card is empty: give the policy card path")

        self._model = load_model(
            card_path, list(providers), expected_kind="policy", intra_op_threads=threads
        )
        card = self._model.card
        check_against_robot(card, self._joint_names, camera_names)
        self.get_logger().info(
            f"policy {card.model_id} from {card_path}: {self._model.provider_summary}"
        )
        self._step_dt = float(card.chunk.step_dt)
        self._t_from_start = self._step_dt * np.arange(1, card.chunk.length + 1)
        self._roles = {spec.role for spec in card.inputs}
        keys = []
        if "wm_state" in self._roles:
            keys.append(WM_KEY)
        if "joint_state" in self._roles:
            keys.append(JOINT_KEY)
        self._cameras = list(card.cameras) if "images" in self._roles else []
        keys += [f"camera/{c}" for c in self._cameras]
        self._preprocess = ImagePreprocessor(card.image) if self._cameras else None
        self._inputs = ObservationBuffer(keys)
        self._wm_shape = tuple(card.input_by_role("wm_state").shape[1:]) if WM_KEY in keys else ()
        self._last_used: tuple | None = None
        self._last_chunk_end = 0.0
        self._last_start = 0.0

        self._health = NodeHealth()
        self._health.set_value("model_id", card.model_id)
        self._health.set_value("providers", ",".join(self._model.active_providers))
        self._log_once = LogOnce(self)
        self._inference_ms = LatencyStats()
        self._chunk_age = LatencyStats()
        self._rate = RateMeter()

        io_group = ReentrantCallbackGroup()
        if WM_KEY in keys:
            self.create_subscription(
                Image, "ramp/wm_state", self._on_wm_state, STATE_QOS, callback_group=io_group
            )
        self.create_subscription(
            JointState, "joint_states", self._on_joint_state, STATE_QOS, callback_group=io_group
        )
        for name in self._cameras:
            self.create_subscription(
                Image,
                f"camera/{name}/image_raw",
                lambda msg, n=name: self._on_image(n, msg),
                SENSOR_QOS,
                callback_group=io_group,
            )
        self._pub = self.create_publisher(JointTrajectory, "ramp/action_chunk", COMMAND_QOS)
        # Inference on its own thread, woken by each new world-model state (and polled often
        # enough to honour replan_remaining_s): never blocks an input callback.
        self._worker = TriggeredWorker(
            self._tick, 1.0 / self._rate_hz, max_wait_s=0.02, name="policy_inference"
        )
        self._worker.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)

    # -- inputs -------------------------------------------------------------------------------
    def _on_wm_state(self, msg: Image) -> None:
        try:
            if msg.encoding != "32FC1":
                raise MessageError(f"encoding {msg.encoding!r}, expected 32FC1")
            latent = image_to_numpy(msg)
            if latent.shape != self._wm_shape:
                raise MessageError(f"shape {latent.shape}, policy expects {self._wm_shape}")
        except MessageError as exc:
            self._health.count("dropped_wm_states")
            self._log_once.warn("wm", f"dropping ramp/wm_state: {exc}")
            return
        self._inputs.put(WM_KEY, stamp_to_sec(msg.header.stamp), latent)
        self._worker.poke()

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            q = joint_state_positions(msg, self._joint_names)
        except MessageError as exc:
            self._health.count("dropped_joint_states")
            self._log_once.warn("joints", f"dropping joint_states: {exc}")
            return
        self._inputs.put(JOINT_KEY, stamp_to_sec(msg.header.stamp), q)

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            frame = image_to_numpy(msg)
            if msg.encoding not in ("rgb8", "bgr8") or frame.ndim != 3:
                raise MessageError(f"encoding {msg.encoding!r}, expected rgb8 or bgr8")
            if msg.encoding == "bgr8":
                frame = frame[:, :, ::-1]
        except MessageError as exc:
            self._health.count("dropped_images")
            self._log_once.warn(f"img-{camera}", f"dropping frame from camera {camera}: {exc}")
            return
        self._inputs.put(f"camera/{camera}", stamp_to_sec(msg.header.stamp), frame)

    # -- inference ----------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.time()
        if self._replan_remaining_s > 0 and now < self._last_chunk_end - self._replan_remaining_s:
            return
        try:
            obs = self._inputs.observation(now, self._max_age_s)
        except StaleInputError as exc:
            self._health.set_status(WARN, f"waiting: {exc}")
            return
        # A new chunk needs a new observation: a new world-model state when the policy takes one
        # (a newer joint state alone would repeat the observation stamp).
        used = obs.samples[WM_KEY].stamp if WM_KEY in obs.samples else obs.key_stamps()
        if used == self._last_used:
            return
        self._last_used = used
        self._last_start = now
        feeds: dict[str, np.ndarray] = {}
        if WM_KEY in obs.samples:
            feeds["wm_state"] = obs.samples[WM_KEY].value.astype(np.float32)[None]
        if JOINT_KEY in obs.samples:
            feeds["joint_state"] = obs.samples[JOINT_KEY].value.astype(np.float32)[None]
        if self._preprocess is not None:
            feeds["images"] = self._preprocess(
                [obs.samples[f"camera/{c}"].value for c in self._cameras]
            )
        start = time.perf_counter()
        try:
            outputs = self._model.run(feeds)
        except NonFiniteOutputError as exc:
            self._health.count("nonfinite_outputs")
            self._health.set_status(ERROR, f"policy output not finite: {exc}")
            self._log_once.error("nan", f"policy produced non-finite output, chunk dropped: {exc}")
            return
        self._inference_ms.add(time.perf_counter() - start)
        chunk = np.asarray(outputs["action_chunk"][0], dtype=np.float64)
        msg = numpy_to_trajectory(
            self._joint_names,
            self._t_from_start,
            chunk,
            sec_to_stamp(obs.stamp),
            self._model.card.model_id,
        )
        self._pub.publish(msg)
        published = time.time()
        self._last_chunk_end = obs.stamp + float(self._t_from_start[-1])
        self._chunk_age.add(published - obs.stamp)
        self._rate.tick()
        self._health.set_status(OK, "running")

    def _update_health(self) -> None:
        self._health.set_value("chunk_rate_hz", self._rate.rate_hz())
        for key, value in self._inference_ms.percentiles_ms().items():
            self._health.set_value(f"inference_ms_{key}", value)
        for key, value in self._chunk_age.percentiles_ms().items():
            self._health.set_value(f"chunk_age_at_publish_ms_{key}", value)

    def close(self) -> None:
        """Stop the inference thread (called on shutdown)."""
        self._worker.stop()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``policy_node``."""
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
