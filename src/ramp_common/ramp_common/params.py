"""One typed declaration per node parameter: declared, checked, reloaded and documented from it.

A node lists its parameters once, as a tuple of :class:`Param` (name, type, default, unit,
description, bounds or choices, read-only or reloadable), and declares them with
:class:`ParamSet`. That gives each parameter a ROS ``ParameterDescriptor`` (description with the
unit, ``read_only`` unless reloadable, integer / floating-point range, choices as
``additional_constraints``), checks the start-up values (a bad value raises ValueError naming the
parameter, so the node refuses to start), and installs the parameter-change callback: a change
of a reloadable parameter is checked and handed to the node's ``on_change``; any other is refused
with a reason naming the parameter (rclpy itself already refuses ``read_only`` ones:
"Trying to set a read-only parameter: <name>."). ``docs/parameters.md`` is generated from the
same tuples (``python -m ramp_bringup.params_doc``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from ramp_common.limits import JointLimits

TYPES: dict[str, Parameter.Type] = {
    "bool": Parameter.Type.BOOL,
    "int": Parameter.Type.INTEGER,
    "double": Parameter.Type.DOUBLE,
    "string": Parameter.Type.STRING,
    "bool[]": Parameter.Type.BOOL_ARRAY,
    "int[]": Parameter.Type.INTEGER_ARRAY,
    "double[]": Parameter.Type.DOUBLE_ARRAY,
    "string[]": Parameter.Type.STRING_ARRAY,
}
"""Parameter types by the name the specs and the docs use."""

OnChange = Callable[[str, Any], "tuple[bool, str]"]
"""Applies a checked new value of a reloadable parameter: -> (accepted, what happened / why not)."""


def _infer_type(name: str, default: Any) -> str:
    scalar = {bool: "bool", int: "int", float: "double", str: "string"}
    if type(default) in scalar:
        return scalar[type(default)]
    if isinstance(default, (list, tuple)) and default:
        kinds = {scalar.get(type(v)) for v in default}
        if len(kinds) == 1 and None not in kinds:
            return f"{kinds.pop()}[]"
    raise ValueError(f"parameter {name}: give its type (default {default!r} does not say)")


@dataclass(frozen=True)
class Param:
    """One node parameter. ``default`` None = required (the node refuses to start without it)."""

    name: str
    default: Any
    description: str
    unit: str = ""
    """SI unit of the value (or of each element), e.g. 's', 'Hz', 'rad / m'; '' = none."""
    type: str = ""
    """One of :data:`TYPES`; '' = inferred from ``default``."""
    low: float | None = None
    """Inclusive lower bound (numbers; each element of a number array)."""
    high: float | None = None
    """Inclusive upper bound."""
    positive: bool = False
    """Strictly greater than 0 (each element of an array)."""
    choices: tuple[Any, ...] = ()
    """Allowed values (strings or numbers), empty = any."""
    reloadable: bool = False
    """True: may be changed at run time (``ros2 param set``); False: read-only."""

    def __post_init__(self) -> None:
        if not self.type:
            object.__setattr__(self, "type", _infer_type(self.name, self.default))
        if self.type not in TYPES:
            raise ValueError(f"parameter {self.name}: type {self.type!r} not in {list(TYPES)}")

    @property
    def ros_type(self) -> Parameter.Type:
        return TYPES[self.type]

    @property
    def required(self) -> bool:
        return self.default is None

    def constraints(self) -> str:
        """The bounds and choices in words ('' when there are none)."""
        parts = []
        if self.positive:
            parts.append("> 0")
        if self.low is not None:
            parts.append(f">= {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        if self.choices:
            parts.append("one of " + ", ".join(str(c) for c in self.choices))
        return ", ".join(parts)

    def descriptor(self) -> ParameterDescriptor:
        """The ROS descriptor: description (with unit), read_only, range, constraints."""
        text = self.description + (f" [{self.unit}]" if self.unit else "")
        descriptor = ParameterDescriptor(
            description=text,
            read_only=not self.reloadable,
            additional_constraints=self.constraints(),
        )
        if self.low is not None or self.high is not None or self.positive:
            if self.type == "double":
                low = (
                    self.low
                    if self.low is not None
                    else (0.0 if self.positive else -sys.float_info.max)
                )
                high = self.high if self.high is not None else sys.float_info.max
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
                ]
            elif self.type == "int":
                low = self.low if self.low is not None else (1 if self.positive else -(2**63))
                high = self.high if self.high is not None else 2**63 - 1
                descriptor.integer_range = [
                    IntegerRange(from_value=int(low), to_value=int(high), step=0)
                ]
        return descriptor

    def check(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (naming the parameter), or None."""
        values = list(value) if self.type.endswith("[]") else [value]
        for v in values:
            if self.choices and v not in self.choices:
                return f"parameter {self.name}={value!r} must be one of {list(self.choices)}"
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if self.positive and not v > 0:
                return f"parameter {self.name}={value!r} must be > 0"
            if self.low is not None and v < self.low:
                return f"parameter {self.name}={value!r} must be >= {self.low:g}"
            if self.high is not None and v > self.high:
                return f"parameter {self.name}={value!r} must be <= {self.high:g}"
        return None


def adjust(specs: Iterable[Param], **changes: Mapping[str, Any]) -> tuple[Param, ...]:
    """``specs`` with fields changed per name, e.g. ``adjust(S, rate_hz={"default": 10.0})``."""
    out = []
    for spec in specs:
        fields = changes.get(spec.name)
        out.append(replace(spec, **fields) if fields else spec)
    unknown = set(changes) - {s.name for s in out}
    if unknown:
        raise ValueError(f"no parameters {sorted(unknown)} in the spec")
    return tuple(out)


class ParamSet:
    """Declares a node's parameters from their specs and guards changes to them.

    ``values`` holds the current value of every parameter (reloadable ones updated after
    ``on_change`` accepted them). Bad start-up values raise ValueError naming the parameter.
    """

    def __init__(
        self, node: Node, specs: Sequence[Param], on_change: OnChange | None = None
    ) -> None:
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"parameters declared twice: {duplicates}")
        self._node = node
        self._specs: dict[str, Param] = {}
        self._on_change = on_change
        self._declaring = False
        self.values: dict[str, Any] = {}
        self.declare(specs)
        node.add_on_set_parameters_callback(self._on_set_parameters)

    def declare(self, specs: Iterable[Param]) -> None:
        """Declare more parameters (e.g. ones whose defaults depend on an earlier value)."""
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"parameter {spec.name} declared twice")
            self._specs[spec.name] = spec
            # rclpy runs the change callbacks on a declaration too: let it through
            self._declaring = True
            try:
                self.values[spec.name] = self._declare(spec)
            finally:
                self._declaring = False

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def specs(self) -> tuple[Param, ...]:
        return tuple(self._specs.values())

    def _declare(self, spec: Param) -> Any:
        empty_list = isinstance(spec.default, (list, tuple)) and not spec.default
        if spec.required or empty_list:
            self._node.declare_parameter(spec.name, spec.ros_type, spec.descriptor())
        else:
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            self._node.declare_parameter(spec.name, default, spec.descriptor())
        try:
            value = self._node.get_parameter(spec.name).value
        except ParameterUninitializedException:
            if empty_list:
                return []
            raise ValueError(
                f"{self._node.get_name()}: required parameter '{spec.name}' is not set "
                f"({spec.description})"
            ) from None
        if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
            value = list(value)
        reason = spec.check(value)
        if reason is not None:
            raise ValueError(f"{self._node.get_name()}: {reason}")
        return value

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        if self._declaring:
            return SetParametersResult(successful=True)
        for param in params:
            spec = self._specs.get(param.name)
            if spec is None:
                continue  # not ours (e.g. use_sim_time): rclpy's own rules apply
            if not spec.reloadable:
                return SetParametersResult(
                    successful=False,
                    reason=f"parameter {param.name} is read-only: restart the node to change it",
                )
            reason = spec.check(param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        messages = []
        for param in params:
            spec = self._specs.get(param.name)
            if spec is None:
                continue
            value = list(param.value) if spec.type.endswith("[]") else param.value
            message = f"{param.name} = {value!r}"
            if self._on_change is not None:
                ok, message = self._on_change(param.name, value)
                if not ok:
                    return SetParametersResult(successful=False, reason=message)
            self.values[param.name] = value
            messages.append(message)
        return SetParametersResult(successful=True, reason="; ".join(messages))


LIMIT_PARAMS = ("position_lower", "position_upper", "max_velocity", "max_acceleration")
"""The joint-limit parameters, in ``JointLimits.from_lists`` order."""


def joint_limit_params(
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    max_velocity: Sequence[float] | None = None,
    max_acceleration: Sequence[float] | None = None,
) -> tuple[Param, ...]:
    """The joint-limit block (one value per joint, in ``joint_names`` order); None = required."""

    def spec(name: str, default: Sequence[float] | None, text: str, unit: str) -> Param:
        value = None if default is None else [float(v) for v in default]
        return Param(name, value, text, unit=unit, type="double[]")

    return (
        spec("position_lower", lower, "Lower position limit per joint.", "rad / m"),
        spec("position_upper", upper, "Upper position limit per joint.", "rad / m"),
        spec("max_velocity", max_velocity, "Speed limit per joint.", "rad/s / m/s"),
        spec(
            "max_acceleration", max_acceleration, "Acceleration limit per joint.", "rad/s^2 / m/s^2"
        ),
    )


def joint_limits(params: ParamSet, names: Sequence[str]) -> JointLimits:
    """The validated :class:`JointLimits` of a node's joint-limit parameters."""
    return JointLimits.from_lists(names, *(params[name] for name in LIMIT_PARAMS))


def control_rt_priority_param() -> Param:
    """``control_rt_priority``: SCHED_FIFO priority of a node's control-loop thread (0 = off).

    See :class:`ramp_common.rate_loop.RateLoop`; docs/latency.md has the measured effect.
    """
    return Param(
        "control_rt_priority",
        0,
        "SCHED_FIFO priority of the control-loop thread, 1-99 (0 = normal scheduling). Needs "
        "CAP_SYS_NICE or an rtprio limit; refused -> normal priority and a warning.",
        low=0,
        high=99,
    )


CONTROL_PHASE_EXECUTOR_S = 0.0
CONTROL_PHASE_ARBITER_S = 0.001
CONTROL_PHASE_BRIDGE_S = 0.002
"""Default tick phases of the control loops of one robot computer (s on the monotonic clock's
grid, ``ramp_common.rate_loop``): the chunk executor publishes ``ramp/policy_command`` at 0, the
arbiter takes it and publishes ``joint_command`` 1 ms later, the bridge takes that 1 ms later and
publishes ``joint_states``, which the executor takes at its next tick. 1 ms covers the
executor's publish and one local DDS hop while the loops run at SCHED_FIFO or the cores have
room (the arbiter's ``hop_policy_arrival`` p50 0.9-1.4 ms on the 2-core development machine);
raise the followers' phases when that hop's p99 shows more (docs/latency.md, "Round 6")."""


def control_phase_param(default_s: float) -> Param:
    """``control_phase_s``: where in its period a node's control loop ticks.

    See :class:`ramp_common.rate_loop.RateLoop`; docs/latency.md has the measured effect.
    """
    return Param(
        "control_phase_s",
        float(default_s),
        "Phase of the control-loop ticks on the monotonic clock's grid of the control period "
        "(taken modulo the period). Followers of a command stream on one machine tick a DDS hop "
        f"after their sender: executor {CONTROL_PHASE_EXECUTOR_S:g}, arbiter "
        f"{CONTROL_PHASE_ARBITER_S:g}, bridge {CONTROL_PHASE_BRIDGE_S:g}.",
        unit="s",
        low=0.0,
        high=1.0,
    )


def playout_params() -> tuple[Param, Param]:
    """``playout_delay_s`` and ``max_playout_delay_s``: how far behind its fastest delivery a
    follower (the arbiter, a bridge's safety filter) replays the command stream it follows.

    See :class:`ramp_common.stream.TargetStream`; docs/reliability.md (Finding 11) has the
    measured effect.
    """
    return (
        Param(
            "playout_delay_s",
            0.005,
            "The command stream followed is replayed at least this far behind its fastest "
            "delivery, by the commands' stamps (one sender period: no extrapolation between "
            "on-time commands).",
            unit="s",
            low=0.0,
        ),
        Param(
            "max_playout_delay_s",
            0.03,
            "The playout delay adapts up to this, to cover 98 % of the measured delivery jitter "
            "(late commands then change nothing); each ms of it is a ms of command latency. "
            "<= playout_delay_s: fixed delay.",
            unit="s",
            low=0.0,
        ),
    )


POLICY_PIPELINE_NODES = ("camera_node", "worldmodel_node", "policy_node")
"""The nodes the policy's commands depend on (``hold_on_exit_of``'s default)."""


def hold_on_exit_param(effect: str) -> Param:
    """``hold_on_exit_of``: nodes whose announced exit (``ramp_common.node_exits``) makes this
    node hold at once; ``effect`` says what it does then."""
    return Param(
        "hold_on_exit_of",
        list(POLICY_PIPELINE_NODES),
        f"Nodes whose exit (announced by the supervisor on ramp/node_exited) {effect} "
        "Empty: the watchdogs only.",
        type="string[]",
    )
