"""ModelNode: the rclpy side every model node shares (world model, policy).

A subclass names its model kind and what it publishes; the base owns the rest, once:

- parameters (:func:`model_node_params`, declared through ``ramp_common.params``): ``model_card``
  and ``max_input_age_s`` are reloadable, everything else is read-only;
- loading and checking the model against the robot (card, sha256, session, joints, cameras);
- hot reload (``ramp_models.hot_swap``): ``~/reload`` (std_srvs/Trigger: load the card at
  ``model_card`` again), a new value of the ``model_card`` parameter, or, with ``watch_model``,
  a change of the card file on disk load and check a new model next to the running one; it is
  staged and the inference thread is woken to switch to it between two inferences. A refused
  model leaves the old one running and says why (log, service answer, parameter result,
  diagnostics ``last_reload``);
- inputs by card role (``ramp_models.inputs.InputPlan``): ``ramp/wm_state`` (Image 32FC1,
  tokens x dim), ``joint_states`` (JointState, rad / m by name), ``camera/<name>/image_raw``
  (Image rgb8 or bgr8, HxWx3), each checked the same way (a malformed message is counted and
  logged once); the inputs that make an observation new wake the inference thread;
- the inference thread (``ramp_common.worker.TriggeredWorker``, at most ``rate_hz``): latest
  synchronised observation (stamp = oldest input stamp) -> feeds -> ONNX Runtime -> the
  subclass's ``_publish``; a non-finite output is dropped and reported ERROR;
- health on ``diagnostics``: model id (the model the last inference ran), card, providers,
  reload counters, inference time and age at publish percentiles, output rate, and the hops of
  ``ramp_common.hops`` (input delay, waiting, inference, publish).

Times are wall-clock seconds (``time.time()``), the clock of the message stamps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from ramp_common.conversions import (
    MessageError,
    image_to_numpy,
    joint_state_positions,
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
from ramp_common.hops import HopTimer
from ramp_common.node_tools import LogOnce, expand_path
from ramp_common.params import Param, ParamSet
from ramp_common.qos import SENSOR_QOS, STATE_QOS
from ramp_common.worker import TriggeredWorker
from ramp_models.hot_swap import HotSwap, check_probe_inference, check_same_interface
from ramp_models.inputs import JOINT_KEY, WM_KEY, InputPlan, camera_key, observation_id
from ramp_models.model_card import ModelCard, ModelCardError, check_against_robot
from ramp_models.observation import (
    FrameSetGate,
    Observation,
    ObservationBuffer,
    StaleInputError,
)
from ramp_models.onnx_runtime import LoadedModel, NonFiniteOutputError, load_model


def model_node_params(label: str, rate_hz: float, rate_description: str) -> tuple[Param, ...]:
    """The parameters every model node has; ``label`` names the model ('world-model', ...)."""
    return (
        Param(
            "model_card",
            "",
            f"Path of the {label} card (YAML next to the .onnx); ~ and $VARS are expanded. "
            "Setting it loads, checks and swaps in that model.",
            reloadable=True,
        ),
        Param(
            "providers",
            ["CPUExecutionProvider"],
            "onnxruntime execution providers in order of preference; unavailable ones are "
            "skipped with a log line (TensorrtExecutionProvider, CUDAExecutionProvider, "
            "CPUExecutionProvider).",
        ),
        Param("rate_hz", rate_hz, rate_description, unit="Hz", positive=True),
        Param(
            "input_sync_s",
            0.05,
            "With several trigger inputs (cameras): wait for a new sample of every one, at most "
            "this long after the first, so one inference sees one frame set.",
            unit="s",
            low=0.0,
        ),
        Param(
            "max_input_age_s",
            0.25,
            "Inputs older than this are not used (the node waits and says which are stale).",
            unit="s",
            positive=True,
            reloadable=True,
        ),
        Param(
            "joint_names", None, "Robot joint order (must match the model card).", type="string[]"
        ),
        Param("camera_names", None, "Robot cameras (must match the model card).", type="string[]"),
        Param("intra_op_threads", 1, "onnxruntime intra-op threads.", low=0),
        Param(
            "watch_model",
            False,
            "Reload when the model_card file changes on disk (polled every watch_period_s).",
        ),
        Param(
            "watch_period_s", 1.0, "How often the card file is checked.", unit="s", positive=True
        ),
    )


@dataclass(frozen=True)
class ModelSetup:
    """A loaded, checked model and what the node derived from its card."""

    model: LoadedModel
    inputs: InputPlan
    card_path: str
    extra: Any = None
    """What the subclass derives from the card (:meth:`ModelNode._derive`)."""


class ModelNode(Node):
    """Base of the model nodes (see the module docstring). Subclasses set the class attributes
    and implement :meth:`_create_output` and :meth:`_publish`; they may override
    :meth:`_derive`, :meth:`_due`, :meth:`_on_parameter` and :meth:`_extra_health`."""

    KIND: ClassVar[str]
    """Card ``kind`` this node runs ('world_model' or 'policy')."""
    LABEL: ClassVar[str]
    """The model in words, for logs ('world model', 'policy')."""
    WORKER_NAME: ClassVar[str]
    """Name of the inference thread."""
    MAX_WAIT_S: ClassVar[float] = 0.1
    """Longest sleep of the inference thread without a trigger, s."""
    RATE_KEY: ClassVar[str] = "rate_hz"
    """Diagnostics key of the output rate."""
    AGE_KEY: ClassVar[str] = "observation_age_ms"
    """Diagnostics key prefix of the output's age (observation stamp -> publish)."""

    def __init__(self, node_name: str, params: tuple[Param, ...], **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = ParamSet(self, params, on_change=self._on_param_change)
        card_path = expand_path(self.params["model_card"])
        if not card_path:
            raise ValueError(f"parameter model_card is empty: give the {self.LABEL} card path")
        self._providers = list(self.params["providers"])
        self._threads = int(self.params["intra_op_threads"])
        self._joint_names = list(self.params["joint_names"])
        self._camera_names = list(self.params["camera_names"])
        self._max_age_s = float(self.params["max_input_age_s"])

        setup = self._load(card_path)
        self.get_logger().info(
            f"{self.LABEL} {setup.model.model_id} from {card_path}: {setup.model.provider_summary}"
        )
        self._swap: HotSwap[ModelSetup] = HotSwap(setup, card_path)
        plan = setup.inputs
        self._inputs = ObservationBuffer(plan.keys)
        self._wm_shape = plan.wm_shape
        self._trigger_keys = plan.trigger_keys
        self._gate = FrameSetGate(sorted(plan.trigger_keys), float(self.params["input_sync_s"]))
        self._last_id: tuple | None = None

        self._health = NodeHealth()
        self._set_model_health(setup)
        self._health.set_value("model_card", card_path)
        self._log_once = LogOnce(self)
        self._inference_ms = LatencyStats()
        self._age = LatencyStats()
        self._rate = RateMeter()
        self._hops = HopTimer(("input", "wait", "inference", "publish"))
        self._arrivals: dict[str, tuple[float, float]] = {}
        """Input key -> (arrival wall time, its stamp), s; the newest of each."""

        io_group = ReentrantCallbackGroup()
        if WM_KEY in plan.keys:
            self.create_subscription(
                Image, "ramp/wm_state", self._on_wm_state, STATE_QOS, callback_group=io_group
            )
        self.create_subscription(
            JointState, "joint_states", self._on_joint_state, STATE_QOS, callback_group=io_group
        )
        for name in plan.cameras:
            self.create_subscription(
                Image,
                f"camera/{name}/image_raw",
                lambda msg, n=name: self._on_image(n, msg),
                SENSOR_QOS,
                callback_group=io_group,
            )
        self._create_output()
        # Inference on its own thread, woken by new inputs: never blocks an input callback.
        self._worker = TriggeredWorker(
            self._tick,
            1.0 / float(self.params["rate_hz"]),
            max_wait_s=self.MAX_WAIT_S,
            name=self.WORKER_NAME,
        )
        self._worker.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)

        reload_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reload", self._on_reload, callback_group=reload_group)
        if self.params["watch_model"]:
            self.create_timer(
                float(self.params["watch_period_s"]),
                self._watch_card,
                callback_group=reload_group,
            )

    # -- subclass hooks -------------------------------------------------------------------------
    def _create_output(self) -> None:
        """Create the publisher(s) of the model's output."""
        raise NotImplementedError

    def _publish(self, setup: ModelSetup, obs: Observation, outputs: dict[str, Any]) -> None:
        """Publish one inference's outputs (keyed by card role) for observation ``obs``."""
        raise NotImplementedError

    def _derive(self, card: ModelCard) -> Any:
        """What the node needs from a card besides its inputs (stored as ``ModelSetup.extra``)."""
        return None

    def _due(self, now: float) -> bool:
        """False to skip this wake-up before reading the inputs (``now``: wall clock, s)."""
        return True

    def _on_parameter(self, name: str, value: Any) -> tuple[bool, str]:
        """Apply a new value of a subclass's reloadable parameter -> (accepted, message)."""
        return False, f"parameter {name} cannot be changed at run time"

    def _extra_health(self) -> None:
        """Add subclass-specific diagnostics values (called at each diagnostics refresh)."""

    # -- models ---------------------------------------------------------------------------------
    def _load(self, card_path: str, current: ModelSetup | None = None) -> ModelSetup:
        """Load and check a model; raises ModelCardError / ValueError naming the problem."""
        model = load_model(
            card_path,
            self._providers,
            expected_kind=self.KIND,
            intra_op_threads=self._threads,
        )
        card = model.card
        check_against_robot(card, self._joint_names, self._camera_names)
        if current is not None:
            check_same_interface(current.model.card, card, current.inputs.cameras)
            check_probe_inference(model)  # a replacement must answer with finite outputs
        return ModelSetup(
            model=model,
            inputs=InputPlan.from_card(card),
            card_path=card_path,
            extra=self._derive(card),
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

    def _on_param_change(self, name: str, value: Any) -> tuple[bool, str]:
        if name == "model_card":
            path = expand_path(str(value))
            if not path:
                return False, "model_card is empty"
            return self._reload(path, "parameter model_card")
        if name == "max_input_age_s":
            self._max_age_s = float(value)
            return True, f"max_input_age_s = {value} s"
        return self._on_parameter(name, value)

    def _watch_card(self) -> None:
        if self._swap.card_changed():
            self._reload(self._swap.card_path, "card file changed")

    def _set_model_health(self, setup: ModelSetup) -> None:
        self._health.set_value("model_id", setup.model.model_id)
        self._health.set_value("providers", ",".join(setup.model.active_providers))

    # -- inputs ---------------------------------------------------------------------------------
    def _put(self, key: str, stamp: float, value: Any) -> None:
        self._inputs.put(key, stamp, value)
        if key in self._trigger_keys:
            self._arrivals[key] = (time.time(), stamp)
            self._worker.poke()

    def _on_wm_state(self, msg: Image) -> None:
        try:
            if msg.encoding != "32FC1":
                raise MessageError(f"encoding {msg.encoding!r}, expected 32FC1")
            latent = image_to_numpy(msg)
            if latent.shape != self._wm_shape:
                raise MessageError(
                    f"shape {latent.shape}, the {self.LABEL} expects {self._wm_shape}"
                )
        except MessageError as exc:
            self._health.count("dropped_wm_states")
            self._log_once.warn("wm", f"dropping ramp/wm_state: {exc}")
            return
        self._put(WM_KEY, stamp_to_sec(msg.header.stamp), latent)

    def _on_joint_state(self, msg: JointState) -> None:
        if JOINT_KEY not in self._inputs.keys:
            return
        try:
            q = joint_state_positions(msg, self._joint_names)
        except MessageError as exc:
            self._health.count("dropped_joint_states")
            self._log_once.warn("joints", f"dropping joint_states: {exc}")
            return
        self._put(JOINT_KEY, stamp_to_sec(msg.header.stamp), q)

    def _on_image(self, camera: str, msg: Image) -> None:
        try:
            if msg.encoding not in ("rgb8", "bgr8"):
                raise MessageError(f"encoding {msg.encoding!r}, expected rgb8 or bgr8")
            frame = image_to_numpy(msg)
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise MessageError(f"shape {frame.shape}, expected H x W x 3")
            if msg.encoding == "bgr8":
                frame = frame[:, :, ::-1]
        except MessageError as exc:
            self._health.count("dropped_images")
            self._log_once.warn(f"img-{camera}", f"dropping frame from camera {camera}: {exc}")
            return
        self._put(camera_key(camera), stamp_to_sec(msg.header.stamp), frame)

    # -- inference ------------------------------------------------------------------------------
    def _tick(self) -> bool:
        """One wake-up of the inference thread; True when it ran the model (uses a rate slot)."""
        setup, switched = self._swap.take()
        if switched:
            self._set_model_health(setup)
            self.get_logger().info(f"now running {self.LABEL} {setup.model.model_id}")
        now = time.time()
        if not self._due(now):
            return False
        try:
            obs = self._inputs.observation(now, self._max_age_s)
        except StaleInputError as exc:
            self._health.set_status(WARN, f"waiting: {exc}")
            return False
        obs_id = observation_id(obs)
        if obs_id == self._last_id:
            return False  # nothing new since the last inference
        if not self._gate.ready(obs, now):
            return False  # the rest of the frame set is on its way
        self._gate.used(obs)
        self._last_id = obs_id
        self._time_inputs(now)
        feeds = setup.inputs.feeds(obs)
        start = time.perf_counter()
        try:
            outputs = setup.model.run(feeds)
        except NonFiniteOutputError as exc:
            self._health.count("nonfinite_outputs")
            self._health.set_status(ERROR, f"{self.LABEL} output not finite: {exc}")
            self._log_once.error("nan", f"{self.LABEL} produced non-finite output, dropped: {exc}")
            return True
        inferred = time.perf_counter()
        self._inference_ms.add(inferred - start)
        self._hops.add("inference", inferred - start)
        self._publish(setup, obs, outputs)
        self._hops.add("publish", time.perf_counter() - inferred)
        self._age.add(time.time() - obs.stamp)
        self._rate.tick()
        self._health.set_status(OK, "running")
        return True

    def _time_inputs(self, start: float) -> None:
        """Hops of the newest trigger input: its delay from its stamp, its wait until ``start``."""
        arrivals = [self._arrivals[k] for k in self._trigger_keys if k in self._arrivals]
        if arrivals:
            arrived, stamp = max(arrivals)
            self._hops.add("input", arrived - stamp)
            self._hops.add("wait", start - arrived)

    def _update_health(self) -> None:
        self._health.set_value(self.RATE_KEY, self._rate.rate_hz())
        self._hops.report(self._health)
        self._health.set_value("reloads", self._swap.reloads)
        self._health.set_value("reloads_refused", self._swap.refused)
        if self._swap.last_message:
            self._health.set_value("last_reload", self._swap.last_message)
        for key, value in self._inference_ms.percentiles_ms().items():
            self._health.set_value(f"inference_ms_{key}", value)
        for key, value in self._age.percentiles_ms().items():
            self._health.set_value(f"{self.AGE_KEY}_{key}", value)
        self._extra_health()

    def close(self) -> None:
        """Stop the inference thread (called on shutdown)."""
        self._worker.stop()
