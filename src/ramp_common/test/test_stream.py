"""TargetStream: a stamped command stream replayed behind its fastest delivery."""

from __future__ import annotations

import numpy as np
import pytest

from ramp_common.limits import MAX_CATCH_UP_TICKS, due_tick_times, ticks_due
from ramp_common.stream import OFFSET_RESYNC_S, TargetStream

PERIOD = 0.005
ALL = np.ones(1, dtype=bool)


def _ramp(t: float) -> np.ndarray:
    """The sender's trajectory: 1 rad/s from 0."""
    return np.array([1.0 * t])


def test_jitter_within_the_playout_delay_changes_nothing():
    """Samples delivered 0-8 ms late (in order) replay exactly, 10 ms behind the fastest."""
    rng = np.random.default_rng(1)
    stream = TargetStream(1, playout_delay_s=0.010)
    clock_offset = 1000.0  # the receiver's clock is 1000 s ahead: never subtracted blindly
    delivered = 0.0
    errors = []
    for k in range(400):
        stamp = k * PERIOD
        delivered = max(stamp + 0.0005 + rng.uniform(0.0, 0.008), delivered)
        stream.update(_ramp(stamp), ALL, delivered + clock_offset, stamp)
        now = stamp + 0.0021  # a follower tick 2.1 ms after the sender's
        if k > 20 and now + clock_offset >= delivered + clock_offset:
            position, velocity = stream.sample(now + clock_offset)
            expected = _ramp(now - stream.offset_s + clock_offset - 0.010)
            errors.append(abs(position[0] - expected[0]))
            assert velocity[0] == pytest.approx(1.0)
    assert stream.offset_s - clock_offset == pytest.approx(0.0005, abs=2e-4)
    assert max(errors) < 1e-9


def test_a_late_sample_is_extrapolated_then_held():
    """Past the newest sample the stream moves on with its velocity for max_extrapolation_s,
    then stands still where that got it."""
    stream = TargetStream(1, max_extrapolation_s=0.02)
    for k in range(5):
        stream.update(_ramp(k * PERIOD), ALL, k * PERIOD, k * PERIOD)
    last = 4 * PERIOD
    position, velocity = stream.sample(last + 0.01)
    assert position[0] == pytest.approx(last + 0.01) and velocity[0] == pytest.approx(1.0)
    position, velocity = stream.sample(last + 0.05)
    assert position[0] == pytest.approx(last + 0.02) and velocity[0] == 0.0


def test_a_braking_stream_is_extrapolated_to_its_stop_not_past_it():
    """A stream decelerating at 10 rad/s^2 is continued along its braking curve and stops
    where it would have, never reversing."""
    decel = 10.0
    stream = TargetStream(1, max_extrapolation_s=0.5, max_deceleration=np.array([15.0]))
    v0 = 1.0
    for k in range(4):
        t = k * PERIOD
        stream.update(np.array([v0 * t - 0.5 * decel * t * t]), ALL, t, t)
    last = 3 * PERIOD
    stop_time = v0 / decel
    at_stop = v0 * stop_time - 0.5 * decel * stop_time**2
    position, velocity = stream.sample(last + 0.05)
    t = last + 0.05
    assert position[0] == pytest.approx(v0 * t - 0.5 * decel * t * t, abs=1e-3)
    position, velocity = stream.sample(0.4)
    assert position[0] == pytest.approx(at_stop, abs=2e-3)
    assert velocity[0] == 0.0


def test_a_sender_clock_step_resyncs_instead_of_freezing():
    """The sender's clock steps back 1 s: the offset estimate restarts from the new samples
    (counted), and the stream goes on being replayed."""
    stream = TargetStream(1, playout_delay_s=0.005)
    for k in range(100):
        stream.update(_ramp(k * PERIOD), ALL, k * PERIOD, k * PERIOD)
    for k in range(100, 110):  # stamps 1 s behind from here
        stream.update(_ramp(k * PERIOD), ALL, k * PERIOD, k * PERIOD - 1.0)
    assert stream.restarts == 1  # the stamp went back: a new stream
    now = 109 * PERIOD
    position, _ = stream.sample(now)
    assert position[0] == pytest.approx(_ramp(108 * PERIOD)[0], abs=1e-9)
    for k in range(110, 120):  # and a route that got slower by more than the resync bound
        delay = OFFSET_RESYNC_S + 0.05
        stream.update(_ramp(k * PERIOD), ALL, k * PERIOD + delay, k * PERIOD - 1.0)
    assert stream.resyncs == 1


def test_a_gap_or_a_new_mask_starts_a_new_stream():
    """Samples more than STREAM_MAX_INTERVAL_S apart are not interpolated between: the later
    one is a step target; a new mask starts afresh too."""
    stream = TargetStream(2)
    stream.update(np.array([0.0, 0.0]), np.ones(2, bool), 0.0, 0.0)
    stream.update(np.array([0.5, 0.5]), np.ones(2, bool), 1.0, 1.0)
    position, velocity = stream.sample(1.0)
    np.testing.assert_allclose(position, [0.5, 0.5])
    np.testing.assert_allclose(velocity, [0.0, 0.0])
    stream.update(np.array([0.6, 9.9]), np.array([True, False]), 1.005, 1.005)
    assert stream.restarts == 2
    np.testing.assert_allclose(stream.sample(1.005)[0], [0.6, 0.0])


def test_the_adaptive_delay_rises_with_jitter_at_a_bounded_pace():
    """With deliveries up to 20 ms late the delay rises toward covering them, never beyond its
    bound and never faster than 0.1 s per s; the replay's velocity is scaled by its pace."""
    rng = np.random.default_rng(3)
    stream = TargetStream(1, playout_delay_s=0.005, max_playout_delay_s=0.03)
    delivered = 0.0
    delays = []
    for k in range(600):
        stamp = k * PERIOD
        late = rng.uniform(0.005, 0.02) if rng.random() < 0.2 else 0.0
        delivered = max(stamp + late, delivered)
        stream.update(_ramp(stamp), ALL, delivered, stamp)
        now = max(stamp + 0.002, delivered)
        _, velocity = stream.sample(now)
        delays.append((now, stream.playout_delay_s))
        if k >= 2:  # replayed at 0.9x-1.1x pace while the delay adapts
            assert 0.9 - 1e-9 <= velocity[0] <= 1.1 + 1e-9
    times, values = np.array(delays).T
    assert np.all(np.abs(np.diff(values)) <= 0.1 * np.diff(times) + 1e-12)
    assert 0.015 < values[-1] <= 0.03


def test_ticks_due_counts_whole_periods():
    assert ticks_due(1.0, None, PERIOD) == 1
    assert ticks_due(1.0 + 0.0052, 1.0, PERIOD) == 1  # a late call is one tick
    assert ticks_due(1.0 + 0.0031, 1.0, PERIOD) == 1  # an early one too
    assert ticks_due(1.0 + 2 * PERIOD, 1.0, PERIOD) == 2  # one tick was skipped
    assert ticks_due(2.0, 1.0, PERIOD) == MAX_CATCH_UP_TICKS
    assert ticks_due(2.0, 1.0, PERIOD, max_ticks=4) == 4
    # the times of the ticks a step computes: the skipped one, then this one
    assert due_tick_times(1.01, 1.0, PERIOD) == pytest.approx([1.005, 1.01])
