"""operator_console: the operator's web page over the stack's topics and services.

Thin rclpy adapter: subscriptions feed :class:`ConsoleState` and :class:`FrameStore` (core/),
controls call the stack's own services, and :class:`ConsoleServer` (aiohttp, its own thread and
loop) serves the page. The page is a window onto the stack, never part of its safety: the
bridges keep their e-stop service and watchdog whatever the page does, and a viewer that
disconnects changes nothing on the robot (no dead-man on the page).

Subscribes ``camera/<name>/image_raw`` (raw: kept as bytes, parsed and JPEG-encoded only when a
viewer is due a frame) and ``joint_states`` / ``joint_command`` (raw; decoded for the chart)
only while a viewer is connected (and ``LINGER_S`` after), newest message only, polled at
``chart_rate_hz`` (so at most that many frames per second per camera reach a viewer); always
``ramp/arbiter_state``, ``ramp/intervention``,
``ramp/estop_active``, ``ramp/task`` (latched) and ``diagnostics``. Publishes ``ramp/task``
(std_msgs/String, latched) when the operator sets it, and its own ``diagnostics`` (url,
viewers, frames sent/skipped/encoded). Calls ``ramp/estop`` (bridge), ``ramp/takeover`` and
``ramp/pause`` (intervention_arbiter), ``ramp/episode/{start,stop,cancel}`` (episode_recorder).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger

from ramp_common.diagnostics import OK, WARN, DiagnosticsPublisher, NodeHealth, level_to_int
from ramp_common.node_tools import LogOnce, run_node
from ramp_common.params import Param, ParamSet
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS
from ramp_common.scheduling import lower_process_priority
from ramp_operator_console.core.commands import SERVICES, Command
from ramp_operator_console.core.frames import FrameStore
from ramp_operator_console.core.state import ConsoleState
from ramp_operator_console.server import ConsoleServer, ServerConfig

PACKAGE = "ramp_operator_console"
WATCH_CHECK_S = 0.25
"""How often the node checks whether anyone watches (s)."""
LINGER_S = 5.0
"""Live subscriptions stay this long after the last viewer left (s)."""


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


PARAMS: tuple[Param, ...] = (
    Param("host", "127.0.0.1", "Address to listen on (loopback by default)."),
    Param("port", 8088, "TCP port (0 = any free port; see the log).", low=0, high=65535),
    Param("port_tries", 10, "Ports tried upwards from 'port' when it is taken.", low=1),
    Param(
        "token",
        "",
        "Access token every request must carry (required off loopback; '' = none).",
    ),
    Param(
        "camera_names",
        ["front", "wrist"],
        "Cameras shown: camera/<name>/image_raw.",
        type="string[]",
    ),
    Param(
        "joint_names",
        [""],
        "Joint order of the chart ([''] = as received).",
        type="string[]",
    ),
    Param("frame_rate_hz", 10.0, "Default camera frame rate per viewer.", unit="Hz", positive=True),
    Param(
        "max_frame_rate_hz", 30.0, "Highest frame rate a viewer may ask.", unit="Hz", positive=True
    ),
    Param("state_rate_hz", 10.0, "State updates per viewer.", unit="Hz", positive=True),
    Param("chart_rate_hz", 25.0, "Joint chart sampling while watched.", unit="Hz", positive=True),
    Param("chart_window_s", 10.0, "Joint chart window.", unit="s", positive=True),
    Param("jpeg_quality", 80, "JPEG quality of camera frames.", low=1, high=100),
    Param("max_width", 640, "Frames wider than this are shrunk (0 = never).", unit="px", low=0),
    Param("web_dir", "", "Folder of the page ('' = the installed one)."),
    Param(
        "niceness",
        10,
        "Added to the nice value of the console's threads at start when it runs in its own "
        "process (never with every node in one process): the page yields the CPU to the "
        "control and inference nodes on a busy robot computer (0 = off).",
        low=0,
        high=19,
    ),
)


class OperatorConsoleNode(Node):
    """Serves the operator console (see the module docstring)."""

    own_process: bool = False
    """Set by :func:`main`: the node is alone in its process, so it may lower its priority."""

    def __init__(self, node_name: str = "operator_console", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        self.params = ParamSet(self, PARAMS)
        if self.own_process:
            lower_process_priority(int(self.params["niceness"]))
        host = str(self.params["host"])
        port = int(self.params["port"])
        port_tries = int(self.params["port_tries"])
        token = str(self.params["token"])
        cameras = list(self.params["camera_names"])
        joints = list(self.params["joint_names"])
        frame_rate = float(self.params["frame_rate_hz"])
        max_frame_rate = float(self.params["max_frame_rate_hz"])
        state_rate = float(self.params["state_rate_hz"])
        chart_rate = float(self.params["chart_rate_hz"])
        chart_window = float(self.params["chart_window_s"])
        quality = int(self.params["jpeg_quality"])
        max_width = int(self.params["max_width"])
        folder = str(self.params["web_dir"])

        self._joint_names = [j for j in joints if j]
        self.state = ConsoleState(cameras, self._joint_names, chart_window, chart_rate)
        self.frames = FrameStore(cameras, quality, max_width)
        self._log_once = LogOnce(self)
        self._health = NodeHealth()
        self._latest_joints: bytes | None = None
        self._latest_command: bytes | None = None
        self._sampled: tuple[int, int] = (0, 0)
        self._joint_count = self._command_count = 0

        # Cameras and joint topics are subscribed only while someone watches (and LINGER_S
        # after, so a page reload does not churn): with nobody watching, the console costs the
        # stack the diagnostics and latched topics only.
        self._cameras = cameras
        self._chart_period_s = 1.0 / chart_rate
        self._live: list[Any] = []  # (node, executor, thread, stop) while watched
        self._last_watched = 0.0
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
        self.create_timer(WATCH_CHECK_S, self._follow_viewers)

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

    def _follow_viewers(self) -> None:
        """Subscribe the live topics when a viewer comes, drop them a while after the last left."""
        now = time.monotonic()
        if self.server.viewers > 0:
            self._last_watched = now
            if not self._live:
                self._subscribe_live()
        elif self._live and now - self._last_watched > LINGER_S:
            self._unsubscribe_live()

    def _subscribe_live(self) -> None:
        """Live topics on a private node, polled at ``chart_rate_hz`` by a thread of its own.

        Every subscription keeps only its newest message (depth 1), and the thread takes at most
        one per topic and tick: the console handles ~25 messages per topic and second however
        fast the topic runs (joint_states and joint_command at 200-500 Hz would otherwise cost
        a Python callback each), and never holds up the node's executor.
        """
        node = rclpy.create_node(
            f"{self.get_name()}_live",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )
        topics = [
            (Image, f"camera/{c}/image_raw", lambda raw, c=c: self.frames.offer(c, raw), SENSOR_QOS)
            for c in self._cameras
        ]
        topics.append((JointState, "joint_states", self._on_joints, STATE_QOS))
        topics.append((JointState, "joint_command", self._on_command, COMMAND_QOS))
        for msg_type, topic, callback, qos in topics:
            newest_only = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=1,
                reliability=qos.reliability,
                durability=qos.durability,
            )
            node.create_subscription(msg_type, topic, callback, newest_only, raw=True)
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        stop = threading.Event()
        thread = threading.Thread(
            target=self._poll_live,
            args=(executor, stop, len(topics)),
            name="operator-console-live",
            daemon=True,
        )
        thread.start()
        self._live = [(node, executor, thread, stop)]
        self._health.count("live_subscribes")

    def _poll_live(self, executor: SingleThreadedExecutor, stop: threading.Event, n: int) -> None:
        next_s = time.monotonic()
        while not stop.is_set() and self.context.ok():
            try:
                for _ in range(n):  # at most one message waits per subscription (depth 1)
                    executor.spin_once(timeout_sec=0.0)
                self._sample_chart()
            except ExternalShutdownException:
                return
            except Exception as exc:  # keep watching; a shutdown race ends the loop above
                if not stop.is_set() and self.context.ok():
                    self._log_once.error("live", f"live topics failed: {exc!r}")
            next_s += self._chart_period_s
            now = time.monotonic()
            if next_s < now:
                next_s = now
            stop.wait(next_s - now)

    def _unsubscribe_live(self) -> None:
        for node, executor, thread, stop in self._live:
            stop.set()
            thread.join(2.0)
            executor.shutdown()
            node.destroy_node()
        self._live = []
        self._latest_joints = self._latest_command = None
        self.frames.drop_latest()

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
        self._unsubscribe_live()


def main(args: list[str] | None = None) -> int:
    """Console entry point ``operator_console``."""
    OperatorConsoleNode.own_process = True
    return run_node(OperatorConsoleNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
