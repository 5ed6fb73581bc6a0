"""Human-readable summary of a ``ramp up --report`` JSON file (ROS-free)."""

from __future__ import annotations

from typing import Any

from ramp_common.hops import decompose


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
    lines += latency_breakdown(report)
    smooth = report.get("command_smoothness")
    if smooth:
        lines.append(
            f"joint_command: {smooth.get('missed_ticks')} missed ticks of {smooth.get('ticks')}, "
            f"largest velocity jump {smooth.get('max_velocity_jump_rad_s')} rad/s"
        )
    motion = report.get("joint_motion", {})
    lines.append(f"arm moving: {motion.get('moving')} (path length {motion.get('path_length')})")
    errors = report.get("errors", [])
    lines.append(f"errors: {len(errors)}")
    lines += [f"  {e}" for e in errors[:20]]
    return "\n".join(lines)


def latency_breakdown(report: dict[str, Any]) -> list[str]:
    """Capture -> first command, hop by hop (``ramp_common.hops.decompose``)."""
    e2e = report.get("latency_ms", {}).get("capture_to_first_command") or {}
    rows = decompose(report.get("diagnostics", {}), e2e)
    if all(p50 is None for _, p50, _, _ in rows[:-1]):
        return []
    lines = ["capture -> first command, hop by hop (ms; derived = difference of p50s):"]
    for stage, p50, p99, how in rows:
        p50_text = "    -" if p50 is None else f"{p50:7.1f}"
        p99_text = "" if p99 is None else f"  p99 {p99:7.1f}"
        lines.append(f"  {stage:56s} p50 {p50_text}{p99_text}  ({how})")
    return lines
