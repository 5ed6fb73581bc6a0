"""Action-to-state lag of recorded episodes or of an exported dataset (no ROS).

The action label of frame k (what the robot was told to do next) is compared with the measured
joint state a little later: ``residual(lag) = mean_k |action(t_k) - state(t_k + lag)|`` in rad
(m for a gripper), for lags in fractions of a frame. The lag with the smallest residual is how
far the robot trails its commands, and the residual there is how well it follows them once that
delay is allowed for: a follower that tracks its commands gives a small residual at a small lag;
commands that see-saw (a leader re-planned from the trailing follower) give a large one.

Frames follow the export's alignment rule (docs/episodes.md, ``core/export.py``): frame k at
``t_k = t_first + k / fps`` on the header-stamp clock, action = the first ``joint_command``
with stamp >= t_k, intervention = ``ramp/intervention`` at t_k. From a bag ``t_first`` is the
first ``joint_states`` stamp (cameras are not read) and the state at ``t_k + lag`` is
interpolated linearly in the full-rate ``joint_states``; from a LeRobot v3 dataset the state is
interpolated between the dataset's frames (``observation.state``, ``action``, ``intervention``).

Every lag of a curve uses the same frames: those whose ``t_k + lag`` lies within the state
series for every lag of the grid. Episodes are pooled frame-weighted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bag_reader import EpisodeBag
from .episode import INTERVENTION_TOPIC, EpisodeError, iter_episode_dirs

FRAMES_ALL = "all"
FRAMES_OPERATOR = "operator"
FRAMES_AUTONOMOUS = "autonomous"
FRAME_SELECTIONS = (FRAMES_ALL, FRAMES_OPERATOR, FRAMES_AUTONOMOUS)


@dataclass
class LagEpisode:
    """One episode's frames and its measured state on one clock (s).

    ``t_frames_s`` (K,), ``action`` (K, D), ``intervention`` (K,) bool; ``state_t_s`` (M,) and
    ``state`` (M, D), increasing in time; columns in ``joint_names`` order.
    """

    name: str
    fps: float
    joint_names: list[str]
    t_frames_s: np.ndarray
    action: np.ndarray
    intervention: np.ndarray
    state_t_s: np.ndarray
    state: np.ndarray


@dataclass
class LagCurve:
    """Residual per lag and joint of one episode (or a pool): ``residual`` (L, D) in rad/m.

    ``sums`` holds the unnormalised sums, so pools add episodes frame-weighted.
    """

    name: str
    lags_frames: np.ndarray
    joint_names: list[str]
    frames: int
    sums: np.ndarray

    @property
    def residual(self) -> np.ndarray:
        return self.sums / self.frames if self.frames else np.full(self.sums.shape, np.nan)

    @property
    def overall(self) -> np.ndarray:
        """(L,) residual averaged over the joints."""
        return self.residual.mean(axis=1)

    def best(self) -> tuple[float, float]:
        """(lag in frames, residual) at the smallest overall residual (first of equals)."""
        if not self.frames:
            return float("nan"), float("nan")
        i = int(np.argmin(self.overall))
        return float(self.lags_frames[i]), float(self.overall[i])

    def best_per_joint(self) -> list[tuple[float, float]]:
        if not self.frames:
            return [(float("nan"), float("nan"))] * len(self.joint_names)
        res = self.residual
        idx = np.argmin(res, axis=0)
        return [(float(self.lags_frames[i]), float(res[i, j])) for j, i in enumerate(idx)]

    def at_zero(self) -> float:
        """Overall residual at lag 0 (NaN when 0 is not on the grid)."""
        hit = np.flatnonzero(np.isclose(self.lags_frames, 0.0))
        return float(self.overall[hit[0]]) if hit.size and self.frames else float("nan")


def lag_grid(max_lag: float = 3.0, step: float = 0.05, min_lag: float = 0.0) -> np.ndarray:
    """Lags in frames from ``min_lag`` to ``max_lag`` (inclusive) every ``step``."""
    if step <= 0 or max_lag < min_lag:
        raise EpisodeError(
            f"lag grid needs step > 0 and max >= min (got {min_lag}..{max_lag} by {step})"
        )
    n = round((max_lag - min_lag) / step)
    return np.round(min_lag + step * np.arange(n + 1), 6)


def frame_mask(episode: LagEpisode, frames: str) -> np.ndarray:
    """Frames of a selection: all, operator (intervention) or autonomous."""
    if frames == FRAMES_ALL:
        return np.ones(episode.t_frames_s.size, bool)
    if frames == FRAMES_OPERATOR:
        return episode.intervention.astype(bool)
    if frames == FRAMES_AUTONOMOUS:
        return ~episode.intervention.astype(bool)
    raise EpisodeError(f"frame selection {frames!r} not in {list(FRAME_SELECTIONS)}")


def lag_curve(
    episode: LagEpisode,
    lags_frames: np.ndarray,
    joints: Sequence[str] | None = None,
    frames: str = FRAMES_ALL,
) -> LagCurve:
    """Residual |action(t_k) - state(t_k + lag)| per lag and joint over the selected frames."""
    names = list(joints) if joints else list(episode.joint_names)
    missing = [n for n in names if n not in episode.joint_names]
    if missing:
        raise EpisodeError(f"{episode.name}: no joints {missing} (has {episode.joint_names})")
    cols = [episode.joint_names.index(n) for n in names]
    lags = np.asarray(lags_frames, np.float64)
    t = episode.t_frames_s
    lo, hi = lags.min() / episode.fps, lags.max() / episode.fps
    st = episode.state_t_s
    keep = frame_mask(episode, frames)
    if st.size >= 2:
        keep &= (t + lo >= st[0] - 1e-9) & (t + hi <= st[-1] + 1e-9)
    else:
        keep &= False
    sums = np.zeros((lags.size, len(names)))
    n = int(keep.sum())
    if n:
        tk = t[keep]
        action = episode.action[keep][:, cols]
        for i, lag in enumerate(lags):
            query = tk + lag / episode.fps
            for jj, c in enumerate(cols):
                state = np.interp(query, st, episode.state[:, c])
                sums[i, jj] = np.abs(action[:, jj] - state).sum()
    return LagCurve(episode.name, lags, names, n, sums)


def pool(curves: Sequence[LagCurve], name: str = "all episodes") -> LagCurve:
    """Frame-weighted pool of curves on the same lag grid and joints."""
    if not curves:
        raise EpisodeError("no episodes to pool")
    first = curves[0]
    return LagCurve(
        name,
        first.lags_frames,
        list(first.joint_names),
        sum(c.frames for c in curves),
        np.sum([c.sums for c in curves], axis=0),
    )


def default_joints(names: Sequence[str]) -> list[str]:
    """Arm joints: every joint but grippers (they switch, never track; their unit is m)."""
    arm = [n for n in names if "gripper" not in n.lower()]
    return arm or list(names)


# --------------------------------------------------------------------------------------------
# Sources: episode bags, LeRobot v3 datasets
# --------------------------------------------------------------------------------------------


def episode_from_bag(
    path: Path,
    fps: float = 10.0,
    state_topic: str = "joint_states",
    action_topic: str = "joint_command",
    joint_names: Sequence[str] | None = None,
) -> LagEpisode:
    """Frames of one episode bag at ``fps`` (export rule, t_first = first state stamp)."""
    if fps <= 0:
        raise EpisodeError(f"fps must be > 0, got {fps}")
    with EpisodeBag(Path(path)) as bag:
        state = bag.joint_series(state_topic, joint_names)
        action = bag.joint_series(action_topic, state.names)
        int_t, int_v = bag.bool_series(INTERVENTION_TOPIC)
        name = bag.meta.name
    if state.stamps_ns.size < 2 or action.stamps_ns.size == 0:
        raise EpisodeError(f"{path}: too few {state_topic} / {action_topic} messages")
    s_order = np.argsort(state.stamps_ns, kind="stable")
    s_ns = state.stamps_ns[s_order]
    a_order = np.argsort(action.stamps_ns, kind="stable")
    a_ns = action.stamps_ns[a_order]
    t_first, t_last = int(s_ns[0]), int(a_ns[-1])
    count = max(0, int((t_last - t_first) * fps // 1e9) + 1)
    k = np.arange(count, dtype=np.int64)
    t_k = t_first + np.round(k * 1e9 / fps).astype(np.int64)
    a_idx = np.searchsorted(a_ns, t_k, side="left")
    i_idx = np.searchsorted(int_t, t_k, side="right") - 1
    intervention = (
        np.where(i_idx >= 0, int_v[np.clip(i_idx, 0, None)], False)
        if int_v.size
        else np.zeros(count, bool)
    )
    # Keep distinct state times only (np.interp needs increasing x).
    uniq = np.concatenate([[True], np.diff(s_ns) > 0])
    return LagEpisode(
        name=name,
        fps=float(fps),
        joint_names=list(state.names),
        t_frames_s=(t_k - t_first) / 1e9,
        action=action.positions[a_order][a_idx],
        intervention=np.asarray(intervention, bool),
        state_t_s=(s_ns[uniq] - t_first) / 1e9,
        state=state.positions[s_order][uniq],
    )


def is_dataset(path: Path) -> bool:
    """A LeRobot v3 dataset folder (``meta/info.json`` with a v3 codebase version)."""
    info = Path(path) / "meta" / "info.json"
    if not info.is_file():
        return False
    try:
        return str(json.loads(info.read_text()).get("codebase_version", "")).startswith("v3")
    except (json.JSONDecodeError, OSError):
        return False


def episodes_from_dataset(path: Path) -> list[LagEpisode]:
    """Every episode of a LeRobot v3 dataset: frames at the dataset fps, state between frames."""
    import pyarrow.parquet as pq

    root = Path(path)
    info = json.loads((root / "meta" / "info.json").read_text())
    fps = float(info["fps"])
    features = info.get("features", {})
    for key in ("observation.state", "action"):
        if key not in features:
            raise EpisodeError(f"{root}: dataset has no feature {key!r}")
    names = list(features["observation.state"].get("names") or [])
    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise EpisodeError(f"{root}: no data/*/*.parquet files")
    columns = ["observation.state", "action", "episode_index", "frame_index", "timestamp"]
    tables = []
    for file in files:
        schema = pq.read_schema(file)
        cols = columns + (["intervention"] if "intervention" in schema.names else [])
        tables.append(pq.read_table(file, columns=cols).to_pydict())
    data: dict[str, list[Any]] = {k: [] for k in (*columns, "intervention")}
    for table in tables:
        n = len(table["episode_index"])
        for key in data:
            data[key] += table.get(key, [False] * n)
    ep_index = np.asarray(data["episode_index"], np.int64)
    state = np.asarray(data["observation.state"], np.float64)
    action = np.asarray(data["action"], np.float64)
    frame_index = np.asarray(data["frame_index"], np.int64)
    intervention = np.asarray(data["intervention"], bool)
    if not names:
        names = [f"joint{i}" for i in range(state.shape[1])]
    labels = _episode_labels(root)
    out = []
    for e in np.unique(ep_index):
        sel = np.flatnonzero(ep_index == e)
        sel = sel[np.argsort(frame_index[sel], kind="stable")]
        t = frame_index[sel] / fps
        out.append(
            LagEpisode(
                name=labels.get(int(e), f"episode {int(e)}"),
                fps=fps,
                joint_names=list(names),
                t_frames_s=t,
                action=action[sel],
                intervention=intervention[sel],
                state_t_s=t,
                state=state[sel],
            )
        )
    return out


def _episode_labels(root: Path) -> dict[int, str]:
    """episode_index -> source bag name (``meta/episodes``), where the export stored it."""
    import pyarrow.parquet as pq

    labels: dict[int, str] = {}
    for file in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        table = pq.read_table(file).to_pydict()
        for i, e in enumerate(table.get("episode_index", [])):
            source = table.get("source_bag", [None] * (i + 1))[i]
            labels[int(e)] = f"{int(e)}: {source}" if source else f"episode {int(e)}"
    return labels


def load_episodes(
    paths: Iterable[Path],
    fps: float = 10.0,
    include_cancelled: bool = False,
    state_topic: str = "joint_states",
    action_topic: str = "joint_command",
) -> tuple[list[LagEpisode], list[str]]:
    """Episodes from dataset folders and/or bags (folders of bags); -> (episodes, skipped)."""
    episodes: list[LagEpisode] = []
    skipped: list[str] = []
    bags: list[Path] = []
    for path in paths:
        path = Path(path)
        if is_dataset(path):
            episodes += episodes_from_dataset(path)
        else:
            bags += list(iter_episode_dirs([path]))
    for bag in bags:
        with EpisodeBag(bag) as opened:
            cancelled = opened.meta.cancelled
        if cancelled and not include_cancelled:
            skipped.append(f"{bag.name}: cancelled")
            continue
        episodes.append(episode_from_bag(bag, fps, state_topic, action_topic))
    return episodes, skipped


# --------------------------------------------------------------------------------------------
# Report: table, JSON, plot
# --------------------------------------------------------------------------------------------


@dataclass
class LagReport:
    """Per-episode curves plus their pool, for one frame selection."""

    frames: str
    fps: float
    lags_frames: np.ndarray
    joint_names: list[str]
    episodes: list[LagCurve]
    pooled: LagCurve
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def row(c: LagCurve) -> dict[str, Any]:
            lag, res = c.best()
            return {
                "name": c.name,
                "frames": c.frames,
                "best_lag_frames": lag,
                "best_lag_ms": lag / self.fps * 1e3,
                "residual": res,
                "residual_at_zero": c.at_zero(),
                "per_joint": {
                    n: {"best_lag_frames": jl, "residual": jr}
                    for n, (jl, jr) in zip(c.joint_names, c.best_per_joint(), strict=True)
                },
                "curve": c.overall.tolist() if c.frames else [],
            }

        return {
            "frames": self.frames,
            "fps": self.fps,
            "joints": self.joint_names,
            "lags_frames": self.lags_frames.tolist(),
            "pooled": row(self.pooled),
            "episodes": [row(c) for c in self.episodes],
            "skipped": self.skipped,
        }

    def to_json(self) -> str:
        """JSON text; NaN (no frames) becomes null."""
        return json.dumps(_no_nan(self.to_dict()), indent=2)


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def analyse(
    episodes: Sequence[LagEpisode],
    lags_frames: np.ndarray,
    joints: Sequence[str] | None = None,
    frames: str = FRAMES_ALL,
    skipped: Sequence[str] = (),
) -> LagReport:
    """Curves of every episode and their pool (joints default to :func:`default_joints`)."""
    if not episodes:
        raise EpisodeError(
            "no episodes to analyse" + (f" ({'; '.join(skipped)})" if skipped else "")
        )
    fps_values = {e.fps for e in episodes}
    if len(fps_values) > 1:
        raise EpisodeError(f"episodes have different frame rates {sorted(fps_values)}")
    names = list(joints) if joints else default_joints(episodes[0].joint_names)
    curves = [lag_curve(e, lags_frames, names, frames) for e in episodes]
    return LagReport(
        frames=frames,
        fps=episodes[0].fps,
        lags_frames=np.asarray(lags_frames, np.float64),
        joint_names=names,
        episodes=curves,
        pooled=pool(curves),
        skipped=list(skipped),
    )


def format_table(report: LagReport) -> str:
    """The report as text: one row per episode and the pool, then the pool per joint."""
    unit = "rad"
    lines = [
        f"action-to-state lag: {report.frames} frames, {report.fps:g} fps "
        f"(1 frame = {1e3 / report.fps:.1f} ms), joints {', '.join(report.joint_names)}",
        f"residual = mean |action(t) - state(t + lag)| ({unit})",
        f"{'episode':44s} {'frames':>6s} {'best lag':>9s} {'(ms)':>6s} {'residual':>9s} "
        f"{'at lag 0':>9s}",
    ]

    def line(c: LagCurve) -> str:
        if not c.frames:
            return f"{c.name[:44]:44s} {0:6d} {'-':>9s} {'-':>6s} {'-':>9s} {'-':>9s}"
        lag, res = c.best()
        return (
            f"{c.name[:44]:44s} {c.frames:6d} {lag:9.2f} {lag / report.fps * 1e3:6.0f} "
            f"{res:9.4f} {c.at_zero():9.4f}"
        )

    lines += [line(c) for c in report.episodes]
    lines.append(line(report.pooled))
    lines.append(f"per joint ({report.pooled.name}):")
    lines.append(f"  {'joint':16s} {'best lag':>9s} {'(ms)':>6s} {'residual':>9s}")
    for name, (lag, res) in zip(report.joint_names, report.pooled.best_per_joint(), strict=True):
        if np.isnan(lag):
            lines.append(f"  {name:16s} {'-':>9s} {'-':>6s} {'-':>9s}")
        else:
            lines.append(f"  {name:16s} {lag:9.2f} {lag / report.fps * 1e3:6.0f} {res:9.4f}")
    for text in report.skipped:
        lines.append(f"skipped {text}")
    return "\n".join(lines)


def plot_lag(report: LagReport, out: Path, dpi: int = 100) -> Path:
    """PNG: residual vs lag (each episode thin, the pool thick, best lag marked) and the pool's
    curve per joint."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax, axj = fig.subplots(1, 2)
    lags = report.lags_frames
    for c in report.episodes:
        if c.frames:
            ax.plot(lags, c.overall, color="0.6", lw=0.7, alpha=0.7)
    pooled = report.pooled
    if pooled.frames:
        lag, res = pooled.best()
        ax.plot(lags, pooled.overall, color="tab:blue", lw=2.0, label=pooled.name)
        best = f"best lag {lag:.2f} frame ({lag / report.fps * 1e3:.0f} ms): {res:.3g}"
        ax.plot([lag], [res], "o", color="tab:red", label=best)
        for j, name in enumerate(pooled.joint_names):
            axj.plot(lags, pooled.residual[:, j], lw=1.2, label=name)
    ax.set_xlabel("lag (frames)")
    ax.set_ylabel("mean |action(t) - state(t + lag)|")
    ax.set_title(
        f"{report.frames} frames, {len(report.episodes)} episode(s), {pooled.frames} frames "
        f"at {report.fps:g} fps",
        fontsize=9,
    )
    if pooled.frames:
        ax.legend(fontsize=8)
        axj.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    axj.set_xlabel("lag (frames)")
    axj.set_title("per joint (all episodes)", fontsize=9)
    axj.grid(alpha=0.3)
    for a in (ax, axj):
        sec = a.secondary_xaxis(
            "top", functions=(lambda f: f / report.fps * 1e3, lambda m: m * report.fps / 1e3)
        )
        sec.set_xlabel("ms", fontsize=8)
        sec.tick_params(labelsize=7)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return Path(out)
