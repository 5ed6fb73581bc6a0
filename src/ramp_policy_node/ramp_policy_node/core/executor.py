"""The chunk executor: action chunks in, one limited joint command per control tick out (ROS-free).

Times are float seconds on one clock (the chunk stamps' clock; wall time in the ROS node).
Positions are rad (m for a gripper opening) in the joint order of ``limits``.

Per tick (:meth:`ChunkExecutor.step`) the executor samples its reference (the active chunk or a
splice of chunks, see :mod:`ramp_policy_node.core.splice`) at the tick time by linear
interpolation between chunk steps, and passes it through :func:`ramp_common.limits.limit_step`
with the reference's own velocity as feed-forward, from the previous command and velocity. So the
command stream never leaves the position range and its finite-difference velocity and
acceleration never exceed the limits, whatever the chunks do (a splice never jumps). A step
after skipped ticks computes them too (:func:`ramp_common.limits.ticks_due`): the node passes the
tick's due time (``RateLoop.due_wall``) and stamps the command with it, so downstream a skipped
tick reads as two periods of the same motion, not as the stream slowing down.

States:

- ``WAITING``: no measured joint state yet; ``step`` returns None, chunks are refused.
- ``HOLDING``: no chunk to execute; the command decelerates at the acceleration limit and holds
  the pose where it stops (after the watchdog fired) or holds the measured pose (at start, after
  an e-stop release or a handover).
- ``EXECUTING``: following chunks. A chunk that ran out holds its last target until the watchdog
  (``watchdog_timeout_s`` without an accepted chunk) switches to HOLDING; so does
  :meth:`ChunkExecutor.upstream_lost` at once (a node producing the chunks exited).
- ``ESTOP``: latched by ``set_estop(True)``; chunks are refused and the command follows the
  measured pose (the bridge is holding the robot) within the limits, so it never jumps, and the
  command stream already meets the measured pose when a release restarts from it. Release
  restarts from the measured pose with zero velocity into HOLDING; chunks observed before the
  release are refused as stale.

After every (re)start from the measured pose the velocity limits are scaled by
``ramp_in_max_velocity_scale`` until the command has joined the first chunk's trajectory (within
``RAMP_IN_TOLERANCE`` once the re-anchoring fade is over, or ``RAMP_IN_MAX_S`` after that).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ramp_common.limits import JointLimits, due_tick_times, limit_step, stop_position
from ramp_policy_node.core.chunk import MAX_FUTURE_STAMP_S, ActionChunk, TimedTrajectory
from ramp_policy_node.core.splice import (
    SPLICE_STRATEGIES,
    Reference,
    SpliceParams,
    resume,
    splice,
)

WAITING = "WAITING"
HOLDING = "HOLDING"
EXECUTING = "EXECUTING"
ESTOP = "ESTOP"

GRIPPER_MODES = ("switch", "blend")
"""'switch': gripper joints jump to the new chunk's value at a splice (rate-limited like every
joint) and are never averaged; 'blend': they are spliced like the other joints."""

RAMP_IN_TOLERANCE = 1e-3
"""Ramp-in ends once the command is this close (rad, m) to the reference on every joint..."""

RAMP_IN_MAX_S = 1.0
"""...or this long after the first chunk's re-anchoring fade ended, whichever comes first (so a
reference faster than the scaled limit cannot keep the robot slow for ever)."""


class ChunkExecutor:
    """Turns asynchronously arriving action chunks into a smooth, on-time, limited command stream.

    Thread-safe: ``submit`` / ``update_measured`` / ``set_estop`` / ``reset_to_measured`` may be
    called from callback threads while the control thread calls ``step`` once per tick.

    Args:
        limits: joint position, velocity and acceleration limits (joint order of every array).
        control_period_s: control tick, s (0.005 at 200 Hz). The limits are enforced per tick of
            this period, whatever ``now`` the ticks carry.
        strategy: splice strategy, one of ``SPLICE_STRATEGIES``.
        gripper_indices: joints that are never blended (see ``gripper_mode``).
        watchdog_timeout_s: no chunk accepted for this long -> HOLDING.
        crossfade_steps: length of a crossfade and of the re-anchoring fade after a hold, in
            chunk steps (of the incoming chunk), not control ticks.
        ensemble_decay: ACT ensembling weight exponent (w_i = exp(-decay * i), oldest i = 0).
        inference_delay_s: rtc committed prefix: the old chunk runs on until
            max(arrival, new stamp + inference_delay_s).
        ramp_in_max_velocity_scale: velocity-limit scale (0, 1] after a restart from the
            measured pose.
        gripper_mode: 'switch' (default) or 'blend'.
    """

    def __init__(
        self,
        limits: JointLimits,
        control_period_s: float,
        strategy: str = "replace",
        gripper_indices: Sequence[int] = (),
        watchdog_timeout_s: float = 0.5,
        crossfade_steps: int = 10,
        ensemble_decay: float = 0.1,
        inference_delay_s: float = 0.05,
        ramp_in_max_velocity_scale: float = 0.5,
        gripper_mode: str = "switch",
    ) -> None:
        dof = limits.dof
        if not control_period_s > 0.0:
            raise ValueError(f"control_period_s must be > 0, got {control_period_s}")
        if strategy not in SPLICE_STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is not one of {SPLICE_STRATEGIES}")
        if gripper_mode not in GRIPPER_MODES:
            raise ValueError(f"gripper_mode {gripper_mode!r} is not one of {GRIPPER_MODES}")
        grippers = [int(i) for i in gripper_indices]
        if len(set(grippers)) != len(grippers) or any(not 0 <= i < dof for i in grippers):
            raise ValueError(f"gripper_indices {grippers} must be distinct joints in [0, {dof})")
        if not watchdog_timeout_s > 0.0:
            raise ValueError(f"watchdog_timeout_s must be > 0, got {watchdog_timeout_s}")
        if int(crossfade_steps) != crossfade_steps or crossfade_steps < 1:
            raise ValueError(f"crossfade_steps must be an integer >= 1, got {crossfade_steps}")
        if not (np.isfinite(ensemble_decay) and ensemble_decay >= 0.0):
            raise ValueError(f"ensemble_decay must be >= 0, got {ensemble_decay}")
        if not (np.isfinite(inference_delay_s) and inference_delay_s >= 0.0):
            raise ValueError(f"inference_delay_s must be >= 0, got {inference_delay_s}")
        if not 0.0 < ramp_in_max_velocity_scale <= 1.0:
            raise ValueError(
                f"ramp_in_max_velocity_scale must be in (0, 1], got {ramp_in_max_velocity_scale}"
            )
        switch_mask = np.zeros(dof, dtype=bool)
        if gripper_mode == "switch":
            switch_mask[grippers] = True
        switch_mask.setflags(write=False)

        self._lock = threading.Lock()
        self._limits = limits
        self._ramp_in_limits = limits.with_velocity_scale(ramp_in_max_velocity_scale)
        self._dt = float(control_period_s)
        self._watchdog_timeout_s = float(watchdog_timeout_s)
        self._params = SpliceParams(
            strategy=strategy,
            crossfade_steps=int(crossfade_steps),
            ensemble_decay=float(ensemble_decay),
            inference_delay_s=float(inference_delay_s),
            switch_mask=switch_mask,
        )

        self._measured: np.ndarray | None = None
        self._command: np.ndarray | None = None
        self._velocity = np.zeros(dof)
        self._last_tick_time: float | None = None
        self._hold_pose: np.ndarray | None = None
        self._reference: Reference | None = None
        self._state = WAITING
        self._estop = False
        self._ramp_in = False
        self._ramp_in_not_before = -np.inf
        self._last_accept_time = -np.inf
        self._last_stamp = -np.inf
        self._stale_before = -np.inf

        self._accepted = 0
        self._rejected = 0
        self._last_reject_reason = ""
        self._dropped_steps = 0
        self._age_last = 0.0
        self._age_max = 0.0
        self._age_sum = 0.0
        self._splices = 0
        self._resumes = 0
        self._watchdog_holds = 0
        self._upstream_holds = 0
        self._estops = 0
        self._resets = 0
        self._invalid_measured = 0
        self._clamped_ticks = 0
        self._clamps = np.zeros(dof, dtype=np.int64)

    # ---------------------------------------------------------------- inputs

    def submit(self, chunk: ActionChunk, now: float) -> str | None:
        """Offer a chunk that arrived at ``now`` (s). None if accepted, else the reason.

        Refused: invalid chunks (see ``ActionChunk.validate``), stamps more than 1 s in the
        future, chunks not newer than the last accepted one, chunks observed before the last
        e-stop release or handover, chunks whose last step is already past, and every chunk
        while the e-stop is engaged or before a measured state exists.
        """
        with self._lock:
            reason = self._check(chunk, now)
            if reason is not None:
                self._rejected += 1
                self._last_reject_reason = reason
                return reason
            assert self._command is not None
            self._apply_watchdog(now)
            pose = self._command_at(now)
            trajectory, dropped = TimedTrajectory.from_chunk(chunk, now, pose)
            if self._state == EXECUTING and self._reference is not None:
                self._reference = splice(
                    self._reference, trajectory, chunk.stamp, now, pose, self._params
                )
                self._splices += 1
            else:
                self._reference = resume(trajectory, now, pose, self._params)
                self._resumes += 1
                fade_s = self._params.crossfade_steps * trajectory.step_dt
                self._ramp_in_not_before = now + fade_s
            self._state = EXECUTING
            self._hold_pose = None
            self._last_accept_time = now
            self._last_stamp = chunk.stamp
            self._accepted += 1
            self._dropped_steps += dropped
            age = now - chunk.stamp
            self._age_last = age
            self._age_max = max(self._age_max, age)
            self._age_sum += age
            return None

    def _check(self, chunk: ActionChunk, now: float) -> str | None:
        if self._estop:
            return "e-stop: engaged; chunks are refused until it is released"
        if self._command is None:
            return "no state: no measured joint state yet"
        reason = chunk.validate(self._limits.dof)
        if reason is not None:
            return reason
        if chunk.stamp > now + MAX_FUTURE_STAMP_S:
            return (
                f"future stamp: observation stamp is {chunk.stamp - now:.3f} s ahead of now "
                f"(> {MAX_FUTURE_STAMP_S} s); are the clocks synchronised?"
            )
        if chunk.stamp < self._stale_before:
            return (
                f"stale: observed {self._stale_before - chunk.stamp:.3f} s before the last "
                "e-stop release / handover / upstream exit"
            )
        if chunk.stamp <= self._last_stamp:
            return (
                f"out of order: stamp {chunk.stamp:.6f} is not newer than the last accepted "
                f"chunk's {self._last_stamp:.6f}"
            )
        end = chunk.stamp + float(chunk.t_from_start[-1])
        if end <= now:
            return (
                f"expired: the last step was {now - end:.3f} s before arrival "
                f"(chunk age {now - chunk.stamp:.3f} s)"
            )
        return None

    def update_measured(self, positions: np.ndarray, now: float) -> None:
        """The latest measured joint positions (D,), rad (m), measured at ``now``.

        Non-finite values are ignored (counted in stats); a wrong length raises ValueError.
        """
        q = np.array(positions, dtype=np.float64)
        if q.shape != (self._limits.dof,):
            raise ValueError(
                f"measured positions have shape {q.shape}, expected ({self._limits.dof},) "
                f"for joints {list(self._limits.names)}"
            )
        with self._lock:
            if not np.all(np.isfinite(q)):
                self._invalid_measured += 1
                return
            self._measured = q
            if self._command is None:
                self._restart_from_measured()

    def set_estop(self, engaged: bool, now: float) -> None:
        """Engage (latch) or release the e-stop at ``now``; see the module docstring."""
        with self._lock:
            if engaged and not self._estop:
                self._estop = True
                self._estops += 1
                self._reference = None
                self._state = ESTOP
                if self._command is not None:
                    self._hold_pose = stop_position(
                        self._command, self._velocity, self._dt, self._active_limits()
                    )
            elif not engaged and self._estop:
                self._estop = False
                self._stale_before = now
                self._state = WAITING
                self._restart_from_measured()

    def upstream_lost(self, now: float) -> None:
        """A node the chunks depend on (camera, world model, policy) exited at ``now``: brake
        to a hold now instead of playing the current chunk until the watchdog, and refuse
        chunks observed before ``now`` (they come from the pipeline that died). The next chunk
        of the restarted pipeline resumes from the held pose, as after a watchdog hold.
        """
        with self._lock:
            self._stale_before = max(self._stale_before, now)
            if self._state == EXECUTING:
                self._upstream_holds += 1
                self._enter_hold()

    def reset_to_measured(self, now: float) -> None:
        """Handover: drop every chunk and restart from the measured pose with zero velocity.

        Chunks observed before ``now`` are refused afterwards. Does not release an e-stop.
        """
        with self._lock:
            self._resets += 1
            self._reference = None
            self._stale_before = now
            if not self._estop:
                self._state = WAITING
                self._restart_from_measured()

    # ---------------------------------------------------------------- control tick

    def step(self, now: float) -> np.ndarray | None:
        """The command (D,) for the control tick at ``now``; None until a measured state.

        After skipped ticks (``now`` two or more periods after the last tick) the skipped ticks
        are computed too and the last one is returned (:func:`ramp_common.limits.ticks_due`).
        """
        with self._lock:
            if self._command is None:
                return None
            for tick in due_tick_times(now, self._last_tick_time, self._dt):
                self._tick(tick)
            self._last_tick_time = now
            assert self._command is not None
            return self._command.copy()

    def _tick(self, now: float) -> None:
        """One control tick at ``now`` (lock held): moves ``_command`` on by one period."""
        assert self._command is not None
        self._apply_watchdog(now)
        limits = self._active_limits()
        target_velocity = None
        if self._state == EXECUTING and self._reference is not None:
            self._reference = self._reference.settled(now)
            target = self._reference.sample(now)
            previous_target = self._reference.sample(now - self._dt)
            target_velocity = (target - previous_target) / self._dt
        elif self._state == ESTOP and self._measured is not None:
            # The bridge holds the robot; follow the measured pose within the limits so the
            # command stream meets the measured pose before a release restarts from it.
            target = self._measured
        else:
            assert self._hold_pose is not None
            target = self._hold_pose
        command, velocity, clamped = limit_step(
            self._command, self._velocity, target, self._dt, limits, target_velocity=target_velocity
        )
        self._command = command
        self._velocity = velocity
        if clamped.any():
            self._clamped_ticks += 1
            self._clamps += clamped
        if (
            self._ramp_in
            and self._state == EXECUTING
            and now >= self._ramp_in_not_before
            and (
                now >= self._ramp_in_not_before + RAMP_IN_MAX_S
                or np.max(np.abs(command - self._limits.clip(target))) <= RAMP_IN_TOLERANCE
            )
        ):
            self._ramp_in = False

    # ---------------------------------------------------------------- queries

    @property
    def state(self) -> str:
        """'WAITING', 'HOLDING', 'EXECUTING' or 'ESTOP'."""
        with self._lock:
            return self._state

    def chunk_remaining_s(self, now: float) -> float:
        """Seconds until the last step of the newest chunk (0 when not executing)."""
        with self._lock:
            if self._state != EXECUTING or self._reference is None:
                return 0.0
            return max(0.0, self._reference.end_time - now)

    def stats(self) -> dict[str, float | int | str]:
        """Counters for diagnostics (ages in s)."""
        with self._lock:
            stats: dict[str, float | int | str] = {
                "state": self._state,
                "strategy": self._params.strategy,
                "chunks_accepted": self._accepted,
                "chunks_rejected": self._rejected,
                "last_reject_reason": self._last_reject_reason,
                "dropped_past_steps": self._dropped_steps,
                "chunk_age_at_arrival_last_s": self._age_last,
                "chunk_age_at_arrival_max_s": self._age_max,
                "chunk_age_at_arrival_mean_s": (
                    self._age_sum / self._accepted if self._accepted else 0.0
                ),
                "splices": self._splices,
                "resumes": self._resumes,
                "watchdog_holds": self._watchdog_holds,
                "upstream_holds": self._upstream_holds,
                "estops": self._estops,
                "resets": self._resets,
                "invalid_measured": self._invalid_measured,
                "ramp_in": int(self._ramp_in),
                "blend_depth": self._reference.depth if self._reference is not None else 0,
                "clamped_ticks": self._clamped_ticks,
                "clamps_total": int(self._clamps.sum()),
            }
            for name, count in zip(self._limits.names, self._clamps, strict=True):
                stats[f"clamps_{name}"] = int(count)
            return stats

    # ---------------------------------------------------------------- internals (lock held)

    def _active_limits(self) -> JointLimits:
        return self._ramp_in_limits if self._ramp_in else self._limits

    def _command_at(self, now: float) -> np.ndarray:
        """The commanded pose extrapolated from the last tick to ``now`` (at most one tick)."""
        assert self._command is not None
        if self._last_tick_time is None:
            return self._command.copy()
        ahead = min(max(now - self._last_tick_time, 0.0), self._dt)
        return self._command + self._velocity * ahead

    def _apply_watchdog(self, now: float) -> None:
        if self._state == EXECUTING and now - self._last_accept_time > self._watchdog_timeout_s:
            self._watchdog_holds += 1
            self._enter_hold()

    def _enter_hold(self) -> None:
        assert self._command is not None
        self._hold_pose = stop_position(
            self._command, self._velocity, self._dt, self._active_limits()
        )
        self._reference = None
        self._state = HOLDING

    def _restart_from_measured(self) -> None:
        """Resume from the measured pose at rest (start, e-stop release, handover)."""
        self._reference = None
        if self._measured is None:
            self._command = None
            self._hold_pose = None
            self._state = ESTOP if self._estop else WAITING
            return
        self._command = self._measured.copy()
        self._velocity = np.zeros_like(self._command)
        self._hold_pose = self._command.copy()
        self._last_tick_time = None
        self._ramp_in = True
        self._ramp_in_not_before = np.inf
        self._state = ESTOP if self._estop else HOLDING
