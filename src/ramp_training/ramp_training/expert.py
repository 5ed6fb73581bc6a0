"""Scripted expert for the simulated push task: push the cube into the goal region.

The expert sees the scene's ground truth (cube and goal position, as a person watching the robot
would) and the measured joint positions, and plans an action chunk: ``horizon`` absolute joint
targets ``step_dt`` apart, found by damped least-squares IK of a tool path (``kinematics.py``).
It is a feedback controller, so it recovers from wherever the arm and cube are: it lifts off when
the cube slid off the pushing line, goes round behind the cube, comes down and pushes again.

Behaviour (re-decided at every plan, with hysteresis on the pushing phase):

- ``travel``: at ``travel_height`` to the pre-push point, ``approach_distance`` behind the cube
  on the line from the goal through the cube;
- ``descend``: straight down to ``push_height`` once above that line;
- ``push``: along the line toward the goal, correcting sideways, until the cube's centre is
  within ``goal_tolerance`` of the goal's centre;
- ``lift``: straight up when the arm is low near the cube but not lined up behind it;
- ``done``: cube at the goal: lift to ``travel_height`` and stay.

Noise (``ExpertNoise``, seeded): a slowly varying offset of the tool targets (Ornstein-Uhlenbeck),
a per-episode speed factor, and occasional perturbations (a sideways shove of the tool for a few
tenths of a second) that the expert then has to recover from. Plans made while a perturbation
acts are flagged, so training can treat them as non-expert data.

The same object drives (a) the offline synchronous simulation (``simloop.py``) and (b) the
scripted operator that takes over through the teleop interfaces (``operator.py``).

Units and frames: joint positions rad (arm) / m (gripper opening) in ``PIPER_JOINTS`` order;
positions m in the scene's world frame (z up, table top z = 0); times s; speeds m/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ramp_training.kinematics import ArmKinematics, tool_rotation

TRAVEL, DESCEND, PUSH, LIFT, DONE = "travel", "descend", "push", "lift", "done"
PHASES = (TRAVEL, DESCEND, PUSH, LIFT, DONE)


@dataclass(frozen=True)
class SceneState:
    """What the expert knows about the scene (world frame, m): cube centre and goal region."""

    cube_xy: np.ndarray
    goal_xy: np.ndarray
    goal_half: np.ndarray
    """Half sizes (x, y) of the goal region, m (axis-aligned in the world frame)."""

    def cube_in_goal(self, margin: float = 0.0) -> bool:
        """True when the cube's centre is inside the goal region shrunk by ``margin`` m."""
        return bool(np.all(np.abs(self.cube_xy - self.goal_xy) <= self.goal_half - margin))


@dataclass(frozen=True)
class ExpertConfig:
    """Geometry and speeds of the scripted push (defaults fit the shipped scene)."""

    horizon: int = 10
    """Chunk length H."""
    step_dt: float = 0.1
    """s between chunk steps."""
    travel_height: float = 0.08
    """Tool height while moving over the table, m (fingertips ~1 cm lower; cube top 0.04)."""
    push_height: float = 0.022
    """Tool height while pushing, m (fingertips ~1 cm above the table)."""
    approach_distance: float = 0.075
    """Pre-push point: this far behind the cube's centre on the goal-cube line, m."""
    contact_offset: float = 0.034
    """Tool centre behind the cube's centre at contact: cube half + finger half + 2 mm, m."""
    travel_speed: float = 0.15
    """m/s."""
    push_speed: float = 0.07
    """m/s."""
    align_tolerance: float = 0.010
    """Sideways error (m) below which a push starts..."""
    abort_tolerance: float = 0.022
    """...and above which a push is abandoned (lift and go round)."""
    goal_tolerance: float = 0.012
    """Cube centre this close (m) to the goal centre: done."""
    gripper_opening: float = 0.03
    """m: fingers apart so that both fingertips touch the cube's face."""
    max_joint_speed: float = 0.9
    """rad/s per arm joint in the planned chunk."""
    tool_tilt: float = 0.3
    """Fingers tilted this far (rad) from straight down, away from the base."""
    rotation_weight: float = 0.1
    """IK: m per rad of orientation error (position comes first)."""

    def __post_init__(self) -> None:
        if self.horizon < 1 or not self.step_dt > 0:
            raise ValueError(f"horizon must be >= 1 and step_dt > 0, got {self}")
        if not self.align_tolerance < self.abort_tolerance:
            raise ValueError("align_tolerance must be < abort_tolerance")


@dataclass(frozen=True)
class ExpertNoise:
    """Seeded noise of the expert (all zero: the clean expert)."""

    target_sigma: float = 0.003
    """Stationary standard deviation of the tool-target offset, m."""
    target_tau: float = 0.6
    """Correlation time of that offset, s."""
    speed_jitter: float = 0.2
    """Per-episode speed factor drawn from 1 +- this."""
    perturb_probability: float = 0.5
    """Chance that an episode has perturbations at all."""
    perturb_rate: float = 0.15
    """Perturbations per second in such an episode."""
    perturb_size: tuple[float, float] = (0.025, 0.05)
    """Range of the sideways tool offset of a perturbation, m."""
    perturb_duration: tuple[float, float] = (0.3, 0.7)
    """Range of its duration, s."""

    @classmethod
    def none(cls) -> ExpertNoise:
        return cls(0.0, 0.6, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class ExpertPlan:
    """One plan: the chunk (H, 7) of absolute joint targets and why it looks as it does."""

    chunk: np.ndarray
    phase: str
    perturbed: bool
    """True while a deliberate perturbation shapes the chunk (not expert behaviour)."""


class PushExpert:
    """Plans push chunks from the measured joints and the scene (see the module docstring)."""

    def __init__(
        self,
        config: ExpertConfig | None = None,
        noise: ExpertNoise | None = None,
        kinematics: ArmKinematics | None = None,
        seed: int = 0,
    ) -> None:
        self.config = config or ExpertConfig()
        self.noise = noise if noise is not None else ExpertNoise()
        self.kinematics = kinematics or ArmKinematics()
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start a new episode: new noise draws, no pushing in progress."""
        self._rng = np.random.default_rng(seed)
        noise = self.noise
        self._speed = 1.0 + self._rng.uniform(-noise.speed_jitter, noise.speed_jitter)
        self._perturbing = self._rng.uniform() < noise.perturb_probability
        self._offset = np.zeros(3)
        self._offset_time: float | None = None
        self._perturb_until = -np.inf
        self._perturb_offset = np.zeros(3)
        self._next_perturb = self._draw_next_perturb(0.0)
        self._pushing = False
        self._tool_y: np.ndarray | None = None

    def _draw_next_perturb(self, t: float) -> float:
        rate = self.noise.perturb_rate
        if not self._perturbing or rate <= 0:
            return np.inf
        return t + float(self._rng.exponential(1.0 / rate))

    def _advance_noise(self, t: float) -> None:
        noise = self.noise
        if self._offset_time is not None and noise.target_sigma > 0:
            dt = max(0.0, t - self._offset_time)
            decay = np.exp(-dt / noise.target_tau)
            spread = noise.target_sigma * np.sqrt(1.0 - decay**2)
            self._offset = self._offset * decay + spread * self._rng.standard_normal(3)
        self._offset_time = t
        if t >= self._next_perturb:
            lo, hi = noise.perturb_size
            angle = self._rng.uniform(0, 2 * np.pi)
            size = self._rng.uniform(lo, hi)
            self._perturb_offset = size * np.array([np.cos(angle), np.sin(angle), 0.0])
            self._perturb_until = t + self._rng.uniform(*noise.perturb_duration)
            self._next_perturb = self._draw_next_perturb(self._perturb_until)

    def _decide(
        self, tool: np.ndarray, cube: np.ndarray, scene: SceneState, commit: bool
    ) -> tuple[str, np.ndarray, float, np.ndarray]:
        """(phase, tool target (3,), speed m/s, push direction (2,)) for a tool and cube xy."""
        cfg = self.config
        to_goal = scene.goal_xy - cube
        dist = float(np.linalg.norm(to_goal))
        direction = to_goal / dist if dist > 1e-9 else np.array([0.0, -1.0])
        speed = cfg.travel_speed * self._speed
        if dist < cfg.goal_tolerance:
            if commit:
                self._pushing = False
            return DONE, np.array([tool[0], tool[1], cfg.travel_height]), speed, direction
        rel = tool[:2] - cube
        along = float(rel @ direction)
        across = float(rel @ np.array([-direction[1], direction[0]]))
        tolerance = cfg.abort_tolerance if self._pushing else cfg.align_tolerance
        behind = -cfg.approach_distance - 0.03 < along < -cfg.contact_offset + 0.012
        lined_up = behind and abs(across) < tolerance
        low = tool[2] < cfg.push_height + 0.015
        if lined_up and low:
            if commit:
                self._pushing = True
            end = scene.goal_xy - direction * cfg.contact_offset
            return PUSH, np.array([*end, cfg.push_height]), cfg.push_speed * self._speed, direction
        if commit:
            self._pushing = False
        if lined_up:
            on_line = cube + direction * along
            return DESCEND, np.array([*on_line, cfg.push_height]), 0.7 * speed, direction
        near = float(np.linalg.norm(rel)) < cfg.approach_distance + 0.03
        if near and tool[2] < cfg.travel_height - 0.01:
            return LIFT, np.array([tool[0], tool[1], cfg.travel_height]), speed, direction
        pre = cube - direction * cfg.approach_distance
        return TRAVEL, np.array([*pre, cfg.travel_height]), speed, direction

    def remaining_path(self, q: np.ndarray, scene: SceneState) -> float:
        """Rough length (m) of the tool path the push still needs from here: a progress measure.

        Behind the cube: down, to the contact point (twice any sideways error beyond the
        alignment tolerance), and the cube's distance to the goal. Otherwise: to the pre-push
        point at travel height, down, in to contact, and the push (whichever is shorter).
        """
        cfg = self.config
        tool = self.kinematics.tool_pose(np.asarray(q, dtype=np.float64)).position
        to_goal = scene.goal_xy - scene.cube_xy
        dist = float(np.linalg.norm(to_goal))
        if dist < cfg.goal_tolerance:
            return 0.0
        direction = to_goal / dist
        rel = tool[:2] - scene.cube_xy
        along = float(rel @ direction)
        across = float(rel @ np.array([-direction[1], direction[0]]))
        contact = scene.cube_xy - direction * cfg.contact_offset
        push = dist - cfg.goal_tolerance
        pre = np.array([*(scene.cube_xy - direction * cfg.approach_distance), cfg.travel_height])
        around = (
            float(np.linalg.norm(tool - pre))
            + (cfg.travel_height - cfg.push_height)
            + (cfg.approach_distance - cfg.contact_offset)
            + push
        )
        # Wider than the expert's own pushing window: a policy's tool may sit closer to a cube
        # that turned while pushed.
        if not -cfg.approach_distance - 0.03 < along < -cfg.contact_offset + 0.025:
            return around
        down = max(0.0, tool[2] - cfg.push_height)
        sideways = 2.0 * max(0.0, abs(across) - cfg.align_tolerance)
        return min(around, down + float(np.linalg.norm(tool[:2] - contact)) + sideways + push)

    def plan(self, q: np.ndarray, scene: SceneState, t: float) -> ExpertPlan:
        """Plan a chunk from measured joints ``q`` (7,) at time ``t`` (s, any clock).

        Step k of the chunk is the target for ``t + (k + 1) * step_dt``.
        """
        cfg = self.config
        kin = self.kinematics
        q = np.asarray(q, dtype=np.float64)
        self._advance_noise(t)
        start_pose = kin.tool_pose(q)
        if self._tool_y is None:
            self._tool_y = start_pose.rotation[:, 1]
        tool = start_pose.position.copy()
        cube = np.asarray(scene.cube_xy, dtype=np.float64).copy()
        chunk = np.empty((cfg.horizon, q.shape[0]))
        current = q.copy()
        first_phase = ""
        perturbed_now = t < self._perturb_until
        for k in range(cfg.horizon):
            phase, target, speed, direction = self._decide(tool, cube, scene, commit=k == 0)
            if k == 0:
                first_phase = phase
            delta = target - tool
            length = float(np.linalg.norm(delta))
            step = speed * cfg.step_dt
            tool = target.copy() if length <= step else tool + delta * (step / length)
            if phase == PUSH:
                along = float((tool[:2] - cube) @ direction)
                if along > -cfg.contact_offset:
                    cube = cube + direction * (along + cfg.contact_offset)
            step_time = t + (k + 1) * cfg.step_dt
            offset = self._offset.copy()
            if step_time < self._perturb_until:
                offset += self._perturb_offset
            waypoint = tool + offset
            waypoint[2] = max(waypoint[2], cfg.push_height - 0.004)
            rotation = tool_rotation(direction, waypoint, cfg.tool_tilt, self._tool_y)
            current = kin.solve(
                current,
                waypoint,
                rotation,
                rotation_weight=cfg.rotation_weight,
                max_step=cfg.max_joint_speed * cfg.step_dt,
            )
            current[6] = cfg.gripper_opening
            chunk[k] = current
            if k == 0:
                self._tool_y = rotation[:, 1]
        return ExpertPlan(chunk, first_phase, perturbed_now)
