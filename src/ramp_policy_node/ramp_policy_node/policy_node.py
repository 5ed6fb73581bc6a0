"""policy_node: world-model state + joint state -> action chunk on ``ramp/action_chunk``.

Thin rclpy adapter on :class:`ramp_models.ros.model_node.ModelNode`, which owns the parameters,
loading, hot reload (``~/reload``, the ``model_card`` parameter, ``watch_model``), input
handling (the inputs the policy's card names: ``wm_state``, ``joint_state``, optionally
``images``), the inference thread (woken by each new world-model state, never in a callback) and
health. This node adds what a policy publishes and when:

``ramp/action_chunk`` (trajectory_msgs/JointTrajectory, header.stamp = observation time = the
world-model state's stamp, itself the oldest capture stamp; time_from_start of step k =
(k+1) * step_dt; frame_id = policy model id). Replanning (``ramp_policy_node.core.replan``):
inference starts when the chunk last published has fewer than ``replan_remaining_s`` seconds left
(reloadable), and at most at ``rate_hz``; with ``replan_remaining_s`` = 0 it runs on every new
world-model state, at most at ``rate_hz``. The diagnostics' ``model_id`` is the policy that made
the last chunk (also its frame_id). With ``robots`` (batched serving) every robot has its own
replan rule and rate limit; the robots due in a round share one forward pass and each chunk goes
to ``/<ns>/ramp/action_chunk`` stamped with that robot's world-model state stamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import numpy_to_trajectory, sec_to_stamp
from ramp_common.node_tools import run_node
from ramp_common.params import Param
from ramp_common.qos import COMMAND_QOS
from ramp_models.model_card import ModelCard
from ramp_models.observation import Observation
from ramp_models.ros.model_node import Lane, ModelNode, ModelSetup, model_node_params
from ramp_policy_node.core.replan import ReplanRule

PARAMS: tuple[Param, ...] = (
    *model_node_params("policy", 10.0, "Highest replan rate."),
    Param(
        "replan_remaining_s",
        0.0,
        "Start the next inference when the current chunk has less than this left; "
        "0 = replan on every new world-model state (at most rate_hz).",
        unit="s",
        low=0.0,
        reloadable=True,
    ),
)


@dataclass(frozen=True)
class _Chunking:
    """What the node takes from a policy card: the chunk's step times."""

    t_from_start: np.ndarray
    """(H,) s: (k + 1) * step_dt."""


class PolicyNode(ModelNode):
    """Runs the chunk policy and publishes ``ramp/action_chunk``."""

    KIND = "policy"
    LABEL = "policy"
    WORKER_NAME = "policy_inference"
    MAX_WAIT_S = 0.02  # polled often enough to honour replan_remaining_s
    RATE_KEY = "chunk_rate_hz"
    AGE_KEY = "chunk_age_at_publish_ms"

    def __init__(self, node_name: str = "policy_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, PARAMS, **node_kwargs)

    def _create_output(self, prefix: str) -> Any:
        return self.create_publisher(JointTrajectory, f"{prefix}ramp/action_chunk", COMMAND_QOS)

    def _lane_state(self) -> ReplanRule:
        return ReplanRule(float(self.params["replan_remaining_s"]))

    def _derive(self, card: ModelCard) -> _Chunking:
        step_dt = float(card.chunk.step_dt)
        return _Chunking(t_from_start=step_dt * np.arange(1, card.chunk.length + 1))

    def _due(self, now: float, lane: Lane) -> bool:
        replan: ReplanRule | None = lane.state
        return replan is not None and replan.due(now)

    def _on_parameter(self, name: str, value: Any) -> tuple[bool, str]:
        if name == "replan_remaining_s":
            for lane in self._lanes:
                lane.state.replan_remaining_s = float(value)
            return True, f"replan_remaining_s = {value} s"
        return super()._on_parameter(name, value)

    def _publish(
        self, setup: ModelSetup, lane: Lane, obs: Observation, outputs: dict[str, Any]
    ) -> None:
        t_from_start = setup.extra.t_from_start
        chunk = np.asarray(outputs["action_chunk"][0], dtype=np.float64)
        msg = numpy_to_trajectory(
            self._joint_names,
            t_from_start,
            chunk,
            sec_to_stamp(obs.stamp),
            setup.model.model_id,
        )
        lane.output.publish(msg)
        lane.state.published(obs.stamp, float(t_from_start[-1]))


def main(args: list[str] | None = None) -> int:
    """Console entry point ``policy_node``."""
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
