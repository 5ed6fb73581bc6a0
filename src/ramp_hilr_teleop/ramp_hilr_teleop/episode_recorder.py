"""episode_recorder: records the loop's topics into one rosbag2 (MCAP) folder per episode.

Thin rclpy adapter over ``ramp_hilr_teleop.core.recorder.EpisodeRecorder``. Subscriptions are
``raw=True`` (serialized CDR goes to the bag untouched, header stamps included), each topic with
the QoS its publisher offers (cameras best effort, latched task/intervention transient local),
on two private nodes, so a state message never waits behind image callbacks: the cameras' node
is spun by its own single-threaded executor; the other topics (200 Hz joint states and commands
among them) are drained every ``DRAIN_PERIOD_S`` by a thread that takes what their readers hold
(``ramp_common.intake``: no executor dispatch per message, 0.4-0.8 ms of CPU each on a small
computer), in order of reception. The bag's log time is the receive time (wall clock, ns; the
DDS reception time for the drained topics).

Services: ``ramp/episode/start`` (std_srvs/Trigger; message = bag folder, or the reason it
cannot start), ``ramp/episode/stop`` (std_srvs/SetBool, data = success), ``ramp/episode/cancel``
(std_srvs/Trigger; the bag is kept, marked cancelled). Publishes ``diagnostics`` (recording
state, queue, drops, free disk). Episode layout and metadata: docs/episodes.md.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool, Trigger

from ramp_common.diagnostics import ERROR, OK, WARN, DiagnosticsPublisher, NodeHealth, RateMeter
from ramp_common.intake import Intake
from ramp_common.node_tools import expand_path, run_node
from ramp_common.params import Param, ParamSet
from ramp_common.qos import LATCHED_QOS
from ramp_common.rate_loop import RateLoop
from ramp_hilr_teleop.core.bag_writer import (
    TopicSpec,
    default_topics,
    make_typestore,
    parse_topic_specs,
)
from ramp_hilr_teleop.core.episode import EpisodeMetadata
from ramp_hilr_teleop.core.recorder import EpisodeRecorder, RecorderConfig, RecorderError


def topic_params(camera_names: list[str]) -> tuple[Param, ...]:
    """The recorded-topics parameter; its default records these cameras."""
    return (
        Param(
            "topics",
            default_topics(camera_names),
            "Recorded topics: 'topic' for the loop's topics, 'topic:pkg/msg/Type[:qos]' for "
            "others (qos: sensor|state|command|latched|default); default: the loop's topics "
            "with camera_names.",
            type="string[]",
        ),
    )


PARAMS: tuple[Param, ...] = (
    Param(
        "output_dir",
        "~/ramp_episodes",
        "Folder of episode bags (~ and $VARS expand); changes apply between episodes.",
        reloadable=True,
    ),
    Param("camera_names", ["front", "wrist"], "Cameras: camera/<name>/image_raw.", type="string[]"),
    *topic_params(["front", "wrist"]),
    Param(
        "robot",
        "",
        "Robot name stored with each episode; changes apply between episodes.",
        reloadable=True,
    ),
    Param(
        "operator",
        "",
        "Operator name stored with each episode; changes apply between episodes.",
        reloadable=True,
    ),
    Param(
        "min_free_disk_mb",
        1024.0,
        "Refuse to start, or end the episode cleanly, below this free disk space.",
        unit="MB",
    ),
    Param(
        "flush_interval_s",
        1.0,
        "Close the open MCAP chunk, flush the file and save episode.yaml this often.",
        unit="s",
        positive=True,
    ),
    Param(
        "max_queue_mb",
        512.0,
        "Bound of the write queue; a message that does not fit is dropped and counted.",
        unit="MB",
        positive=True,
    ),
    Param("max_episode_duration_s", 0.0, "End an episode after this long (0 = never).", unit="s"),
    Param(
        "fsync",
        False,
        "fsync at every flush (survives power loss, not only a crash of the recorder).",
    ),
    Param(
        "ros_distro",
        "",
        "Type store of the message definitions: humble | jazzy ('' = $ROS_DISTRO, else jazzy).",
    ),
)


DRAIN_PERIOD_S = 0.01
"""How often the non-image topics are drained, s. Their readers hold 100 messages each (0.5 s of
a 200 Hz topic), so a drain may come late by far more than this without a loss."""


def subscription_qos(qos_class: str) -> QoSProfile:
    """Recorder-side QoS for a topic's QoS class: matches its publisher, deep queues."""
    if qos_class == "latched":
        return LATCHED_QOS
    if qos_class == "sensor":
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=30,
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def message_class(spec: TopicSpec) -> type:
    """Python message class of ``spec.msgtype``; raises ValueError naming the topic."""
    package, _, name = spec.msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ValueError(
            f"topic {spec.topic}: message type {spec.msgtype} is not installed"
        ) from None


class EpisodeRecorderNode(Node):
    """Records episodes on request (see the module docstring)."""

    def __init__(self, node_name: str = "episode_recorder", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        first = [spec for spec in PARAMS if spec.name != "topics"]
        self.params = p = ParamSet(self, first, on_change=self._on_label_change)
        # the default topic list names the configured cameras
        p.declare(topic_params(p["camera_names"]))
        output_dir = p["output_dir"]
        topics = list(p["topics"])
        robot, operator = p["robot"], p["operator"]
        min_free = float(p["min_free_disk_mb"])
        flush = float(p["flush_interval_s"])
        max_queue = float(p["max_queue_mb"])
        max_duration = float(p["max_episode_duration_s"])
        fsync = bool(p["fsync"])
        distro = p["ros_distro"]

        specs = parse_topic_specs(topics)
        classes = {spec.topic: message_class(spec) for spec in specs}
        self._health = NodeHealth()
        self._health.set_status(OK, "idle")
        self._rate = RateMeter()
        self._recorder = EpisodeRecorder(
            specs,
            RecorderConfig(
                output_dir=Path(expand_path(output_dir)),
                robot=robot,
                operator=operator,
                namespace=self.get_namespace(),
                min_free_disk_mb=min_free,
                flush_interval_s=flush,
                max_queue_mb=max_queue,
                max_episode_duration_s=max_duration,
                fsync=fsync,
            ),
            typestore=make_typestore(distro or None),
            on_event=self._on_event,
        )
        # Subscriptions live on two private nodes: the images' spun by its own single-threaded
        # executor (rclpy's multi-threaded executor costs far more per message), the others
        # drained by a thread; a 200 Hz state topic never waits behind image callbacks.
        self._closed = False
        self._drain_loops: list[RateLoop] = []
        self._rx: list[tuple[Node, Callable[[], object]]] = []
        """Each private node and what stops its receiving (before the node is destroyed)."""
        images = [s for s in specs if s.qos == "sensor"]
        states = [s for s in specs if s.qos != "sensor"]
        if images:
            self._start_receiver("images", images, classes)
        if states:
            self._start_drain("state", states, classes)
        services = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "ramp/episode/start", self._on_start, callback_group=services)
        self.create_service(SetBool, "ramp/episode/stop", self._on_stop, callback_group=services)
        self.create_service(
            Trigger, "ramp/episode/cancel", self._on_cancel, callback_group=services
        )
        self._diagnostics = DiagnosticsPublisher(self, self._health, 1.0, self._refresh_health)
        self.get_logger().info(
            f"recording {len(specs)} topics into {self._recorder.config.output_dir} on request"
        )
        # bags a killed recorder left open are repaired now, not at the first start request
        threading.Thread(target=self._repair_at_start, name="recorder-repair", daemon=True).start()

    def _repair_at_start(self) -> None:
        try:
            self._recorder.repair_unfinished()  # each repair is reported through _on_event
        except Exception as exc:  # the next start tries again and answers with the reason
            self.get_logger().warning(f"repair of unfinished episodes at start-up failed: {exc}")

    def _private_node(self, suffix: str) -> Node:
        return rclpy.create_node(
            f"{self.get_name()}_rx_{suffix}",
            namespace=self.get_namespace(),
            context=self.context,
            use_global_arguments=False,
            start_parameter_services=False,
        )

    def _start_drain(self, suffix: str, specs: list[TopicSpec], classes: dict[str, type]) -> None:
        node = self._private_node(suffix)
        intakes = [
            (
                spec.topic,
                Intake(node, classes[spec.topic], spec.topic, subscription_qos(spec.qos), raw=True),
            )
            for spec in specs
        ]
        loop = RateLoop(
            DRAIN_PERIOD_S, lambda _now: self._drain(intakes), name=f"recorder-rx-{suffix}"
        )
        loop.start()
        self._drain_loops.append(loop)
        self._rx.append((node, loop.stop))

    def _drain(self, intakes: list[tuple[str, Intake]]) -> None:
        """What each reader holds, offered in order of reception (every DRAIN_PERIOD_S)."""
        batch = [(t.received_s, topic, t.msg) for topic, i in intakes for t in i.take_all()]
        batch.sort(key=lambda item: item[0])
        for received_s, topic, raw in batch:
            if self._recorder.offer(topic, raw, round(received_s * 1e9)):
                self._rate.tick()

    def _start_receiver(
        self, suffix: str, specs: list[TopicSpec], classes: dict[str, type]
    ) -> None:
        node = self._private_node(suffix)
        for spec in specs:
            node.create_subscription(
                classes[spec.topic],
                spec.topic,
                lambda raw, t=spec.topic: self._on_raw(t, raw),
                subscription_qos(spec.qos),
                raw=True,
            )
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(node)
        thread = threading.Thread(
            target=self._spin_receiver, args=(executor,), name=f"recorder-rx-{suffix}", daemon=True
        )
        thread.start()

        def stop() -> None:
            executor.shutdown()
            thread.join(2.0)

        self._rx.append((node, stop))

    def _spin_receiver(self, executor: SingleThreadedExecutor) -> None:
        while not self._closed and self.context.ok():
            try:
                executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:
                return
            except Exception as exc:  # keep receiving; a shutdown race ends the loop above
                if not self._closed and self.context.ok():
                    self.get_logger().error(f"recorder receive failed: {exc!r}")

    def _on_raw(self, topic: str, raw: bytes) -> None:
        if self._recorder.offer(topic, raw, time.time_ns()):
            self._rate.tick()

    def _on_start(self, _request: Trigger.Request, response: Trigger.Response) -> Any:
        try:
            meta, repairs = self._recorder.start()
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
            self.get_logger().error(f"episode start refused: {exc}")
            return response
        notes = "".join(f"; {r.message}" for r in repairs)
        path = Path(self._recorder.config.output_dir).expanduser() / meta.name
        response.success, response.message = True, f"{path}{notes}"
        self.get_logger().info(f"episode {meta.name} recording into {path}{notes}")
        return response

    def _on_stop(self, request: SetBool.Request, response: SetBool.Response) -> Any:
        try:
            meta = self._recorder.stop(bool(request.data))
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = meta.error is None, self._summary(meta)
        self.get_logger().info(response.message)
        return response

    def _on_cancel(self, _request: Trigger.Request, response: Trigger.Response) -> Any:
        try:
            meta = self._recorder.cancel()
        except RecorderError as exc:
            response.success, response.message = False, str(exc)
            return response
        response.success, response.message = meta.error is None, self._summary(meta)
        self.get_logger().info(response.message)
        return response

    def _summary(self, meta: EpisodeMetadata) -> str:
        path = Path(self._recorder.config.output_dir).expanduser() / meta.name
        text = (
            f"{path}: {meta.status}, success={meta.success}, {meta.duration_s:.1f} s, "
            f"{meta.message_count} messages, {meta.dropped_count} dropped"
        )
        return text + (f"; error: {meta.error}" if meta.error else "")

    def _on_event(self, level: str, text: str) -> None:
        logger = self.get_logger()
        {"info": logger.info, "warn": logger.warning}.get(level, logger.error)(text)

    def _on_label_change(self, name: str, value: Any) -> tuple[bool, str]:
        """output_dir, robot, operator: between episodes only."""
        if self._recorder.status().recording:
            return False, f"parameter {name} cannot change while recording"
        config = self._recorder.config
        if name == "output_dir":
            config.output_dir = Path(expand_path(str(value)))
        elif name == "robot":
            config.robot = str(value)
        elif name == "operator":
            config.operator = str(value)
        return True, f"{name} = {value!r} from the next episode"

    def _refresh_health(self) -> None:
        st = self._recorder.status()
        h = self._health
        h.set_value("recording", st.recording)
        h.set_value("episode", st.episode)
        h.set_value("bag_path", st.bag_path)
        h.set_value("queued_messages", st.queued_messages)
        h.set_value("queued_mb", st.queued_mb)
        h.set_value("written_messages", st.written_messages)
        h.set_value("written_mb", st.written_mb)
        h.set_value("dropped", st.dropped)
        h.set_value("free_disk_mb", st.free_disk_mb)
        h.set_value("record_rate_hz", self._rate.rate_hz())
        h.set_value("episodes_recorded", st.episodes_recorded)
        h.set_value("last_error", st.last_error)
        drain_error = next((lp.last_error for lp in self._drain_loops if lp.errors), "")
        if st.last_error:
            h.set_status(ERROR, st.last_error)
        elif drain_error:
            h.set_status(ERROR, f"recorder receive failed: {drain_error}")
        elif st.recording and st.dropped:
            h.set_status(WARN, f"recording {st.episode}: {st.dropped} messages dropped")
        elif st.recording:
            h.set_status(OK, f"recording {st.episode}")
        else:
            h.set_status(OK, "idle")

    def close(self) -> None:
        """End an episode still recording (kept, marked 'shutdown'), stop writer and receivers."""
        self._closed = True
        self._recorder.close()
        for node, stop in self._rx:
            stop()
            node.destroy_node()
        self._rx = []


def main(args: list[str] | None = None) -> int:
    return run_node(EpisodeRecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
