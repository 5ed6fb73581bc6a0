"""Replay of an episode through a running stack, without ROS: timing, restamping, comparison.

The replayer publishes a bag's inputs (cameras, joint states, task) with their original relative
timing scaled by ``rate``. Header stamps are shifted onto the wall clock of the replay
(:class:`ReplayClock`), because the stack refuses inputs older than its ``max_input_age_s``; the
policy's chunks therefore come back stamped in replay time and are mapped back to bag time
before :func:`compare_chunks` scores them against the actions executed in the bag (the
``joint_command`` targets), separately for policy and operator (intervention) stretches.

No ROS import.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bag_reader import EpisodeBag, JointSeries
from .episode import InterventionSegment, cdr_header, restamp_header

REPLAY_TOPICS = ("joint_states", "ramp/task")
"""Replayed besides every camera/<name>/image_raw topic."""
STAMPED_TYPES = {
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/JointState",
    "trajectory_msgs/msg/JointTrajectory",
    "diagnostic_msgs/msg/DiagnosticArray",
}


@dataclass(frozen=True)
class ReplayClock:
    """Maps bag time <-> replay wall time: ``wall = wall0 + (bag - bag0) / rate`` (ns)."""

    bag0_ns: int
    wall0_ns: int
    rate: float = 1.0

    def to_wall(self, bag_ns: int) -> int:
        return self.wall0_ns + round((bag_ns - self.bag0_ns) / self.rate)

    def to_bag(self, wall_ns: int) -> int:
        return self.bag0_ns + round((wall_ns - self.wall0_ns) * self.rate)


@dataclass
class ReplayMessage:
    """One message to publish: bag log time, relative topic, type, serialized bytes."""

    log_ns: int
    topic: str
    msgtype: str
    raw: bytes

    def restamped(self, clock: ReplayClock) -> bytes:
        """The message with header.stamp moved to replay time (unstamped types unchanged)."""
        if self.msgtype not in STAMPED_TYPES:
            return self.raw
        stamp, _ = cdr_header(self.raw)
        return restamp_header(self.raw, clock.to_wall(stamp or self.log_ns))


def replay_topics(bag: EpisodeBag, extra: Sequence[str] = ()) -> list[str]:
    """Cameras + joint_states + task (those present), plus ``extra``."""
    topics = [t for t in bag.topics if t.startswith("camera/") and t.endswith("/image_raw")]
    topics += [t for t in (*REPLAY_TOPICS, *extra) if bag.has(t) and t not in topics]
    return topics


def load_replay(bag: EpisodeBag, topics: Sequence[str]) -> list[ReplayMessage]:
    """Messages of ``topics`` in log order (held in memory: fine for one episode's inputs)."""
    types = {t: bag.msgtype(t) for t in topics}
    return [
        ReplayMessage(log_ns, topic, types[topic], raw)
        for topic, log_ns, raw in bag.raw_messages(list(topics))
    ]


@dataclass
class ObservedChunk:
    """A chunk the policy published during replay, mapped to bag time.

    ``stamp_ns``: bag time of its observation; ``t_from_start_s`` (H,), ``positions`` (H, D) in
    ``names`` order; ``model_id`` from header.frame_id.
    """

    stamp_ns: int
    t_from_start_s: np.ndarray
    positions: np.ndarray
    names: list[str]
    model_id: str = ""


@dataclass
class ReplayReport:
    """Per-episode comparison of replayed chunks with the executed actions."""

    episode: str
    rate: float
    chunks_received: int
    chunks_compared: int
    joint_names: list[str]
    mae: float | None
    rmse: float | None
    mae_policy: float | None
    mae_intervention: float | None
    per_joint_mae: list[float]
    first_step_mae: float | None
    model_ids: list[str]
    per_chunk: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def compare_chunks(
    episode: str,
    chunks: Sequence[ObservedChunk],
    executed: JointSeries,
    interventions: Sequence[InterventionSegment],
    rate: float = 1.0,
) -> ReplayReport:
    """Score chunks against the executed targets, interpolated at each chunk step's bag time.

    A step counts when its time ``stamp + t_from_start`` lies within the executed series; the
    errors are absolute position differences (rad / m) per joint. A chunk belongs to the
    intervention stretch when its observation time lies in an intervention segment.
    """
    names = executed.names
    order = np.argsort(executed.stamps_ns, kind="stable")
    t_exec = executed.stamps_ns[order].astype(np.float64)
    p_exec = executed.positions[order]
    errors_all: list[np.ndarray] = []
    first_steps: list[np.ndarray] = []
    policy_err: list[float] = []
    operator_err: list[float] = []
    per_chunk: list[dict[str, Any]] = []
    models: list[str] = []
    for chunk in chunks:
        if chunk.model_id and chunk.model_id not in models:
            models.append(chunk.model_id)
        index = {n: i for i, n in enumerate(chunk.names)}
        if any(n not in index for n in names) or t_exec.size < 2:
            continue
        pred = chunk.positions[:, [index[n] for n in names]]
        times = chunk.stamp_ns + np.round(chunk.t_from_start_s * 1e9)
        valid = (times >= t_exec[0]) & (times <= t_exec[-1])
        if not valid.any():
            continue
        truth = np.stack(
            [np.interp(times[valid], t_exec, p_exec[:, j]) for j in range(len(names))], axis=1
        )
        err = np.abs(pred[valid] - truth)
        errors_all.append(err)
        first_steps.append(err[0])
        mae = float(err.mean())
        in_operator = any(s.start_ns <= chunk.stamp_ns < s.end_ns for s in interventions)
        (operator_err if in_operator else policy_err).append(mae)
        per_chunk.append(
            {
                "t_s": round((chunk.stamp_ns - executed.stamps_ns.min()) / 1e9, 4),
                "mae": mae,
                "first_step_abs_error": err[0].tolist(),
                "steps": int(valid.sum()),
                "intervention": in_operator,
            }
        )
    if errors_all:
        stacked = np.concatenate(errors_all)
        mae_all, rmse = float(stacked.mean()), float(np.sqrt((stacked**2).mean()))
        per_joint = stacked.mean(axis=0).tolist()
        first = float(np.mean(first_steps))
    else:
        mae_all = rmse = first = None
        per_joint = []
    return ReplayReport(
        episode=episode,
        rate=rate,
        chunks_received=len(chunks),
        chunks_compared=len(per_chunk),
        joint_names=list(names),
        mae=mae_all,
        rmse=rmse,
        mae_policy=float(np.mean(policy_err)) if policy_err else None,
        mae_intervention=float(np.mean(operator_err)) if operator_err else None,
        per_joint_mae=per_joint,
        first_step_mae=first,
        model_ids=models,
        per_chunk=per_chunk,
    )


def plot_replay(
    path: Path,
    report: ReplayReport,
    chunks: Sequence[ObservedChunk],
    executed: JointSeries,
    interventions: Sequence[InterventionSegment],
) -> Path:
    """PNG: per joint, the executed targets (line) and each replayed chunk (thin lines);
    intervention stretches shaded; the last panel shows the per-chunk error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = executed.names
    t0 = int(executed.stamps_ns.min()) if executed.stamps_ns.size else 0
    rows = len(names) + 1
    fig, axes = plt.subplots(rows, 1, figsize=(10, 1.6 * rows + 1), sharex=True, squeeze=False)
    t_exec = (executed.stamps_ns - t0) / 1e9
    for j, name in enumerate(names):
        ax = axes[j][0]
        ax.plot(t_exec, executed.positions[:, j], color="black", lw=1.2, label="executed")
        for chunk in chunks:
            index = {n: i for i, n in enumerate(chunk.names)}
            if name not in index:
                continue
            ts = (chunk.stamp_ns - t0) / 1e9 + chunk.t_from_start_s
            ax.plot(
                ts,
                chunk.positions[:, index[name]],
                color="tab:blue",
                lw=0.6,
                alpha=0.6,
                marker=".",
                ms=3,
            )
        ax.set_ylabel(name, fontsize=8)
        for seg in interventions:
            ax.axvspan(
                (seg.start_ns - t0) / 1e9, (seg.end_ns - t0) / 1e9, color="orange", alpha=0.2
            )
    axes[0][0].set_title(
        f"{report.episode}: replayed chunks (blue) vs executed targets (black); "
        f"MAE {report.mae if report.mae is not None else float('nan'):.4f}",
        fontsize=9,
    )
    ax = axes[-1][0]
    ax.plot([c["t_s"] for c in report.per_chunk], [c["mae"] for c in report.per_chunk], ".-")
    ax.set_ylabel("chunk MAE", fontsize=8)
    ax.set_xlabel("episode time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
