"""sim_bridge: the simulated PiPER-like arm (MuJoCo) as a ROS 2 robot bridge.

Thin rclpy adapter over ``ramp_robots.core.sim.MujocoSimDriver`` and
``ramp_robots.core.safety.SafetyFilter``. Two threads with absolute deadlines
(``ramp_common.rate_loop.RateLoop``), never rclpy timers:

- state/control at ``state_rate_hz``: read the state, publish ``joint_states``, pass the latest
  ``joint_command`` through the safety filter and send the result to the simulated servos;
- cameras at ``camera_rate_hz``: render every camera from one state snapshot and publish
  ``sim/camera/<name>/image_raw`` (rgb8, stamp = capture time, frame_id = camera name).

Topics: publishes ``joint_states`` (JointState: rad / m, rad/s / m/s, N*m / N),
``sim/task_success``, ``ramp/estop_active`` (std_msgs/Bool, latched, on change),
``ramp/sent_command`` (JointState: what the safety filter actually sent, per tick),
``diagnostics``; subscribes
``joint_command`` (JointState, positions by name). Services: ``sim/reset`` (std_srvs/Trigger: arm
home, cube to a seeded start pose) and ``ramp/estop`` (std_srvs/SetBool: true engages, false
releases). Stamps are wall-clock time (``time.time()``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict
from typing import Any

from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import (
    MessageError,
    joint_state_positions,
    make_joint_state,
    numpy_to_image,
    sec_to_stamp,
    stamp_to_sec,
)
from ramp_common.diagnostics import (
    ERROR,
    OK,
    WARN,
    DiagnosticsPublisher,
    LatencyStats,
    NodeHealth,
    RateMeter,
)
from ramp_common.limits import JointLimits
from ramp_common.node_tools import LogOnce, declare, expand_path, require_positive, run_node
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS
from ramp_common.rate_loop import RateLoop
from ramp_robots.core.safety import SafetyFilter
from ramp_robots.core.sim import PUBLIC_JOINTS, MujocoSimDriver, PhysicsStats

DEFAULT_LOWER = [-2.618, 0.0, -2.967, -1.745, -1.22, -2.0944, 0.0]
DEFAULT_UPPER = [2.618, 3.14, 0.0, 1.745, 1.22, 2.0944, 0.07]
DEFAULT_MAX_VELOCITY = [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 0.2]
DEFAULT_MAX_ACCELERATION = [15.0, 15.0, 15.0, 20.0, 20.0, 20.0, 2.0]
TASK_CHECK_PERIOD_S = 0.05
"""How often the task-success flag is evaluated."""
RENDER_NICENESS = 0
"""Niceness added to the render thread (and the software-GL threads it starts). Kept at 0:
the render thread holds the GIL while it builds the scene, so a lower priority starves every
other thread of this process under CPU contention (seen: joint_states at 6 Hz, renders of 3 s)."""


class SimBridgeNode(Node):
    """Runs the simulated arm and bridges it to ROS (see the module docstring)."""

    def __init__(self, node_name: str = "sim_bridge", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        names = list(declare(self, "joint_names", list(PUBLIC_JOINTS), "Joint order."))
        limits = JointLimits.from_lists(
            names,
            declare(self, "position_lower", DEFAULT_LOWER, "Lower position limits, rad / m."),
            declare(self, "position_upper", DEFAULT_UPPER, "Upper position limits, rad / m."),
            declare(self, "max_velocity", DEFAULT_MAX_VELOCITY, "Speed limits, rad/s / m/s."),
            declare(self, "max_acceleration", DEFAULT_MAX_ACCELERATION, "Accel. limits, rad/s^2."),
        )
        mjcf = declare(
            self, "mjcf", "", "MuJoCo scene file; '' = the one shipped with the package."
        )
        physics_dt = require_positive(
            "physics_dt", declare(self, "physics_dt", 0.002, "Physics time step, s.")
        )
        state_rate = require_positive(
            "state_rate_hz",
            declare(self, "state_rate_hz", 200.0, "joint_states and control rate, Hz."),
        )
        cameras = list(declare(self, "camera_names", ["front", "wrist"], "Cameras to publish."))
        camera_rate = require_positive(
            "camera_rate_hz", declare(self, "camera_rate_hz", 30.0, "Camera frame rate, Hz.")
        )
        width = int(declare(self, "camera_width", 320, "Camera image width, px."))
        height = int(declare(self, "camera_height", 240, "Camera image height, px."))
        timeout = require_positive(
            "command_timeout_s",
            declare(
                self, "command_timeout_s", 0.5, "No fresh joint_command for this long -> hold (s)."
            ),
        )
        self._seed = int(declare(self, "seed", 0, "Seed of the first reset; +1 per reset."))

        self._names = names
        self._cameras = [c for c in cameras if c]
        self._driver = MujocoSimDriver(
            mjcf_path=expand_path(mjcf) if mjcf else None,
            physics_dt=physics_dt,
            camera_names=self._cameras,
            camera_width=width,
            camera_height=height,
            joint_names=names,
        )
        self._warn_if_limits_exceed_model(limits)
        self._safety = SafetyFilter(limits, 1.0 / state_rate, command_timeout_s=timeout)
        self._resets = 1  # the start-up reset below uses ``seed``
        self._reset_lock = threading.Lock()

        self._health = NodeHealth()
        self._health.set_status(OK, "starting")
        self._log_once = LogOnce(self)
        self._state_rate = RateMeter()
        self._render_rate = RateMeter()
        self._render_time = LatencyStats()
        self._last_physics: PhysicsStats | None = None

        group = ReentrantCallbackGroup()
        self._state_pub = self.create_publisher(JointState, "joint_states", STATE_QOS)
        self._image_pubs = {
            cam: self.create_publisher(Image, f"sim/camera/{cam}/image_raw", SENSOR_QOS)
            for cam in self._cameras
        }
        self._success_pub = self.create_publisher(Bool, "sim/task_success", LATCHED_QOS)
        self._estop_pub = self.create_publisher(Bool, "ramp/estop_active", LATCHED_QOS)
        self._sent_pub = self.create_publisher(JointState, "ramp/sent_command", COMMAND_QOS)
        self.create_subscription(
            JointState, "joint_command", self._on_command, COMMAND_QOS, callback_group=group
        )
        self.create_service(Trigger, "sim/reset", self._on_reset, callback_group=group)
        self.create_service(SetBool, "ramp/estop", self._on_estop, callback_group=group)

        self._driver.reset(self._seed)
        self._success: bool | None = None
        self._publish_success(self._driver.task_success())
        self._estop_pub.publish(Bool(data=False))

        if self._cameras:
            self._warm_up_renderer()
        self._driver.connect()
        self._next_task_check = 0.0
        self._state_loop = RateLoop(1.0 / state_rate, self._state_tick, name="sim_bridge_state")
        self._render_loop = (
            RateLoop(1.0 / camera_rate, self._render_tick, name="sim_bridge_render")
            if self._cameras
            else None
        )
        self._closed = False
        self._render_reniced = False
        self._state_loop.start()
        if self._render_loop is not None:
            self._render_loop.start()
        self._diag = DiagnosticsPublisher(self, self._health, refresh=self._update_health)
        self.get_logger().info(
            f"simulating {self._driver.mjcf_path.name} at dt={physics_dt} s; joint_states at "
            f"{state_rate} Hz; cameras {self._cameras} {width}x{height} at {camera_rate} Hz"
        )

    def _warm_up_renderer(self) -> None:
        """Render once before physics starts, on a short-lived thread at render priority.

        Creating the GL context takes a few hundred ms and would stall a running physics thread;
        software-GL worker threads inherit the priority of the thread that creates the context.
        Raises DriverError when nothing can be rendered (e.g. no EGL).
        """
        failure: list[BaseException] = []

        def warm_up() -> None:
            _lower_thread_priority(RENDER_NICENESS)
            try:
                self._driver.render_cameras(self._cameras)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=warm_up, name="sim_bridge_render_warm_up")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]

    def _warn_if_limits_exceed_model(self, limits: JointLimits) -> None:
        lower, upper = self._driver.joint_ranges()
        outside = [
            name
            for i, name in enumerate(self._names)
            if limits.lower[i] < lower[i] - 1e-9 or limits.upper[i] > upper[i] + 1e-9
        ]
        if outside:
            self.get_logger().warning(
                f"configured position limits of {outside} reach beyond the simulated joints' "
                f"ranges {dict(zip(self._names, zip(lower, upper, strict=True), strict=True))}"
            )

    # ------------------------------------------------------------------ callbacks

    def _on_command(self, msg: JointState) -> None:
        try:
            target = joint_state_positions(msg, self._names)
        except MessageError as exc:
            self._health.count("commands_malformed")
            self._log_once.warn("malformed", f"dropping joint_command: {exc}")
            return
        sent_at = stamp_to_sec(msg.header.stamp)
        reason = self._safety.command(target, time.monotonic(), sent_at=sent_at or None)
        if reason is not None:
            self._health.count("commands_rejected")
            self._log_once.warn(f"rejected-{reason[:24]}", f"rejecting joint_command: {reason}")

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._reset_lock:
            seed = self._seed + self._resets
            self._resets += 1
            self._driver.reset(seed)
            self._safety.resync()
        cube = self._driver.cube_pose().position
        self._publish_success(self._driver.task_success())
        response.success = True
        response.message = (
            f"arm at home, cube at ({cube[0]:.3f}, {cube[1]:.3f}) m (seed {seed}); "
            "holding until a new joint_command arrives"
        )
        self.get_logger().info(response.message)
        return response

    def _on_estop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if request.data:
            self._safety.engage_estop()
            self.get_logger().warning("e-stop ENGAGED: holding, commands are rejected")
        else:
            self._safety.release_estop()
            self.get_logger().warning("e-stop released: holding until a new joint_command")
        self._estop_pub.publish(Bool(data=bool(request.data)))
        response.success = True
        response.message = "e-stop engaged" if request.data else "e-stop released"
        return response

    # ------------------------------------------------------------------ loops

    def _state_tick(self, _now_wall: float) -> None:
        # One lock around read -> filter -> send, so a reset cannot slip in between and make the
        # filter start from a pre-reset pose.
        with self._reset_lock:
            state = self._driver.read_state()
            sent = self._safety.output(time.monotonic(), state.positions)
            self._driver.send(sent)
        # what actually went to the robot after the safety filter (the recorder keeps it)
        self._sent_pub.publish(make_joint_state(self._names, sent, sec_to_stamp(time.time())))
        self._state_pub.publish(
            make_joint_state(
                self._names,
                state.positions,
                sec_to_stamp(state.stamp),
                state.velocities,
                state.efforts,
            )
        )
        self._state_rate.tick()
        now = time.monotonic()
        if now >= self._next_task_check:
            self._next_task_check = now + TASK_CHECK_PERIOD_S
            self._publish_success(self._driver.task_success())

    def _render_tick(self, _now_wall: float) -> None:
        if not self._render_reniced:
            self._render_reniced = True
            _lower_thread_priority(RENDER_NICENESS)
        start = time.perf_counter()
        stamp, frames = self._driver.render_cameras(self._cameras)
        self._render_time.add(time.perf_counter() - start)
        ros_stamp = sec_to_stamp(stamp)
        for cam, image in frames.items():
            self._image_pubs[cam].publish(numpy_to_image(image, "rgb8", ros_stamp, frame_id=cam))
        self._render_rate.tick()

    def _publish_success(self, success: bool) -> None:
        if success != self._success:
            self._success = success
            self._success_pub.publish(Bool(data=success))

    # ------------------------------------------------------------------ diagnostics

    def _update_health(self) -> None:
        health = self._health
        health.set_value("state_rate_hz", self._state_rate.rate_hz())
        health.set_value("camera_rate_hz", self._render_rate.rate_hz())
        for key, value in self._render_time.percentiles_ms().items():
            health.set_value(f"render_ms_{key}", value)
        physics = self._driver.physics_stats()
        if self._last_physics is not None:
            sim = physics.sim_time_s - self._last_physics.sim_time_s
            wall = physics.wall_time_s - self._last_physics.wall_time_s
            health.set_value("physics_real_time_factor", sim / wall if wall > 0 else 0.0)
        self._last_physics = physics
        health.set_value("physics_overruns", physics.overruns)
        health.set_value("physics_late_steps", physics.late_steps)
        counters = self._safety.counters
        for key, value in asdict(counters).items():
            health.set_value(f"safety_{key}", value)
        health.set_value("safety_mode", self._safety.mode.value)
        health.set_value("estop", self._safety.estop_engaged)
        health.set_value("task_success", bool(self._success))
        for key, value in self._state_loop.jitter.percentiles_ms().items():
            health.set_value(f"state_loop_jitter_ms_{key}", value)
        health.set_value("state_loop_overruns", self._state_loop.overruns)
        loops = {"state loop": self._state_loop, "render loop": self._render_loop}
        errors = [
            f"{label}: {loop.errors} errors, last: {loop.last_error}"
            for label, loop in loops.items()
            if loop is not None and loop.errors
        ]
        for label, loop in loops.items():
            if loop is not None and loop.errors:
                self._log_once.error(label, f"{label} failed: {loop.last_error}")
        if errors:
            health.set_status(ERROR, "; ".join(errors))
        elif self._safety.estop_engaged:
            health.set_status(WARN, "e-stop engaged")
        else:
            health.set_status(OK, self._safety.mode.value)

    def close(self) -> None:
        """Stop both loops and the physics (called on shutdown; safe twice)."""
        if self._closed:
            return
        self._closed = True
        stopped = self._state_loop.stop()
        if self._render_loop is not None:
            stopped = self._render_loop.stop() and stopped
        if stopped:
            self._driver.disconnect()
        else:  # freeing MuJoCo under a render still running segfaults (seen on Ctrl-C)
            self.get_logger().warning("a sim loop is still running; leaving the physics to exit")


def _lower_thread_priority(niceness: int) -> None:
    """Add ``niceness`` to the calling thread's nice value (Linux: per thread); best effort."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + niceness)
    except (OSError, AttributeError):
        pass


def main(args: list[str] | None = None) -> int:
    """Console entry point ``sim_bridge``."""
    return run_node(SimBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
