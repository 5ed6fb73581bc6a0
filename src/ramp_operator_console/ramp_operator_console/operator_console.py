"""operator_console: the operator's web page over the stack's topics and services.

Thin rclpy adapter: subscriptions feed :class:`ConsoleState` and :class:`FrameStore` (core/),
controls call the stack's own services, and :class:`ConsoleServer` (aiohttp, its own thread and
loop) serves the page. The page is a window onto the stack, never part of its safety: the
bridges keep their e-stop service and watchdog whatever the page does, and a viewer that
disconnects changes nothing on the robot (no dead-man on the page).

Subscribes ``camera/<name>/image_raw`` (raw: kept as bytes, parsed and JPEG-encoded only when a
viewer is due a frame), ``joint_states`` and ``joint_command`` (raw; decoded at
``chart_rate_hz`` only while someone watches), ``ramp/arbiter_state``, ``ramp/intervention``,
``ramp/estop_active``, ``ramp/task`` (latched) and ``diagnostics``. Publishes ``ramp/task``
(std_msgs/String, latched) when the operator sets it, and its own ``diagnostics`` (url,
viewers, frames sent/skipped/encoded). Calls ``ramp/estop`` (bridge), ``ramp/takeover`` and
``ramp/pause`` (intervention_arbiter), ``ramp/episode/{start,stop,cancel}`` (episode_recorder).
"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from ramp_common.diagnostics import OK, WARN, DiagnosticsPublisher, NodeHealth, level_to_int
from ramp_common.node_tools import LogOnce, declare, require_positive, run_node
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS
from ramp_operator_console.core.commands import SERVICES, Command
from ramp_operator_console.core.frames import FrameStore
from ramp_operator_console.core.state import ConsoleState
from ramp_operator_console.server import ConsoleServer, ServerConfig

PACKAGE = "ramp_operator_console"


def web_dir() -> Path:
    """The installed page (share/ramp_operator_console/web), or the source folder."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory(PACKAGE)) / "web"
        if (path / "index.html").is_file():
            return path
    except Exception:
        pass
    return Path(__file__).resolve().parent.parent / "web"


class OperatorConsoleNode(Node):
    """Serves the operator console (see the module docstring)."""

    def __init__(self, node_name: str = "operator_console", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        host = str(declare(self, "host", "127.0.0.1", "Address to listen on (loopback default)."))
        port = int(declare(self, "port", 8088, "TCP port (0 = any free port; see the log)."))
        port_tries = int(
            declare(self, "port_tries", 10, "Ports tried upwards from 'port' when it is taken.")
        )
        token = str(
            declare(
                self,
                "token",
                "",
                "Access token every request must carry (required off loopback; '' = none).",
            )
        )
        cameras = list(
            declare(self, "camera_names", ["front", "wrist"], "Cameras: camera/<name>/image_raw.")
        )
        joints = list(
            declare(self, "joint_names", [""], "Joint order of the chart ([''] = as received).")
        )
        frame_rate = require_positive(
            "frame_rate_hz",
            declare(self, "frame_rate_hz", 10.0, "Default camera frame rate per viewer, Hz."),
        )
        max_frame_rate = require_positive(
            "max_frame_rate_hz",
            declare(self, "max_frame_rate_hz", 30.0, "Highest frame rate a viewer may ask, Hz."),
        )
        state_rate = require_positive(
            "state_rate_hz", declare(self, "state_rate_hz", 10.0, "State updates per viewer, Hz.")
        )
        chart_rate = require_positive(
            "chart_rate_hz",
            declare(self, "chart_rate_hz", 25.0, "Joint chart sampling while watched, Hz."),
        )
        chart_window = require_positive(
            "chart_window_s", declare(self, "chart_window_s", 10.0, "Joint chart window, s.")
        )
        quality = int(declare(self, "jpeg_quality", 80, "JPEG quality of camera frames, 1-100."))
        max_width = int(
            declare(self, "max_width", 640, "Frames wider than this are shrunk, px (0 = never).")
        )
        folder = str(declare(self, "web_dir", "", "Folder of the page ('' = installed one)."))

        self._joint_names = [j for j in joints if j]
        self.state = ConsoleState(cameras, self._joint_names, chart_window, chart_rate)
        self.frames = FrameStore(cameras, quality, max_width)
        self._log_once = LogOnce(self)
        self._health = NodeHealth()
        self._latest_joints: bytes | None = None
        self._latest_command: bytes | None = None
        self._sampled: tuple[int, int] = (0, 0)
        self._joint_count = self._command_count = 0

        for camera in cameras:
            self.create_subscription(
                Image,
                f"camera/{camera}/image_raw",
                lambda raw, c=camera: self.frames.offer(c, raw),
                SENSOR_QOS,
                raw=True,
            )
        self.create_subscription(JointState, "joint_states", self._on_joints, STATE_QOS, raw=True)
        self.create_subscription(
            JointState, "joint_command", self._on_command, COMMAND_QOS, raw=True
        )
        self.create_subscription(
            String,
            "ramp/arbiter_state",
            lambda m: self.state.on_arbiter_state(m.data, time.time()),
            LATCHED_QOS,
        )
        self.create_subscription(
            Bool, "ramp/intervention", lambda m: self.state.on_intervention(m.data), LATCHED_QOS
        )
        self.create_subscription(
            Bool, "ramp/estop_active", lambda m: self.state.on_estop(m.data), LATCHED_QOS
        )
        self.create_subscription(
            String, "ramp/task", lambda m: self.state.on_task(m.data), LATCHED_QOS
        )
        self.create_subscription(DiagnosticArray, "diagnostics", self._on_diagnostics, 50)
        self._task_pub = self.create_publisher(String, "ramp/task", LATCHED_QOS)
        types = {"SetBool": SetBool, "Trigger": Trigger}
        self._service_clients = {
            service: self.create_client(types[kind], service) for service, kind in SERVICES.items()
        }
        self.create_timer(1.0 / chart_rate, self._sample_chart)

        self.server = ConsoleServer(
            self.state,
            self.frames,
            self,
            Path(folder) if folder else web_dir(),
            ServerConfig(
                host=host,
                port=port,
                port_tries=port_tries,
                token=token,
                frame_rate_hz=frame_rate,
                max_frame_rate_hz=max_frame_rate,
                state_rate_hz=state_rate,
            ),
        )  # raises (refuses to start) on a non-loopback host without a token
        url = self.server.start()
        self._health.set_status(OK, "no viewer")
        self._diagnostics = DiagnosticsPublisher(self, self._health, 1.0, self._refresh_health)
        shown = url if not token else url + "?token=<token>"
        self.get_logger().info(
            f"operator console at {shown} (cameras {cameras}; {frame_rate:g} fps per viewer)"
        )
        if port and not url.endswith(f":{port}/"):
            self.get_logger().warning(f"port {port} was taken; the console is at {url}")

    # ------------------------------------------------------------------ ROS inputs

    def _on_joints(self, raw: bytes) -> None:
        self._latest_joints = raw
        self._joint_count += 1

    def _on_command(self, raw: bytes) -> None:
        self._latest_command = raw
        self._command_count += 1

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        now = time.time()
        for status in msg.status:
            if status.name == self.get_fully_qualified_name():
                continue
            self.state.on_diagnostic(
                status.name,
                status.hardware_id,
                level_to_int(status.level),
                status.message,
                {kv.key: kv.value for kv in status.values},
                now,
            )

    def _positions(self, raw: bytes | None) -> list[float] | None:
        if raw is None:
            return None
        try:
            msg = deserialize_message(raw, JointState)
        except Exception as exc:
            self._log_once.warn("decode", f"cannot decode a joint message: {exc}")
            return None
        if not self._joint_names:
            self._joint_names = list(msg.name)
            self.state.joint_names = list(msg.name)
        index = {n: i for i, n in enumerate(msg.name)}
        if len(msg.position) != len(msg.name):
            return None
        return [
            float(msg.position[index[n]]) if n in index else float("nan") for n in self._joint_names
        ]

    def _sample_chart(self) -> None:
        """Decode the latest joint state and command, only while someone watches."""
        if self.server.viewers == 0:
            return
        counts = (self._joint_count, self._command_count)
        measured = self._positions(self._latest_joints) if counts[0] != self._sampled[0] else None
        command = self._positions(self._latest_command) if counts[1] != self._sampled[1] else None
        self._sampled = counts
        if measured is not None or command is not None:
            self.state.on_joints(time.time(), measured, command)

    # ------------------------------------------------------------------ Backend (web thread)

    def call(self, command: Command) -> concurrent.futures.Future:
        """Call ``command``'s service; returns at once with a future of (success, message)."""
        result: concurrent.futures.Future = concurrent.futures.Future()
        client = self._service_clients[command.service]
        if not client.service_is_ready():
            result.set_result((False, f"{command.service} is not available (is its node up?)"))
            return result
        request = client.srv_type.Request()
        if command.data is not None:
            request.data = command.data
        self.get_logger().info(f"operator console: {command.label} -> {command.service}")

        def done(future) -> None:
            if result.done():
                return  # timed out on the web side
            try:
                answer = future.result()
                result.set_result((bool(answer.success), str(answer.message)))
            except Exception as exc:
                result.set_result((False, f"{command.service} failed: {exc}"))

        client.call_async(request).add_done_callback(done)
        return result

    def publish_task(self, text: str) -> None:
        """Publish the task text (latched, so late joiners such as the recorder get it)."""
        self._task_pub.publish(String(data=text))
        self.get_logger().info(f"operator console: task set to {text!r}")

    # ------------------------------------------------------------------ health

    def _refresh_health(self) -> None:
        stats = self.server.stats()
        for key, value in stats.items():
            self._health.set_value(key, value)
        for camera, count in self.frames.received.items():
            self._health.set_value(f"frames_received_{camera}", count)
        if self.frames.encode_errors:
            self._health.set_status(WARN, f"cannot show frames: {self.frames.last_error}")
        else:
            viewers = stats["viewers"]
            self._health.set_status(OK, f"{viewers} viewer(s)" if viewers else "no viewer")

    def close(self) -> None:
        """Stop the web server (viewers are disconnected; nothing changes on the robot)."""
        self.server.stop()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``operator_console``."""
    return run_node(OperatorConsoleNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
