"""Hop-by-hop timing of the capture -> command path (ROS-free).

Each stage times itself on its own clock and reports percentiles in its diagnostics as
``hop_<name>_ms_<p50|p99|max>``:

- model nodes: ``input`` (arrival of the input that triggered an inference minus its stamp:
  everything upstream, transport included), ``wait`` (from that arrival to the start of the
  inference: rate cap, busy worker, input synchronisation), ``inference``, ``publish`` (building
  and publishing the output);
- chunk executor: ``chunk_arrival`` (arrival of a chunk minus its observation stamp = capture ->
  executor, both on the robot computer's clock), ``align`` (arrival to the first control tick
  that uses it) and ``capture_to_tick`` (that tick minus the observation stamp: capture -> the
  first command computed from the frame, per chunk, on one clock);
- intervention arbiter: ``forward`` (a policy command's stamp = the executor's tick -> the
  arbiter's next tick that publishes ``joint_command``: transport plus tick alignment) and
  ``policy_arrival`` (that stamp -> the command's DDS receive time: the executor tick's
  lateness, its publish and the hop; what the arbiter's ``control_phase_s`` must cover).

:func:`decompose` turns them, with the monitor's end-to-end figure, into one table; its
end-to-end row is the executor's first command from a frame plus the arbiter's forward hop
(:func:`reflecting_command_ms`). Stamps are wall-clock seconds from the stage that captured the
input; a hop between two computers is only meaningful when their clocks are synchronised
(chrony/PTP), see docs/latency.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ramp_common.diagnostics import LatencyStats, NodeHealth

PREFIX = "hop_"


class HopTimer:
    """Percentiles of named hops (seconds in, ms out), reported into a NodeHealth."""

    def __init__(self, names: tuple[str, ...], size: int = 500) -> None:
        self._stats = {name: LatencyStats(size=size) for name in names}

    def add(self, name: str, seconds: float) -> None:
        self._stats[name].add(max(seconds, 0.0))

    def report(self, health: NodeHealth) -> None:
        for name, stats in self._stats.items():
            for key, value in stats.percentiles_ms().items():
                health.set_value(f"{PREFIX}{name}_ms_{key}", round(value, 3))


def _value(diag: Mapping[str, Any] | None, key: str) -> float | None:
    if not diag:
        return None
    raw = diag.get("values", {}).get(key)
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _node(diagnostics: Mapping[str, Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    """The diagnostics of the node named ``name`` (any namespace), or None."""
    for key, diag in diagnostics.items():
        if key.rsplit("/", 1)[-1] == name:
            return diag
    return None


def decompose(
    diagnostics: Mapping[str, Mapping[str, Any]], end_to_end_ms: Mapping[str, float]
) -> list[tuple[str, float | None, float | None, str]]:
    """Rows (stage, p50 ms, p99 ms, how it is known) of capture -> first command.

    Measured rows are each stage's own distribution. Transport between two stages is derived as
    the difference of p50s (downstream arrival minus upstream age at publish, both relative to
    the same capture stamp), so it has no p99; the last row is what the monitor measures end to
    end. ``diagnostics`` is the report's (node name -> {"values": {...}}).
    """

    wm, policy = _node(diagnostics, "worldmodel_node"), _node(diagnostics, "policy_node")
    executor = _node(diagnostics, "chunk_executor")
    arbiter = _node(diagnostics, "intervention_arbiter")

    def hop(diag: Mapping[str, Any] | None, name: str) -> tuple[float | None, float | None]:
        return _value(diag, f"{PREFIX}{name}_ms_p50"), _value(diag, f"{PREFIX}{name}_ms_p99")

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    rows: list[tuple[str, float | None, float | None, str]] = []
    rows.append(("capture -> world model (camera node, transport)", *hop(wm, "input"), "measured"))
    rows.append(("world model: waiting", *hop(wm, "wait"), "measured"))
    rows.append(("world model: inference", *hop(wm, "inference"), "measured"))
    wm_age = _value(wm, "observation_age_ms_p50")
    policy_in = hop(policy, "input")
    rows.append(("world model -> policy transport", minus(policy_in[0], wm_age), None, "derived"))
    rows.append(("policy: waiting", *hop(policy, "wait"), "measured"))
    rows.append(("policy: inference", *hop(policy, "inference"), "measured"))
    policy_age = _value(policy, "chunk_age_at_publish_ms_p50")
    arrival = hop(executor, "chunk_arrival")
    rows.append(("policy -> executor transport", minus(arrival[0], policy_age), None, "derived"))
    rows.append(("executor: control-tick alignment", *hop(executor, "align"), "measured"))
    rows.append(
        (
            "capture -> executor's first command (per chunk)",
            *hop(executor, "capture_to_tick"),
            "measured",
        )
    )
    e2e_p50, e2e_p99 = end_to_end_ms.get("p50"), end_to_end_ms.get("p99")
    forward = hop(arbiter, "forward")
    if forward[0] is not None:
        rows.append(
            ("executor -> arbiter -> joint_command (transport + tick)", *forward, "measured")
        )
        rows.append((REFLECTING_ROW, *reflecting_command_ms(diagnostics), "sum"))
    rows.append((MONITOR_ROW, e2e_p50, e2e_p99, "measured"))
    return rows


REFLECTING_ROW = "capture -> first joint_command computed from the frame"
"""The end-to-end figure: the executor's first command from a frame (per chunk) plus the
arbiter's forward hop, as p50 + p50 and p99 + p99 (the p99 of a sum is at most that)."""
MONITOR_ROW = "capture -> next joint_command after the chunk (monitor)"
"""The monitor's figure: the first ``joint_command`` it receives after the chunk. The executor
splices a chunk at its next tick and the arbiter forwards at its own, so that command is often
still one of the previous chunk: a lower bound of :data:`REFLECTING_ROW`."""


def reflecting_command_ms(
    diagnostics: Mapping[str, Mapping[str, Any]],
) -> tuple[float | None, float | None]:
    """(p50, p99 upper bound) in ms of capture -> the first ``joint_command`` computed from the
    frame: the executor's ``capture_to_tick`` plus the arbiter's ``forward`` (None when either
    stage did not report)."""
    executor = _node(diagnostics, "chunk_executor")
    arbiter = _node(diagnostics, "intervention_arbiter")
    out = []
    for q in ("p50", "p99"):
        tick = _value(executor, f"{PREFIX}capture_to_tick_ms_{q}")
        forward = _value(arbiter, f"{PREFIX}forward_ms_{q}")
        out.append(None if tick is None or forward is None else tick + forward)
    return out[0], out[1]
