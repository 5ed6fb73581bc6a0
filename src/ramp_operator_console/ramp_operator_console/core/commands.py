"""The console's controls: which button and key calls which ROS service with what (ROS-free).

Every control calls the same service the terminal keys (teleop_node), the gamepad and
``ros2 service call`` use; the console adds nothing on the robot side. Keys follow
teleop_node's terminal keys (docs/hilr.md), so an operator uses the same keys everywhere.
Names are relative (a namespace per robot works).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Command:
    """One control: ``service`` of type ``kind`` ('SetBool' with ``data``, or 'Trigger')."""

    name: str
    label: str
    service: str
    kind: str
    data: bool | None
    key: str
    confirm: bool = False
    timeout_s: float = 5.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("estop", "E-STOP", "ramp/estop", "SetBool", True, " ", timeout_s=2.0),
        Command("estop_release", "Release e-stop", "ramp/estop", "SetBool", False, "r", True),
        Command("takeover", "Take over", "ramp/takeover", "SetBool", True, "t"),
        Command("handback", "Hand back", "ramp/takeover", "SetBool", False, "h"),
        Command("pause", "Pause", "ramp/pause", "SetBool", True, "p"),
        Command("resume", "Resume", "ramp/pause", "SetBool", False, "p"),
        Command("episode_start", "Start episode", "ramp/episode/start", "Trigger", None, "s"),
        Command("episode_success", "Stop: success", "ramp/episode/stop", "SetBool", True, "y"),
        Command("episode_failure", "Stop: failure", "ramp/episode/stop", "SetBool", False, "n"),
        Command("episode_cancel", "Cancel episode", "ramp/episode/cancel", "Trigger", None, "c"),
    )
}
"""Every control of the page. ``p`` toggles: the page sends pause or resume by the state."""

SERVICES: dict[str, str] = {c.service: c.kind for c in COMMANDS.values()}
"""Distinct services the console calls, with their type."""

TASK_KEY = "k"
"""Key that focuses the task text field (Enter publishes it on ``ramp/task``)."""

MAX_TASK_CHARS = 500


@dataclass(frozen=True)
class CommandResult:
    """What a control did: the service's answer (or why there was none) and how long it took."""

    command: str
    success: bool
    message: str
    duration_ms: float
    at_s: float  # wall time of the answer, s

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def validate_task(text: object) -> str:
    """Task text from the page, stripped; raises ValueError if not a non-empty short string."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the task must be a non-empty string")
    text = text.strip()
    if len(text) > MAX_TASK_CHARS:
        raise ValueError(f"the task must have at most {MAX_TASK_CHARS} characters")
    return text
