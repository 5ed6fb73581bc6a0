"""Human-readable summary of a ``ramp up --report`` JSON file (ROS-free)."""

from __future__ import annotations

from typing import Any


def summarize(report: dict[str, Any]) -> str:
    """A few lines: rates per topic, end-to-end latency, inference time, motion, errors."""
    lines = [
        f"robot {report.get('robot')}: {report.get('duration_s')} s, ok={report.get('ok')}",
        "topics:",
    ]
    for topic, stats in report.get("topics", {}).items():
        lines.append(
            f"  {topic:32s} {stats.get('count', 0):7d} msgs  {stats.get('rate_hz', 0):7.1f} Hz"
        )
    lines.append("latency from capture stamp (ms):")
    for stage, pct in report.get("latency_ms", {}).items():
        if pct:
            lines.append(f"  {stage:28s} p50 {pct['p50']:7.1f}  p99 {pct['p99']:7.1f}")
    for node, pct in report.get("inference_ms", {}).items():
        lines.append(
            f"  inference {node:18s} p50 {pct.get('p50', 0):7.2f}  p99 {pct.get('p99', 0):7.2f}"
        )
    motion = report.get("joint_motion", {})
    lines.append(f"arm moving: {motion.get('moving')} (path length {motion.get('path_length')})")
    errors = report.get("errors", [])
    lines.append(f"errors: {len(errors)}")
    lines += [f"  {e}" for e in errors[:20]]
    return "\n".join(lines)
