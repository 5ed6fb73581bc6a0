"""Teleop core (ROS-free): leader mirroring, gamepad jogging, button edges, the key map and the
terminal key reader (on a pseudo-terminal, settings restored).
"""

from __future__ import annotations

import os
import termios

import numpy as np
import pytest

from ramp_common.limits import JointLimits
from ramp_hilr_teleop.core.keyboard import (
    KEY_BINDINGS,
    TerminalKeys,
    action_for_key,
    help_text,
)
from ramp_hilr_teleop.core.teleop import (
    ButtonEdges,
    JogMapping,
    JogTeleop,
    LeaderMapping,
    LeaderTeleop,
    TeleopInputError,
)

JOINTS = ["joint1", "joint2", "gripper"]
LIMITS = JointLimits.from_lists(
    JOINTS, [-1.0, -1.0, 0.0], [1.0, 1.0, 0.08], [2.0, 1.0, 0.2], [10.0, 10.0, 1.0]
)


def make_mapping(**overrides) -> LeaderMapping:
    params = {
        "joint_names": JOINTS,
        "leader_joint_names": ["l1", "l2", "lgrip"],
        "scale": [1.0, -1.0, 0.5],
        "offset": [0.1, 0.0, 0.0],
    }
    params.update(overrides)
    return LeaderMapping.from_params(**params)


def test_leader_mapping_mirrors_with_scale_offset_and_names() -> None:
    mapping = make_mapping()
    target = mapping.map(["lgrip", "l2", "l1", "extra"], [0.06, 0.3, 0.2, 9.0])
    np.testing.assert_allclose(target, [0.3, -0.3, 0.03])
    np.testing.assert_array_equal(mapping.mask, [True, True, True])


def test_leader_mapping_leaves_unmapped_joints_out() -> None:
    mapping = make_mapping(leader_joint_names=["l1", "", "lgrip"])
    target = mapping.map(["l1", "lgrip"], [0.2, 0.04])
    np.testing.assert_array_equal(mapping.mask, [True, False, True])
    np.testing.assert_allclose(target, [0.3, 0.0, 0.02])


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"scale": [1.0, 1.0]}, "scale has 2 entries for 3 joints"),
        ({"offset": [0.0] * 4}, "offset has 4 entries"),
        ({"leader_joint_names": ["a", "a", "b"]}, r"maps \['a'\] to several joints"),
        ({"leader_joint_names": ["", "", ""]}, "maps no leader joint"),
        ({"scale": [1.0, 0.0, 1.0]}, r"scale is 0 for joints \['joint2'\]"),
        ({"offset": [0.0, float("nan"), 0.0]}, r"offset is not finite for joints \['joint2'\]"),
        ({"joint_names": []}, "joint_names is empty"),
    ],
)
def test_leader_mapping_configuration_errors_name_the_problem(overrides, match) -> None:
    with pytest.raises(TeleopInputError, match=match):
        make_mapping(**overrides)


def test_leader_mapping_input_errors_name_the_joint() -> None:
    mapping = make_mapping()
    with pytest.raises(TeleopInputError, match=r"lacks joints \['lgrip'\]"):
        mapping.map(["l1", "l2"], [0.0, 0.0])
    with pytest.raises(TeleopInputError, match=r"not finite for joints \['l2'\]"):
        mapping.map(["l1", "l2", "lgrip"], [0.0, float("inf"), 0.0])
    with pytest.raises(TeleopInputError, match="3 names but 2 positions"):
        mapping.map(["l1", "l2", "lgrip"], [0.0, 0.0])


def test_leader_teleop_clips_into_the_range_and_goes_silent_with_the_leader() -> None:
    teleop = LeaderTeleop(make_mapping(), input_timeout_s=0.1, limits=LIMITS)
    assert teleop.command(0.0) is None
    teleop.on_leader(["l1", "l2", "lgrip"], [5.0, 0.2, 0.5], now=1.0)
    np.testing.assert_allclose(teleop.command(1.05), [1.0, -0.2, 0.08])
    assert teleop.command(1.2) is None  # leader silent longer than the timeout
    with pytest.raises(TeleopInputError):
        teleop.on_leader(["l1"], [0.0], now=1.3)
    assert teleop.command(1.3) is None  # a bad message does not refresh the command


def test_button_edges_report_presses_once() -> None:
    edges = ButtonEdges()
    assert edges.update([0, 1]) == {1}
    assert edges.update([0, 1]) == set()
    assert edges.update([1, 0, 1]) == {0, 2}
    assert edges.update([]) == set()
    assert edges.update([1]) == {0}


def make_jog(timeout: float = 0.5) -> JogTeleop:
    return JogTeleop(LIMITS, JogMapping(deadzone=0.1), speed_fraction=0.5, input_timeout_s=timeout)


def joy(axis: float = 0.0, next_button: int = 0, previous_button: int = 0):
    axes = [0.0, axis]
    buttons = [0, 0, 0, 0, previous_button, next_button]
    return axes, buttons


def test_jog_gives_no_command_while_idle_and_not_intervening() -> None:
    jog = make_jog()
    assert jog.command(0.0, 0.01) is None  # no measured pose yet
    jog.on_measured(np.array([0.2, 0.1, 0.04]))
    jog.on_joy(*joy(axis=0.05), now=0.0)  # inside the deadzone
    assert not jog.jogging(0.0)
    assert jog.command(0.0, 0.01) is None


def test_jog_starts_at_the_measured_pose_and_integrates_the_selected_joint() -> None:
    jog = make_jog()
    jog.on_measured(np.array([0.2, 0.1, 0.04]))
    assert jog.on_joy(*joy(next_button=1), now=0.0) == "joint2"
    jog.on_joy(*joy(axis=1.0), now=0.0)  # full deflection: 0.5 * 1.0 rad/s on joint2
    first = jog.command(0.0, 0.01)
    np.testing.assert_allclose(first, [0.2, 0.1 + 0.005, 0.04])
    for _ in range(9):
        out = jog.command(0.0, 0.01)
    np.testing.assert_allclose(out, [0.2, 0.15, 0.04])
    # The robot moving meanwhile does not move the jog target (it integrates from its start).
    jog.on_measured(np.array([0.5, 0.5, 0.0]))
    np.testing.assert_allclose(jog.command(0.0, 0.01), [0.2, 0.155, 0.04])


def test_jog_stops_when_the_gamepad_goes_silent_and_resyncs_when_idle() -> None:
    jog = make_jog(timeout=0.2)
    jog.on_measured(np.array([0.0, 0.0, 0.04]))
    jog.on_joy(*joy(axis=-1.0), now=0.0)
    assert jog.command(0.1, 0.01)[0] == pytest.approx(-0.01)
    assert jog.command(0.5, 0.01) is None  # silent and not intervening: no command
    jog.on_measured(np.array([0.3, 0.0, 0.04]))
    jog.set_intervening(True)
    np.testing.assert_allclose(jog.command(0.6, 0.01), [0.3, 0.0, 0.04])  # from the robot
    np.testing.assert_allclose(jog.command(0.7, 0.01), [0.3, 0.0, 0.04])  # holds while in control


def test_jog_clips_into_the_range_and_wraps_the_joint_selection() -> None:
    jog = make_jog()
    jog.on_measured(np.array([0.0, 0.0, 0.079]))
    assert jog.on_joy(*joy(previous_button=1), now=0.0) == "gripper"
    jog.on_joy(*joy(axis=1.0), now=0.0)
    for _ in range(50):
        out = jog.command(0.0, 0.01)
    assert out[2] == pytest.approx(0.08)
    assert jog.on_joy(*joy(axis=1.0, next_button=1), now=0.0) == "joint1"


def test_jog_rejects_bad_configuration_and_measurements() -> None:
    with pytest.raises(ValueError, match="speed fraction"):
        JogTeleop(LIMITS, JogMapping(), speed_fraction=0.0, input_timeout_s=0.1)
    with pytest.raises(ValueError, match="deadzone"):
        JogMapping(deadzone=1.0)
    with pytest.raises(ValueError, match="jog_axis"):
        JogMapping(jog_axis=-1)
    with pytest.raises(TeleopInputError, match="unusable"):
        make_jog().on_measured(np.array([0.0, np.nan, 0.0]))


def test_key_map_covers_the_operator_actions() -> None:
    expected = {
        "t": "takeover",
        "h": "handback",
        "p": "pause_toggle",
        "s": "episode_start",
        "y": "episode_success",
        "n": "episode_failure",
        "c": "episode_cancel",
        " ": "estop",
    }
    for key, action in expected.items():
        assert action_for_key(key) == action
    assert action_for_key("T") == "takeover"
    assert action_for_key("x") is None
    assert len({b.key for b in KEY_BINDINGS}) == len(KEY_BINDINGS)
    assert "space" in help_text() and "E-STOP" in help_text()


def test_terminal_keys_read_single_keys_and_restore_the_terminal() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with TerminalKeys(slave) as keys:
            during = termios.tcgetattr(slave)
            assert not during[3] & termios.ICANON and not during[3] & termios.ECHO
            assert during[3] & termios.ISIG, "Ctrl-C must still interrupt"
            assert keys.read_key(0.01) is None
            os.write(master, b"t ")
            assert keys.read_key(1.0) == "t"
            assert keys.read_key(1.0) == " "
        assert termios.tcgetattr(slave) == before
        keys.restore()  # idempotent
    finally:
        os.close(master)
        os.close(slave)
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(ValueError, match="not a terminal"):
            TerminalKeys(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
