"""What the console shows, as one thread-safe model fed by the ROS side (ROS-free).

The node's callbacks call the ``on_*`` methods (cheap: store and count); the web side takes
JSON snapshots for its viewers. Times are wall-clock seconds (``time.time()`` on the robot
computer); snapshots carry the robot's ``now`` so a page draws times relative to it, whatever
the browser's clock says.

- arbiter: the latest ``ramp/arbiter_state`` JSON (state, since, reason), ``ramp/intervention``
  and the bridge's ``ramp/estop_active``;
- timeline: arbiter state changes, cut to the current (or last) episode;
- episode: from the recorder's diagnostics (``recording``, ``episode``) and the console's own
  start/stop calls (which give the exact start time and the label);
- nodes: each node's latest diagnostics (level, message, values), STALE when too old;
- chart: measured joint positions (``joint_states``) and commands (``joint_command``) over a
  sliding window, sampled at the chart rate, with cursors so each viewer gets only new samples;
- events: the results of the controls, newest last.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from .commands import CommandResult

OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
NODES_PERIOD_S = 1.0
"""A viewer gets the node table at most this often (s)."""


def highlights(values: dict[str, str], limit: int = 6) -> dict[str, str]:
    """The values worth a glance in the health table: rates (Hz) and p50 latencies (ms)."""
    picked = {
        k: v
        for k, v in values.items()
        if "rate_hz" in k or (k.endswith("_p50") and "_ms" in k) or k.endswith("_age_ms")
    }
    return dict(sorted(picked.items())[:limit])


class SeriesBuffer:
    """Samples (t, values...) of one series over a sliding window, with a running index."""

    def __init__(self, capacity: int) -> None:
        self._samples: deque[tuple[int, list[float]]] = deque(maxlen=capacity)
        self._next = 0

    def append(self, t: float, values: list[float]) -> None:
        self._samples.append((self._next, [t, *values]))
        self._next += 1

    def since(self, cursor: int) -> tuple[list[list[float]], int]:
        """Samples with index >= ``cursor`` (all kept ones for a new viewer) and the next cursor."""
        out = [s for i, s in self._samples if i >= cursor]
        return out, self._next


@dataclass
class Episode:
    """The current or last episode as the console saw it (times are wall seconds)."""

    name: str
    start_s: float
    end_s: float | None = None
    label: str = ""  # success | failure | cancelled | stopped ('' while recording)


@dataclass
class Viewer:
    """Per-viewer cursors into the chart and event streams."""

    measured_cursor: int = 0
    command_cursor: int = 0
    event_cursor: int = 0
    nodes_sent_s: float = float("-inf")
    first: bool = True


class ConsoleState:
    """The console's model of the stack (see the module docstring). Thread-safe."""

    def __init__(
        self,
        cameras: list[str],
        joint_names: list[str],
        chart_window_s: float = 10.0,
        chart_rate_hz: float = 25.0,
        stale_after_s: float = 3.0,
        max_transitions: int = 2000,
    ) -> None:
        self.cameras = list(cameras)
        self.joint_names = list(joint_names)
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._arbiter: dict[str, Any] | None = None
        self._transitions: deque[dict[str, Any]] = deque(maxlen=max_transitions)
        self._estop: bool | None = None
        self._intervention: bool | None = None
        self._task = ""
        self._nodes: dict[str, dict[str, Any]] = {}
        self._recorder_node = ""
        self._episode: Episode | None = None
        self._pending_label = ""
        capacity = max(2, int(chart_window_s * chart_rate_hz))
        self._measured = SeriesBuffer(capacity)
        self._command = SeriesBuffer(capacity)
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=50)
        self._event_next = 0

    # ------------------------------------------------------------------ inputs (ROS side)

    def on_arbiter_state(self, text: str, now: float) -> None:
        """``ramp/arbiter_state`` JSON; malformed text is kept as an 'UNKNOWN' state."""
        try:
            data = json.loads(text)
            state = {
                "state": str(data["state"]),
                "since": float(data.get("since", now)),
                "reason": str(data.get("reason", "")),
            }
        except (ValueError, KeyError, TypeError):
            state = {"state": "UNKNOWN", "since": now, "reason": f"unreadable: {text[:80]}"}
        with self._lock:
            last = self._transitions[-1] if self._transitions else None
            if last is None or (last["state"], last["t"]) != (state["state"], state["since"]):
                self._transitions.append(
                    {"t": state["since"], "state": state["state"], "reason": state["reason"]}
                )
            self._arbiter = state

    def on_estop(self, active: bool) -> None:
        with self._lock:
            self._estop = bool(active)

    def on_intervention(self, active: bool) -> None:
        with self._lock:
            self._intervention = bool(active)

    def on_task(self, text: str) -> None:
        with self._lock:
            self._task = text

    def on_diagnostic(
        self, name: str, hardware_id: str, level: int, message: str, values: dict[str, str],
        now: float,
    ) -> None:  # fmt: skip
        """One DiagnosticStatus; a status with the recorder's keys also updates the episode."""
        with self._lock:
            self._nodes[name] = {
                "name": name,
                "hardware_id": hardware_id,
                "level": int(level),
                "message": message,
                "values": dict(values),
                "received": now,
            }
            if "free_disk_mb" in values and "recording" in values:
                self._recorder_node = name
                self._update_episode(values, now)

    def _update_episode(self, values: dict[str, str], now: float) -> None:
        recording = values.get("recording", "False") == "True"
        name = values.get("episode", "")
        ep = self._episode
        if recording:
            if ep is None or ep.end_s is not None or (name and ep.name not in ("", name)):
                self._episode = Episode(name, now)
            elif not ep.name:
                ep.name = name
        elif ep is not None and ep.end_s is None:
            ep.end_s = now
            ep.label = self._pending_label or "stopped"
            self._pending_label = ""

    def on_command_result(self, result: CommandResult, started_s: float) -> None:
        """A control's result: kept as an event; episode start/stop calls set exact times."""
        with self._lock:
            self._events.append((self._event_next, result.as_json()))
            self._event_next += 1
            if not result.success:
                return
            ep = self._episode
            if result.command == "episode_start":
                name = result.message.split(";")[0].rstrip("/").rsplit("/", 1)[-1]
                if ep is None or ep.end_s is not None or ep.name == name:
                    self._episode = Episode(name, started_s)
            elif result.command in ("episode_success", "episode_failure", "episode_cancel"):
                label = {
                    "episode_success": "success",
                    "episode_failure": "failure",
                    "episode_cancel": "cancelled",
                }[result.command]
                if ep is not None and ep.end_s is None:
                    ep.end_s, ep.label = result.at_s, label
                elif ep is not None:
                    ep.label = label
                else:
                    self._pending_label = label

    def on_joints(
        self, t: float, measured: list[float] | None, command: list[float] | None
    ) -> None:
        """One chart sample: measured positions and/or the command (rad / m, joint order)."""
        with self._lock:
            if measured is not None:
                self._measured.append(t, measured)
            if command is not None:
                self._command.append(t, command)

    # ------------------------------------------------------------------ outputs (web side)

    def recording(self) -> bool:
        with self._lock:
            return self._episode is not None and self._episode.end_s is None

    def arbiter_state(self) -> str:
        with self._lock:
            return self._arbiter["state"] if self._arbiter else ""

    def timeline(self, now: float) -> list[dict[str, Any]]:
        """Arbiter state segments of the current/last episode (all kept ones if none yet)."""
        with self._lock:
            return self._timeline_locked(now)

    def _timeline_locked(self, now: float) -> list[dict[str, Any]]:
        ep = self._episode
        start = ep.start_s if ep else (self._transitions[0]["t"] if self._transitions else now)
        end = ep.end_s if ep and ep.end_s is not None else now
        segments: list[dict[str, Any]] = []
        items = list(self._transitions)
        for i, tr in enumerate(items):
            seg_end = items[i + 1]["t"] if i + 1 < len(items) else end
            lo, hi = max(tr["t"], start), min(seg_end, end)
            if hi > lo:
                segments.append(
                    {"state": tr["state"], "start_s": lo, "end_s": hi, "reason": tr["reason"]}
                )
        return segments

    def health(self, now: float) -> list[dict[str, Any]]:
        """One row per node: level (STALE when older than ``stale_after_s``), message, values."""
        with self._lock:
            nodes = list(self._nodes.values())
        rows = []
        for n in sorted(nodes, key=lambda n: n["name"]):
            age = now - n["received"]
            level = STALE if age > self.stale_after_s else min(n["level"], STALE)
            rows.append(
                {
                    "name": n["name"],
                    "level": LEVEL_NAMES.get(level, str(level)),
                    "message": n["message"],
                    "age_s": round(age, 2),
                    "highlights": highlights(n["values"]),
                    "values": n["values"],
                }
            )
        return rows

    def snapshot(self, viewer: Viewer, now: float) -> dict[str, Any]:
        """JSON-able state for one viewer; advances its chart and event cursors.

        The node table (the bulk of a message; diagnostics come at ~1 Hz) is included at most
        every ``NODES_PERIOD_S`` per viewer; ``nodes`` is None in the messages between.
        """
        health = None
        if now - viewer.nodes_sent_s >= NODES_PERIOD_S:
            health = self.health(now)
            viewer.nodes_sent_s = now
        with self._lock:
            measured, viewer.measured_cursor = self._measured.since(viewer.measured_cursor)
            command, viewer.command_cursor = self._command.since(viewer.command_cursor)
            events = [e for i, e in self._events if i >= viewer.event_cursor]
            viewer.event_cursor = self._event_next
            ep = self._episode
            recorder = self._nodes.get(self._recorder_node)
            out = {
                "type": "state",
                "now": now,
                "arbiter": dict(self._arbiter) if self._arbiter else None,
                "estop_active": self._estop,
                "intervention": self._intervention,
                "task": self._task,
                "episode": None
                if ep is None
                else {
                    "name": ep.name,
                    "start_s": ep.start_s,
                    "end_s": ep.end_s,
                    "label": ep.label,
                    "recording": ep.end_s is None,
                },
                "timeline": self._timeline_locked(now),
                "recorder": None
                if recorder is None
                else {
                    "level": LEVEL_NAMES.get(recorder["level"], "?"),
                    "message": recorder["message"],
                    "age_s": round(now - recorder["received"], 2),
                    **{
                        k: recorder["values"].get(k, "")
                        for k in (
                            "recording",
                            "episode",
                            "bag_path",
                            "free_disk_mb",
                            "written_mb",
                            "queued_mb",
                            "dropped",
                            "episodes_recorded",
                            "last_error",
                        )
                    },
                },
                "chart": {"measured": measured, "command": command},
                "events": events,
                "nodes": health,
            }
        viewer.first = False
        return out
