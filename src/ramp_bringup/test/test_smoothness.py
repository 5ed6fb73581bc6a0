"""Command-stream smoothness figures, as bench/chunk_splice.py measures them (ROS-free)."""

import numpy as np
import pytest

from ramp_bringup.core.smoothness import CommandSmoothness

DT = 0.005


def test_a_constant_velocity_ramp_has_no_jump():
    s = CommandSmoothness(DT)
    for k in range(100):
        s.add(k * DT, np.array([0.5 * k * DT, -0.2 * k * DT]))
    out = s.summary()
    assert out["ticks"] == 100 and out["missed_ticks"] == 0
    assert out["max_velocity_jump_rad_s"] == pytest.approx(0.0, abs=1e-9)


def test_a_splice_step_and_a_stall_are_measured():
    s = CommandSmoothness(DT)
    q = 0.0
    for k in range(50):  # 1 rad/s, then at tick 25 a splice jumps to 3 rad/s
        q += (1.0 if k < 25 else 3.0) * DT
        s.add(k * DT, np.array([q]))
    assert s.summary()["max_velocity_jump_rad_s"] == pytest.approx(2.0)
    assert s.summary()["max_acceleration_rad_s2"] == pytest.approx(2.0 / DT)
    s.add(49 * DT + 4 * DT, np.array([q]))  # three ticks never came
    assert s.summary()["missed_ticks"] == 3


def test_repeated_stamps_and_a_changed_joint_count_are_skipped():
    s = CommandSmoothness(DT)
    s.add(0.0, np.zeros(2))
    s.add(0.0, np.ones(2))  # same stamp: no division by zero
    s.add(DT, np.zeros(3))  # another joint set starts afresh
    assert s.summary()["max_velocity_jump_rad_s"] == 0.0
