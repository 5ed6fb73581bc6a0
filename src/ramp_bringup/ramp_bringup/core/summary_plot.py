"""``ramp summary REPORT --plot FILE.png``: topic rates vs configured rates, latency histograms.

The report is what ``ramp up --report`` writes (``core/report.py``). Configured rates come from
the robot's parameter file named in the report (``config``), the same file ``ramp up`` and the
launch files read: cameras at ``camera_node.rate_hz``, ``joint_states`` at the bridge's
``state_rate_hz``, ``ramp/wm_state`` at ``worldmodel_node.rate_hz``, ``ramp/action_chunk`` at
``policy_node.rate_hz``, ``joint_command`` at the arbiter's ``control_rate_hz`` (the chunk
executor's where the stack has no arbiter). Model rates are caps, the rest targets.

Histograms use the bounded raw samples of the report (``latency_samples_ms``,
``stamp_delay_samples_ms``; the last ``RAW_SAMPLES`` of each series). Reports written before
those keys existed get the rates panel only. Latencies in ms, rates in Hz. ROS-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

SAME_AS_E2E = {"ramp/wm_state": "capture_to_wm_state", "ramp/action_chunk": "capture_to_chunk"}
"""Topics whose stamp delay is an end-to-end stage (observation stamp -> receive): drawn once."""
E2E_LABELS = {
    "capture_to_wm_state": "capture -> world-model state",
    "capture_to_chunk": "capture -> action chunk",
    "capture_to_first_command": "capture -> first command after a chunk",
}


def _params(doc: dict[str, Any], node: str) -> dict[str, Any]:
    return ((doc.get(node) or {}).get("ros__parameters")) or {}


def configured_rates(config_file: str | Path) -> dict[str, float]:
    """Topic -> configured rate (Hz) from a robot parameter file; {} if it cannot be read."""
    try:
        doc = yaml.safe_load(Path(config_file).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    shared = _params(doc, "/**")
    nodes = list(_params(doc, "ramp_stack").get("nodes") or [])
    rates: dict[str, float] = {}
    camera = _params(doc, "camera_node").get("rate_hz")
    if camera and "camera_node" in nodes:
        for name in shared.get("camera_names") or []:
            rates[f"camera/{name}/image_raw"] = float(camera)
    for node in nodes:
        if node.endswith("_bridge"):
            state = _params(doc, node).get("state_rate_hz")
            if state:
                rates["joint_states"] = float(state)
    for topic, node in (("ramp/wm_state", "worldmodel_node"), ("ramp/action_chunk", "policy_node")):
        value = _params(doc, node).get("rate_hz")
        if value and node in nodes:
            rates[topic] = float(value)
    owner = "intervention_arbiter" if "intervention_arbiter" in nodes else "chunk_executor"
    control = _params(doc, owner).get("control_rate_hz")
    if control and owner in nodes:
        rates["joint_command"] = float(control)
    return rates


@dataclass
class RateRow:
    """One topic: measured rate (Hz, 0 when never seen) and configured rate (None: unknown)."""

    topic: str
    measured_hz: float
    configured_hz: float | None

    @property
    def ratio(self) -> float | None:
        return self.measured_hz / self.configured_hz if self.configured_hz else None


@dataclass
class Histogram:
    """One latency series: ``samples_ms`` as stored in the report, and its reported percentiles."""

    name: str
    title: str
    samples_ms: np.ndarray
    percentiles: dict[str, float] = field(default_factory=dict)


@dataclass
class SummaryPlotData:
    """What the summary plot shows."""

    title: str
    rates: list[RateRow]
    histograms: list[Histogram]


def summary_plot_data(
    report: dict[str, Any], config_file: str | Path | None = None
) -> SummaryPlotData:
    """Rates (measured vs configured) and latency series of a report.

    ``config_file`` defaults to the report's ``config``.
    """
    config = config_file or report.get("config")
    configured = configured_rates(config) if config else {}
    topics = report.get("topics", {})
    rows = [
        RateRow(t, float(topics.get(t, {}).get("rate_hz", 0.0)), configured.get(t))
        for t in sorted(set(topics) | set(configured))
    ]
    histograms: list[Histogram] = []
    pct = report.get("latency_ms", {})
    for stage, samples in (report.get("latency_samples_ms") or {}).items():
        if samples:
            histograms.append(
                Histogram(
                    stage,
                    E2E_LABELS.get(stage, stage),
                    np.asarray(samples, float),
                    pct.get(stage) or {},
                )
            )
    stages = {h.name for h in histograms}
    for topic, samples in (report.get("stamp_delay_samples_ms") or {}).items():
        if samples and SAME_AS_E2E.get(topic) not in stages:
            stats = topics.get(topic, {}).get("stamp_delay_ms") or {}
            histograms.append(
                Histogram(
                    topic, f"{topic}: receive - header stamp", np.asarray(samples, float), stats
                )
            )
    title = (
        f"robot {report.get('robot')}: {report.get('duration_s')} s, ok={report.get('ok')}, "
        f"{len(report.get('errors', []))} error(s)"
    )
    return SummaryPlotData(title, rows, histograms)


def draw_summary(data: SummaryPlotData) -> Any:
    """The matplotlib Figure (Agg): a rate panel over a grid of latency histograms."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cols = 3
    hist_rows = -(-len(data.histograms) // cols)
    rate_height = 0.8 + 0.32 * max(1, len(data.rates))
    fig = Figure(figsize=(12, rate_height + 2.6 * hist_rows + 0.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[rate_height, max(2.6 * hist_rows, 0.01)])
    ax = top.subplots()
    y = np.arange(len(data.rates))
    measured = [r.measured_hz for r in data.rates]
    colors = []
    for r in data.rates:
        if r.ratio is None:
            colors.append("0.6")
        elif r.ratio >= 0.95:
            colors.append("tab:green")
        elif r.ratio >= 0.8:
            colors.append("tab:orange")
        else:
            colors.append("tab:red")
    ax.barh(y, measured, color=colors, height=0.6, label="measured")
    conf = [(i, r.configured_hz) for i, r in enumerate(data.rates) if r.configured_hz]
    if conf:
        ax.plot([c for _, c in conf], [i for i, _ in conf], "k|", ms=16, mew=2, label="configured")
    for i, r in enumerate(data.rates):
        text = f"{r.measured_hz:.1f} Hz"
        if r.configured_hz:
            text += f" / {r.configured_hz:g} Hz ({r.ratio:.0%})"
        ax.text(max(r.measured_hz, r.configured_hz or 0) * 1.02 + 0.5, i, text, va="center",
                fontsize=7)  # fmt: skip
    ax.set_yticks(y, [r.topic for r in data.rates], fontsize=8)
    ax.invert_yaxis()
    right = max(
        [r.measured_hz for r in data.rates] + [r.configured_hz or 0 for r in data.rates] + [1]
    )
    ax.set_xlim(0, right * 1.35)
    ax.set_xlabel("rate (Hz)")
    ax.set_title(f"{data.title}\ntopic rates: measured (bars) vs configured (|)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    if data.histograms:
        axes = bottom.subplots(hist_rows, cols, squeeze=False).ravel()
        for a, h in zip(axes, data.histograms, strict=False):
            hi = float(np.percentile(h.samples_ms, 99.5)) if h.samples_ms.size else 1.0
            lo = float(h.samples_ms.min()) if h.samples_ms.size else 0.0
            bins = np.linspace(min(lo, 0.0), max(hi, lo + 1e-3), 41)
            a.hist(np.clip(h.samples_ms, bins[0], bins[-1]), bins=bins, color="tab:blue")
            for key, style in (("p50", "-"), ("p99", "--")):
                if key in h.percentiles:
                    a.axvline(h.percentiles[key], color="k", ls=style, lw=1,
                              label=f"{key} {h.percentiles[key]:.1f} ms")  # fmt: skip
            a.set_title(f"{h.title} (n={h.samples_ms.size})", fontsize=8)
            a.set_xlabel("ms", fontsize=7)
            a.tick_params(labelsize=7)
            if h.percentiles:
                a.legend(fontsize=7)
        for a in axes[len(data.histograms) :]:
            a.axis("off")
    return fig


def plot_summary(
    report: dict[str, Any], out: str | Path, config_file: str | Path | None = None, dpi: int = 90
) -> SummaryPlotData:
    """Write the summary plot of ``report`` to ``out`` (PNG); returns what it shows."""
    data = summary_plot_data(report, config_file)
    fig = draw_summary(data)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    return data
