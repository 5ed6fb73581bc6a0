"""The fault campaign's figures (ramp_bringup.core.faults) on hand-made samples."""

from __future__ import annotations

import numpy as np
import pytest

from ramp_bringup.core.faults import (
    hold_time,
    percentile,
    step_figures,
    within_limits,
)


def test_hold_time_is_the_start_of_the_first_quiet_stretch_after_the_fault():
    t = np.arange(0.0, 2.0, 0.01)
    speed = np.where(t < 0.75, 1.0, 0.0)[:, None]
    assert hold_time(t, speed, 0.5, 0.01, settle_s=0.3) == pytest.approx(0.25, abs=1e-9)


def test_hold_time_ignores_quiet_stretches_that_are_too_short():
    t = np.arange(0.0, 2.0, 0.01)
    speed = np.ones((len(t), 2))
    speed[(t > 0.6) & (t < 0.7)] = 0.0  # 0.1 s pause, then moving again
    speed[t >= 1.2] = 0.0
    assert hold_time(t, speed, 0.5, 0.01, settle_s=0.3) == pytest.approx(0.7, abs=1e-9)


def test_hold_time_is_zero_when_already_holding_and_none_when_never():
    t = np.arange(0.0, 1.0, 0.01)
    assert hold_time(t, np.zeros((len(t), 1)), 0.5, 0.01) == 0.0
    assert hold_time(t, np.ones((len(t), 1)), 0.5, 0.01) is None
    assert hold_time(np.zeros(0), np.zeros((0, 1)), 0.5, 0.01) is None


def test_a_step_beyond_the_speed_limit_is_a_jump_one_within_reach_over_a_gap_is_not():
    vmax = [2.0]
    t = np.array([0.0, 0.005, 0.010, 0.110])
    q = np.array([[0.0], [0.01], [0.02], [0.2]])  # 0.18 rad over 0.1 s: 1.8 rad/s
    fig = step_figures(t, q, vmax)
    assert fig.jumps == 0
    assert fig.largest_step == pytest.approx(0.18)
    assert fig.largest_speed_ratio == pytest.approx(1.0)
    q[2, 0] = 0.9  # 0.89 rad in one 5 ms tick, 0.7 rad back over 0.1 s
    assert step_figures(t, q, vmax).jumps == 2  # there and back


def test_commands_outside_limits_or_not_finite_are_counted():
    q = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, np.nan], [0.5, -0.5]])
    assert within_limits(q, [-1.0, -1.0], [1.0, 1.0]) == 2


def test_percentile_skips_missing_values():
    assert percentile([None, 1.0, 3.0], 100) == 3.0
    assert percentile([None], 50) is None
