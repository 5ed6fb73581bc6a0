"""A stream of position targets, replayed on the receiver's clock a little behind (ROS-free).

The command path is a chain of followers, each on its own control tick: the chunk executor's
``ramp/policy_command`` is followed by the intervention arbiter, whose ``joint_command`` is
followed by the bridge's safety filter. Each sender stamps a command with the time its position
belongs to (the due time of its tick). A follower that just moved toward the latest command it
happened to receive would inherit the delivery jitter: a late sample freezes its goal (it brakes,
overshoots and comes back), the burst behind it makes the goal leap (it catches up faster than
the stream). Finding 11 in docs/reliability.md measured that to add 100-250 ms to a hold.

:class:`TargetStream` replays the stream instead: the position at time ``now`` on the
receiver's clock is the stream's position at sender time ``now - offset - playout_delay``,
linearly interpolated between the stamped samples, where ``offset`` is the smallest
``receive time - stamp`` seen in the last ``OFFSET_WINDOW_S`` (the fastest delivery: clock
offset plus the minimum latency). Samples late by less than the playout delay change nothing;
later ones make the stream run past its newest sample, extrapolated with its velocity (and with
its deceleration, up to where that would stop it, so a stream that brakes is not overshot) for
at most ``max_extrapolation_s``, then held. No clock synchronisation is needed: only
differences of one sender's stamps and of the receiver's own clock are used.

Units: positions in rad (m for a gripper opening), arrays (D,); times in s.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

STREAM_MAX_INTERVAL_S = 0.1
"""Samples further apart than this (s, sender stamps) are not one stream: the later one is a new
start (a step target, no velocity between them)."""

OFFSET_WINDOW_S = 2.0
"""The delivery offset is the minimum over the samples received in this window (s): long
enough to contain an undelayed sample, short enough to follow clock drift."""

OFFSET_RESYNC_S = 0.1
"""A sample more than this (s) behind the offset estimate restarts the estimate from it: the
sender's clock stepped or the route changed. (Jitter that large is past every source timeout.)"""

HISTORY = 128
"""Samples kept (the playout delay is a few samples of a 100-200 Hz stream)."""

JITTER_QUANTILE = 0.98
"""The adaptive playout delay covers this fraction of the recent samples' excess delay."""

JITTER_WINDOW_S = 2.0
"""Excess delays of the samples received in this window (s) set the adaptive playout delay."""

PLAYOUT_SLEW = 0.1
"""The adaptive playout delay changes by at most this many s per s: the stream is replayed at
0.9x-1.1x its pace while the delay adapts, never stopped or leapt."""


class TargetStream:
    """The latest position targets of one sender, replayed ``playout_delay_s`` behind.

    ``mask`` marks the joints the stream carries (an operator leader may drive only some); a
    change of mask starts the stream afresh. Not thread-safe: the owner holds its own lock.
    """

    def __init__(
        self,
        dof: int,
        playout_delay_s: float = 0.0,
        max_extrapolation_s: float = 0.02,
        max_deceleration: np.ndarray | None = None,
        max_playout_delay_s: float | None = None,
    ) -> None:
        """Args:
        dof: joints per sample.
        playout_delay_s: how far behind the fastest delivery the stream is replayed (s); the
            delivery jitter it absorbs. 0 replays at the newest sample's pace.
        max_playout_delay_s: when above ``playout_delay_s``, the delay adapts between the two:
            it covers the ``JITTER_QUANTILE`` of the excess delays measured over the last
            ``JITTER_WINDOW_S`` and moves toward that at most ``PLAYOUT_SLEW`` s per s.
        max_extrapolation_s: how long past its newest sample the stream moves on (s).
        max_deceleration: (D,) cap on the deceleration used for extrapolation, per s^2 (the
            joint's acceleration limit); None: no deceleration is extrapolated.
        """
        if not (math.isfinite(playout_delay_s) and playout_delay_s >= 0.0):
            raise ValueError(f"playout_delay_s must be >= 0, got {playout_delay_s}")
        if not (math.isfinite(max_extrapolation_s) and max_extrapolation_s >= 0.0):
            raise ValueError(f"max_extrapolation_s must be >= 0, got {max_extrapolation_s}")
        if max_playout_delay_s is not None and not (
            math.isfinite(max_playout_delay_s) and max_playout_delay_s >= 0.0
        ):
            raise ValueError(f"max_playout_delay_s must be >= 0, got {max_playout_delay_s}")
        self._dof = dof
        self.min_playout_delay_s = float(playout_delay_s)
        self.max_playout_delay_s = max(float(max_playout_delay_s or 0.0), self.min_playout_delay_s)
        self.playout_delay_s = self.min_playout_delay_s
        """The playout delay in use (s)."""
        self._delay_goal = self.min_playout_delay_s
        self._delay_at = -math.inf  # receiver time of the last delay update
        self._excess: deque[tuple[float, float]] = deque()  # (received, excess delay)
        self.max_extrapolation_s = float(max_extrapolation_s)
        self._max_decel = None if max_deceleration is None else np.asarray(max_deceleration, float)
        self.position: np.ndarray | None = None
        """The newest sample's position (None before the first)."""
        self.mask = np.ones(dof, dtype=bool)
        self.received_s = -math.inf
        """Receive time of the newest sample (s, receiver's clock)."""
        self.count = 0
        """Samples taken since construction."""
        self.restarts = 0
        """Times the stream started afresh after a gap, a stamp going back or a new mask."""
        self.resyncs = 0
        """Times the delivery offset was restarted (a clock step or a new route)."""
        self._stamps: deque[float] = deque(maxlen=HISTORY)
        self._positions: deque[np.ndarray] = deque(maxlen=HISTORY)
        self._offsets: deque[tuple[float, float]] = deque()  # (received, offset), rising offsets
        self._pseudo_stamp = 0.0

    # ------------------------------------------------------------------ input

    def update(
        self, position: np.ndarray, mask: np.ndarray, now: float, sent_at: float | None
    ) -> None:
        """Take a sample received at ``now`` (receiver's clock, s) stamped ``sent_at`` (the
        sender's clock, s; None: the receive time stands in, and delivery jitter is not
        absorbed). ``position`` (D,) must be finite where ``mask`` is set.
        """
        stamp = float(now if sent_at is None else sent_at)
        if not math.isfinite(stamp):
            stamp = float(now)
        mask = np.asarray(mask, dtype=bool)
        restart = (
            not self._stamps
            or not np.array_equal(mask, self.mask)
            or not 0.0 < stamp - self._stamps[-1] <= STREAM_MAX_INTERVAL_S
        )
        if restart:
            if self._stamps:
                self.restarts += 1
            self._stamps.clear()
            self._positions.clear()
        self._track_offset(now - stamp, now, restart)
        if self.max_playout_delay_s > self.min_playout_delay_s:
            self._track_jitter(now - stamp - self.offset_s, now)
        position = np.where(mask, position, 0.0)
        self._stamps.append(stamp)
        self._positions.append(position)
        self.position = position
        self.mask = mask
        self.received_s = float(now)
        self.count += 1

    def _track_offset(self, offset: float, now: float, restart: bool) -> None:
        """Sliding-window minimum of receive time - stamp (a deque of rising offsets)."""
        offsets = self._offsets
        if restart or (offsets and offset - offsets[0][1] > OFFSET_RESYNC_S):
            if offsets and not restart:
                self.resyncs += 1
            offsets.clear()
            self._excess.clear()  # measured against the old offset
        while offsets and offsets[-1][1] >= offset:
            offsets.pop()
        offsets.append((now, offset))
        while offsets[0][0] < now - OFFSET_WINDOW_S:
            offsets.popleft()

    def _track_jitter(self, excess: float, now: float) -> None:
        """The adaptive playout delay's goal: a quantile of the window's excess delays."""
        excess_window = self._excess
        excess_window.append((now, excess))
        while excess_window[0][0] < now - JITTER_WINDOW_S:
            excess_window.popleft()
        if self.count % 8 == 0:
            values = np.fromiter((e for _, e in excess_window), float, len(excess_window))
            self._delay_goal = float(
                np.clip(
                    np.quantile(values, JITTER_QUANTILE),
                    self.min_playout_delay_s,
                    self.max_playout_delay_s,
                )
            )

    def _adapt_delay(self, now: float) -> float:
        """Move the playout delay toward its goal (slew-limited); the replay's pace (1 - rate)."""
        elapsed = now - self._delay_at
        self._delay_at = now
        if not 0.0 < elapsed <= STREAM_MAX_INTERVAL_S:
            return 1.0
        change = float(
            np.clip(
                self._delay_goal - self.playout_delay_s,
                -PLAYOUT_SLEW * elapsed,
                PLAYOUT_SLEW * elapsed,
            )
        )
        self.playout_delay_s += change
        return 1.0 - change / elapsed

    def expire(self) -> None:
        """The sender is known to be gone: the newest sample is stale now (``fresh`` is False
        until the next sample)."""
        self.received_s = -math.inf

    def fresh(self, now: float, timeout_s: float) -> bool:
        """True when a sample arrived within ``timeout_s`` before ``now``."""
        return self.position is not None and now - self.received_s <= timeout_s

    @property
    def offset_s(self) -> float:
        """Current delivery offset estimate (s): receive time - stamp of the fastest sample."""
        return self._offsets[0][1] if self._offsets else 0.0

    # ------------------------------------------------------------------ output

    def sample(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """(position, velocity) of the replayed stream at ``now`` (receiver's clock, s).

        Masked-out joints read 0. Requires a sample (``position`` is not None).
        """
        assert self._stamps, "sample() before the first update()"
        pace = 1.0
        if self.max_playout_delay_s > self.min_playout_delay_s:
            pace = self._adapt_delay(now)
        position, velocity = self._replay(now - self.offset_s - self.playout_delay_s)
        return position, velocity * pace

    def _replay(self, tau: float) -> tuple[np.ndarray, np.ndarray]:
        """(position, velocity) of the stream at ``tau`` on the sender's clock."""
        stamps, positions = self._stamps, self._positions
        zero = np.zeros(self._dof)
        if tau <= stamps[0]:
            return positions[0], zero
        if tau < stamps[-1]:
            i = len(stamps) - 2
            while stamps[i] > tau:
                i -= 1
            span = stamps[i + 1] - stamps[i]
            velocity = (positions[i + 1] - positions[i]) / span
            return positions[i] + velocity * (tau - stamps[i]), velocity
        if len(stamps) < 2:
            return positions[-1], zero
        return self._extrapolate(tau - stamps[-1])

    def _extrapolate(self, ahead: float) -> tuple[np.ndarray, np.ndarray]:
        """Past the newest sample by ``ahead`` s: on with its velocity, and with its deceleration
        (never reversing), for at most ``max_extrapolation_s``; then at rest there."""
        stamps, positions = self._stamps, self._positions
        h = min(ahead, self.max_extrapolation_s)
        span = stamps[-1] - stamps[-2]
        velocity = (positions[-1] - positions[-2]) / span  # at the middle of the last span
        decel = np.zeros(self._dof)
        if self._max_decel is not None and len(stamps) >= 3:
            before = (positions[-2] - positions[-3]) / (stamps[-2] - stamps[-3])
            accel = (velocity - before) / (0.5 * (stamps[-1] - stamps[-3]))
            braking = accel * velocity < 0.0
            decel = np.where(braking, np.clip(accel, -self._max_decel, self._max_decel), 0.0)
            velocity = velocity + decel * (0.5 * span)  # at the newest sample
        with np.errstate(divide="ignore", invalid="ignore"):
            stop_after = np.where(decel != 0.0, np.maximum(-velocity / decel, 0.0), np.inf)
        t = np.minimum(h, stop_after)
        position = positions[-1] + velocity * t + 0.5 * decel * t * t
        moving = ahead < self.max_extrapolation_s
        live_velocity = np.where(t < stop_after, velocity + decel * t, 0.0) if moving else 0.0
        return position, np.zeros(self._dof) + live_velocity
