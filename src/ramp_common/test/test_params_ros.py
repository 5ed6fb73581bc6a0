"""ramp_common.params: declaring from specs (descriptors, start-up checks), the change guard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from ramp_common.params import Param, ParamSet, adjust, joint_limit_params, joint_limits

SPECS = (
    Param("joint_names", None, "Joint order.", type="string[]"),
    *joint_limit_params(),
    Param("rate_hz", 10.0, "Loop rate.", unit="Hz", positive=True),
    Param("mode", "a", "Mode.", choices=("a", "b")),
    Param("gain", 0.5, "A gain.", low=0.0, high=1.0, reloadable=True),
    Param("count", 3, "A count.", low=1, high=5),
    Param("tags", [], "Free tags.", type="string[]"),
)
LIMITS = {
    "joint_names": ["a", "b"],
    "position_lower": [-1.0, -2.0],
    "position_upper": [1.0, 2.0],
    "max_velocity": [1.0, 1.0],
    "max_acceleration": [5.0, 5.0],
}


@pytest.fixture
def context() -> Iterator[Context]:
    ctx = Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.shutdown(context=ctx)


def _node(context: Context, **values) -> Node:
    overrides = [Parameter(k, value=v) for k, v in {**LIMITS, **values}.items()]
    return Node("params_test", context=context, parameter_overrides=overrides)


def test_declares_with_descriptors_and_values(context: Context) -> None:
    node = _node(context, rate_hz=20.0)
    params = ParamSet(node, SPECS)
    assert params["rate_hz"] == 20.0 and params["mode"] == "a" and params["tags"] == []
    limits = joint_limits(params, params["joint_names"])
    assert list(limits.upper) == [1.0, 2.0]
    rate = node.describe_parameter("rate_hz")
    assert rate.read_only and "[Hz]" in rate.description and "> 0" in rate.additional_constraints
    gain = node.describe_parameter("gain")
    assert not gain.read_only
    assert gain.floating_point_range[0].from_value == 0.0
    assert gain.floating_point_range[0].to_value == 1.0
    assert node.describe_parameter("count").integer_range[0].to_value == 5
    assert "one of a, b" in node.describe_parameter("mode").additional_constraints
    node.destroy_node()


def test_changes_only_reloadable_ones(context: Context) -> None:
    node = _node(context)
    changes = []

    def on_change(name, value):
        changes.append((name, value))
        return True, f"{name} applied"

    params = ParamSet(node, SPECS, on_change=on_change)
    [result] = node.set_parameters([Parameter("rate_hz", value=50.0)])
    assert not result.successful and "rate_hz" in result.reason
    assert node.get_parameter("rate_hz").value == 10.0
    [result] = node.set_parameters([Parameter("gain", value=2.0)])
    assert not result.successful and "gain" in result.reason
    [result] = node.set_parameters([Parameter("gain", value=0.25)])
    assert result.successful, result.reason
    assert changes == [("gain", 0.25)]
    assert params["gain"] == 0.25 and node.get_parameter("gain").value == 0.25
    node.destroy_node()


def test_on_change_can_refuse(context: Context) -> None:
    node = _node(context)
    params = ParamSet(node, SPECS, on_change=lambda n, v: (False, f"{n}: not now"))
    [result] = node.set_parameters([Parameter("gain", value=0.25)])
    assert not result.successful and result.reason == "gain: not now"
    assert params["gain"] == 0.5 and node.get_parameter("gain").value == 0.5
    node.destroy_node()


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"rate_hz": 0.0}, "rate_hz"),
        ({"mode": "c"}, "mode"),
        ({"count": 9}, "count"),
    ],
)
def test_bad_start_up_values_name_the_parameter(context: Context, values, match) -> None:
    node = _node(context, **values)
    with pytest.raises(Exception, match=match):
        ParamSet(node, SPECS)
    node.destroy_node()


def test_required_parameter_missing(context: Context) -> None:
    node = Node("params_test", context=context)
    with pytest.raises(ValueError, match="joint_names"):
        ParamSet(node, SPECS)
    node.destroy_node()


def test_declared_in_steps_and_adjusted(context: Context) -> None:
    node = _node(context)
    params = ParamSet(node, SPECS[:1])
    params.declare(SPECS[1:6])
    assert "rate_hz" in params.values
    with pytest.raises(ValueError, match="twice"):
        params.declare(SPECS[:1])
    changed = adjust(SPECS, rate_hz={"default": 15.0})
    assert [s.default for s in changed if s.name == "rate_hz"] == [15.0]
    with pytest.raises(ValueError, match="nope"):
        adjust(SPECS, nope={"default": 1})
    node.destroy_node()
