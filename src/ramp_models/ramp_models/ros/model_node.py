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
  logged once); the inputs that make an observation new wake the inference thread; the newest
  joint state is taken from its reader when that thread wakes (``ramp_common.intake``: no
  executor work per joint state);
- the inference thread (``ramp_common.worker.TriggeredWorker``, at most ``rate_hz``): latest
  synchronised observation (stamp = oldest input stamp) -> feeds -> ONNX Runtime -> the
  subclass's ``_publish``; a non-finite output is dropped and reported ERROR;
- health on ``diagnostics``: model id (the model the last inference ran), card, providers,
  reload counters, inference time and age at publish percentiles, output rate, and the hops of
  ``ramp_common.hops`` (input delay, waiting, inference, publish);
- batched serving (``robots``, docs/fleet.md): with a list of robot namespaces the node serves
  them all from one model session. It subscribes to ``/<ns>/joint_states``,
  ``/<ns>/camera/<name>/image_raw`` (and ``/<ns>/ramp/wm_state``) of every robot, and each
  round of its inference thread runs one forward pass over the robots with a fresh complete
  observation (``ramp_models.batching``), publishing each robot's output in its namespace with
  that robot's observation stamp. A robot whose inputs stop is skipped (never waited for), a
  robot that appears late is served from its first complete observation. Each robot has its
  own rate limit (``rate_hz``), replan rule (policy) and health values (``<ns>.`` + the rate
  key, ``<ns>.`` + the age key ``_p50``/``_p99``/``_max``, ``<ns>.served``, ``<ns>.skipped``,
  ``<ns>.waiting``); the node adds ``robots``, ``batch_mode``, ``batches``,
  ``batch_size_mean``/``_max``. A card with ``batch: 1`` still works, with one call per robot
  (logged and in ``batch_mode``).

Times are wall-clock seconds (``time.time()``), the clock of the message stamps.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from ramp_common.conversions import MessageError, joint_state_positions, stamp_to_sec
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
from ramp_common.image_wire import decode_image
from ramp_common.intake import Intake
from ramp_common.node_tools import LogOnce, expand_path
from ramp_common.params import Param, ParamSet
from ramp_common.qos import SENSOR_QOS, STATE_QOS
from ramp_common.worker import TriggeredWorker
from ramp_models.batching import FleetInputs, Served, run_batched
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
        Param(
            "robots",
            [],
            "Batched serving: namespaces of the robots this node serves with one model session "
            "and one forward pass per round (inputs /<ns>/..., outputs /<ns>/ramp/...; every "
            "robot has the joints and cameras above). Empty: one robot, the node's own "
            "namespace (relative topics).",
            type="string[]",
        ),
    )


def robot_namespace(name: str) -> str:
    """``robot1`` or ``/robot1/`` -> ``/robot1``; raises ValueError for what ROS would refuse."""
    ns = name.strip().strip("/")
    parts = ns.split("/")
    if not ns or not all(
        p and (p[0].isalpha() or p[0] == "_") and all(c.isalnum() or c == "_" for c in p)
        for p in parts
    ):
        raise ValueError(f"parameter robots: {name!r} is not a valid ROS namespace")
    return "/" + ns


@dataclass
class Lane:
    """One robot served by a model node: its topics' prefix, output, state and health."""

    name: str
    """Robot name in diagnostics keys and logs ('' for the single-robot node)."""
    prefix: str
    """Prepended to the relative topic names: '' or '/robot1/'."""
    output: Any = None
    """What :meth:`ModelNode._create_output` made for this robot (its publisher)."""
    state: Any = None
    """What :meth:`ModelNode._lane_state` made for this robot (the policy's replan rule)."""
    rate: RateMeter = field(default_factory=RateMeter)
    age: LatencyStats = field(default_factory=LatencyStats)
    arrivals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Input key -> (arrival wall time, its stamp), s; the newest of each trigger input."""
    joint_states: Intake | None = None
    """This robot's ``joint_states``, when the card takes a joint state."""

    def key(self, what: str) -> str:
        """Diagnostics / counter key of ``what`` for this robot."""
        return f"{self.name}.{what}" if self.name else what


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
    :meth:`_derive`, :meth:`_lane_state`, :meth:`_due`, :meth:`_on_parameter` and
    :meth:`_extra_health`."""

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
        namespaces = [robot_namespace(r) for r in self.params["robots"]]
        if len(set(namespaces)) != len(namespaces):
            raise ValueError(f"parameter robots names a robot twice: {namespaces}")

        setup = self._load(card_path)
        self.get_logger().info(
            f"{self.LABEL} {setup.model.model_id} from {card_path}: {setup.model.provider_summary}"
        )
        self._swap: HotSwap[ModelSetup] = HotSwap(setup, card_path)
        plan = setup.inputs
        self._wm_shape = plan.wm_shape
        self._trigger_keys = plan.trigger_keys
        self._gate = FrameSetGate(sorted(plan.trigger_keys), float(self.params["input_sync_s"]))
        self._last_id: tuple | None = None

        self._health = NodeHealth()
        self._set_model_health(setup)
        self._health.set_value("model_card", card_path)
        self._log_once = LogOnce(self)
        self._inference_ms = LatencyStats()
        self._hops = HopTimer(("input", "wait", "inference", "publish"))
        period_s = 1.0 / float(self.params["rate_hz"])

        # One lane per robot: the single-robot node has one with relative topics.
        if namespaces:
            self._lanes = [Lane(ns.lstrip("/"), ns + "/") for ns in namespaces]
            self._fleet: FleetInputs | None = FleetInputs(
                [lane.name for lane in self._lanes],
                plan.keys,
                period_s,
                sync_keys=plan.trigger_keys,
                sync_timeout_s=float(self.params["input_sync_s"]),
            )
            self._batch_sizes: deque[int] = deque(maxlen=200)
            """Robots per round, the last 200 rounds."""
            self._health.set_value("robots", ",".join(lane.name for lane in self._lanes))
            self.get_logger().info(
                f"batched serving of {len(namespaces)} robots: {', '.join(namespaces)}"
            )
        else:
            self._lanes = [Lane("", "")]
            self._fleet = None
        self._lane = self._lanes[0]
        self._lane_by_name = {lane.name: lane for lane in self._lanes}
        self._inputs = ObservationBuffer(plan.keys)
        # Kept for the single-robot node's health keys (the lane's meters are the same objects).
        self._rate = self._lane.rate
        self._age = self._lane.age
        self._arrivals = self._lane.arrivals

        io_group = ReentrantCallbackGroup()
        for lane in self._lanes:
            self._subscribe(lane, plan, io_group)
            lane.output = self._create_output(lane.prefix)
            lane.state = self._lane_state()
        # Inference on its own thread, woken by new inputs: never blocks an input callback.
        if self._fleet is not None:
            self._set_batch_mode(setup)
            fleet = self._fleet
            # a round after each poke, or when a robot held back by its rate limit becomes due
            self._worker = TriggeredWorker(
                self._fleet_tick,
                0.0,
                max_wait_s=self.MAX_WAIT_S,
                name=self.WORKER_NAME,
                next_wake_in=lambda: fleet.next_due_in(time.time()),
            )
        else:
            self._worker = TriggeredWorker(
                self._tick, period_s, max_wait_s=self.MAX_WAIT_S, name=self.WORKER_NAME
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

    def _subscribe(self, lane: Lane, plan: InputPlan, group: ReentrantCallbackGroup) -> None:
        """The input subscriptions of one robot (topics under its prefix)."""
        p = lane.prefix
        if WM_KEY in plan.keys:
            self.create_subscription(
                Image,
                f"{p}ramp/wm_state",
                lambda raw: self._on_wm_state(raw, lane),
                STATE_QOS,
                callback_group=group,
                raw=True,  # serialized images: see ramp_common.image_wire
            )
        if JOINT_KEY in plan.keys:
            # the newest is taken when the inference thread wakes (ramp_common.intake): no
            # executor work for each of the bridge's 200 joint states per second
            lane.joint_states = Intake(self, JointState, f"{p}joint_states", STATE_QOS)
        for name in plan.cameras:
            self.create_subscription(
                Image,
                f"{p}camera/{name}/image_raw",
                lambda raw, n=name: self._on_image(n, raw, lane),
                SENSOR_QOS,
                callback_group=group,
                raw=True,
            )

    # -- subclass hooks -------------------------------------------------------------------------
    def _create_output(self, prefix: str) -> Any:
        """Create and return the publisher(s) of one robot's output; topic names start with
        ``prefix`` ('' for the single-robot node, '/robot1/' for a served robot)."""
        raise NotImplementedError

    def _publish(
        self, setup: ModelSetup, lane: Lane, obs: Observation, outputs: dict[str, Any]
    ) -> None:
        """Publish one robot's outputs (keyed by card role, batch 1) for observation ``obs``
        on ``lane.output``."""
        raise NotImplementedError

    def _derive(self, card: ModelCard) -> Any:
        """What the node needs from a card besides its inputs (stored as ``ModelSetup.extra``)."""
        return None

    def _lane_state(self) -> Any:
        """Per-robot state of the subclass (``Lane.state``), e.g. the policy's replan rule."""
        return None

    def _due(self, now: float, lane: Lane) -> bool:
        """False to skip ``lane``'s robot this round before reading its inputs (``now``: wall
        clock, s)."""
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

    def _set_batch_mode(self, setup: ModelSetup) -> None:
        """Batched node: say whether the card lets one call serve several robots."""
        card = setup.model.card
        if card.batched:
            mode = f"batched (card batch {card.batch})"
        else:
            mode = "one call per robot (card batch 1)"
            self.get_logger().warning(
                f"{card.source} declares batch 1: serving {len(self._lanes)} robots with one "
                "call each; export the model with a dynamic batch axis to batch them"
            )
        self._health.set_value("batch_mode", mode)

    # -- inputs ---------------------------------------------------------------------------------
    def _put(self, key: str, stamp: float, value: Any, lane: Lane) -> None:
        if self._fleet is not None:
            self._fleet.put(lane.name, key, stamp, value)
        else:
            self._inputs.put(key, stamp, value)
        if key in self._trigger_keys:
            lane.arrivals[key] = (time.time(), stamp)
            self._worker.poke()

    def _on_wm_state(self, raw: bytes, lane: Lane) -> None:
        try:
            msg = decode_image(raw)
            if msg.encoding != "32FC1":
                raise MessageError(f"encoding {msg.encoding!r}, expected 32FC1")
            latent = msg.pixels
            if latent.shape != self._wm_shape:
                raise MessageError(
                    f"shape {latent.shape}, the {self.LABEL} expects {self._wm_shape}"
                )
        except MessageError as exc:
            self._health.count(lane.key("dropped_wm_states"))
            self._log_once.warn(f"wm{lane.name}", f"dropping {lane.prefix}ramp/wm_state: {exc}")
            return
        self._put(WM_KEY, msg.stamp_s, latent, lane)

    def _take_joint_states(self) -> None:
        """Put each robot's newest joint state (taken from its reader) into the inputs."""
        for lane in self._lanes:
            newest = lane.joint_states.take_newest() if lane.joint_states is not None else None
            if newest is not None:
                self._on_joint_state(newest.msg, lane)

    def _on_joint_state(self, msg: JointState, lane: Lane) -> None:
        try:
            q = joint_state_positions(msg, self._joint_names)
        except MessageError as exc:
            self._health.count(lane.key("dropped_joint_states"))
            self._log_once.warn(f"joints{lane.name}", f"dropping {lane.prefix}joint_states: {exc}")
            return
        self._put(JOINT_KEY, stamp_to_sec(msg.header.stamp), q, lane)

    def _on_image(self, camera: str, raw: bytes, lane: Lane) -> None:
        try:
            msg = decode_image(raw)
            if msg.encoding not in ("rgb8", "bgr8"):
                raise MessageError(f"encoding {msg.encoding!r}, expected rgb8 or bgr8")
            frame = msg.pixels
            if frame.ndim != 3 or frame.shape[2] != 3:
                raise MessageError(f"shape {frame.shape}, expected H x W x 3")
            if msg.encoding == "bgr8":
                frame = frame[:, :, ::-1]
        except MessageError as exc:
            self._health.count(lane.key("dropped_images"))
            self._log_once.warn(
                f"img-{lane.name}-{camera}",
                f"dropping frame from camera {lane.prefix}{camera}: {exc}",
            )
            return
        self._put(camera_key(camera), msg.stamp_s, frame, lane)

    # -- inference ------------------------------------------------------------------------------
    def _tick(self) -> bool:
        """One wake-up of the inference thread; True when it ran the model (uses a rate slot)."""
        self._take_joint_states()
        setup, switched = self._swap.take()
        if switched:
            self._set_model_health(setup)
            self.get_logger().info(f"now running {self.LABEL} {setup.model.model_id}")
        now = time.time()
        if not self._due(now, self._lane):
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
        self._time_inputs(now, self._lane)
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
        self._publish(setup, self._lane, obs, outputs)
        self._hops.add("publish", time.perf_counter() - inferred)
        self._age.add(time.time() - obs.stamp)
        self._rate.tick()
        self._health.set_status(OK, "running")
        return True

    def _fleet_tick(self) -> None:
        """One round of the batched node: every ready robot in one forward pass (per group of
        the card's ``batch``), each robot's output published in its namespace."""
        self._take_joint_states()
        setup, switched = self._swap.take()
        if switched:
            self._set_model_health(setup)
            self._set_batch_mode(setup)
            self.get_logger().info(f"now running {self.LABEL} {setup.model.model_id}")
        now = time.time()
        ready = self._fleet.gather(
            now, self._max_age_s, lambda name, t: self._due(t, self._lane_by_name[name])
        )
        if not ready:
            return
        for item in ready:
            self._time_inputs(now, self._lane_by_name[item.robot])
        start = time.perf_counter()
        served: list[Served] = run_batched(setup.model, setup.inputs, ready)
        inferred = time.perf_counter()
        self._inference_ms.add(inferred - start)
        self._hops.add("inference", inferred - start)
        self._batch_sizes.append(len(ready))
        self._health.count("batches")
        for result in served:
            lane = self._lane_by_name[result.robot]
            if result.outputs is None:
                bad_input = result.error.startswith("bad input")
                self._health.count(lane.key("bad_inputs" if bad_input else "nonfinite_outputs"))
                self._log_once.error(
                    f"err-{lane.name}-{bad_input}",
                    f"{self.LABEL}: no output for {lane.name}, dropped: {result.error}",
                )
                continue
            self._publish(setup, lane, result.observation, result.outputs)
            lane.age.add(time.time() - result.observation.stamp)
            lane.rate.tick()
        self._hops.add("publish", time.perf_counter() - inferred)

    def _time_inputs(self, start: float, lane: Lane) -> None:
        """Hops of the newest trigger input: its delay from its stamp, its wait until ``start``."""
        arrivals = [lane.arrivals[k] for k in self._trigger_keys if k in lane.arrivals]
        if arrivals:
            arrived, stamp = max(arrivals)
            self._hops.add("input", arrived - stamp)
            self._hops.add("wait", start - arrived)

    def _update_health(self) -> None:
        if self._fleet is not None:
            self._update_fleet_health()
        else:
            self._health.set_value(self.RATE_KEY, self._rate.rate_hz())
        self._hops.report(self._health)
        self._health.set_value("reloads", self._swap.reloads)
        self._health.set_value("reloads_refused", self._swap.refused)
        if self._swap.last_message:
            self._health.set_value("last_reload", self._swap.last_message)
        for key, value in self._inference_ms.percentiles_ms().items():
            self._health.set_value(f"inference_ms_{key}", value)
        if self._fleet is None:
            for key, value in self._age.percentiles_ms().items():
                self._health.set_value(f"{self.AGE_KEY}_{key}", value)
        self._extra_health()

    def _update_fleet_health(self) -> None:
        """Per-robot values and a status naming the robots that are not being served."""
        waiting = []
        for lane in self._lanes:
            status = self._fleet.status(lane.name)
            rate = lane.rate.rate_hz()
            self._health.set_value(lane.key(self.RATE_KEY), rate)
            for key, value in lane.age.percentiles_ms().items():
                self._health.set_value(lane.key(f"{self.AGE_KEY}_{key}"), value)
            self._health.set_value(lane.key("served"), status.served)
            self._health.set_value(lane.key("skipped"), status.skipped)
            self._health.set_value(lane.key("waiting"), status.waiting)
            if rate <= 0.0 and status.waiting:
                waiting.append(f"{lane.name}: {status.waiting}")
        sizes = list(self._batch_sizes)
        if sizes:
            self._health.set_value("batch_size_mean", sum(sizes) / len(sizes))
            self._health.set_value("batch_size_max", max(sizes))
        if self._worker.errors:
            self._health.set_status(
                ERROR, f"inference errors ({self._worker.errors}): {self._worker.last_error}"
            )
        elif waiting:
            served = len(self._lanes) - len(waiting)
            self._health.set_status(
                WARN,
                f"serving {served}/{len(self._lanes)} robots; waiting: " + "; ".join(waiting),
            )
        else:
            self._health.set_status(OK, f"serving {len(self._lanes)} robots")

    def close(self) -> None:
        """Stop the inference thread (called on shutdown)."""
        self._worker.stop()
