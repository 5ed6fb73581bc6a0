"""Unit tests of ChunkExecutor: timing, strategies, limits, watchdog, e-stop, handover, input."""

import threading

import numpy as np
import pytest

from ramp_common.limits import JointLimits
from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import ChunkExecutor
from ramp_policy_node.core.splice import ensemble_weights

DT = 0.005
NAMES = ["j1", "j2", "gripper"]
LIMITS = JointLimits.from_lists(NAMES, [-2, -2, 0], [2, 2, 0.08], [2, 2, 0.1], [10, 10, 1])
# So wide that the command equals the executor's target: tests see the splice itself.
WIDE = JointLimits.from_lists(NAMES, [-1e3] * 3, [1e3] * 3, [1e4] * 3, [1e8] * 3)


def make(strategy: str = "replace", limits: JointLimits = LIMITS, **kwargs) -> ChunkExecutor:
    return ChunkExecutor(limits, DT, strategy=strategy, gripper_indices=[2], **kwargs)


def ticks(start: float, stop: float) -> np.ndarray:
    return np.round(np.arange(round(start / DT), round(stop / DT)) * DT, 9)


def run(executor: ChunkExecutor, start: float, stop: float) -> np.ndarray:
    """Step from start to stop (s); the robot follows the command exactly. (N, D) commands."""
    commands = []
    for now in ticks(start, stop):
        command = executor.step(now)
        assert command is not None
        commands.append(command)
        executor.update_measured(command, now)
    return np.array(commands)


def constant_chunk(stamp: float, value: list[float], horizon: int = 20) -> ActionChunk:
    return ActionChunk.from_step_dt(stamp, np.tile(value, (horizon, 1)), 0.02)


def line(t: np.ndarray) -> np.ndarray:
    """A trajectory linear in time: (len(t), 3)."""
    t = np.atleast_1d(t)
    return np.stack([0.1 + 0.5 * t, -0.2 * t, 0.04 + 0 * t], axis=1)


def line_chunk(stamp: float, horizon: int = 20) -> ActionChunk:
    offsets = (np.arange(horizon) + 1) * 0.02
    return ActionChunk(stamp, offsets, line(stamp + offsets))


def assert_smooth(limits: JointLimits, commands: np.ndarray, start_velocity=None) -> None:
    """Within the range; finite-difference velocity and acceleration within the limits."""
    velocity = np.diff(commands, axis=0) / DT
    if start_velocity is not None:
        velocity = np.vstack([start_velocity, velocity])
    acceleration = np.diff(velocity, axis=0) / DT
    assert np.all(commands >= limits.lower - 1e-9) and np.all(commands <= limits.upper + 1e-9)
    assert np.all(np.abs(velocity) <= limits.max_velocity * (1 + 1e-9) + 1e-9)
    assert np.all(np.abs(acceleration) <= limits.max_acceleration * (1 + 1e-6) + 1e-6)


# ------------------------------------------------------------------ start-up


def test_waits_for_a_measured_state() -> None:
    executor = make()
    assert executor.state == "WAITING"
    assert executor.step(0.0) is None
    assert executor.submit(constant_chunk(0.0, [0, 0, 0]), 0.01).startswith("no state:")
    executor.update_measured(np.array([0.3, -0.2, 0.01]), 0.02)
    assert executor.state == "HOLDING"
    np.testing.assert_array_equal(executor.step(0.025), [0.3, -0.2, 0.01])


def test_first_chunk_far_away_is_approached_without_a_jump_at_ramp_in_speed() -> None:
    executor = make(ramp_in_max_velocity_scale=0.5, watchdog_timeout_s=5.0)
    executor.update_measured(np.zeros(3), 0.0)
    assert executor.submit(constant_chunk(0.0, [1.5, -1.5, 0.08], horizon=100), 0.0) is None
    commands = run(executor, 0.0, 0.6)
    assert_smooth(LIMITS, np.vstack([np.zeros(3), commands]), start_velocity=np.zeros(3))
    speed = np.abs(np.diff(commands, axis=0)) / DT
    assert np.all(speed <= 0.5 * LIMITS.max_velocity + 1e-9)
    assert executor.state == "EXECUTING"


# ------------------------------------------------------------------ time alignment


def test_samples_the_chunk_at_tick_time_and_skips_past_steps() -> None:
    executor = make(limits=WIDE)
    executor.update_measured(line(1.05)[0], 1.0)
    assert executor.submit(line_chunk(1.0), 1.05) is None
    times = ticks(1.05, 1.4)
    commands = run(executor, 1.05, 1.4)
    np.testing.assert_allclose(commands, line(times), atol=1e-9)
    stats = executor.stats()
    assert stats["dropped_past_steps"] == 2  # steps at 1.02 and 1.04
    assert stats["chunk_age_at_arrival_last_s"] == pytest.approx(0.05)


def test_before_the_first_step_interpolates_from_the_commanded_pose() -> None:
    executor = make(limits=WIDE)
    executor.update_measured(np.zeros(3), 0.0)
    executor.step(1.0)
    assert executor.submit(constant_chunk(1.0, [1.0, 1.0, 0.06]), 1.0) is None
    commands = run(executor, 1.0, 1.03)
    # Arrival 1.0, first step 1.02: a straight line from the commanded pose (0) to the step.
    expected = np.clip((ticks(1.0, 1.03) - 1.0) / 0.02, 0, 1)[:, None] * [1.0, 1.0, 0.06]
    np.testing.assert_allclose(commands, expected, atol=1e-9)
    assert executor.stats()["dropped_past_steps"] == 0


def test_after_the_last_step_holds_the_last_target() -> None:
    executor = make(limits=WIDE, watchdog_timeout_s=1.0)
    executor.update_measured(line(0.01)[0], 0.0)
    executor.submit(line_chunk(0.0, horizon=10), 0.01)
    commands = run(executor, 0.01, 0.5)
    np.testing.assert_allclose(commands[-1], line(0.2)[0], atol=1e-9)
    assert executor.state == "EXECUTING"
    assert executor.chunk_remaining_s(0.5) == 0.0


def test_chunk_remaining_time() -> None:
    executor = make()
    executor.update_measured(np.zeros(3), 0.0)
    assert executor.chunk_remaining_s(0.0) == 0.0
    executor.submit(constant_chunk(1.0, [0, 0, 0]), 1.05)
    assert executor.chunk_remaining_s(1.1) == pytest.approx(0.3)


# ------------------------------------------------------------------ strategies


def two_constant_chunks(strategy: str, **kwargs) -> tuple[ChunkExecutor, np.ndarray]:
    """Chunk a = [0, 0, 0] at 0 s, chunk b = [1, -1, 0.08] observed at 0.1 s, arriving 0.125 s
    (after its first step, so it applies at once).
    """
    executor = make(strategy, limits=WIDE, **kwargs)
    executor.update_measured(np.zeros(3), 0.0)
    assert executor.submit(constant_chunk(0.0, [0.0, 0.0, 0.0]), 0.0) is None
    first = run(executor, 0.0, 0.125)
    assert executor.submit(constant_chunk(0.1, [1.0, -1.0, 0.08]), 0.125) is None
    assert executor.stats()["splices"] == 1
    second = run(executor, 0.125, 0.5)
    np.testing.assert_allclose(first, 0.0, atol=1e-12)
    return executor, second


def test_replace_switches_at_the_next_tick() -> None:
    _, commands = two_constant_chunks("replace")
    np.testing.assert_allclose(commands[0], [1.0, -1.0, 0.08])


def test_ensemble_averages_covering_chunks_with_act_weights() -> None:
    _, commands = two_constant_chunks("ensemble", ensemble_decay=0.5)
    w = ensemble_weights(2, 0.5)
    np.testing.assert_allclose(commands[0], [w[1], -w[1], 0.08])  # gripper from the newest
    # Chunk a ends at 0.4 s; then only chunk b covers the tick.
    alone = ticks(0.125, 0.5) > 0.4
    np.testing.assert_allclose(commands[alone], np.tile([1.0, -1.0, 0.08], (alone.sum(), 1)))


def test_crossfade_blends_over_chunk_steps_and_switches_the_gripper() -> None:
    _, commands = two_constant_chunks("crossfade", crossfade_steps=5)
    times = ticks(0.125, 0.5)
    np.testing.assert_allclose(commands[0, :2], [0.0, 0.0], atol=1e-12)
    assert commands[0, 2] == pytest.approx(0.08)  # the gripper switches at once
    mid = np.argmin(np.abs(times - (0.125 + 0.05)))
    # s = 0.5 of a 5 x 0.02 s cosine fade, new chunk re-anchored: 0.25 of the way.
    np.testing.assert_allclose(commands[mid, :2], [0.25, -0.25])
    done = times >= 0.225
    np.testing.assert_allclose(commands[done, :2], np.tile([1.0, -1.0], (done.sum(), 1)))


def test_crossfade_can_blend_the_gripper_too() -> None:
    _, commands = two_constant_chunks("crossfade", crossfade_steps=5, gripper_mode="blend")
    assert commands[0, 2] == pytest.approx(0.0)
    assert commands[-1, 2] == pytest.approx(0.08)


def test_rtc_keeps_the_committed_prefix_then_decays_linearly() -> None:
    _, commands = two_constant_chunks("rtc", inference_delay_s=0.05)
    times = ticks(0.125, 0.5)
    # Committed until 0.1 + 0.05 s, then the old weight falls linearly to 0 at 0.4 s.
    np.testing.assert_allclose(commands[times <= 0.15], 0.0, atol=1e-12)
    at = np.argmin(np.abs(times - 0.275))
    np.testing.assert_allclose(commands[at], [0.5, -0.5, 0.08])
    done = times >= 0.4
    np.testing.assert_allclose(commands[done], np.tile([1.0, -1.0, 0.08], (done.sum(), 1)))


@pytest.mark.parametrize("strategy", ["replace", "ensemble", "crossfade", "rtc"])
def test_disagreeing_chunks_never_make_the_command_jump(strategy: str) -> None:
    executor = make(strategy)
    executor.update_measured(np.zeros(3), 0.0)
    rng = np.random.default_rng(3)
    commands = []
    for k in range(15):
        stamp = 0.1 * k
        executor.submit(constant_chunk(stamp, [*rng.uniform(-2.5, 2.5, 2), 0.05]), stamp + 0.03)
        commands.append(run(executor, stamp + 0.03, stamp + 0.13))
    assert_smooth(LIMITS, np.vstack([np.zeros(3), *commands]), start_velocity=np.zeros(3))


# ------------------------------------------------------------------ limits


def test_targets_beyond_the_limits_are_clamped_and_counted_per_joint() -> None:
    executor = make(watchdog_timeout_s=5.0)
    executor.update_measured(np.array([0.0, 0.5, 0.02]), 0.0)
    executor.submit(constant_chunk(0.0, [5.0, 0.5, 0.02], horizon=100), 0.0)
    commands = run(executor, 0.0, 2.0)
    assert commands[:, 0].max() == pytest.approx(2.0)
    assert_smooth(LIMITS, commands)
    stats = executor.stats()
    assert stats["clamps_j1"] > 0
    assert stats["clamps_j2"] == 0 and stats["clamps_gripper"] == 0
    assert stats["clamps_total"] == stats["clamps_j1"]


# ------------------------------------------------------------------ watchdog


def moving(executor: ChunkExecutor, until: float) -> np.ndarray:
    """Measured on the line at 0, one long chunk along it (1.5 s), executed until ``until``."""
    executor.update_measured(line(0.0)[0], 0.0)
    assert executor.submit(line_chunk(0.0, horizon=75), 0.0) is None
    return run(executor, 0.0, until)


def test_watchdog_decelerates_and_holds_then_resumes_without_a_jump() -> None:
    executor = make(watchdog_timeout_s=0.3)
    before = moving(executor, 0.3)
    assert executor.state == "EXECUTING"
    during = run(executor, 0.3, 0.6)
    assert executor.state == "HOLDING"
    assert executor.stats()["watchdog_holds"] == 1
    np.testing.assert_array_equal(during[-1], during[-10])  # stopped and holding
    executor.submit(line_chunk(0.6), 0.6)
    assert executor.state == "EXECUTING"
    after = run(executor, 0.6, 1.0)
    assert_smooth(LIMITS, np.vstack([line(0.0)[0], before, during, after]), np.zeros(3))
    assert executor.stats()["resumes"] == 2


def test_upstream_exit_holds_at_once_refuses_its_chunks_and_resumes_on_new_ones() -> None:
    executor = make(watchdog_timeout_s=5.0)  # the watchdog would not fire for seconds
    before = moving(executor, 0.3)
    executor.upstream_lost(0.3)
    assert executor.state == "HOLDING"
    assert executor.stats()["upstream_holds"] == 1
    # a chunk of the dead pipeline (observed before the exit) still in flight: refused
    assert executor.submit(line_chunk(0.29), 0.31).startswith("stale:")
    during = run(executor, 0.3, 0.6)
    np.testing.assert_array_equal(during[-1], during[-10])  # braked and holding
    executor.submit(line_chunk(0.6), 0.6)  # the restarted pipeline's first chunk
    assert executor.state == "EXECUTING"
    after = run(executor, 0.6, 1.0)
    assert_smooth(LIMITS, np.vstack([line(0.0)[0], before, during, after]), np.zeros(3))
    executor.upstream_lost(1.0)
    executor.upstream_lost(1.01)  # while holding: nothing more to do, counted once per hold
    assert executor.stats()["upstream_holds"] == 2


def test_a_skipped_tick_is_computed_so_the_stream_stays_on_its_stamps() -> None:
    """The control loop skipped ticks 0.2 and 0.3-0.31 (late by more than a period): the steps
    after them return what every-tick stepping would have (the skipped ticks were computed),
    so positions and due-time stamps stay consistent for the followers."""
    skipping = make(watchdog_timeout_s=5.0)
    skipping.update_measured(line(0.0)[0], 0.0)
    assert skipping.submit(line_chunk(0.0, horizon=75), 0.0) is None
    reference = make(watchdog_timeout_s=5.0)
    reference.update_measured(line(0.0)[0], 0.0)
    reference.submit(line_chunk(0.0, horizon=75), 0.0)
    skipped = {round(0.2 / DT), round(0.3 / DT), round(0.305 / DT)}
    for now in ticks(0.0, 0.5):
        expected = reference.step(now)
        if round(now / DT) in skipped:
            continue
        np.testing.assert_allclose(skipping.step(now), expected, atol=1e-12)


def test_a_long_gap_ends_in_a_hold() -> None:
    executor = make("crossfade")
    moving(executor, 0.2)
    commands = run(executor, 0.2, 1.5)
    assert executor.state == "HOLDING"
    np.testing.assert_array_equal(np.diff(commands[-20:], axis=0), 0.0)


# ------------------------------------------------------------------ e-stop


def test_estop_latches_stops_within_limits_and_releases_from_the_measured_pose() -> None:
    executor = make(watchdog_timeout_s=5.0)
    before = moving(executor, 0.3)
    executor.set_estop(True, 0.3)
    assert executor.state == "ESTOP"
    assert executor.submit(line_chunk(0.3), 0.31).startswith("e-stop:")
    executor.set_estop(True, 0.31)  # latched: engaging again changes nothing
    during = run(executor, 0.3, 0.6)
    assert_smooth(LIMITS, np.vstack([line(0.0)[0], before, during]), np.zeros(3))
    np.testing.assert_array_equal(during[-1], during[-10])
    assert executor.state == "ESTOP"

    measured = during[-1] + [0.01, -0.01, 0.0]  # the robot came to rest a little elsewhere
    executor.update_measured(measured, 0.6)
    executor.set_estop(False, 0.6)
    assert executor.state == "HOLDING"
    np.testing.assert_array_equal(executor.step(0.6), measured)
    assert executor.submit(line_chunk(0.55), 0.61).startswith("stale:")
    assert executor.submit(line_chunk(0.61), 0.62) is None
    assert executor.state == "EXECUTING"
    assert executor.stats()["estops"] == 1


def test_estop_before_any_state_holds_the_first_measured_pose() -> None:
    executor = make()
    executor.set_estop(True, 0.0)
    assert executor.step(0.0) is None
    executor.update_measured(np.array([0.1, 0.2, 0.03]), 0.01)
    assert executor.state == "ESTOP"
    np.testing.assert_array_equal(executor.step(0.02), [0.1, 0.2, 0.03])


# ------------------------------------------------------------------ handover


def test_reset_to_measured_drops_chunks_and_restarts_at_rest() -> None:
    executor = make(watchdog_timeout_s=5.0)
    moving(executor, 0.3)
    operator_pose = np.array([0.5, 0.4, 0.07])
    executor.update_measured(operator_pose, 0.5)
    executor.reset_to_measured(0.5)
    assert executor.state == "HOLDING"
    assert executor.chunk_remaining_s(0.5) == 0.0
    commands = run(executor, 0.5, 0.6)
    np.testing.assert_array_equal(commands, np.tile(operator_pose, (len(commands), 1)))
    assert executor.submit(line_chunk(0.45), 0.6).startswith("stale:")
    assert executor.submit(constant_chunk(0.6, [-0.5, 0.4, 0.07], horizon=50), 0.6) is None
    after = run(executor, 0.6, 1.5)
    assert_smooth(LIMITS, np.vstack([operator_pose, after]), start_velocity=np.zeros(3))
    speed = np.abs(np.diff(after, axis=0)) / DT
    assert speed[:, 0].max() <= 0.5 * LIMITS.max_velocity[0] + 1e-9  # ramp-in speed
    assert executor.stats()["resets"] == 1


# ------------------------------------------------------------------ refused input


def test_refuses_bad_chunks_with_a_reason() -> None:
    executor = make()
    executor.update_measured(np.zeros(3), 0.0)
    nan = np.zeros((20, 3))
    nan[3, 1] = np.nan
    cases = [
        (ActionChunk.from_step_dt(1.0, nan, 0.02), 1.0, "non-finite position"),
        (ActionChunk.from_step_dt(1.0, np.zeros((20, 2)), 0.02), 1.0, "wrong dof"),
        (ActionChunk(1.0, [0.02, 0.02], np.zeros((2, 3))), 1.0, "bad time"),
        (constant_chunk(2.5, [0, 0, 0]), 1.0, "future stamp"),
        (constant_chunk(0.0, [0, 0, 0]), 1.0, "expired"),
    ]
    for chunk, now, key in cases:
        reason = executor.submit(chunk, now)
        assert reason is not None and reason.startswith(key + ":"), (key, reason)
        assert executor.stats()["last_reject_reason"] == reason
    assert executor.submit(constant_chunk(1.9, [0, 0, 0]), 1.0) is None  # 0.9 s ahead is fine
    assert executor.submit(constant_chunk(1.5, [0, 0, 0]), 1.0).startswith("out of order:")
    stats = executor.stats()
    assert stats["chunks_rejected"] == len(cases) + 1
    assert stats["chunks_accepted"] == 1


def test_measured_input_checks() -> None:
    executor = make()
    with pytest.raises(ValueError, match=r"expected \(3,\)"):
        executor.update_measured(np.zeros(2), 0.0)
    executor.update_measured(np.array([0.0, np.nan, 0.0]), 0.0)
    assert executor.state == "WAITING"
    assert executor.stats()["invalid_measured"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"control_period_s": 0.0}, "control_period_s"),
        ({"strategy": "average"}, "strategy"),
        ({"gripper_indices": [3]}, "gripper_indices"),
        ({"gripper_indices": [1, 1]}, "gripper_indices"),
        ({"watchdog_timeout_s": 0.0}, "watchdog_timeout_s"),
        ({"crossfade_steps": 0}, "crossfade_steps"),
        ({"ensemble_decay": -1.0}, "ensemble_decay"),
        ({"inference_delay_s": -0.1}, "inference_delay_s"),
        ({"ramp_in_max_velocity_scale": 1.5}, "ramp_in_max_velocity_scale"),
        ({"gripper_mode": "average"}, "gripper_mode"),
    ],
)
def test_rejects_bad_parameters(kwargs: dict, message: str) -> None:
    args = {"limits": LIMITS, "control_period_s": DT}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ChunkExecutor(**args)


def test_stats_report_the_configuration_and_counters() -> None:
    executor = make("rtc")
    stats = executor.stats()
    assert stats["strategy"] == "rtc" and stats["state"] == "WAITING"
    for key in (
        "chunks_accepted",
        "chunks_rejected",
        "last_reject_reason",
        "dropped_past_steps",
        "chunk_age_at_arrival_max_s",
        "splices",
        "watchdog_holds",
        "clamps_total",
        "clamps_j1",
        "clamps_gripper",
    ):
        assert key in stats


def test_submit_from_another_thread_while_stepping() -> None:
    executor = make("crossfade")
    executor.update_measured(np.zeros(3), 0.0)
    reasons: list[str | None] = []

    def producer() -> None:
        for k in range(200):
            reasons.append(executor.submit(constant_chunk(k * 0.001, [0.5, -0.5, 0.05]), 0.2))

    thread = threading.Thread(target=producer)
    thread.start()
    commands = run(executor, 0.2, 1.2)
    thread.join()
    assert reasons == [None] * 200  # in order, fresh: every one accepted
    assert executor.stats()["chunks_accepted"] == 200
    assert_smooth(LIMITS, commands)


def test_a_chunk_after_the_watchdog_deadline_resumes_even_before_the_next_tick() -> None:
    executor = make(watchdog_timeout_s=0.3)
    moving(executor, 0.2)
    # No tick ran since 0.2 s; the watchdog deadline (0.3 s) has passed when the chunk arrives.
    assert executor.submit(line_chunk(0.35), 0.36) is None
    stats = executor.stats()
    assert stats["watchdog_holds"] == 1
    assert stats["splices"] == 0 and stats["resumes"] == 2


def test_estop_command_meets_the_held_robot_so_release_does_not_jump() -> None:
    executor = make()
    executor.update_measured(np.zeros(3), 0.0)
    executor.submit(line_chunk(0.0), 0.0)
    run(executor, 0.0, 0.3)
    executor.set_estop(True, 0.3)
    held = np.array([0.05, -0.04, 0.02])  # where the bridge stopped the robot
    commands = []
    for now in ticks(0.3, 1.0):
        commands.append(executor.step(now))
        executor.update_measured(held, now)
    assert_smooth(LIMITS, np.array(commands))
    np.testing.assert_allclose(commands[-1], held, atol=1e-9)
    executor.set_estop(False, 1.0)
    first = executor.step(1.0)
    np.testing.assert_allclose(first, held, atol=1e-9)  # release starts where the stream was
