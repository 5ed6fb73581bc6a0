"""Intervention arbiter: policy or operator commands -> one smooth, limited command (ROS-free).

Units: positions in rad (m for a gripper opening), arrays (D,) in the joint order of the limits;
times are float seconds on one clock (wall time in the ROS node): command receive times, the
``now`` of every call and the sender stamps of one stream are each on one clock.

States (:class:`ArbiterState`):

- ``AUTONOMOUS``: the policy command stream (chunk executor) drives the robot. After a handback
  or a resume the arbiter first holds and, once its output has been at rest for
  ``RESET_SETTLE_S``, asks for an executor reset
  (:meth:`InterventionArbiter.executor_reset_token`; the executor restarts from the measured
  pose, which is then where the robot holds: no motion back); only policy commands received
  after :meth:`InterventionArbiter.executor_reset_done` are followed, so stale chunks never
  drive. The same happens when a node the policy depends on exits
  (:meth:`InterventionArbiter.upstream_lost`): the arbiter brakes at once from its own output
  rather than following the executor's braking one stream behind, and drives again on the
  restarted pipeline's chunks.
- ``CORRECTING``: the operator command stream (teleop) drives the robot. Joints the operator
  stream omits (a leader that maps only some joints) hold the pose they had at the takeover.
- ``PAUSED``: hold; no source drives.
- ``ESTOP``: mirrors the bridge's latched e-stop: no output at all (the bridge rejects commands
  and holds by itself). Release resyncs to the measured pose and enters PAUSED, so motion
  resumes only on an explicit operator request.

Each source is a :class:`ramp_common.stream.TargetStream`: its stamped commands are replayed
``playout_delay_s`` behind the fastest delivery, so delivery jitter neither freezes nor leaps the
target (docs/reliability.md, Finding 11). A step after skipped ticks computes them too
(:func:`ramp_common.limits.ticks_due`): a skipped tick does not leave the output behind its
stream. ``now`` should be the tick's due time (``RateLoop.due_wall``),
the stamp the output is published with.

Every output tick passes through :func:`ramp_common.limits.limit_step` from the previous output
and its velocity, so the output never leaves the position range and its finite-difference
velocity and acceleration never exceed the limits, whatever the sources or the requests do.

Handover (takeover, handback, resume, a source that came back after going silent): the target
blends with a cosine weight over ``blend_time_s`` from the pose where the last command comes to
rest when braking (the last command itself when at rest) into the live source command, with the
blend's own velocity fed forward. A source silent for ``source_timeout_s`` makes the arbiter
hold: decelerate at the acceleration limit and stay where it stops. The arbiter never commands
the operator's device: on a takeover the robot moves to the operator's command, not vice versa.

Auto-takeover (``auto_takeover_threshold`` > 0, rad/m): in AUTONOMOUS, when the operator command
moves further than the threshold on any joint from the pose it had when last synced (when its
stream started, at the last handback or resume), the arbiter switches to CORRECTING.

Every non-AUTONOMOUS period is recorded as a :class:`Segment` (start/end times and reasons) for
episode metadata.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from ramp_common.limits import JointLimits, due_tick_times, limit_step, stop_position
from ramp_common.stream import TargetStream

RESET_SETTLE_S = 0.3
"""The executor reset is asked for once the output has been at rest this long (s): the robot's
own servo settles after its command stops (~0.1 s for the simulated arm), and the executor
restarts from the measured pose, which must then be where the robot holds."""

MAX_SEGMENTS = 10_000
"""Segments kept in memory (oldest dropped first)."""


class ArbiterState(str, Enum):
    """Who drives the robot."""

    AUTONOMOUS = "AUTONOMOUS"
    CORRECTING = "CORRECTING"
    PAUSED = "PAUSED"
    ESTOP = "ESTOP"


class Source(str, Enum):
    """A command stream the arbiter can forward."""

    POLICY = "policy"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Segment:
    """One period outside AUTONOMOUS (times in s on the arbiter's clock)."""

    state: ArbiterState
    start_s: float
    start_reason: str
    end_s: float | None = None
    """None while the segment is still open."""
    end_reason: str = ""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (for episode metadata)."""
        return {
            "state": self.state.value,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "start_reason": self.start_reason,
            "end_reason": self.end_reason,
        }


@dataclass(frozen=True)
class RequestResult:
    """Answer to a takeover / handback / pause / resume request."""

    accepted: bool
    message: str


@dataclass(frozen=True)
class ArbiterStatus:
    """A consistent snapshot of the arbiter for publishing and diagnostics."""

    state: ArbiterState
    since_s: float
    reason: str
    version: int
    """Incremented on every state change (publish when it differs from the last published)."""
    following: Source | None
    """The source whose commands drive the output right now (None: holding or no output)."""
    awaiting_executor_reset: bool


def cosine_blend(progress: float) -> tuple[float, float]:
    """Weight w in [0, 1] of the incoming command at ``progress`` in [0, 1] of a blend, and
    dw/dprogress. w = (1 - cos(pi * progress)) / 2: zero slope at both ends.
    """
    if progress >= 1.0:
        return 1.0, 0.0
    if progress <= 0.0:
        return 0.0, 0.0
    return 0.5 - 0.5 * math.cos(math.pi * progress), 0.5 * math.pi * math.sin(math.pi * progress)


def select_joints(
    joint_names: Sequence[str], names: Sequence[str], positions: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Positions given by name -> ((D,) array in ``joint_names`` order, (D,) bool mask of the
    joints given). Joints not given are 0 in the array and False in the mask.

    Raises ValueError naming unknown joints, duplicate names, a length mismatch, non-finite
    values or a command that names none of ``joint_names``.
    """
    if len(names) != len(positions):
        raise ValueError(f"{len(names)} joint names but {len(positions)} positions")
    index = {name: i for i, name in enumerate(joint_names)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"unknown joints {unknown} (robot joints are {list(joint_names)})")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate joint names in {list(names)}")
    if not names:
        raise ValueError("command names no joints")
    values = np.asarray(positions, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        bad = [n for n, v in zip(names, values, strict=True) if not np.isfinite(v)]
        raise ValueError(f"non-finite positions for joints {bad}")
    out = np.zeros(len(joint_names))
    mask = np.zeros(len(joint_names), dtype=bool)
    idx = [index[n] for n in names]
    out[idx] = values
    mask[idx] = True
    return out, mask


class InterventionArbiter:
    """Chooses between the policy and the operator command streams (see the module docstring).

    Thread-safe: commands, requests, e-stop changes and measured poses may arrive on callback
    threads while a control thread calls :meth:`step` once per control period.

    Args:
        limits: joint limits; their joint order is the order of every array.
        control_period_s: time between :meth:`step` calls, s. The limits are enforced per tick
            of this period.
        blend_time_s: duration of a handover blend, s (0: no blend, the limits alone smooth it).
        source_timeout_s: a source silent for longer than this is stale -> hold, s.
        auto_takeover_threshold: operator deviation from its synced pose (rad / m) that makes
            the arbiter take over in AUTONOMOUS; 0 disables auto-takeover.
    """

    def __init__(
        self,
        limits: JointLimits,
        control_period_s: float,
        blend_time_s: float = 0.5,
        source_timeout_s: float = 0.2,
        auto_takeover_threshold: float = 0.0,
        playout_delay_s: float = 0.0,
        max_extrapolation_s: float = 0.02,
        max_playout_delay_s: float | None = None,
    ) -> None:
        if not control_period_s > 0.0:
            raise ValueError(f"control_period_s must be > 0, got {control_period_s}")
        if not (math.isfinite(blend_time_s) and blend_time_s >= 0.0):
            raise ValueError(f"blend_time_s must be >= 0, got {blend_time_s}")
        if not source_timeout_s > 0.0:
            raise ValueError(f"source_timeout_s must be > 0, got {source_timeout_s}")
        if not (math.isfinite(auto_takeover_threshold) and auto_takeover_threshold >= 0.0):
            raise ValueError(
                f"auto_takeover_threshold must be >= 0 (0 = off), got {auto_takeover_threshold}"
            )
        self._limits = limits
        self._dt = float(control_period_s)
        self._blend_time = float(blend_time_s)
        self._timeout = float(source_timeout_s)
        self._auto_threshold = float(auto_takeover_threshold)
        dof = limits.dof
        self._lock = threading.Lock()
        self._streams = {
            source: TargetStream(
                dof,
                playout_delay_s=playout_delay_s,
                max_extrapolation_s=max_extrapolation_s,
                max_deceleration=limits.max_acceleration,
                max_playout_delay_s=max_playout_delay_s,
            )
            for source in Source
        }
        self._last_tick: float | None = None
        self._rest_since: float | None = None  # tick time since which the output is at rest
        self._measured: np.ndarray | None = None
        self._last: np.ndarray | None = None
        self._velocity = np.zeros(dof)
        self._hold: np.ndarray | None = None
        self._following: Source | None = None
        self._blend_start = 0.0
        self._blend_from = np.zeros(dof)
        self._state = ArbiterState.AUTONOMOUS
        self._since = 0.0
        self._reason = "start"
        self._version = 0
        self._resume_state = ArbiterState.AUTONOMOUS
        self._reset_token = 0
        self._reset_pending = False
        self._policy_after = -math.inf
        self._operator_ref: tuple[np.ndarray, np.ndarray] | None = None
        self._segments: deque[Segment] = deque(maxlen=MAX_SEGMENTS)
        self._counts = {
            "takeovers": 0,
            "auto_takeovers": 0,
            "handbacks": 0,
            "pauses": 0,
            "estops": 0,
            "stale_holds": 0,
            "clamped_ticks": 0,
            "rejected_commands": 0,
            "source_exits": 0,
            "upstream_holds": 0,
        }

    # ------------------------------------------------------------------ properties

    @property
    def limits(self) -> JointLimits:
        return self._limits

    @property
    def control_period_s(self) -> float:
        return self._dt

    @property
    def state(self) -> ArbiterState:
        with self._lock:
            return self._state

    @property
    def intervening(self) -> bool:
        """True while the operator is in control (CORRECTING)."""
        with self._lock:
            return self._state is ArbiterState.CORRECTING

    @property
    def last_command(self) -> np.ndarray | None:
        """The last output (what was sent to the robot), or None before the first."""
        with self._lock:
            return None if self._last is None else self._last.copy()

    def status(self) -> ArbiterStatus:
        with self._lock:
            return ArbiterStatus(
                state=self._state,
                since_s=self._since,
                reason=self._reason,
                version=self._version,
                following=self._following,
                awaiting_executor_reset=self._reset_pending,
            )

    def segments(self) -> list[Segment]:
        """Every recorded non-AUTONOMOUS period, oldest first (the last one may be open)."""
        with self._lock:
            return list(self._segments)

    def stats(self) -> dict[str, int | float | str]:
        """Counters for diagnostics."""
        with self._lock:
            stats: dict[str, int | float | str] = dict(self._counts)
            stats["state"] = self._state.value
            stats["following"] = self._following.value if self._following else "none"
            stats["awaiting_executor_reset"] = int(self._reset_pending)
            stats["policy_commands"] = self._streams[Source.POLICY].count
            stats["operator_commands"] = self._streams[Source.OPERATOR].count
            stats["segments"] = len(self._segments)
            return stats

    # ------------------------------------------------------------------ inputs

    def update_measured(self, positions: np.ndarray, now: float) -> None:
        """The robot's measured positions (D,); the output starts from them (at start and after
        an e-stop release). Raises ValueError for a wrong size or non-finite values.
        """
        q = self._checked(positions, "measured positions")
        with self._lock:
            self._measured = q

    def policy_command(
        self, positions: np.ndarray, now: float, sent_at: float | None = None
    ) -> None:
        """A policy command (D,) received at ``now``; ``sent_at`` is the sender's stamp (s).

        Raises ValueError (and counts it) for a wrong size or non-finite values.
        """
        try:
            q = self._checked(positions, "policy command")
        except ValueError:
            with self._lock:
                self._counts["rejected_commands"] += 1
            raise
        with self._lock:
            self._streams[Source.POLICY].update(q, np.ones(self._limits.dof, bool), now, sent_at)

    def operator_command(
        self,
        positions: np.ndarray,
        now: float,
        mask: np.ndarray | None = None,
        sent_at: float | None = None,
    ) -> None:
        """An operator command (D,) received at ``now``. ``mask`` (D,) bool marks the joints it
        drives (default all; see :func:`select_joints`); the others are ignored.

        Raises ValueError (and counts it) for wrong sizes, an empty mask or non-finite values.
        """
        dof = self._limits.dof
        m = np.ones(dof, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        q = np.array(positions, dtype=np.float64)
        try:
            if m.shape != (dof,) or not m.any():
                raise ValueError(f"operator command mask {m.tolist()} must mark some of {dof}")
            if q.shape != (dof,):
                raise ValueError(f"operator command has shape {q.shape}, expected ({dof},)")
            if not np.all(np.isfinite(q[m])):
                bad = [self._limits.names[i] for i in np.flatnonzero(m & ~np.isfinite(q))]
                raise ValueError(f"operator command is not finite for joints {bad}")
        except ValueError:
            with self._lock:
                self._counts["rejected_commands"] += 1
            raise
        with self._lock:
            self._streams[Source.OPERATOR].update(np.where(m, q, 0.0), m, now, sent_at)

    def source_lost(self, source: Source) -> None:
        """``source``'s sender is known to be gone (its process exited): its last command is
        stale now, as if ``source_timeout_s`` had passed (the next step holds or hands over as
        for a timeout). Its next command is taken as usual."""
        with self._lock:
            self._streams[source].expire()
            self._counts["source_exits"] += 1

    def upstream_lost(self, now: float, reason: str) -> bool:
        """A node the policy's commands depend on (camera, world model, policy) exited at
        ``now``. In AUTONOMOUS: hold now (brake from the current output at the acceleration
        limit) and follow the policy again only after an executor reset, as after a handback;
        ``reason`` goes into the status. Elsewhere nothing changes (the operator, a pause or
        the e-stop already decide). True when it held."""
        with self._lock:
            if self._state is not ArbiterState.AUTONOMOUS:
                return False
            self._counts["upstream_holds"] += 1
            self._enter(ArbiterState.AUTONOMOUS, now, f"holding: {reason}")
            return True

    def set_estop(self, active: bool, now: float) -> None:
        """Mirror the bridge's e-stop flag. Engage: no output until release. Release: resync to
        the measured pose and enter PAUSED (resume returns to the state before the e-stop).
        """
        with self._lock:
            if active and self._state is not ArbiterState.ESTOP:
                if self._state is not ArbiterState.PAUSED:
                    self._resume_state = self._state
                self._counts["estops"] += 1
                self._enter(ArbiterState.ESTOP, now, "e-stop engaged")
            elif not active and self._state is ArbiterState.ESTOP:
                self._last = None  # the bridge stopped on its own: restart from the measured pose
                self._velocity = np.zeros(self._limits.dof)
                self._enter(ArbiterState.PAUSED, now, "e-stop released")

    # ------------------------------------------------------------------ requests

    def takeover(self, now: float, reason: str = "request") -> RequestResult:
        """Operator takes control (from AUTONOMOUS or PAUSED)."""
        with self._lock:
            if self._state is ArbiterState.ESTOP:
                return RequestResult(False, "refused: e-stop active")
            if self._state is ArbiterState.CORRECTING:
                return RequestResult(True, "operator already in control")
            self._counts["takeovers"] += 1
            self._enter(ArbiterState.CORRECTING, now, f"takeover: {reason}")
            waiting = not self._streams[Source.OPERATOR].fresh(now, self._timeout)
            note = " (holding until operator commands arrive)" if waiting else ""
            return RequestResult(True, "operator in control" + note)

    def handback(self, now: float, reason: str = "request") -> RequestResult:
        """Control back to the policy (from CORRECTING or PAUSED), after an executor reset."""
        with self._lock:
            if self._state is ArbiterState.ESTOP:
                return RequestResult(False, "refused: e-stop active")
            if self._state is ArbiterState.AUTONOMOUS:
                return RequestResult(True, "policy already in control")
            self._counts["handbacks"] += 1
            self._enter(ArbiterState.AUTONOMOUS, now, f"handback: {reason}")
            return RequestResult(True, "policy in control after the executor reset")

    def pause(self, now: float, reason: str = "request") -> RequestResult:
        """Hold the last commanded pose (from AUTONOMOUS or CORRECTING)."""
        with self._lock:
            if self._state is ArbiterState.ESTOP:
                return RequestResult(False, "refused: e-stop active")
            if self._state is ArbiterState.PAUSED:
                return RequestResult(True, "already paused")
            self._resume_state = self._state
            self._counts["pauses"] += 1
            self._enter(ArbiterState.PAUSED, now, f"pause: {reason}")
            return RequestResult(True, "paused: holding")

    def resume(self, now: float, reason: str = "request") -> RequestResult:
        """Leave PAUSED for the state before the pause (or before the e-stop)."""
        with self._lock:
            if self._state is ArbiterState.ESTOP:
                return RequestResult(False, "refused: e-stop active")
            if self._state is not ArbiterState.PAUSED:
                return RequestResult(True, f"not paused ({self._state.value})")
            target = self._resume_state
            self._enter(target, now, f"resume: {reason}")
            return RequestResult(True, f"resumed: {target.value}")

    # ------------------------------------------------------------------ executor reset

    def executor_reset_token(self) -> int | None:
        """Non-None while policy commands wait for an executor reset and the output has been at
        rest for ``RESET_SETTLE_S`` (the executor restarts from the measured pose: where the
        robot holds, not where it passed while braking): call the reset, then
        :meth:`executor_reset_done` with this token.
        """
        with self._lock:
            settled = self._last is None or (
                self._rest_since is not None
                and self._last_tick is not None
                and self._last_tick - self._rest_since >= RESET_SETTLE_S
            )
            return self._reset_token if self._reset_pending and settled else None

    def executor_reset_done(self, token: int, now: float) -> bool:
        """The executor reset requested under ``token`` completed at ``now``: policy commands
        received from now on are followed. Returns False (and changes nothing) for a token of
        an older handover.
        """
        with self._lock:
            if not self._reset_pending or token != self._reset_token:
                return False
            self._reset_pending = False
            self._policy_after = now
            return True

    # ------------------------------------------------------------------ control tick

    def step(self, now: float) -> np.ndarray | None:
        """The command (D,) for the control tick at ``now``; None before the first measured
        pose and while the e-stop is active.
        """
        with self._lock:
            if self._state is ArbiterState.ESTOP:
                return None
            if self._last is None:
                if self._measured is None:
                    return None
                self._last = self._measured.copy()
                self._last_tick = None
                self._velocity = np.zeros(self._limits.dof)
                self._following = None
                self._hold = None
            for tick in due_tick_times(now, self._last_tick, self._dt):
                self._tick(tick)
            self._last_tick = now
            return self._last.copy()

    # ------------------------------------------------------------------ internals (lock held)

    def _tick(self, now: float) -> None:
        """One control tick at ``now``: moves ``_last`` on by one period."""
        assert self._last is not None
        self._check_auto_takeover(now)
        source = self._driving_source(now)
        if source is not None:
            goal, goal_velocity = self._follow(source, now)
        else:
            if self._following is not None:
                self._counts["stale_holds"] += 1
                self._following = None
            if self._hold is None:
                self._hold = stop_position(self._last, self._velocity, self._dt, self._limits)
            goal, goal_velocity = self._hold, None
        command, velocity, clamped = limit_step(
            self._last, self._velocity, goal, self._dt, self._limits, target_velocity=goal_velocity
        )
        if clamped.any():
            self._counts["clamped_ticks"] += 1
        self._last = command
        self._velocity = velocity
        if np.any(velocity):
            self._rest_since = None
        elif self._rest_since is None:
            self._rest_since = now

    # ------------------------------------------------------------------ internals (lock held)

    def _checked(self, positions: np.ndarray, what: str) -> np.ndarray:
        q = np.array(positions, dtype=np.float64)
        if q.shape != (self._limits.dof,):
            raise ValueError(
                f"{what} has shape {q.shape}, expected ({self._limits.dof},) for joints "
                f"{list(self._limits.names)}"
            )
        if not np.all(np.isfinite(q)):
            bad = [self._limits.names[i] for i in np.flatnonzero(~np.isfinite(q))]
            raise ValueError(f"{what} is not finite for joints {bad}")
        return q

    def _driving_source(self, now: float) -> Source | None:
        """The source whose fresh command drives this tick, or None to hold."""
        if self._state is ArbiterState.AUTONOMOUS:
            stream = self._streams[Source.POLICY]
            if (
                not self._reset_pending
                and stream.received_s >= self._policy_after
                and stream.fresh(now, self._timeout)
            ):
                return Source.POLICY
        elif self._state is ArbiterState.CORRECTING and self._streams[Source.OPERATOR].fresh(
            now, self._timeout
        ):
            return Source.OPERATOR
        return None

    def _follow(self, source: Source, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Goal and goal velocity toward ``source``, blended in after a (re)start."""
        assert self._last is not None
        if self._following is not source:
            self._following = source
            self._blend_start = now
            self._blend_from = stop_position(self._last, self._velocity, self._dt, self._limits)
            self._hold = None
        stream = self._streams[source]
        position, velocity = stream.sample(now)
        # Joints the source does not drive stay where the handover found them.
        goal = np.where(stream.mask, position, self._blend_from)
        goal_velocity = np.where(stream.mask, velocity, 0.0)
        if self._blend_time > 0.0:
            w, dw = cosine_blend((now - self._blend_start) / self._blend_time)
            if w < 1.0:
                offset = goal - self._blend_from
                goal_velocity = w * goal_velocity + (dw / self._blend_time) * offset
                goal = self._blend_from + w * offset
        return goal, goal_velocity

    def _check_auto_takeover(self, now: float) -> None:
        if self._auto_threshold <= 0.0 or self._state is not ArbiterState.AUTONOMOUS:
            return
        stream = self._streams[Source.OPERATOR]
        if not stream.fresh(now, self._timeout):
            self._operator_ref = None  # the next stream start is the new reference
            return
        assert stream.position is not None
        if self._operator_ref is None:
            self._operator_ref = (stream.position.copy(), stream.mask.copy())
            return
        ref, ref_mask = self._operator_ref
        both = stream.mask & ref_mask
        deviation = np.where(both, np.abs(stream.position - ref), 0.0)
        joint = int(np.argmax(deviation))
        if deviation[joint] > self._auto_threshold:
            self._counts["takeovers"] += 1
            self._counts["auto_takeovers"] += 1
            self._enter(
                ArbiterState.CORRECTING,
                now,
                f"takeover: auto (operator moved {self._limits.names[joint]} by "
                f"{deviation[joint]:.3f} > {self._auto_threshold:.3f})",
            )

    def _enter(self, state: ArbiterState, now: float, reason: str) -> None:
        if self._segments and self._segments[-1].end_s is None:
            self._segments[-1] = replace(self._segments[-1], end_s=now, end_reason=reason)
        if state is not ArbiterState.AUTONOMOUS:
            self._segments.append(Segment(state, now, reason))
        self._state = state
        self._since = now
        self._reason = reason
        self._version += 1
        self._following = None
        self._hold = None
        if state is ArbiterState.AUTONOMOUS:
            # Policy commands computed before the handover are stale: wait for a reset.
            self._reset_token += 1
            self._reset_pending = True
            self._policy_after = math.inf
            stream = self._streams[Source.OPERATOR]
            self._operator_ref = None
            if stream.position is not None and stream.fresh(now, self._timeout):
                self._operator_ref = (stream.position.copy(), stream.mask.copy())
