"""The simulated robot stack in this process, driven episode by episode (evaluation, HILR).

``SimStack`` builds the nodes of ``ramp_bringup/config/sim.yaml`` in this process, exactly as
``ramp up --robot sim`` does (same classes, same parameter file, one single-threaded executor
thread per node, the shipped DDS profile, its own ROS domain id, localhost-only discovery), with
the model cards to run given as parameter overrides, ``teleop_node`` in leader mode without
keyboard (the scripted operator is a virtual leader arm) and the recorder's output folder. A
policy without a ``wm_state`` input runs without ``worldmodel_node``.

It talks to the stack only through its ROS interfaces (``ramp/estop``, ``sim/reset``,
``sim/task_success``, ``joint_states``, ``ramp/pause``, ``ramp/takeover``, ``leader/joint_states``,
``ramp/episode/*``), with one exception: the cube is placed for each episode's seed and the
scripted operator reads the cube's position through the simulator object (the simulator has no
ROS interface for either; a person would look at the table).

Episode protocol (``run_episode``): e-stop on (the bridge holds, the executor drops its chunks),
``sim/reset`` (arm home), cube placed, 0.3 s of fresh frames, e-stop off (the executor restarts
from the measured pose and refuses chunks observed earlier; with an arbiter: resume), then the
policy runs until ``sim/task_success`` has held for ``settle_s`` or ``max_duration_s`` passed.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ramp_training.progress import stderr_log
from ramp_training.task import TaskDistribution

SERVICE_TIMEOUT_S = 10.0
LEADER_RATE_HZ = 50.0


@dataclass(frozen=True)
class EpisodeResult:
    success: bool
    time_to_success_s: float | None
    duration_s: float
    interventions: int = 0
    bag: str = ""


class StackError(RuntimeError):
    """The stack did not start or did not answer (names the node, service or topic)."""


def sim_driver(bridge: Any) -> Any:
    """The ``MujocoSimDriver`` inside a ``SimBridgeNode`` (ground truth, cube placement)."""
    driver = getattr(bridge, "driver", None) or getattr(bridge, "_driver", None)
    if driver is None:
        raise StackError("sim_bridge node exposes no simulator driver")
    return driver


class SimStack:
    """See the module docstring. Use as a context manager; ``close`` stops everything."""

    def __init__(
        self,
        world_model_card: Path | None,
        policy_card: Path,
        task: TaskDistribution | None = None,
        record_dir: Path | None = None,
        config_file: Path | None = None,
        domain_id: int | None = None,
        settle_s: float = 0.5,
        extra_overrides: dict[str, dict[str, Any]] | None = None,
        log: Callable[[str], None] = stderr_log,
    ) -> None:
        from ramp_bringup.stack import config_path

        self.config_file = Path(config_file) if config_file else config_path("sim")
        self.task = task or TaskDistribution()
        self.settle_s = settle_s
        self.log = log
        self._domain_id = domain_id
        self._world_model_card = world_model_card
        self._policy_card = Path(policy_card)
        self._record_dir = record_dir
        self._extra = extra_overrides or {}
        self.nodes: dict[str, Any] = {}
        self._executors: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._context: Any = None
        self._success = False
        self._success_since: float | None = None
        self._intervention = False
        self._arbiter_state = ""
        self._joints: np.ndarray | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> SimStack:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _overrides(self, needs_wm: bool) -> dict[str, dict[str, Any]]:
        cpu = ["CPUExecutionProvider"]
        out: dict[str, dict[str, Any]] = {
            "policy_node": {"model_card": str(self._policy_card), "providers": cpu},
        }
        if needs_wm:
            if self._world_model_card is None:
                raise StackError(
                    f"{self._policy_card}: the policy takes wm_state: give a world model"
                )
            out["worldmodel_node"] = {
                "model_card": str(self._world_model_card),
                "providers": cpu,
            }
        out["teleop_node"] = {"mode": "leader", "keyboard": False}
        recorder: dict[str, Any] = {"robot": "sim", "operator": "scripted"}
        if self._record_dir is not None:
            recorder["output_dir"] = str(self._record_dir)
        out["episode_recorder"] = recorder
        for node, params in self._extra.items():
            out.setdefault(node, {}).update(params)
        return out

    def start(self) -> None:
        """Build and spin the nodes; wait until the robot's state and the services are up."""
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        from ramp_bringup.stack import dev_environment, stack_nodes
        from ramp_models.model_card import ModelCard

        os.environ.update(dev_environment(self._domain_id))
        needs_wm = ModelCard.load(self._policy_card).input_by_role("wm_state") is not None
        specs = [
            s for s in stack_nodes(self.config_file) if needs_wm or s.name != "worldmodel_node"
        ]
        names = [s.name for s in specs]
        self.has_arbiter = "intervention_arbiter" in names
        self.has_recorder = "episode_recorder" in names
        overrides = self._overrides(needs_wm)
        self._context = Context()
        rclpy.init(
            args=["--ros-args", "--params-file", str(self.config_file)], context=self._context
        )
        try:
            for spec in specs:
                params = [Parameter(k, value=v) for k, v in overrides.get(spec.name, {}).items()]
                cls = spec.load_class()
                self.nodes[spec.name] = cls(context=self._context, parameter_overrides=params)
            self._probe = rclpy.create_node("ramp_train_probe", context=self._context)
            self._setup_probe()
            for node in [*self.nodes.values(), self._probe]:
                executor = SingleThreadedExecutor(context=self._context)
                executor.add_node(node)
                self._executors.append(executor)
                thread = threading.Thread(target=self._spin, args=(executor,), daemon=True)
                thread.start()
                self._threads.append(thread)
            self.driver = sim_driver(self.nodes["sim_bridge"])
            self._wait(lambda: self._joints is not None, 30.0, "joint_states from sim_bridge")
            for client in self._clients.values():
                if not client.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S):
                    raise StackError(f"service {client.srv_name} did not come up")
        except BaseException:
            self.close()
            raise
        self.log(f"stack up: {names} (ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')})")

    def _setup_probe(self) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, String
        from std_srvs.srv import SetBool, Trigger

        from ramp_common.qos import LATCHED_QOS, SENSOR_QOS, STATE_QOS

        probe = self._probe
        probe.create_subscription(Bool, "sim/task_success", self._on_success, LATCHED_QOS)
        probe.create_subscription(JointState, "joint_states", self._on_joints, STATE_QOS)
        probe.create_subscription(Bool, "ramp/intervention", self._on_intervention, LATCHED_QOS)
        probe.create_subscription(String, "ramp/arbiter_state", self._on_arbiter, LATCHED_QOS)
        self._clients = {
            "estop": probe.create_client(SetBool, "ramp/estop"),
            "reset": probe.create_client(Trigger, "sim/reset"),
            "executor_reset": probe.create_client(Trigger, "ramp/executor/reset"),
        }
        if self.has_arbiter:
            self._clients["pause"] = probe.create_client(SetBool, "ramp/pause")
            self._clients["takeover"] = probe.create_client(SetBool, "ramp/takeover")
            self._leader_pub = probe.create_publisher(JointState, "leader/joint_states", SENSOR_QOS)
        if self.has_recorder:
            self._clients["start"] = probe.create_client(Trigger, "ramp/episode/start")
            self._clients["stop"] = probe.create_client(SetBool, "ramp/episode/stop")

    def _spin(self, executor: Any) -> None:
        while not self._stop.is_set():
            try:
                executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # a node's callback bug: keep the rest running, say so
                if self._stop.is_set():
                    return
                self.log(f"callback raised {type(exc).__name__}: {exc}")

    def close(self) -> None:
        """Stop every node and the context (safe twice)."""
        import rclpy

        self._stop.set()
        for node in reversed(list(self.nodes.values())):
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    self.log(f"closing {node.get_name()}: {exc}")
        for thread in self._threads:
            thread.join(timeout=2.0)
        for executor in self._executors:
            executor.shutdown(timeout_sec=1.0)
        for node in list(self.nodes.values()) + ([self._probe] if hasattr(self, "_probe") else []):
            node.destroy_node()
        self.nodes.clear()
        self._executors.clear()
        self._threads.clear()
        if self._context is not None:
            rclpy.try_shutdown(context=self._context)
            self._context = None

    # ------------------------------------------------------------------ probe callbacks
    def _on_success(self, msg: Any) -> None:
        with self._lock:
            self._success = bool(msg.data)
            self._success_since = time.monotonic() if msg.data else None

    def _on_joints(self, msg: Any) -> None:
        with self._lock:
            self._joints = np.asarray(msg.position, dtype=np.float64)

    def _on_intervention(self, msg: Any) -> None:
        with self._lock:
            self._intervention = bool(msg.data)

    def _on_arbiter(self, msg: Any) -> None:
        try:
            state = str(json.loads(msg.data).get("state", ""))
        except (ValueError, AttributeError):
            return
        with self._lock:
            self._arbiter_state = state

    @property
    def arbiter_state(self) -> str:
        with self._lock:
            return self._arbiter_state

    @property
    def joints(self) -> np.ndarray:
        with self._lock:
            assert self._joints is not None
            return self._joints.copy()

    # ------------------------------------------------------------------ helpers
    def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise StackError(f"timed out after {timeout_s} s waiting for {what}")

    def call(self, name: str, data: bool | None = None) -> str:
        """Call one of the stack's services; -> its message. Raises StackError on failure."""
        client = self._clients[name]
        request = client.srv_type.Request()
        if data is not None:
            request.data = data
        future = client.call_async(request)
        self._wait(future.done, SERVICE_TIMEOUT_S, f"service {client.srv_name}")
        response = future.result()
        if not response.success:
            raise StackError(f"service {client.srv_name} refused: {response.message}")
        return str(response.message)

    def publish_leader(self, positions: np.ndarray) -> None:
        """One virtual leader-arm sample on ``leader/joint_states`` (robot joint order)."""
        from ramp_common.conversions import make_joint_state, sec_to_stamp

        names = list(self.driver.joint_names)
        self._leader_pub.publish(make_joint_state(names, positions, sec_to_stamp(time.time())))

    # ------------------------------------------------------------------ episodes
    def prepare_episode(self, seed: int) -> None:
        """E-stop, reset the simulator, place the cube for ``seed``, release; see the docstring."""
        self.call("estop", True)
        time.sleep(0.2)  # the bridge brakes and holds, the executor latches ESTOP
        self.call("reset")
        self.task.place(self.driver, seed)
        with self._lock:
            self._success = self.driver.task_success()
            self._success_since = None
        time.sleep(0.3)  # frames and states of the new scene reach the models
        self.call("estop", False)
        if self.has_arbiter:  # the arbiter comes out of an e-stop PAUSED: resume
            self._wait(lambda: self.arbiter_state == "PAUSED", 5.0, "the arbiter to pause")
            self.call("pause", False)
            self._wait(lambda: self.arbiter_state == "AUTONOMOUS", 5.0, "the arbiter to resume")

    def run_episode(
        self,
        seed: int,
        max_duration_s: float,
        operator: Any | None = None,
        record: bool = False,
    ) -> EpisodeResult:
        """One episode for ``seed``, with ``operator`` (``StackOperator``) in the loop if given.

        With ``record`` (needs the episode recorder in the stack) a bag is recorded and labelled
        with the outcome.
        """
        self.prepare_episode(seed)
        bag = self.call("start") if record else ""
        start = time.monotonic()
        if operator is not None:
            operator.begin(seed)
        success_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if operator is not None:
                    operator.tick()
                with self._lock:
                    since = self._success_since
                if since is not None and now - since >= self.settle_s:
                    success_at = since
                    break
                if now - start >= max_duration_s:
                    break
                time.sleep(0.02)
        finally:
            if operator is not None:
                operator.end()
        duration = time.monotonic() - start
        success = success_at is not None
        if record:
            self.call("stop", success)
        return EpisodeResult(
            success,
            max(0.0, success_at - start) if success_at is not None else None,
            duration,
            operator.interventions if operator is not None else 0,
            bag,
        )


class StackOperator:
    """The scripted operator (``operator.ScriptedOperator``) on a ``SimStack`` with an arbiter.

    Decides at 10 Hz; in control, streams the expert's chunk as a virtual leader arm on
    ``leader/joint_states`` (teleop_node in leader mode turns it into ``ramp/operator_command``)
    at ``LEADER_RATE_HZ``; takes over and hands back with ``ramp/takeover``.

    Like a person holding a leader arm, it plans in leader space: the takeover starts at the
    measured follower joints, and from then on every re-plan starts from where the leader is, not
    from the measured follower. The follower trails the leader by the teleop, arbiter and servo
    lag and sags a few mrad under gravity; re-planning from those measured joints every 0.1 s
    pulled the leader back onto the trailing robot each time, so the stream of corrections
    see-sawed (forward, then back by up to 0.03 rad every 0.1 s on joint5 in a recorded round)
    and a policy trained on them got worse. Out of control, the takeover decision uses the measured
    joints and the scene.
    """

    def __init__(self, stack: SimStack, scripted: Any) -> None:
        self.stack = stack
        self.scripted = scripted
        self.interventions = 0
        self._next_decision = 0.0
        self._next_leader = 0.0
        self._chunk: np.ndarray | None = None
        self._chunk_t0 = 0.0
        self._chunk_q0: np.ndarray | None = None
        self._leader: np.ndarray | None = None
        self._in_control = False

    def begin(self, seed: int) -> None:
        self.scripted.reset(seed, time.monotonic())
        self.interventions = 0
        self._in_control = False
        self._chunk = None
        self._leader = None

    def _scene(self) -> Any:
        from ramp_training.simloop import scene_state

        return scene_state(self.stack.driver)

    def _sample(self, now: float) -> np.ndarray:
        """The leader's position at ``now`` on the current chunk (rad / m, robot joint order)."""
        assert self._chunk is not None and self._chunk_q0 is not None
        dt = self.scripted.expert.config.step_dt
        times = self._chunk_t0 + dt * np.arange(len(self._chunk) + 1)
        points = np.vstack([self._chunk_q0, self._chunk])
        t = min(max(now, times[0]), times[-1])
        return np.array([np.interp(t, times, points[:, j]) for j in range(points.shape[1])])

    def _move_leader(self, now: float) -> None:
        self._leader = self._sample(now)
        self.stack.publish_leader(self._leader)

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next_decision:
            self._next_decision = now + self.scripted.expert.config.step_dt
            if self._in_control and self._chunk is not None:
                self._leader = self._sample(now)  # where the leader is now
            in_leader_space = self._in_control and self._leader is not None
            q = self._leader if in_leader_space else self.stack.joints
            decision = self.scripted.decide(now, q, self._scene())
            if decision.chunk is not None:
                self._chunk, self._chunk_t0, self._chunk_q0 = decision.chunk, now, q
            if decision.changed:
                self.stack.log(f"operator {decision.reason}")
                if decision.in_control:
                    self.interventions += 1
                    self._move_leader(now)
                    self.stack.call("takeover", True)
                else:
                    self.stack.call("takeover", False)
                    self._leader = None
                self._in_control = decision.in_control
        if self._in_control and self._chunk is not None and now >= self._next_leader:
            self._next_leader = now + 1.0 / LEADER_RATE_HZ
            self._move_leader(now)

    def end(self) -> None:
        if self._in_control:
            self.stack.call("takeover", False)
            self._in_control = False
