"""The robot loop in the synchronous simulator, faster than real time (ROS-free).

``SimEpisodeRunner`` steps ``ramp_robots``' MuJoCo simulation itself (``MujocoSimDriver.step``,
no real-time thread) and runs the same pieces the stack runs on the robot: camera frames at the
policy rate, a chunk source (the scripted expert, or the exported ONNX world model + policy
through ``onnxruntime`` exactly as the nodes feed them), and ``ChunkExecutor`` (splicing, limits)
turning chunks into per-tick joint commands. It is used to generate expert demonstrations and to
evaluate models quickly; ``evaluate.py`` runs the real ROS stack for the numbers that count.

Times are simulated seconds from the episode start. Joint positions rad / m in the sim's joint
order (``PIPER_JOINTS``). Recorded frames follow the LeRobot export conventions of
``ramp-bag export`` (frame k at k / fps; ``state`` = measured joints at the frame, ``action`` =
the command issued at that tick).
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2
import numpy as np
import yaml

from ramp_common.limits import JointLimits
from ramp_models.onnx_runtime import LoadedModel
from ramp_models.preprocess import ImagePreprocessor
from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import ChunkExecutor
from ramp_robots.core.sim import MujocoSimDriver
from ramp_training.expert import ExpertConfig, ExpertNoise, PushExpert, SceneState
from ramp_training.task import TaskDistribution

CONTROL_DT = 0.01
"""Control tick of the offline loop, s (5 physics steps of 2 ms)."""


def scene_state(driver: MujocoSimDriver) -> SceneState:
    """The simulator's ground truth the expert uses (cube and goal, world frame)."""
    return SceneState(
        cube_xy=driver.cube_pose().position[:2].copy(),
        goal_xy=driver.goal_position()[:2].copy(),
        goal_half=driver.goal_half_extent(),
    )


@dataclass(frozen=True)
class StackSettings:
    """The parts of a robot config (``ramp_bringup/config/<robot>.yaml``) the loop reproduces."""

    joint_names: tuple[str, ...]
    cameras: tuple[str, ...]
    limits: JointLimits
    camera_width: int = 320
    camera_height: int = 240
    strategy: str = "rtc"
    inference_delay_s: float = 0.05
    watchdog_timeout_s: float = 0.5
    gripper_joints: tuple[str, ...] = ("gripper",)

    @classmethod
    def from_config(cls, config_file: str | Path | None = None) -> StackSettings:
        """Read the sim robot config (default: ramp_bringup's ``config/sim.yaml``)."""
        if config_file is None:
            from ramp_bringup.stack import config_path

            config_file = config_path("sim")
        data = yaml.safe_load(Path(config_file).read_text()) or {}
        shared = data.get("/**", {}).get("ros__parameters", {})
        bridge = data.get("sim_bridge", {}).get("ros__parameters", {})
        executor = data.get("chunk_executor", {}).get("ros__parameters", {})
        try:
            names = tuple(shared["joint_names"])
            limits = JointLimits.from_lists(
                names,
                shared["position_lower"],
                shared["position_upper"],
                shared["max_velocity"],
                shared["max_acceleration"],
            )
        except KeyError as exc:
            raise ValueError(f"{config_file}: '/**' parameters lack {exc}") from None
        return cls(
            joint_names=names,
            cameras=tuple(shared.get("camera_names", ("front", "wrist"))),
            limits=limits,
            camera_width=int(bridge.get("camera_width", 320)),
            camera_height=int(bridge.get("camera_height", 240)),
            strategy=str(executor.get("strategy", "rtc")),
            inference_delay_s=float(executor.get("inference_delay_s", 0.05)),
            watchdog_timeout_s=float(executor.get("watchdog_timeout_s", 0.5)),
            gripper_joints=tuple(executor.get("gripper_joints", ("gripper",))),
        )


@dataclass(frozen=True)
class Observation:
    """What a chunk source sees at one policy step."""

    t: float
    """Simulated time, s."""
    joints: np.ndarray
    """Measured joint positions (D,)."""
    frames: dict[str, np.ndarray]
    """Camera name -> (H, W, 3) uint8 RGB at the configured camera size."""
    scene: SceneState
    """Ground truth (only the expert and scripted operators may use it)."""


@dataclass(frozen=True)
class SourceAction:
    """A chunk from a source: (H, D) absolute targets, step k at t + (k + 1) * step_dt."""

    chunk: np.ndarray
    step_dt: float
    positive: bool = True
    """False when the source knows this is not behaviour to imitate (expert perturbation)."""
    value: float = float("nan")
    """The world model's value estimate, when a world model ran."""


class ChunkSource(abc.ABC):
    """Something that turns observations into action chunks (expert, ONNX models)."""

    uses_images: bool = True

    @abc.abstractmethod
    def reset(self, seed: int) -> None:
        """Start an episode."""

    @abc.abstractmethod
    def act(self, obs: Observation) -> SourceAction:
        """The chunk for this observation."""


class ExpertSource(ChunkSource):
    """The scripted push expert (ground-truth scene)."""

    uses_images = False

    def __init__(self, expert: PushExpert) -> None:
        self.expert = expert

    def reset(self, seed: int) -> None:
        self.expert.reset(seed)

    def act(self, obs: Observation) -> SourceAction:
        plan = self.expert.plan(obs.joints, obs.scene, obs.t)
        return SourceAction(plan.chunk, self.expert.config.step_dt, positive=not plan.perturbed)


class OnnxPolicySource(ChunkSource):
    """The exported world model + policy, fed the way worldmodel_node and policy_node feed them.

    ``world_model`` may be None for a policy card without a ``wm_state`` input.
    """

    def __init__(self, world_model: LoadedModel | None, policy: LoadedModel) -> None:
        self.world_model = world_model
        self.policy = policy
        card = policy.card
        self.step_dt = float(card.chunk.step_dt)
        self._needs_wm = card.input_by_role("wm_state") is not None
        if self._needs_wm and world_model is None:
            raise ValueError(f"{card.source}: the policy takes wm_state but no world model given")
        wm_card = world_model.card if world_model is not None else None
        self._wm_pre = ImagePreprocessor(wm_card.image) if wm_card is not None else None
        self._wm_cams = list(wm_card.cameras) if wm_card is not None else []
        self._wm_joints = wm_card is not None and wm_card.input_by_role("joint_state") is not None
        self._pol_images = card.input_by_role("images") is not None
        self._pol_pre = ImagePreprocessor(card.image) if self._pol_images else None
        self.uses_images = bool(self._wm_cams) or self._pol_images

    def reset(self, seed: int) -> None:
        pass

    def act(self, obs: Observation) -> SourceAction:
        joints = obs.joints.astype(np.float32)[None]
        feeds: dict[str, np.ndarray] = {}
        value = float("nan")
        if self._needs_wm and self.world_model is not None:
            wm_feeds = {"images": self._wm_pre([obs.frames[c] for c in self._wm_cams])}
            if self._wm_joints:
                wm_feeds["joint_state"] = joints
            out = self.world_model.run(wm_feeds)
            feeds["wm_state"] = out["wm_state"].astype(np.float32)
            if "value" in out:
                value = float(np.asarray(out["value"]).ravel()[0])
        card = self.policy.card
        if card.input_by_role("joint_state") is not None:
            feeds["joint_state"] = joints
        if self._pol_pre is not None:
            feeds["images"] = self._pol_pre([obs.frames[c] for c in card.cameras])
        chunk = self.policy.run(feeds)["action_chunk"][0].astype(np.float64)
        return SourceAction(chunk, self.step_dt, value=value)


@dataclass
class EpisodeRecord:
    """One simulated episode, frames at ``fps`` (LeRobot export conventions)."""

    seed: int
    fps: float
    success: bool
    time_to_success: float | None
    """Simulated s from start until the cube first rested in the goal (None: never)."""
    duration: float
    timestamps: np.ndarray
    """(F,) s from the episode start."""
    state: np.ndarray
    """(F, D) measured joint positions."""
    action: np.ndarray
    """(F, D) commanded joint positions at the frame's tick."""
    images: dict[str, np.ndarray] = field(default_factory=dict)
    """Camera -> (F, h, w, 3) uint8 RGB, resized to the stored size (empty when not recorded)."""
    positive: np.ndarray | None = None
    """(F,) bool: frame shows behaviour to imitate (expert, not perturbed)."""
    intervention: np.ndarray | None = None
    """(F,) bool: an operator was in control."""
    env_state: np.ndarray | None = None
    """(F, 4): cube x, y and goal x, y in m (world frame); ground truth for analysis."""
    values: np.ndarray | None = None
    """(F,) world-model value estimates (NaN without a world model)."""


class SimEpisodeRunner:
    """Runs episodes of the push task in the synchronous simulator (see the module docstring).

    Args:
        settings: joints, cameras, limits and executor settings (``StackSettings.from_config``).
        fps: policy (and recording) rate, Hz.
        max_duration_s: an episode without success ends after this long.
        settle_s: after first success the episode runs on this long and must still succeed.
        store_size: (height, width) recorded frames are resized to (cv2 INTER_AREA, as the
            nodes' preprocessing does); None keeps them at the camera size.
        task: where the cube starts after each reset.
    """

    def __init__(
        self,
        settings: StackSettings | None = None,
        fps: float = 10.0,
        max_duration_s: float = 20.0,
        settle_s: float = 0.5,
        store_size: tuple[int, int] | None = (96, 96),
        task: TaskDistribution | None = None,
    ) -> None:
        self.settings = settings or StackSettings.from_config()
        s = self.settings
        self.driver = MujocoSimDriver(
            camera_names=s.cameras,
            camera_width=s.camera_width,
            camera_height=s.camera_height,
            joint_names=s.joint_names,
        )
        self.fps = float(fps)
        self.max_duration_s = float(max_duration_s)
        self.settle_s = float(settle_s)
        self.store_size = store_size
        self.task = task or TaskDistribution()
        self._physics_per_tick = max(1, round(CONTROL_DT / self.driver.physics_dt))

    def close(self) -> None:
        self.driver.disconnect()

    def _new_executor(self) -> ChunkExecutor:
        s = self.settings
        return ChunkExecutor(
            s.limits,
            CONTROL_DT,
            strategy=s.strategy,
            gripper_indices=[s.joint_names.index(g) for g in s.gripper_joints if g],
            watchdog_timeout_s=s.watchdog_timeout_s,
            inference_delay_s=s.inference_delay_s,
        )

    def run(
        self,
        source: ChunkSource,
        seed: int,
        record: bool = True,
        operator: Callable[[Observation, np.ndarray], np.ndarray | None] | None = None,
    ) -> EpisodeRecord:
        """One episode from ``sim.reset(seed)`` with ``source`` in control.

        ``operator``, if given, is called at each policy step with the observation and the
        current command; when it returns a chunk, that chunk replaces the source's (an operator
        taking over) and the frame is flagged as intervention.
        """
        driver = self.driver
        driver.reset(seed)
        self.task.place(driver, seed)
        source.reset(seed)
        executor = self._new_executor()
        frame_dt = 1.0 / self.fps
        delay = self.settings.inference_delay_s
        t = 0.0
        next_frame = 0.0
        pending: list[tuple[float, ActionChunk]] = []
        rows: dict[str, list] = {k: [] for k in ("t", "q", "a", "pos", "int", "env", "val")}
        frames_out: dict[str, list[np.ndarray]] = {c: [] for c in self.settings.cameras}
        first_success: float | None = None
        command = driver.read_state().positions.copy()
        ticks = 0
        while t <= self.max_duration_s + 1e-9:
            q = driver.read_state().positions.copy()
            executor.update_measured(q, t)
            if t >= next_frame - 1e-9:
                next_frame += frame_dt
                frames: dict[str, np.ndarray] = {}
                if source.uses_images or record:
                    _, frames = driver.render_cameras()
                obs = Observation(t, q, frames, scene_state(driver))
                takeover = operator(obs, command) if operator is not None else None
                if takeover is not None:
                    action = SourceAction(takeover, self._operator_step_dt(source))
                else:
                    action = source.act(obs)
                chunk = ActionChunk.from_step_dt(t, action.chunk, action.step_dt)
                pending.append((t + (0.0 if takeover is not None else delay), chunk))
                rows["t"].append(t)
                rows["q"].append(q)
                rows["pos"].append(action.positive)
                rows["int"].append(takeover is not None)
                rows["env"].append([*obs.scene.cube_xy, *obs.scene.goal_xy])
                rows["val"].append(action.value)
                if record:
                    for cam in self.settings.cameras:
                        frames_out[cam].append(self._store(frames[cam]))
            while pending and pending[0][0] <= t + 1e-9:
                executor.submit(pending.pop(0)[1], t)
            out = executor.step(t)
            if out is not None:
                command = out
                driver.send(command)
            if len(rows["a"]) < len(rows["t"]):
                rows["a"].append(command.copy())
            driver.step(self._physics_per_tick)
            ticks += 1
            t = ticks * CONTROL_DT
            if driver.task_success():
                if first_success is None:
                    first_success = t
                if t - first_success >= self.settle_s:
                    break
            else:
                first_success = None
        success = first_success is not None and t - first_success >= self.settle_s - 1e-9
        return EpisodeRecord(
            seed=seed,
            fps=self.fps,
            success=bool(success),
            time_to_success=first_success if success else None,
            duration=t,
            timestamps=np.asarray(rows["t"], dtype=np.float64),
            state=np.asarray(rows["q"], dtype=np.float64),
            action=np.asarray(rows["a"], dtype=np.float64),
            images={c: np.stack(v) for c, v in frames_out.items() if v},
            positive=np.asarray(rows["pos"], dtype=bool),
            intervention=np.asarray(rows["int"], dtype=bool),
            env_state=np.asarray(rows["env"], dtype=np.float64),
            values=np.asarray(rows["val"], dtype=np.float64),
        )

    @staticmethod
    def _operator_step_dt(source: ChunkSource) -> float:
        if isinstance(source, ExpertSource):
            return source.expert.config.step_dt
        if isinstance(source, OnnxPolicySource):
            return source.step_dt
        return 0.1

    def _store(self, frame: np.ndarray) -> np.ndarray:
        if self.store_size is None:
            return frame.copy()
        h, w = self.store_size
        if frame.shape[:2] == (h, w):
            return frame.copy()
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def make_expert(
    seed: int = 0, noisy: bool = True, config: ExpertConfig | None = None
) -> PushExpert:
    """The push expert with the default noise (or none)."""
    return PushExpert(config, ExpertNoise() if noisy else ExpertNoise.none(), seed=seed)


def run_expert_episodes(
    runner: SimEpisodeRunner,
    seeds: Sequence[int],
    noisy: bool = True,
    record: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[EpisodeRecord]:
    """Expert episodes for ``seeds`` (one line of progress per episode through ``log``)."""
    source = ExpertSource(make_expert(noisy=noisy))
    out = []
    for i, seed in enumerate(seeds):
        ep = runner.run(source, seed, record=record)
        out.append(ep)
        if log is not None:
            done = sum(e.success for e in out)
            log(
                f"expert episode {i + 1}/{len(seeds)} seed {seed}: "
                f"{'success' if ep.success else 'failure'} in {ep.duration:.1f} s "
                f"({done}/{len(out)} successful)"
            )
    return out
