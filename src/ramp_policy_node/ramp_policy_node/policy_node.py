"""policy_node: world-model state + joint state -> action chunk on ``ramp/action_chunk``.

Thin rclpy adapter over the model-card contract of ``ramp_models``: it feeds the
inputs the policy's card names (``wm_state``, ``joint_state``, optionally ``images``) and publishes
the ``action_chunk`` output as trajectory_msgs/JointTrajectory with header.stamp = observation
time (the world-model state's stamp, itself the oldest capture stamp), time_from_start of step k =
(k+1) * step_dt, frame_id = policy model id.

Replanning (asynchronous chunking): inference starts when the chunk last published has fewer than
``replan_remaining_s`` seconds left, and at most at ``rate_hz``; with ``replan_remaining_s`` = 0 it
runs on every new world-model state, at most at ``rate_hz``. Inference runs on its own thread
(``ramp_common.worker.TriggeredWorker``), never in an input callback.

Hot reload (``ramp_models.hot_swap``): ``~/reload`` (std_srvs/Trigger: load the
card at ``model_card`` again), a new value of the ``model_card`` parameter, or, with
``watch_model: true``, a change of the card file on disk load and check a new policy next to the
running one (card, sha256, session, robot joints and cameras, same inputs and wm_state shape);
the inference thread switches to it between two chunks, and the chunk executor splices the new
policy's first chunk like any other. A refused policy leaves the old one running and says why
(log, service answer, parameter result, diagnostics ``last_reload``). The diagnostics'
``model_id`` is the policy that made the last chunk (also its frame_id).
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
from ramp_models.hot_swap import HotSwap, check_same_interface
from ramp_models.model_card import ModelCardError, check_against_robot
from ramp_models.observation import ObservationBuffer, StaleInputError
from ramp_models.onnx_runtime import LoadedModel, NonFiniteOutputError, load_model
from ramp_models.preprocess import ImagePreprocessor

WM_KEY = "wm_state"
JOINT_KEY = "joint_state"


@dataclass(frozen=True)
class _Setup:
    """A loaded policy and what the node derived from its card."""

    model: LoadedModel
    step_dt: float
    t_from_start: np.ndarray
    """(H,) s: (k + 1) * step_dt."""
    cameras: tuple[str, ...]
    """Cameras fed as images (empty when the policy takes no images)."""
    preprocess: ImagePreprocessor | None
    card_path: str


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
            raise ValueError("parameter model_card is empty: give the policy card path")
        self._providers = list(providers)
        self._camera_names = camera_names

        setup = self._load(card_path)
        card = setup.model.card
        self.get_logger().info(
            f"policy {card.model_id} from {card_path}: {setup.model.provider_summary}"
        )
        self._swap = HotSwap(setup, card_path)
        self._roles = {spec.role for spec in card.inputs}
        keys = []
        if "wm_state" in self._roles:
            keys.append(WM_KEY)
        if "joint_state" in self._roles:
            keys.append(JOINT_KEY)
        self._cameras = list(setup.cameras)
        keys += [f"camera/{c}" for c in self._cameras]
        self._inputs = ObservationBuffer(keys)
        self._wm_shape = tuple(card.input_by_role("wm_state").shape[1:]) if WM_KEY in keys else ()
        self._last_used: tuple | None = None
        self._last_chunk_end = 0.0
        self._last_start = 0.0

        self._health = NodeHealth()
        self._health.set_value("model_id", card.model_id)
        self._health.set_value("model_card", card_path)
        self._health.set_value("providers", ",".join(setup.model.active_providers))
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

        reload_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reload", self._on_reload, callback_group=reload_group)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if watch:
            self.create_timer(watch_period, self._watch_card, callback_group=reload_group)

    # -- models ---------------------------------------------------------------------------------
    def _load(self, card_path: str, current: _Setup | None = None) -> _Setup:
        """Load and check a policy; raises ModelCardError / ValueError naming the problem."""
        model = load_model(
            card_path, self._providers, expected_kind="policy", intra_op_threads=self._threads
        )
        card = model.card
        check_against_robot(card, self._joint_names, self._camera_names)
        if current is not None:
            check_same_interface(current.model.card, card, current.cameras)
        step_dt = float(card.chunk.step_dt)
        images = card.input_by_role("images") is not None
        return _Setup(
            model=model,
            step_dt=step_dt,
            t_from_start=step_dt * np.arange(1, card.chunk.length + 1),
            cameras=tuple(card.cameras) if images else (),
            preprocess=ImagePreprocessor(card.image) if images else None,
            card_path=card_path,
        )

    def _reload(self, card_path: str, why: str) -> tuple[bool, str]:
        """Load, check and stage a new policy (the old one runs on meanwhile); -> (ok, message)."""
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
            f"{current.model.model_id} at the next chunk"
        )
        self._swap.stage(setup, card_path, message)
        self._health.set_value("model_card", card_path)
        self.get_logger().info(message)
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
        setup, switched = self._swap.take()
        if switched:
            self._health.set_value("model_id", setup.model.model_id)
            self._health.set_value("providers", ",".join(setup.model.active_providers))
            self.get_logger().info(f"now running policy {setup.model.model_id}")
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
        if setup.preprocess is not None:
            feeds["images"] = setup.preprocess(
                [obs.samples[f"camera/{c}"].value for c in setup.cameras]
            )
        start = time.perf_counter()
        try:
            outputs = setup.model.run(feeds)
        except NonFiniteOutputError as exc:
            self._health.count("nonfinite_outputs")
            self._health.set_status(ERROR, f"policy output not finite: {exc}")
            self._log_once.error("nan", f"policy produced non-finite output, chunk dropped: {exc}")
            return
        self._inference_ms.add(time.perf_counter() - start)
        chunk = np.asarray(outputs["action_chunk"][0], dtype=np.float64)
        msg = numpy_to_trajectory(
            self._joint_names,
            setup.t_from_start,
            chunk,
            sec_to_stamp(obs.stamp),
            setup.model.model_id,
        )
        self._pub.publish(msg)
        published = time.time()
        self._last_chunk_end = obs.stamp + float(setup.t_from_start[-1])
        self._chunk_age.add(published - obs.stamp)
        self._rate.tick()
        self._health.set_status(OK, "running")

    def _update_health(self) -> None:
        self._health.set_value("chunk_rate_hz", self._rate.rate_hz())
        self._health.set_value("reloads", self._swap.reloads)
        self._health.set_value("reloads_refused", self._swap.refused)
        if self._swap.last_message:
            self._health.set_value("last_reload", self._swap.last_message)
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
