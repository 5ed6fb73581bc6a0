"""Operator inputs -> operator joint targets (ROS-free).

Units: positions in rad (m for a gripper opening), arrays (D,) in the robot's joint order
(``joint_names``); times are float seconds on one clock; velocities per second.

Two devices drive targets:

- :class:`LeaderTeleop`: a leader arm, or any device publishing joint positions (e.g. G1 arm
  targets from an XR source), mirrored joint by joint: ``robot = offset + scale * leader`` with a
  leader -> robot name mapping. Robot joints without a leader joint are not driven (the command
  carries a mask); the arbiter keeps them where they were at the takeover.
- :class:`JogTeleop`: a gamepad jogging one selected joint at a time (joint space only; no
  Cartesian jogging, which would need a kinematic model).

A device that goes silent for ``input_timeout_s`` produces no command, so the arbiter holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ramp_common.limits import JointLimits


class TeleopInputError(ValueError):
    """An operator input that cannot be used; the text names the joint or field."""


class ButtonEdges:
    """Rising edges of gamepad buttons (a button counts as released before the first message)."""

    def __init__(self) -> None:
        self._previous: tuple[int, ...] = ()

    def update(self, buttons: Sequence[int]) -> set[int]:
        """Indices of the buttons pressed in ``buttons`` that were released before."""
        previous = self._previous
        pressed = {
            i
            for i, value in enumerate(buttons)
            if value and not (i < len(previous) and previous[i])
        }
        self._previous = tuple(int(b) for b in buttons)
        return pressed


@dataclass(frozen=True)
class LeaderMapping:
    """How leader joint positions become robot joint targets.

    ``leader_joint_names[i]`` is the leader joint mirrored onto robot joint ``joint_names[i]``
    ('' = robot joint i is not driven by the leader); robot_i = offset_i + scale_i * leader.
    """

    joint_names: tuple[str, ...]
    leader_joint_names: tuple[str, ...]
    scale: np.ndarray
    offset: np.ndarray

    @classmethod
    def from_params(
        cls,
        joint_names: Sequence[str],
        leader_joint_names: Sequence[str],
        scale: Sequence[float],
        offset: Sequence[float],
    ) -> LeaderMapping:
        """Validate config lists (each of len(joint_names)); errors name the parameter/joint."""
        n = len(joint_names)
        if n == 0:
            raise TeleopInputError("joint_names is empty")
        for label, values in (
            ("leader_joint_names", leader_joint_names),
            ("scale", scale),
            ("offset", offset),
        ):
            if len(values) != n:
                raise TeleopInputError(
                    f"{label} has {len(values)} entries for {n} joints {list(joint_names)}"
                )
        used = [name for name in leader_joint_names if name]
        if not used:
            raise TeleopInputError("leader_joint_names maps no leader joint to a robot joint")
        duplicates = sorted({name for name in used if used.count(name) > 1})
        if duplicates:
            raise TeleopInputError(f"leader_joint_names maps {duplicates} to several joints")
        scale_arr = np.array(scale, dtype=np.float64)
        offset_arr = np.array(offset, dtype=np.float64)
        for label, arr in (("scale", scale_arr), ("offset", offset_arr)):
            bad = [joint_names[i] for i in np.flatnonzero(~np.isfinite(arr))]
            if bad:
                raise TeleopInputError(f"{label} is not finite for joints {bad}")
        zero = [joint_names[i] for i in np.flatnonzero(scale_arr == 0.0)]
        if zero:
            raise TeleopInputError(f"scale is 0 for joints {zero}")
        scale_arr.setflags(write=False)
        offset_arr.setflags(write=False)
        return cls(tuple(joint_names), tuple(leader_joint_names), scale_arr, offset_arr)

    @property
    def mask(self) -> np.ndarray:
        """(D,) bool: robot joints driven by the leader."""
        return np.array([bool(name) for name in self.leader_joint_names])

    def map(self, names: Sequence[str], positions: Sequence[float]) -> np.ndarray:
        """Leader positions by name -> (D,) robot targets (0 where :attr:`mask` is False).

        Raises TeleopInputError naming missing leader joints or non-finite values.
        """
        if len(names) != len(positions):
            raise TeleopInputError(f"leader sent {len(names)} names but {len(positions)} positions")
        index = {name: i for i, name in enumerate(names)}
        missing = [name for name in self.leader_joint_names if name and name not in index]
        if missing:
            raise TeleopInputError(f"leader state lacks joints {missing} (has {list(names)})")
        values = np.asarray(positions, dtype=np.float64)
        rows = [index[name] if name else -1 for name in self.leader_joint_names]
        leader = np.array([values[r] if r >= 0 else 0.0 for r in rows])
        mask = self.mask
        if not np.all(np.isfinite(leader[mask])):
            bad = [n for n, r in zip(self.leader_joint_names, rows, strict=True) if r >= 0]
            bad = [n for n in bad if not np.isfinite(values[index[n]])]
            raise TeleopInputError(f"leader positions are not finite for joints {bad}")
        return np.where(mask, self.offset + self.scale * leader, 0.0)


class LeaderTeleop:
    """Mirrors the latest leader state onto the robot joints (see :class:`LeaderMapping`).

    ``limits`` (optional) clips the targets into the robot's position range.
    """

    def __init__(
        self, mapping: LeaderMapping, input_timeout_s: float, limits: JointLimits | None = None
    ) -> None:
        if not input_timeout_s > 0:
            raise ValueError(f"input_timeout_s must be > 0, got {input_timeout_s}")
        if limits is not None and limits.names != mapping.joint_names:
            raise ValueError(
                f"limits joints {list(limits.names)} differ from {list(mapping.joint_names)}"
            )
        self._mapping = mapping
        self._timeout = float(input_timeout_s)
        self._limits = limits
        self._target: np.ndarray | None = None
        self._received = -math.inf

    @property
    def mask(self) -> np.ndarray:
        return self._mapping.mask

    def on_leader(self, names: Sequence[str], positions: Sequence[float], now: float) -> None:
        """A leader state received at ``now``; raises TeleopInputError (nothing changes)."""
        target = self._mapping.map(names, positions)
        if self._limits is not None:
            target = np.where(self.mask, self._limits.clip(target), 0.0)
        self._target = target
        self._received = now

    def command(self, now: float) -> np.ndarray | None:
        """(D,) targets (valid where :attr:`mask`), or None when the leader is silent."""
        if self._target is None or now - self._received > self._timeout:
            return None
        return self._target.copy()


@dataclass(frozen=True)
class JogMapping:
    """Gamepad layout for joint jogging (indices into sensor_msgs/Joy axes and buttons)."""

    jog_axis: int = 1
    """Axis whose deflection in [-1, 1] jogs the selected joint (left stick up/down)."""
    next_joint_button: int = 5
    """Selects the next joint (right shoulder)."""
    previous_joint_button: int = 4
    """Selects the previous joint (left shoulder)."""
    deadzone: float = 0.1
    """Deflections below this are ignored; above it the speed ramps from 0."""

    def __post_init__(self) -> None:
        for label, value in (
            ("jog_axis", self.jog_axis),
            ("next_joint_button", self.next_joint_button),
            ("previous_joint_button", self.previous_joint_button),
        ):
            if value < 0:
                raise ValueError(f"joy {label} index must be >= 0, got {value}")
        if not 0.0 <= self.deadzone < 1.0:
            raise ValueError(f"joy deadzone must be in [0, 1), got {self.deadzone}")


class JogTeleop:
    """Joint jogging from a gamepad, starting from the measured pose.

    While the operator is not in control and not jogging there is no command and the target
    follows the robot (so a new jog starts from where the robot is). Once a jog starts or the
    operator is in control, the target starts at the measured pose and integrates the jog
    velocity (``speed_fraction`` of the joint's velocity limit at full deflection) each tick,
    clipped into the position range.
    """

    def __init__(
        self,
        limits: JointLimits,
        mapping: JogMapping,
        speed_fraction: float,
        input_timeout_s: float,
    ) -> None:
        if not 0.0 < speed_fraction <= 1.0:
            raise ValueError(f"jog speed fraction must be in (0, 1], got {speed_fraction}")
        if not input_timeout_s > 0:
            raise ValueError(f"input_timeout_s must be > 0, got {input_timeout_s}")
        self._limits = limits
        self._mapping = mapping
        self._speed = limits.max_velocity * speed_fraction
        self._timeout = float(input_timeout_s)
        self._edges = ButtonEdges()
        self._selected = 0
        self._rate = 0.0
        self._joy_time = -math.inf
        self._measured: np.ndarray | None = None
        self._target: np.ndarray | None = None
        self._intervening = False

    @property
    def selected_joint(self) -> str:
        return self._limits.names[self._selected]

    def on_measured(self, positions: np.ndarray) -> None:
        """The robot's measured positions (D,)."""
        q = np.asarray(positions, dtype=np.float64)
        if q.shape != (self._limits.dof,) or not np.all(np.isfinite(q)):
            raise TeleopInputError(f"measured positions {q.tolist()} unusable for jogging")
        self._measured = q

    def on_joy(self, axes: Sequence[float], buttons: Sequence[int], now: float) -> str | None:
        """A gamepad message at ``now``. Returns the newly selected joint name, if it changed."""
        pressed = self._edges.update(buttons)
        before = self._selected
        dof = self._limits.dof
        if self._mapping.next_joint_button in pressed:
            self._selected = (self._selected + 1) % dof
        if self._mapping.previous_joint_button in pressed:
            self._selected = (self._selected - 1) % dof
        value = float(axes[self._mapping.jog_axis]) if self._mapping.jog_axis < len(axes) else 0.0
        if not math.isfinite(value):
            value = 0.0
        value = max(-1.0, min(1.0, value))
        dead = self._mapping.deadzone
        magnitude = max(abs(value) - dead, 0.0) / (1.0 - dead)
        self._rate = math.copysign(magnitude, value) if magnitude > 0 else 0.0
        self._joy_time = now
        return self.selected_joint if self._selected != before else None

    def set_intervening(self, intervening: bool) -> None:
        """Whether the operator is in control (the arbiter's ``ramp/intervention``)."""
        self._intervening = bool(intervening)

    def jogging(self, now: float) -> bool:
        """A fresh gamepad message deflects the jog axis beyond the deadzone."""
        return self._rate != 0.0 and now - self._joy_time <= self._timeout

    def command(self, now: float, dt: float) -> np.ndarray | None:
        """(D,) target for a tick of ``dt`` seconds, or None (no command to publish)."""
        if self._measured is None:
            return None
        jogging = self.jogging(now)
        if not jogging and not self._intervening:
            self._target = None
            return None
        if self._target is None:
            self._target = self._limits.clip(self._measured)
        if jogging:
            step = np.zeros(self._limits.dof)
            step[self._selected] = self._rate * self._speed[self._selected] * dt
            self._target = self._limits.clip(self._target + step)
        return self._target.copy()
