"""Tests of ramp_robots.core.sim (no ROS): the scene, servo tracking, limits, cameras, the task."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ramp_robots.core.driver import DriverError
from ramp_robots.core.sim import PUBLIC_JOINTS, MujocoSimDriver, default_mjcf_path

# Joint ranges of the AgileX PiPER (rad) and the gripper's total opening (m).
PIPER_LOWER = [-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0]
PIPER_UPPER = [2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07]
# Gripper pointing down with the tool centre point 2.5 cm above the table at x = 0.36 m.
LOW_POSE = [0.0, 0.969, -1.52, 0.0, 0.918, 0.0, 0.04]


@pytest.fixture(scope="module")
def sim() -> MujocoSimDriver:
    driver = MujocoSimDriver(camera_width=160, camera_height=120)
    yield driver
    driver.disconnect()


@pytest.fixture(autouse=True)
def fresh(sim: MujocoSimDriver) -> None:
    sim.disconnect()
    sim.reset(seed=0)


def settle(sim: MujocoSimDriver, target: list[float], seconds: float = 1.0) -> np.ndarray:
    sim.send(np.array(target))
    sim.step(round(seconds / sim.physics_dt))
    return sim.read_state().positions


def test_scene_has_the_piper_joints_limits_and_cameras(sim: MujocoSimDriver) -> None:
    assert default_mjcf_path().name == "piper_scene.xml"
    assert sim.joint_names == list(PUBLIC_JOINTS)
    lower, upper = sim.joint_ranges()
    np.testing.assert_allclose(lower, PIPER_LOWER)
    np.testing.assert_allclose(upper, PIPER_UPPER)
    assert sim.camera_names == ["front", "wrist"]


def test_home_is_a_ready_pose_within_limits_above_the_table(sim: MujocoSimDriver) -> None:
    home = sim.home_positions
    lower, upper = sim.joint_ranges()
    assert np.all(home > lower) and np.all(home < upper)
    state = sim.read_state()
    np.testing.assert_allclose(state.positions, home, atol=1e-9)
    assert state.positions.shape == state.velocities.shape == state.efforts.shape == (7,)
    tcp = sim.ee_pose().position
    assert 0.2 < tcp[0] < 0.5 and 0.05 < tcp[2] < 0.3, tcp
    # Holding home: gravity compensation and servos keep it there.
    np.testing.assert_allclose(settle(sim, list(home)), home, atol=2e-3)


def test_servos_follow_a_target_within_tolerance(sim: MujocoSimDriver) -> None:
    target = [0.5, 1.0, -1.2, 0.4, -0.5, 1.0, 0.02]
    positions = settle(sim, target, seconds=1.5)
    np.testing.assert_allclose(positions, target, atol=5e-3)
    assert np.all(np.abs(sim.read_state().velocities) < 0.05)


def test_gripper_value_is_the_total_opening_of_both_fingers(sim: MujocoSimDriver) -> None:
    home = list(sim.home_positions)
    opened = settle(sim, [*home[:6], 0.07], seconds=0.5)
    assert opened[6] == pytest.approx(0.07, abs=2e-3)
    closed = settle(sim, [*home[:6], 0.0], seconds=0.5)
    assert closed[6] == pytest.approx(0.0, abs=2e-3)


def test_joints_stay_within_their_range_for_targets_beyond_it(sim: MujocoSimDriver) -> None:
    lower, upper = sim.joint_ranges()
    beyond = list(np.array(PIPER_UPPER) + 0.5)
    beyond[1] = 1.6  # joint2 at its upper limit would put the arm through the table
    positions = settle(sim, beyond, seconds=1.5)
    assert np.all(positions <= upper + 1e-3), positions - upper
    assert np.all(positions >= lower - 1e-3)


def test_joint1_turns_the_arm_to_the_left(sim: MujocoSimDriver) -> None:
    home = sim.home_positions
    turned = home.copy()
    turned[0] = 0.5
    settle(sim, list(turned))
    tcp = sim.ee_pose().position
    assert tcp[1] > 0.1, tcp


def test_render_gives_rgb_frames_of_the_configured_size(sim: MujocoSimDriver) -> None:
    stamp, front = sim.render("front")
    assert isinstance(stamp, float) and stamp > 0
    assert front.shape == (120, 160, 3) and front.dtype == np.uint8
    assert front.std() > 10, "front image is nearly uniform"
    stamp2, frames = sim.render_cameras()
    assert set(frames) == {"front", "wrist"}
    assert stamp2 >= stamp
    assert frames["wrist"].shape == (120, 160, 3)
    assert np.abs(frames["wrist"].astype(int) - frames["front"].astype(int)).mean() > 10
    # The cube is red: some clearly red pixels in the front view.
    r, g, b = (frames["front"][..., i].astype(int) for i in range(3))
    assert np.count_nonzero((r > 150) & (g < 80) & (b < 80)) > 5


def test_render_shows_the_arm_moving(sim: MujocoSimDriver) -> None:
    _, before = sim.render("front")
    turned = sim.home_positions
    turned[0] = 1.0
    settle(sim, list(turned))
    _, after = sim.render("front")
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 1


def test_unknown_camera_and_joint_are_refused_by_name(sim: MujocoSimDriver) -> None:
    with pytest.raises(DriverError, match="no camera 'top'"):
        sim.render("top")
    with pytest.raises(DriverError, match="unknown joints \\['joint7'\\]"):
        MujocoSimDriver(joint_names=["joint1", "joint7"])
    with pytest.raises(DriverError, match="does not exist"):
        MujocoSimDriver(mjcf_path="/nonexistent/scene.xml")
    with pytest.raises(DriverError, match="exceeds the offscreen buffer"):
        MujocoSimDriver(camera_width=4000)


def test_send_refuses_bad_targets_and_keeps_the_previous_one(sim: MujocoSimDriver) -> None:
    home = sim.home_positions
    with pytest.raises(ValueError, match="expected \\(7,\\)"):
        sim.send(np.zeros(6))
    bad = home.copy()
    bad[2] = np.nan
    with pytest.raises(ValueError, match="joint3"):
        sim.send(bad)
    sim.step(200)
    np.testing.assert_allclose(sim.read_state().positions, home, atol=2e-3)


def test_a_subset_of_joints_in_another_order(sim: MujocoSimDriver) -> None:
    driver = MujocoSimDriver(joint_names=["gripper", "joint1"], camera_names=[])
    try:
        state = driver.read_state()
        np.testing.assert_allclose(state.positions, [0.04, 0.0], atol=1e-9)
        driver.send(np.array([0.01, 0.3]))
        driver.step(500)
        np.testing.assert_allclose(driver.read_state().positions, [0.01, 0.3], atol=5e-3)
    finally:
        driver.disconnect()


def test_task_success_when_the_cube_rests_in_the_goal(sim: MujocoSimDriver) -> None:
    assert not sim.task_success()
    goal = sim.goal_position()
    half = sim.cube_half_size
    sim.set_cube_pose([goal[0] + 0.03, goal[1] - 0.03, half], yaw=0.4)
    sim.step(100)
    assert sim.task_success()
    sim.set_cube_pose([goal[0], goal[1], 0.3])  # above the goal, not resting in it
    assert not sim.task_success()
    extent = sim.goal_half_extent()
    sim.set_cube_pose([goal[0] + extent[0] + 0.01, goal[1], half])  # just outside
    sim.step(50)
    assert not sim.task_success()


def test_reset_homes_the_arm_and_places_the_cube_by_seed(sim: MujocoSimDriver) -> None:
    settle(sim, [1.0, 1.0, -1.0, 0.5, 0.5, 0.5, 0.01], seconds=0.5)
    sim.reset(seed=7)
    np.testing.assert_allclose(sim.read_state().positions, sim.home_positions, atol=1e-9)
    first = sim.cube_pose()
    sim.reset(seed=7)
    np.testing.assert_allclose(sim.cube_pose().position, first.position)
    np.testing.assert_allclose(sim.cube_pose().quaternion, first.quaternion)
    sim.reset(seed=8)
    assert np.linalg.norm(sim.cube_pose().position - first.position) > 1e-4
    start = np.array([0.36, 0.12])
    for seed in range(5):
        sim.reset(seed)
        assert np.all(np.abs(sim.cube_pose().position[:2] - start) <= 0.02 + 1e-9)
        assert not sim.task_success()
    # The arm stays home after the reset (its target was reset too).
    sim.step(250)
    np.testing.assert_allclose(sim.read_state().positions, sim.home_positions, atol=2e-3)


def test_the_arm_pushes_the_cube(sim: MujocoSimDriver) -> None:
    low = np.array(LOW_POSE)
    low[0] = -0.3
    settle(sim, list(low), seconds=1.5)
    assert sim.ee_pose().position[2] < 0.04
    radius = 0.36
    sim.set_cube_pose([radius * np.cos(0.15), radius * np.sin(0.15), sim.cube_half_size])
    before = sim.cube_pose().position
    low[0] = 0.6
    settle(sim, list(low), seconds=1.5)
    after = sim.cube_pose().position
    assert np.linalg.norm(after[:2] - before[:2]) > 0.03, (before, after)
    assert after[2] < 0.1, "cube left the table"


def test_real_time_thread_follows_send_and_reports_stats(sim: MujocoSimDriver) -> None:
    target = sim.home_positions
    target[0] = 0.4
    sim.connect()
    sim.connect()  # no-op while running
    try:
        with pytest.raises(DriverError, match="not allowed"):
            sim.step()
        sim.send(target)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and sim.read_state().positions[0] < 0.35:
            time.sleep(0.05)
        state = sim.read_state()
        assert state.positions[0] > 0.35
        assert abs(state.stamp - time.time()) < 1.0
        stats = sim.physics_stats()
        assert stats.steps > 0 and stats.sim_time_s == pytest.approx(stats.steps * 0.002)
        _, frame = sim.render("wrist")  # renders while physics runs
        assert frame.shape == (120, 160, 3)
    finally:
        sim.disconnect()
        sim.disconnect()
    steps = sim.physics_stats().steps
    time.sleep(0.05)
    assert sim.physics_stats().steps == steps, "physics still running after disconnect"
