"""A scripted operator for HILR rounds in simulation: watches, takes over, corrects, hands back.

It plays the person in the human-in-the-loop rollout: it watches the scene (ground truth, as a
person looking at the robot would), decides that the robot went off track, takes over with the
clean scripted expert (``expert.PushExpert``) until the push is back on track, and hands back.
ROS-free; ``sim_stack.StackOperator`` drives it through the teleop interfaces (a virtual leader
arm on ``leader/joint_states`` + ``ramp/takeover``), ``simloop`` drives it offline.

Off track (``OffTrackMonitor``), checked at every decision, on the expert's estimate of the
tool path still needed to finish (``PushExpert.remaining_path``: to the pre-push point, down,
in, and the push):

- went backwards: it grew ``regress_m`` beyond the smallest value seen so far (the cube was
  pushed away, the arm wandered off);
- no progress: it has not shrunk by ``progress_m`` within the last ``stall_s``.

Units: m, s; world frame of the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ramp_training.expert import PUSH, ExpertNoise, PushExpert, SceneState


@dataclass(frozen=True)
class OperatorConfig:
    """When the scripted operator intervenes and for how long."""

    regress_m: float = 0.05
    progress_m: float = 0.01
    stall_s: float = 2.0
    min_correction_s: float = 1.5
    on_track_s: float = 1.0
    """Hand back after the expert pushed this long (cube getting closer)..."""
    max_correction_s: float = 6.0
    """...or after this long in control, whatever happens."""
    max_interventions: int = 3
    """After this many, the operator keeps control to the end of the episode."""
    grace_s: float = 1.0
    """No takeover in the first second of an episode (the policy has not started yet)."""

    @classmethod
    def demonstrator(cls) -> OperatorConfig:
        """Take over at once and keep control: whole episodes as demonstrations."""
        return cls(stall_s=0.0, grace_s=0.0, max_interventions=1)


class OffTrackMonitor:
    """Watches a progress measure, the remaining path in m (see the module docstring)."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.reset(0.0)

    def reset(self, t: float) -> None:
        """Forget the history (episode start, or handback at ``t``)."""
        self._best = np.inf
        self._mark = np.inf
        self._mark_time = t
        self.reason = ""

    def off_track(self, t: float, remaining_m: float) -> bool:
        """True when the robot went off track at ``t``; ``reason`` says why."""
        cfg = self.config
        if remaining_m < self._mark - cfg.progress_m:
            self._mark = remaining_m
            self._mark_time = t
        self._best = min(self._best, remaining_m)
        if remaining_m > self._best + cfg.regress_m:
            self.reason = f"went backwards ({remaining_m:.3f} m to go, best {self._best:.3f} m)"
            return True
        if t - self._mark_time > cfg.stall_s:
            self.reason = f"no progress for {t - self._mark_time:.1f} s"
            return True
        return False


@dataclass(frozen=True)
class OperatorDecision:
    """What the operator does now: in control or not, and its chunk when in control."""

    in_control: bool
    chunk: np.ndarray | None
    changed: bool
    """True at a takeover or handback."""
    reason: str = ""


class ScriptedOperator:
    """The decision logic of the scripted operator (call ``decide`` at the policy rate)."""

    def __init__(self, config: OperatorConfig | None = None, expert: PushExpert | None = None):
        self.config = config or OperatorConfig()
        self.expert = expert or PushExpert(noise=ExpertNoise.none())
        self.monitor = OffTrackMonitor(self.config)
        self.reset(0)

    def reset(self, seed: int, t: float = 0.0) -> None:
        """New episode starting at ``t``."""
        self.expert.reset(seed)
        self.monitor.reset(t)
        self.in_control = False
        self.interventions = 0
        self._start = t
        self._since = t
        self._pushing_since: float | None = None
        self._last_dist = np.inf

    def decide(self, t: float, joints: np.ndarray, scene: SceneState) -> OperatorDecision:
        """Take over, keep correcting, or hand back, at time ``t`` (s); ``joints`` measured."""
        cfg = self.config
        if not self.in_control:
            remaining = self.expert.remaining_path(joints, scene)
            if t - self._start < cfg.grace_s or not self.monitor.off_track(t, remaining):
                return OperatorDecision(False, None, False)
            if scene.cube_in_goal():
                return OperatorDecision(False, None, False)
            self.in_control = True
            self.interventions += 1
            self._since = t
            self._pushing_since = None
            self._last_dist = np.inf
            plan = self.expert.plan(joints, scene, t)
            return OperatorDecision(True, plan.chunk, True, f"takeover: {self.monitor.reason}")
        plan = self.expert.plan(joints, scene, t)
        dist = float(np.linalg.norm(scene.cube_xy - scene.goal_xy))
        if plan.phase == PUSH and dist < self._last_dist - 1e-4:
            if self._pushing_since is None:
                self._pushing_since = t
        elif plan.phase != PUSH:
            self._pushing_since = None
        self._last_dist = min(self._last_dist, dist)
        held = t - self._since
        on_track = self._pushing_since is not None and t - self._pushing_since >= cfg.on_track_s
        keep = self.interventions >= cfg.max_interventions
        if not keep and held >= cfg.min_correction_s and (on_track or held >= cfg.max_correction_s):
            self.in_control = False
            self.monitor.reset(t)
            why = "back on track" if on_track else f"after {held:.1f} s"
            return OperatorDecision(False, None, True, f"handback: {why}")
        return OperatorDecision(True, plan.chunk, False)

    def offline(self):
        """An ``operator`` callback for ``SimEpisodeRunner.run`` (returns chunks in control)."""

        def callback(obs, _command):
            return self.decide(obs.t, obs.joints, obs.scene).chunk

        return callback
