"""sim_bridge: the simulated PiPER-like arm (MuJoCo) as a ROS 2 robot bridge.

Thin rclpy adapter over ``ramp_robots.core.sim.MujocoSimDriver`` and
``ramp_robots.core.safety.SafetyFilter``. Two threads with absolute deadlines
(``ramp_common.rate_loop.RateLoop``), never rclpy timers:

- state/control at ``state_rate_hz``: read the state, publish ``joint_states``, pass the latest
  ``joint_command`` through the safety filter and send the result to the simulated servos;
- cameras at ``camera_rate_hz``: render every camera from one state snapshot and publish
  ``sim/camera/<name>/image_raw`` (rgb8, stamp = the snapshot's time, or the render's end with
  ``camera_stamp: delivery``; frame_id = camera name).

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
from collections.abc import Sequence
from typing import Any

from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from ramp_common.conversions import make_joint_state, sec_to_stamp
from ramp_common.diagnostics import LatencyStats, NodeHealth, RateMeter
from ramp_common.image_wire import encode_image
from ramp_common.node_tools import expand_path, run_node
from ramp_common.params import Param
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from ramp_common.rate_loop import RateLoop
from ramp_robots.bridge_node import RobotBridgeNode, bridge_params
from ramp_robots.core.piper_driver import PIPER_BRIDGE_LIMITS
from ramp_robots.core.sim import PUBLIC_JOINTS, MujocoSimDriver, PhysicsStats

TASK_CHECK_PERIOD_S = 0.05
"""How often the task-success flag is evaluated."""
RENDER_NICENESS = 0
"""Niceness added to the render thread (and the software-GL threads it starts). Kept at 0:
the render thread holds the GIL while it builds the scene, so a lower priority starves every
other thread of this process under CPU contention (seen: joint_states at 6 Hz, renders of 3 s)."""


class SimBridgeNode(RobotBridgeNode):
    """Runs the simulated arm and bridges it to ROS (see the module docstring)."""

    DEFAULT_JOINTS = tuple(PUBLIC_JOINTS)
    CONTROL_LOOP_KEY = "state_loop"

    @classmethod
    def params_for(cls, joint_names: Sequence[str]) -> tuple[Param, ...]:
        return (
            *bridge_params(joint_names, "Joint order.", **PIPER_BRIDGE_LIMITS),
            Param("mjcf", "", "MuJoCo scene file; '' = the one shipped with the package."),
            Param("physics_dt", 0.002, "Physics time step.", unit="s", positive=True),
            Param(
                "state_rate_hz", 200.0, "joint_states and control rate.", unit="Hz", positive=True
            ),
            Param("camera_names", ["front", "wrist"], "Cameras to publish.", type="string[]"),
            Param("camera_rate_hz", 30.0, "Camera frame rate.", unit="Hz", positive=True),
            Param("camera_width", 320, "Camera image width.", unit="px", low=1),
            Param("camera_height", 240, "Camera image height.", unit="px", low=1),
            Param(
                "camera_stamp",
                "snapshot",
                "Frame stamp: 'snapshot' = the physics state the frame shows (the render time "
                "counts as the camera's exposure and readout); 'delivery' = when the render is "
                "done, like a V4L2 end-of-frame timestamp (to measure what the stack adds).",
                choices=("snapshot", "delivery"),
            ),
            Param("seed", 0, "Seed of the first reset; +1 per reset."),
        )

    def __init__(self, node_name: str = "sim_bridge", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self._cameras = [c for c in self.params["camera_names"] if c]
        self._stamp_at_delivery = self.params["camera_stamp"] == "delivery"
        self._driver = self._make_driver()
        self._warn_if_limits_exceed_model()
        state_rate = float(self.params["state_rate_hz"])
        group = self._open_safety_io(1.0 / state_rate)
        self._open_sim_io(group)
        self._start_loops(state_rate, float(self.params["camera_rate_hz"]))
        self._start_diagnostics()
        self.get_logger().info(
            f"simulating {self._driver.mjcf_path.name} at dt={self.params['physics_dt']} s; "
            f"joint_states at {state_rate} Hz; cameras {self._cameras} "
            f"{self.params['camera_width']}x{self.params['camera_height']} at "
            f"{self.params['camera_rate_hz']} Hz"
        )

    def _make_driver(self) -> MujocoSimDriver:
        mjcf = self.params["mjcf"]
        return MujocoSimDriver(
            mjcf_path=expand_path(mjcf) if mjcf else None,
            physics_dt=float(self.params["physics_dt"]),
            camera_names=self._cameras,
            camera_width=int(self.params["camera_width"]),
            camera_height=int(self.params["camera_height"]),
            joint_names=self._names,
        )

    def _open_sim_io(self, group: Any) -> None:
        """Simulator topics and services: cameras, task success, sent command, reset."""
        self._seed = int(self.params["seed"])
        self._resets = 1  # the start-up reset below uses ``seed``
        self._reset_lock = threading.Lock()
        self._state_rate = RateMeter()
        self._render_rate = RateMeter()
        self._render_time = LatencyStats()
        self._last_physics: PhysicsStats | None = None
        self._image_pubs = {
            cam: self.create_publisher(Image, f"sim/camera/{cam}/image_raw", SENSOR_QOS)
            for cam in self._cameras
        }
        self._success_pub = self.create_publisher(Bool, "sim/task_success", LATCHED_QOS)
        self._sent_pub = self.create_publisher(JointState, "ramp/sent_command", COMMAND_QOS)
        self.create_service(Trigger, "sim/reset", self._on_reset, callback_group=group)
        self._driver.reset(self._seed)
        self._success: bool | None = None
        self._publish_success(self._driver.task_success())

    def _start_loops(self, state_rate: float, camera_rate: float) -> None:
        """Warm the renderer up, start the physics, then the state and render loops."""
        if self._cameras:
            self._warm_up_renderer()
        self._driver.connect()
        self._next_task_check = 0.0
        self._control_loop = RateLoop(
            1.0 / state_rate,
            self._guard_control(self._state_tick),
            name="sim_bridge_state",
            realtime_priority=int(self.params["control_rt_priority"]),
            phase_s=float(self.params["control_phase_s"]),
        )
        self._render_loop = (
            RateLoop(1.0 / camera_rate, self._render_tick, name="sim_bridge_render")
            if self._cameras
            else None
        )
        self._closed = False
        self._render_reniced = False
        self._control_loop.start()
        if self._render_loop is not None:
            self._render_loop.start()

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

    def _warn_if_limits_exceed_model(self) -> None:
        lower, upper = self._driver.joint_ranges()
        self._warn_if_limits_exceed(
            lower,
            upper,
            "the simulated joints' ranges",
            lambda _outside: dict(zip(self._names, zip(lower, upper, strict=True), strict=True)),
        )

    # ------------------------------------------------------------------ callbacks

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

    # ------------------------------------------------------------------ loops

    def _state_tick(self, _now_wall: float) -> None:
        # One lock around read -> filter -> send, so a reset cannot slip in between and make the
        # filter start from a pre-reset pose.
        with self._reset_lock:
            state = self._driver.read_state()
            sent = self._safety_output(state.positions)
            self._driver.send(sent)
        # what actually went to the robot after the safety filter (the recorder keeps it),
        # stamped with the tick's due time: the filter moves one control period per tick
        loop = self._control_loop
        stamp = loop.due_wall if loop is not None and loop.due_wall > 0 else time.time()
        self._sent_pub.publish(make_joint_state(self._names, sent, sec_to_stamp(stamp)))
        self._publish_state(state)
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
        if self._stamp_at_delivery:
            stamp = time.time()
        for cam, image in frames.items():  # serialized: see ramp_common.image_wire
            self._image_pubs[cam].publish(encode_image(image, "rgb8", stamp, frame_id=cam))
        self._render_rate.tick()

    def _publish_success(self, success: bool) -> None:
        if success != self._success:
            self._success = success
            self._success_pub.publish(Bool(data=success))

    # ------------------------------------------------------------------ diagnostics

    def _driver_health(self, health: NodeHealth) -> None:
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
        health.set_value("task_success", bool(self._success))

    def _loops(self) -> dict[str, RateLoop | None]:
        return {"state loop": self._control_loop, "render loop": self._render_loop}

    def _stop(self) -> None:
        """Stop both loops, then the physics unless a loop is still inside it."""
        stopped = self._control_loop.stop() if self._control_loop is not None else True
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


PARAMS: tuple[Param, ...] = SimBridgeNode.params_for(SimBridgeNode.DEFAULT_JOINTS)
"""Every parameter, with the defaults for the default joints (docs/parameters.md)."""


def main(args: list[str] | None = None) -> int:
    """Console entry point ``sim_bridge``."""
    return run_node(SimBridgeNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
