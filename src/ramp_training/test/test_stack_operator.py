"""The scripted operator's virtual leader arm on the real stack plans in leader space.

One demonstration through the whole stack (sim_bridge, cameras, world model, policy, chunk
executor, teleop_node in leader mode, intervention_arbiter, episode_recorder; in this process,
own ROS domain): the operator takes over at once and keeps control. Every re-plan must start
where the leader is on its current chunk, never from the measured follower joints, which trail
the leader; re-planning from those made the corrections see-saw. The recorded episode must hold
the operator's commands and be exported with its intervention frames.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest

from ramp_training.expert import ExpertNoise, PushExpert, SceneState
from ramp_training.hilr_round import collect_stack
from ramp_training.operator import OperatorConfig, OperatorDecision, ScriptedOperator

pytestmark = pytest.mark.ros

MODELS = Path(__file__).resolve().parents[3] / "models" / "demo"


class RecordingOperator(ScriptedOperator):
    """The real scripted operator; keeps each decision's time, input joints and result."""

    def __init__(self) -> None:
        super().__init__(OperatorConfig.demonstrator(), PushExpert(noise=ExpertNoise.none()))
        self.calls: list[tuple[float, np.ndarray, OperatorDecision]] = []

    def decide(self, t: float, joints: np.ndarray, scene: SceneState) -> OperatorDecision:
        decision = super().decide(t, joints, scene)
        self.calls.append((t, np.array(joints, dtype=np.float64), decision))
        return decision


def _on_chunk(t: float, t0: float, q0: np.ndarray, chunk: np.ndarray, dt: float) -> np.ndarray:
    """Where a leader following ``chunk`` (planned at ``t0`` from ``q0``) is at ``t``."""
    times = t0 + dt * np.arange(len(chunk) + 1)
    points = np.vstack([q0, chunk])
    return np.array([np.interp(t, times, points[:, j]) for j in range(points.shape[1])])


def test_leader_replans_from_its_own_position(tmp_path: Path) -> None:
    person = RecordingOperator()
    summary = collect_stack(
        MODELS,
        tmp_path,
        episodes=1,
        scripted=person,
        max_duration_s=4.0,
        domain_id=int(os.environ["ROS_DOMAIN_ID"]),
        label="leader-space test",
    )
    in_control = [c for c in person.calls if c[2].in_control and c[2].chunk is not None]
    assert len(in_control) >= 10, f"only {len(in_control)} decisions in control"
    assert in_control[0][2].changed, "the first decision in control is the takeover"
    dt = person.expert.config.step_dt
    for (t0, q0, previous), (t1, q1, _) in itertools.pairwise(in_control):
        expected = _on_chunk(t1, t0, q0, previous.chunk, dt)
        np.testing.assert_allclose(
            q1, expected, atol=1e-9, err_msg=f"re-plan at {t1 - in_control[0][0]:.2f} s"
        )
    # The leader travelled (the plan did not stall at its start)...
    travelled = np.abs(in_control[-1][1] - in_control[0][1])[:6].max()
    assert travelled > 0.05, travelled
    # ...and the recording holds the correction, exported as intervention frames.
    assert summary.episodes == 1 and summary.interventions == 1
    assert summary.intervention_frames > 0.8 * summary.frames
