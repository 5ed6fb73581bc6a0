"""teleop_node: operator devices -> ``ramp/operator_command``, operator keys -> services.

Thin rclpy adapter over :mod:`ramp_hilr_teleop.core.teleop` and
:mod:`ramp_hilr_teleop.core.keyboard`. ``mode`` picks the device that drives the command:

- ``leader``: ``leader/joint_states`` (sensor_msgs/JointState from a leader arm or any device,
  e.g. G1 arm targets from an XR source) mirrored with per-joint ``scale`` / ``offset`` and the
  ``leader_joint_names`` -> ``joint_names`` mapping. Robot joints without a leader joint are
  left out of the command (the arbiter holds them).
- ``joy``: ``joy`` (sensor_msgs/Joy) jogs the selected joint, starting from the measured
  ``joint_states``; joint space only (no Cartesian jogging: no kinematic model here).
- ``keyboard_only``: no command; keys only.

Publishes ``ramp/operator_command`` (JointState, positions in robot joint order, stamp = wall
time) at ``rate_hz`` while the device gives an input (on its own thread with absolute deadlines),
and forwards every ``joy`` message to ``ramp/operator_joy`` (the arbiter's takeover buttons).

Keys (when ``keyboard`` is true and stdin is a terminal; the terminal is restored on exit):
t takeover, h handback, p pause/resume, s episode start, y stop success, n stop failure,
c cancel, space e-stop, r e-stop release, ? help. They call ``ramp/takeover``, ``ramp/pause``,
``ramp/episode/{start,stop,cancel}`` and ``ramp/estop``.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import MessageError, joint_state_positions, sec_to_stamp
from ramp_common.diagnostics import OK, WARN, DiagnosticsPublisher, NodeHealth, RateMeter
from ramp_common.limits import JointLimits
from ramp_common.node_tools import LogOnce, run_node
from ramp_common.params import Param, ParamSet, joint_limit_params, joint_limits
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ramp_common.rate_loop import RateLoop
from ramp_hilr_teleop.core.keyboard import TerminalKeys, action_for_key, help_text
from ramp_hilr_teleop.core.teleop import (
    JogMapping,
    JogTeleop,
    LeaderMapping,
    LeaderTeleop,
    TeleopInputError,
)

MODES = ("leader", "joy", "keyboard_only")

# action -> (service type, service name, request data or None for Trigger)
SERVICE_ACTIONS: dict[str, tuple[type, str, bool | None]] = {
    "takeover": (SetBool, "ramp/takeover", True),
    "handback": (SetBool, "ramp/takeover", False),
    "episode_start": (Trigger, "ramp/episode/start", None),
    "episode_success": (SetBool, "ramp/episode/stop", True),
    "episode_failure": (SetBool, "ramp/episode/stop", False),
    "episode_cancel": (Trigger, "ramp/episode/cancel", None),
    "estop": (SetBool, "ramp/estop", True),
    "estop_release": (SetBool, "ramp/estop", False),
}


COMMON_PARAMS: tuple[Param, ...] = (
    Param("mode", "leader", "Operator device.", choices=MODES),
    Param("rate_hz", 100.0, "ramp/operator_command rate.", unit="Hz", positive=True),
    Param(
        "input_timeout_s", 0.2, "Device silent this long -> no command.", unit="s", positive=True
    ),
    Param("keyboard", True, "Read operator keys when stdin is a terminal."),
    Param("forward_joy", True, "Republish joy on ramp/operator_joy (buttons)."),
)
ROBOT_PARAMS: tuple[Param, ...] = (
    Param("joint_names", None, "Robot joint order (leader and joy modes).", type="string[]"),
    *joint_limit_params(),
)
JOY_PARAMS: tuple[Param, ...] = (
    Param("joy_jog_axis", 1, "joy mode: joy axis that jogs."),
    Param("joy_next_joint_button", 5, "joy mode: joy button, next joint."),
    Param("joy_previous_joint_button", 4, "joy mode: joy button, previous joint."),
    Param("joy_deadzone", 0.1, "joy mode: joy axis deadzone.", low=0.0, high=1.0),
    Param(
        "jog_speed",
        0.25,
        "joy mode: jog speed at full deflection, as a fraction of the velocity limit.",
        positive=True,
    ),
)


def leader_params(joint_names: Sequence[str]) -> tuple[Param, ...]:
    """Leader mode: the leader-to-robot mapping, defaults for these robot joints."""
    n = len(joint_names)
    return (
        Param(
            "leader_joint_names",
            list(joint_names),
            "leader mode: leader joint mirrored onto each robot joint ('' = none; "
            "default: joint_names).",
            type="string[]",
        ),
        Param(
            "scale",
            [1.0] * n,
            "leader mode: robot = offset + scale * leader (default: 1 per joint).",
            type="double[]",
        ),
        Param(
            "offset",
            [0.0] * n,
            "leader mode: robot = offset + scale * leader (default: 0 per joint).",
            unit="rad / m",
            type="double[]",
        ),
    )


PARAMS: tuple[Param, ...] = (*COMMON_PARAMS, *ROBOT_PARAMS, *leader_params(()), *JOY_PARAMS)
"""Every parameter (the ones a mode does not use are not declared)."""


class TeleopNode(Node):
    """Operator input node (see the module docstring)."""

    def __init__(self, node_name: str = "teleop_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = p = ParamSet(self, COMMON_PARAMS)
        mode = p["mode"]
        rate = float(p["rate_hz"])
        input_timeout = float(p["input_timeout_s"])
        use_keyboard = bool(p["keyboard"])
        forward_joy = bool(p["forward_joy"])
        self._mode = mode
        self._period = 1.0 / rate
        self._names: list[str] = []
        self._leader: LeaderTeleop | None = None
        self._jog: JogTeleop | None = None
        if mode == "leader":
            self._leader = self._make_leader(input_timeout)
        elif mode == "joy":
            self._jog = self._make_jog(input_timeout)
        self._health = NodeHealth()
        self._health.set_value("mode", mode)
        self._log_once = LogOnce(self)
        self._command_rate = RateMeter()
        self._arbiter_state = ""
        group = ReentrantCallbackGroup()
        self._joy_pub = self.create_publisher(Joy, "ramp/operator_joy", 10) if forward_joy else None
        self.create_subscription(Joy, "joy", self._on_joy, 10, callback_group=group)
        self.create_subscription(
            String, "ramp/arbiter_state", self._on_arbiter_state, LATCHED_QOS, callback_group=group
        )
        self.create_subscription(
            Bool, "ramp/intervention", self._on_intervention, LATCHED_QOS, callback_group=group
        )
        if self._jog is not None:
            self.create_subscription(
                JointState, "joint_states", self._on_joint_state, SENSOR_QOS, callback_group=group
            )
        if self._leader is not None:
            self.create_subscription(
                JointState, "leader/joint_states", self._on_leader, SENSOR_QOS, callback_group=group
            )
        self._service_clients = {
            name: self.create_client(srv_type, name, callback_group=group)
            for srv_type, name, _ in SERVICE_ACTIONS.values()
        }
        self._service_clients["ramp/pause"] = self.create_client(
            SetBool, "ramp/pause", callback_group=group
        )
        self._command_pub = self.create_publisher(JointState, "ramp/operator_command", COMMAND_QOS)
        self._loop: RateLoop | None = None
        if mode != "keyboard_only":
            self._loop = RateLoop(self._period, self._tick, name="teleop_command")
            self._loop.start()

        self._stop_keys = threading.Event()
        self._keys_thread: threading.Thread | None = None
        self._terminal: TerminalKeys | None = None
        if use_keyboard and sys.stdin is not None and sys.stdin.isatty():
            self._terminal = TerminalKeys(sys.stdin.fileno())
            atexit.register(self._terminal.restore)
            self._keys_thread = threading.Thread(
                target=self._read_keys, name="teleop_keys", daemon=True
            )
            self._keys_thread.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)
        keys = "on" if self._keys_thread else "off (stdin is not a terminal or keyboard:=false)"
        self.get_logger().info(f"teleop mode {mode} at {rate} Hz; keyboard {keys}")

    def _robot_limits(self) -> JointLimits:
        """Declare the robot's joints and limits (leader and joy modes)."""
        self.params.declare(ROBOT_PARAMS)
        self._names = list(self.params["joint_names"])
        return joint_limits(self.params, self._names)

    def _make_leader(self, input_timeout: float) -> LeaderTeleop:
        limits = self._robot_limits()
        self.params.declare(leader_params(self._names))
        p = self.params
        mapping = LeaderMapping.from_params(
            self._names, p["leader_joint_names"], p["scale"], p["offset"]
        )
        return LeaderTeleop(mapping, input_timeout, limits)

    def _make_jog(self, input_timeout: float) -> JogTeleop:
        limits = self._robot_limits()
        self.params.declare(JOY_PARAMS)
        p = self.params
        jog_mapping = JogMapping(
            jog_axis=int(p["joy_jog_axis"]),
            next_joint_button=int(p["joy_next_joint_button"]),
            previous_joint_button=int(p["joy_previous_joint_button"]),
            deadzone=float(p["joy_deadzone"]),
        )
        return JogTeleop(limits, jog_mapping, float(p["jog_speed"]), input_timeout)

    # ------------------------------------------------------------------ inputs

    def _on_leader(self, msg: JointState) -> None:
        assert self._leader is not None
        try:
            self._leader.on_leader(msg.name, msg.position, time.time())
        except TeleopInputError as exc:
            self._health.count("leader_rejected")
            self._log_once.warn("leader", f"dropping leader/joint_states: {exc}")

    def _on_joint_state(self, msg: JointState) -> None:
        assert self._jog is not None
        try:
            self._jog.on_measured(joint_state_positions(msg, self._names))
        except (MessageError, TeleopInputError) as exc:
            self._health.count("dropped_joint_states")
            self._log_once.warn("joints", f"dropping joint_states: {exc}")

    def _on_joy(self, msg: Joy) -> None:
        if self._joy_pub is not None:
            self._joy_pub.publish(msg)
        if self._jog is not None:
            selected = self._jog.on_joy(msg.axes, msg.buttons, time.time())
            if selected is not None:
                self.get_logger().info(f"jogging joint {selected}")

    def _on_intervention(self, msg: Bool) -> None:
        if self._jog is not None:
            self._jog.set_intervening(bool(msg.data))

    def _on_arbiter_state(self, msg: String) -> None:
        try:
            self._arbiter_state = str(json.loads(msg.data)["state"])
        except (ValueError, KeyError, TypeError):
            self._arbiter_state = msg.data

    # ------------------------------------------------------------------ command loop

    def _tick(self, now: float) -> None:
        if self._leader is not None:
            target = self._leader.command(now)
            mask = self._leader.mask
        else:
            assert self._jog is not None
            target = self._jog.command(now, self._period)
            mask = None
        if target is None:
            return
        msg = JointState()
        msg.header.stamp = sec_to_stamp(now)
        if mask is None:
            msg.name = list(self._names)
            msg.position = target.tolist()
        else:
            msg.name = [n for n, m in zip(self._names, mask, strict=True) if m]
            msg.position = target[mask].tolist()
        self._command_pub.publish(msg)
        self._command_rate.tick()

    # ------------------------------------------------------------------ keys and services

    def handle_key(self, key: str) -> str | None:
        """Run the action bound to ``key``; returns the action name (None for unbound keys)."""
        action = action_for_key(key)
        if action is None:
            return None
        if action == "help":
            print(help_text(), file=sys.stderr, flush=True)
        elif action == "pause_toggle":
            # Without a known state, pausing is the safe choice.
            self.call_service(SetBool, "ramp/pause", self._arbiter_state != "PAUSED")
        else:
            srv_type, name, data = SERVICE_ACTIONS[action]
            self.call_service(srv_type, name, data)
        return action

    def call_service(self, srv_type: type, name: str, data: bool | None) -> bool:
        """Call a SetBool (``data``) or Trigger (``data`` None) service without waiting; the
        answer is logged. Returns False when the service is not available.
        """
        client = self._service_clients[name]
        if not client.service_is_ready():
            self.get_logger().warning(f"{name} is not available (is its node running?)")
            return False
        request = srv_type.Request()
        if data is not None:
            request.data = data
        label = name if data is None else f"{name} {str(data).lower()}"
        self._health.count("service_calls")
        future = client.call_async(request)
        future.add_done_callback(lambda f: self._log_answer(label, f))
        return True

    def _log_answer(self, label: str, future) -> None:
        try:
            answer = future.result()
        except Exception as exc:
            self.get_logger().warning(f"{label} failed: {exc}")
            return
        if answer is None:
            self.get_logger().warning(f"{label}: no answer")
        elif answer.success:
            self.get_logger().info(f"{label}: {answer.message}")
        else:
            self.get_logger().warning(f"{label} refused: {answer.message}")

    def _read_keys(self) -> None:
        assert self._terminal is not None
        print(help_text(), file=sys.stderr, flush=True)
        try:
            with self._terminal as terminal:
                while not self._stop_keys.is_set():
                    key = terminal.read_key(0.1)
                    if key is not None:
                        self.handle_key(key)
        except EOFError:
            self.get_logger().info("terminal closed: no more operator keys")
        except Exception as exc:  # keep the node running without keys
            self.get_logger().error(f"keyboard reader stopped: {exc}")

    # ------------------------------------------------------------------ diagnostics

    def _update_health(self) -> None:
        self._health.set_value("command_rate_hz", self._command_rate.rate_hz())
        self._health.set_value("arbiter_state", self._arbiter_state or "unknown")
        if self._jog is not None:
            self._health.set_value("jog_joint", self._jog.selected_joint)
        if self._loop is not None and self._loop.errors:
            self._health.set_status(WARN, f"command loop errors: {self._loop.last_error}")
        else:
            self._health.set_status(OK, self._mode)

    def close(self) -> None:
        """Stop the command loop and the key reader; restore the terminal (safe twice)."""
        if self._loop is not None:
            self._loop.stop()
        self._stop_keys.set()
        if self._keys_thread is not None:
            self._keys_thread.join(1.0)
        if self._terminal is not None:
            self._terminal.restore()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``teleop_node``."""
    return run_node(TeleopNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
