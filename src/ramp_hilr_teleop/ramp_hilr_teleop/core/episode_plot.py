"""One episode as a picture: joints, commands, operator commands, interventions, chunks (PNG).

:func:`load_episode_plot` reads what the picture shows from an episode bag (no drawing), so the
numbers behind a plot can be checked; :func:`draw_episode` draws it with matplotlib (Agg
backend, no display) and :func:`plot_episode` does both.

Time axis: seconds since the episode start (``episode.yaml`` ``start_ns``, bag/log time). Joint
topics are placed by their header stamps; interventions and chunk arrivals by log time (the
recorder's receive time), as ``episode.yaml`` counts them. Positions in rad (m for a gripper).

No ROS import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bag_reader import EpisodeBag
from .episode import ACTION_CHUNK_TOPIC, INTERVENTION_TOPIC, EpisodeError

STATE_TOPIC = "joint_states"
COMMAND_TOPIC = "joint_command"
OPERATOR_TOPIC = "ramp/operator_command"
JOINT_TOPICS = (STATE_TOPIC, COMMAND_TOPIC, OPERATOR_TOPIC)
"""The JointState topics drawn, in drawing order."""
STYLE = {
    STATE_TOPIC: {"color": "black", "lw": 1.0, "label": "position (joint_states)"},
    COMMAND_TOPIC: {"color": "tab:blue", "lw": 1.0, "label": "command (joint_command)"},
    OPERATOR_TOPIC: {
        "color": "tab:red",
        "lw": 0.9,
        "ls": "--",
        "label": "operator (ramp/operator_command)",
    },
}
INTERVENTION_GID = "intervention"
CHUNK_GID = "chunk_arrivals"


@dataclass
class TimedJoints:
    """One JointState topic: ``t_s`` (N,) s since the episode start (header stamps) and
    ``positions`` (N, D) in the plot's joint order, NaN where a message lacks a joint."""

    topic: str
    t_s: np.ndarray
    positions: np.ndarray


@dataclass
class EpisodePlotData:
    """What an episode plot shows (all times in s since ``start_ns``)."""

    name: str
    start_ns: int
    duration_s: float
    joint_names: list[str]
    series: dict[str, TimedJoints] = field(default_factory=dict)
    interventions_s: list[tuple[float, float]] = field(default_factory=list)
    chunk_arrivals_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    success: bool | None = None
    cancelled: bool = False
    status: str = ""
    task: str = ""
    robot: str = ""
    operator: str = ""

    @property
    def label(self) -> str:
        """One of success / failure / cancelled / unlabeled (the episode's stop label)."""
        if self.cancelled:
            return "cancelled"
        if self.success is None:
            return "unlabeled"
        return "success" if self.success else "failure"

    @property
    def title(self) -> str:
        ratio = (
            sum(b - a for a, b in self.interventions_s) / self.duration_s if self.duration_s else 0
        )
        parts = [
            f"{self.name}: {self.label.upper()}",
            f"{self.duration_s:.1f} s",
            f"{len(self.interventions_s)} intervention(s), {ratio:.0%} under operator",
            f"{self.chunk_arrivals_s.size} chunks",
        ]
        text = ", ".join(parts)
        if self.task:
            text += f"\ntask: {self.task!r}"
        return text


def _joint_positions(
    bag: EpisodeBag, topic: str, names: Sequence[str], t0_ns: int
) -> TimedJoints | None:
    """Positions of ``names`` on ``topic`` (NaN for joints a message lacks); None when absent."""
    if not bag.has(topic):
        return None
    stamps: list[int] = []
    rows: list[np.ndarray] = []
    cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
    for _, log_ns, raw in bag.raw_messages([topic]):
        msg = bag.decode(raw, "sensor_msgs/msg/JointState")
        key = tuple(msg.name)
        if key not in cache:
            index = {n: i for i, n in enumerate(key)}
            cols = np.array([j for j, n in enumerate(names) if n in index], dtype=np.intp)
            src = np.array([index[n] for n in names if n in index], dtype=np.intp)
            cache[key] = (cols, src)
        cols, src = cache[key]
        pos = np.asarray(msg.position, dtype=np.float64)
        row = np.full(len(names), np.nan)
        if pos.size == len(key):
            row[cols] = pos[src]
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        stamps.append(stamp or log_ns)
        rows.append(row)
    if not rows:
        return None
    order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
    t_s = (np.asarray(stamps, np.int64)[order] - t0_ns) / 1e9
    return TimedJoints(topic, t_s, np.asarray(rows)[order].reshape(len(rows), len(names)))


def _first_joint_names(bag: EpisodeBag) -> list[str]:
    for topic in JOINT_TOPICS:
        if bag.has(topic):
            for _, _, raw in bag.raw_messages([topic]):
                return list(bag.decode(raw, "sensor_msgs/msg/JointState").name)
    raise EpisodeError(f"{bag.path}: no joint topic to plot (looked for {list(JOINT_TOPICS)})")


def intervention_intervals(bag: EpisodeBag, t0_ns: int, end_s: float) -> list[tuple[float, float]]:
    """Operator-control stretches (s since ``t0_ns``): ``episode.yaml``'s ``interventions``, or,
    for a bag without RAMP metadata, ``ramp/intervention`` true -> false (open ones end at
    ``end_s``)."""
    if bag.meta.status != "unknown":
        return [
            ((s.start_ns - t0_ns) / 1e9, (s.end_ns - t0_ns) / 1e9) for s in bag.meta.interventions
        ]
    times, values = bag.bool_series(INTERVENTION_TOPIC)
    out: list[tuple[float, float]] = []
    on: float | None = None
    for t_ns, value in zip(times.tolist(), values.tolist(), strict=True):
        t = (t_ns - t0_ns) / 1e9
        if value and on is None:
            on = t
        elif not value and on is not None:
            out.append((on, t))
            on = None
    if on is not None:
        out.append((on, end_s))
    return out


def load_episode_plot(path: Path, joints: Sequence[str] | None = None) -> EpisodePlotData:
    """Read what :func:`draw_episode` shows from the episode bag at ``path``.

    ``joints``: joints to show (default: every joint of the first JointState message). Raises
    EpisodeError naming the bag and the problem (unfinished bag, no joint topic, unknown joint).
    """
    with EpisodeBag(Path(path)) as bag:
        meta = bag.meta
        names = list(joints) if joints else _first_joint_names(bag)
        t0 = meta.start_ns
        if not t0:
            t0 = min(
                (s.first_ns for s in meta.topics.values() if s.first_ns is not None), default=0
            )
        series: dict[str, TimedJoints] = {}
        for topic in JOINT_TOPICS:
            timed = _joint_positions(bag, topic, names, t0)
            if timed is not None:
                series[topic] = timed
        if not series:
            raise EpisodeError(
                f"{bag.path}: no joint topic to plot (looked for {list(JOINT_TOPICS)})"
            )
        unknown = [
            n
            for j, n in enumerate(names)
            if all(np.isnan(s.positions[:, j]).all() for s in series.values())
        ]
        if joints and unknown:
            raise EpisodeError(f"{bag.path}: no data for joints {unknown} in {list(series)}")
        duration = meta.duration_s
        if not duration:
            duration = max(float(s.t_s[-1]) for s in series.values())
        chunks = np.zeros(0)
        if bag.has(ACTION_CHUNK_TOPIC):
            logs = [log_ns for _, log_ns, _ in bag.raw_messages([ACTION_CHUNK_TOPIC])]
            chunks = (np.asarray(logs, np.int64) - t0) / 1e9
        return EpisodePlotData(
            name=meta.name,
            start_ns=t0,
            duration_s=float(duration),
            joint_names=names,
            series=series,
            interventions_s=intervention_intervals(bag, t0, float(duration)),
            chunk_arrivals_s=chunks,
            success=meta.success,
            cancelled=meta.cancelled,
            status=meta.status,
            task=meta.task,
            robot=meta.robot,
            operator=meta.operator,
        )


def draw_episode(data: EpisodePlotData) -> Any:
    """The matplotlib Figure (Agg): one panel per joint, shared time axis.

    Intervention stretches are shaded (patches with gid ``intervention``); chunk arrivals are
    short ticks along the bottom of every panel (gid ``chunk_arrivals``).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = len(data.joint_names)
    fig = Figure(figsize=(11, 1.45 * rows + 1.3), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for j, (ax, name) in enumerate(zip(axes, data.joint_names, strict=True)):
        for a, b in data.interventions_s:
            span = ax.axvspan(a, b, color="orange", alpha=0.25, lw=0)
            span.set_gid(INTERVENTION_GID)
        for topic in JOINT_TOPICS:
            timed = data.series.get(topic)
            if timed is None or np.isnan(timed.positions[:, j]).all():
                continue
            ax.plot(timed.t_s, timed.positions[:, j], **STYLE[topic])
        if data.chunk_arrivals_s.size:
            ticks = ax.vlines(
                data.chunk_arrivals_s,
                0.0,
                0.07,
                transform=ax.get_xaxis_transform(),
                color="tab:green",
                lw=0.8,
            )
            ticks.set_gid(CHUNK_GID)
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    axes[-1].set_xlim(0.0, max(data.duration_s, 1e-3))
    axes[-1].set_xlabel("time since episode start (s)")
    handles, labels = [], []
    for topic in JOINT_TOPICS:
        for line in axes[0].get_lines():
            if line.get_label() == STYLE[topic]["label"]:
                handles.append(line)
                labels.append(line.get_label())
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles += [
        Patch(color="orange", alpha=0.25, label="operator in control (ramp/intervention)"),
        Line2D([], [], color="tab:green", marker="|", ls="", label="chunk arrival"),
    ]
    labels += [h.get_label() for h in handles[len(labels) :]]
    axes[0].legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=5,
                   fontsize=7, frameon=False)  # fmt: skip
    color = {"success": "tab:green", "failure": "tab:red"}.get(data.label, "black")
    fig.suptitle(data.title, fontsize=10, color=color)
    return fig


def plot_episode(
    path: Path, out: Path, joints: Sequence[str] | None = None, dpi: int = 100
) -> EpisodePlotData:
    """Read the episode at ``path`` and write its plot to ``out`` (PNG); returns the data."""
    data = load_episode_plot(path, joints)
    fig = draw_episode(data)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return data
