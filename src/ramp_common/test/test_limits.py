"""Tests of ramp_common.limits: configuration checks and the exact discrete rate limiter."""

import numpy as np
import pytest

from ramp_common.limits import (
    JointLimits,
    LimitsError,
    limit_step,
    stop_position,
    stopping_distance,
)

DT = 0.005


@pytest.fixture
def limits() -> JointLimits:
    return JointLimits.from_lists(
        ["shoulder", "elbow", "gripper"],
        [-1.0, -2.0, 0.0],
        [1.0, 0.5, 0.08],
        [2.0, 1.0, 0.1],
        [10.0, 5.0, 1.0],
    )


def finite_differences(commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    velocity = np.diff(commands, axis=0) / DT
    return velocity, np.diff(velocity, axis=0) / DT


def assert_within(limits: JointLimits, commands: np.ndarray) -> None:
    velocity, acceleration = finite_differences(commands)
    assert np.all(commands >= limits.lower - 1e-12)
    assert np.all(commands <= limits.upper + 1e-12)
    assert np.all(np.abs(velocity) <= limits.max_velocity * (1 + 1e-9))
    assert np.all(np.abs(acceleration) <= limits.max_acceleration * (1 + 1e-6))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lower": [0.0, 0.0]}, "position_lower has 2 values for 3 joints"),
        ({"upper": [1.0, float("nan"), 1.0]}, "non-finite"),
        ({"lower": [1.0, 0.0, 0.0]}, "joint a: lower limit >= upper limit"),
        ({"max_velocity": [1.0, 0.0, 1.0]}, "joint b: velocity and acceleration"),
        ({"names": ["a", "a", "c"]}, "not unique"),
    ],
)
def test_from_lists_names_the_problem(kwargs: dict, message: str) -> None:
    args = {
        "names": ["a", "b", "c"],
        "lower": [0.0, 0.0, 0.0],
        "upper": [1.0, 1.0, 1.0],
        "max_velocity": [1.0, 1.0, 1.0],
        "max_acceleration": [1.0, 1.0, 1.0],
    }
    args.update(kwargs)
    with pytest.raises(LimitsError, match=message):
        JointLimits.from_lists(**args)


def test_limit_arrays_are_read_only(limits: JointLimits) -> None:
    with pytest.raises(ValueError):
        limits.upper[0] = 5.0


def test_velocity_scale(limits: JointLimits) -> None:
    scaled = limits.with_velocity_scale(0.5)
    np.testing.assert_allclose(scaled.max_velocity, limits.max_velocity / 2)
    np.testing.assert_array_equal(scaled.max_acceleration, limits.max_acceleration)
    with pytest.raises(LimitsError):
        limits.with_velocity_scale(0.0)


def test_random_targets_never_break_a_limit(limits: JointLimits) -> None:
    rng = np.random.default_rng(7)
    for trial in range(40):
        command, velocity = limits.clip(rng.uniform(-1, 1, 3)), np.zeros(3)
        commands = [command, command]
        use_velocity = trial % 2 == 0
        target = rng.uniform(-3, 3, 3)
        for _ in range(300):
            if rng.random() < 0.05:
                target = rng.uniform(-3, 3, 3)
            target_velocity = rng.uniform(-5, 5, 3) if use_velocity else None
            command, velocity, _ = limit_step(
                command, velocity, target, DT, limits, target_velocity=target_velocity
            )
            commands.append(command)
        assert_within(limits, np.array(commands))


def test_reaches_a_fixed_target_without_overshoot(limits: JointLimits) -> None:
    command, velocity = np.array([-0.9, 0.4, 0.0]), np.zeros(3)
    target = np.array([0.8, -1.5, 0.07])
    commands = [command, command]
    for _ in range(600):
        command, velocity, clamped = limit_step(command, velocity, target, DT, limits)
        commands.append(command)
    commands = np.array(commands)
    np.testing.assert_array_equal(command, target)
    assert not clamped.any()
    # Monotonic approach: never beyond the target.
    assert np.all(np.diff(commands[:, 0]) >= 0) and np.all(np.diff(commands[:, 1]) <= 0)
    assert_within(limits, commands)


def test_follows_a_feasible_moving_target_exactly_with_feed_forward(limits: JointLimits) -> None:
    t = np.arange(0.0, 3.0, DT)
    reference = np.stack([0.5 * np.sin(2 * t), -0.7 + 0.3 * np.sin(3 * t), 0.04 + 0 * t], 1)
    command = reference[0]
    velocity = np.array([1.0, 0.9, 0.0])  # the reference's velocity at t = 0
    lagging_command, lagging_velocity = command, velocity
    worst_exact = worst_lagging = 0.0
    for k in range(1, len(t)):
        target_velocity = (reference[k] - reference[k - 1]) / DT
        command, velocity, _ = limit_step(
            command, velocity, reference[k], DT, limits, target_velocity=target_velocity
        )
        lagging_command, lagging_velocity, _ = limit_step(
            lagging_command, lagging_velocity, reference[k], DT, limits
        )
        worst_exact = max(worst_exact, float(np.abs(command - reference[k]).max()))
        worst_lagging = max(worst_lagging, float(np.abs(lagging_command - reference[k]).max()))
    assert worst_exact < 1e-9
    assert worst_lagging > 0.01  # without feed-forward a stop-at-target limiter trails


def test_target_beyond_the_range_is_clipped_and_flagged(limits: JointLimits) -> None:
    command, velocity = np.zeros(3), np.zeros(3)
    target = np.array([5.0, 0.0, 0.0])
    _, _, clamped = limit_step(command, velocity, target, DT, limits)
    assert clamped.tolist() == [True, False, False]
    for _ in range(500):
        command, velocity, _ = limit_step(command, velocity, target, DT, limits)
    assert command[0] == pytest.approx(1.0)


def test_stop_position_is_where_braking_ends(limits: JointLimits) -> None:
    command = np.array([0.0, -0.5, 0.02])
    velocity = np.array([1.9, -0.95, 0.09])
    stop = stop_position(command, velocity, DT, limits)
    np.testing.assert_allclose(stop - command, stopping_distance(velocity, DT, limits))
    commands = [command - velocity * DT, command]
    for _ in range(200):
        command, velocity, _ = limit_step(command, velocity, stop, DT, limits)
        commands.append(command)
    np.testing.assert_allclose(command, stop, atol=1e-12)
    np.testing.assert_array_equal(velocity, 0.0)
    assert_within(limits, np.array(commands))
    # Braking at the limit: the first ticks lose exactly a*dt of speed.
    speeds = np.abs(np.diff(np.array(commands)[:4], axis=0) / DT)
    np.testing.assert_allclose(speeds[0] - speeds[1], limits.max_acceleration * DT, rtol=1e-6)


def test_a_start_outside_the_range_comes_back_without_a_jump(limits: JointLimits) -> None:
    command, velocity = np.array([1.05, 0.0, 0.0]), np.zeros(3)
    commands = [command, command]
    for _ in range(200):
        command, velocity, _ = limit_step(command, velocity, np.zeros(3), DT, limits)
        commands.append(command)
    velocity_fd, acceleration = finite_differences(np.array(commands))
    assert np.all(np.abs(velocity_fd) <= limits.max_velocity + 1e-9)
    assert np.all(np.abs(acceleration) <= limits.max_acceleration * (1 + 1e-6))
    np.testing.assert_allclose(command, 0.0, atol=1e-12)


def test_rejects_a_non_positive_dt(limits: JointLimits) -> None:
    with pytest.raises(ValueError, match="dt must be > 0"):
        limit_step(np.zeros(3), np.zeros(3), np.zeros(3), 0.0, limits)
