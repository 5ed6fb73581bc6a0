"""episode_recorder as its own process over real DDS.

- the loop topics published from this test end up in the bag (rosbags and the mcap reader read
  it as a standard rosbag2), counts and header stamps match, the metadata holds task, labels,
  model ids and intervention segments; an unwritable output_dir is refused with the reason and
  the recorder stays usable;
- a recorder SIGKILLed mid-episode leaves a bag that reads back up to its last flush, and the
  next start repairs it;
- a nearly full disk (a 20 MB tmpfs) ends the episode cleanly before it is full.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import (
    make_joint_state,
    numpy_to_image,
    numpy_to_trajectory,
    sec_to_stamp,
)
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS
from ramp_hilr_teleop.core.bag_writer import make_typestore
from ramp_hilr_teleop.core.episode import (
    STATUS_COMPLETE,
    STATUS_ENDED_ON_ERROR,
    STATUS_RECORDING,
    STATUS_RECOVERED,
    read_metadata,
)
from ramp_hilr_teleop.core.repair import scan_mcap

pytestmark = pytest.mark.ros

DOMAIN_ID = int(os.environ.get("RAMP_TEST_DOMAIN_ID", "153"))
JOINTS = ["joint1", "joint2", "gripper"]
TS = make_typestore()


@pytest.fixture
def ros_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return dict(os.environ)


UDP_PROFILE = Path(__file__).resolve().parents[2] / "ramp_bringup/dds/fastdds_udp.xml"


class Recorder:
    """The recorder process (own process group, so every thread dies with a kill).

    It runs Fast DDS over UDP only: these tests SIGKILL it, and a participant killed while it
    holds a shared-memory port's lock can block every later participant of the domain
    (see fastdds_udp.xml).
    """

    def __init__(self, log_dir: Path, env: dict[str, str], params: dict[str, str]) -> None:
        profile = str(UDP_PROFILE)
        env = dict(
            env, FASTRTPS_DEFAULT_PROFILES_FILE=profile, FASTDDS_DEFAULT_PROFILES_FILE=profile
        )
        args = [sys.executable, "-m", "ramp_hilr_teleop.episode_recorder", "--ros-args"]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        n = len(list(log_dir.glob("recorder*.err")))
        self.err_path = log_dir / f"recorder{n}.err"
        self._err = self.err_path.open("wb")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._err, stderr=self._err, start_new_session=True
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._err.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._err.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")


@contextlib.contextmanager
def recorder(tmp_path: Path, env: dict[str, str], **params: Any) -> Iterator[Recorder]:
    defaults = {"camera_names": "[front]", "robot": "sim", "operator": "tester",
                "flush_interval_s": "0.2", "min_free_disk_mb": "1.0"}  # fmt: skip
    defaults.update({k: str(v) for k, v in params.items()})
    rec = Recorder(tmp_path, env, defaults)
    try:
        yield rec
    finally:
        rec.kill()


class Probe:
    """Publishers for the loop topics and clients for the recorder services."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node: Node = rclpy.create_node("recorder_test_probe", context=self.context)
        n = self.node
        topics = {
            "camera/front/image_raw": (Image, SENSOR_QOS),
            "joint_states": (JointState, STATE_QOS),
            "ramp/wm_state": (Image, STATE_QOS),
            "ramp/action_chunk": (JointTrajectory, COMMAND_QOS),
            "ramp/policy_command": (JointState, COMMAND_QOS),
            "ramp/operator_command": (JointState, COMMAND_QOS),
            "joint_command": (JointState, COMMAND_QOS),
            "ramp/intervention": (Bool, LATCHED_QOS),
            "ramp/task": (String, LATCHED_QOS),
        }
        self.pubs = {t: n.create_publisher(cls, t, qos) for t, (cls, qos) in topics.items()}
        self.diag = n.create_publisher(DiagnosticArray, "diagnostics", 10)
        self.start = n.create_client(Trigger, "ramp/episode/start")
        self.stop = n.create_client(SetBool, "ramp/episode/stop")
        self.cancel = n.create_client(Trigger, "ramp/episode/cancel")
        self.params = n.create_client(SetParameters, "episode_recorder/set_parameters")
        self._executor = SingleThreadedExecutor(context=self.context)
        self._executor.add_node(n)
        self._thread = threading.Thread(target=self._executor.spin, daemon=True)
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def wait_ready(self, rec: Recorder, topics: list[str] | None = None) -> None:
        wait_for(lambda: self.start.wait_for_service(0.05) or rec.proc.poll() is not None,
                 30, "recorder services")  # fmt: skip
        assert rec.proc.poll() is None, rec.log()
        for topic in topics or list(self.pubs):
            wait_for(lambda t=topic: self.pubs[t].get_subscription_count() > 0, 20, topic)

    def call(self, client: Any, request: Any, timeout_s: float = 30.0) -> Any:
        future = client.call_async(request)
        wait_for(future.done, timeout_s, f"reply of {client.srv_name}")
        return future.result()

    def set_output_dir(self, path: str) -> bool:
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=path)
        req = SetParameters.Request(parameters=[ParameterMsg(name="output_dir", value=value)])
        return self.call(self.params, req).results[0].successful


@pytest.fixture
def probe(ros_env: dict[str, str]) -> Iterator[Probe]:
    p = Probe()
    try:
        yield p
    finally:
        p.close()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def stamp_ns(msg: Any) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def test_records_loop_topics_with_labels(
    tmp_path: Path, ros_env: dict[str, str], probe: Probe
) -> None:
    out = tmp_path / "episodes"
    with recorder(tmp_path, ros_env, output_dir=out) as rec:
        probe.pubs["ramp/task"].publish(String(data="pick the cube"))  # latched before start
        probe.pubs["ramp/intervention"].publish(Bool(data=False))
        probe.wait_ready(rec)

        # An unwritable output folder: refused with the reason; the recorder stays usable.
        blocker = tmp_path / "file.txt"
        blocker.write_text("x")
        assert probe.set_output_dir(str(blocker / "episodes"))
        reply = probe.call(probe.start, Trigger.Request())
        assert not reply.success and "file.txt" in reply.message, reply.message
        assert probe.set_output_dir(str(out))

        reply = probe.call(probe.start, Trigger.Request())
        assert reply.success, reply.message
        bag = Path(reply.message.split(";")[0])
        assert bag.parent == out
        sent = publish_loop(probe)
        time.sleep(0.5)  # delivery of the last samples (not a timing assertion)
        reply = probe.call(probe.stop, SetBool.Request(data=True))
        assert reply.success, reply.message
        assert rec.stop() == 0
        assert "Traceback" not in rec.log()

    meta = read_metadata(bag)
    assert meta.status == STATUS_COMPLETE and meta.success is True and not meta.cancelled
    assert meta.task == "pick the cube" and meta.robot == "sim" and meta.operator == "tester"
    assert meta.model_ids["world_model"] == ["wm-test"]
    assert meta.model_ids["policy"] == ["policy-test"]
    assert meta.model_ids["nodes"]["/policy_node"] == "policy-test"
    assert meta.dropped_count == 0
    assert len(meta.interventions) == 1
    seg = meta.interventions[0]
    assert meta.start_ns < seg.start_ns < seg.end_ns < meta.end_ns
    assert seg.end_s - seg.start_s == pytest.approx(seg.duration_s, abs=1e-5)  # us-rounded

    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert "ramp_episode" in (reader.storage.metadata.custom or {})
        js_conn = [c for c in reader.connections if c.topic == "/joint_states"]
        js_stamps = [stamp_ns(TS.deserialize_cdr(raw, "sensor_msgs/msg/JointState"))
                     for _, _, raw in reader.messages(js_conn)]  # fmt: skip
    for topic, n in sent.items():
        if topic == "diagnostics":
            assert counts["/diagnostics"] >= n  # the recorder's own diagnostics are recorded too
        else:
            assert counts["/" + topic] == n, topic
    assert counts["/ramp/task"] == 1 and counts["/ramp/intervention"] == 3
    assert js_stamps == [1_000_000_000 + k * 5_000_000 for k in range(sent["joint_states"])]

    with (bag / f"{bag.name}.mcap").open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        decoded: dict[str, int] = {}
        for _schema, channel, _message, ros_msg in reader.iter_decoded_messages():
            decoded[channel.topic] = decoded.get(channel.topic, 0) + 1
            if channel.topic == "/ramp/task":
                assert ros_msg.data == "pick the cube"
        assert decoded == counts
        assert reader.get_summary().statistics.message_count == sum(counts.values())


def publish_loop(probe: Probe) -> dict[str, int]:
    """About one second of the loop at its rates; returns what was sent per topic."""
    p = probe.pubs
    sent: dict[str, int] = dict.fromkeys([*p, "diagnostics"], 0)
    image = np.zeros((48, 64, 3), np.uint8)
    for k in range(200):  # 200 Hz ticks
        t = 1.0 + k * 0.005
        pos = np.array([0.1, 0.2, 0.03]) + 0.001 * k
        p["joint_states"].publish(make_joint_state(JOINTS, pos, sec_to_stamp(t)))
        p["joint_command"].publish(make_joint_state(JOINTS, pos, sec_to_stamp(t)))
        p["ramp/policy_command"].publish(make_joint_state(JOINTS, pos, sec_to_stamp(t)))
        sent["joint_states"] += 1
        sent["joint_command"] += 1
        sent["ramp/policy_command"] += 1
        if k % 7 == 0:
            image[:] = k % 256
            p["camera/front/image_raw"].publish(numpy_to_image(image, "rgb8", sec_to_stamp(t)))
            sent["camera/front/image_raw"] += 1
        if k % 20 == 0:
            latent = np.zeros((4, 8), np.float32)
            p["ramp/wm_state"].publish(numpy_to_image(latent, "32FC1", sec_to_stamp(t), "wm-test"))
            chunk = numpy_to_trajectory(JOINTS, np.array([0.02, 0.04]), np.zeros((2, 3)),
                                        sec_to_stamp(t), "policy-test")  # fmt: skip
            p["ramp/action_chunk"].publish(chunk)
            sent["ramp/wm_state"] += 1
            sent["ramp/action_chunk"] += 1
        if k == 60:
            p["ramp/intervention"].publish(Bool(data=True))
        if 60 <= k < 120:
            p["ramp/operator_command"].publish(make_joint_state(JOINTS, pos, sec_to_stamp(t)))
            sent["ramp/operator_command"] += 1
        if k == 120:
            p["ramp/intervention"].publish(Bool(data=False))
        if k % 100 == 0:
            status = DiagnosticStatus(
                name="/policy_node",
                message="ok",
                values=[KeyValue(key="model_id", value="policy-test")],
            )
            probe.diag.publish(DiagnosticArray(status=[status]))  # fmt: skip
            sent["diagnostics"] += 1
        time.sleep(0.005)
    sent.pop("ramp/intervention")
    sent.pop("ramp/task")
    return sent


def test_sigkill_leaves_readable_bag_and_the_restarted_recorder_repairs_it(
    tmp_path: Path, ros_env: dict[str, str], probe: Probe
) -> None:
    out = tmp_path / "episodes"
    topics = ["joint_states", "camera/front/image_raw"]
    with recorder(tmp_path, ros_env, output_dir=out) as rec:
        probe.wait_ready(rec, topics)
        reply = probe.call(probe.start, Trigger.Request())
        assert reply.success, reply.message
        bag = Path(reply.message.split(";")[0])
        image = np.full((48, 64, 3), 9, np.uint8)
        for k in range(300):
            t = 2.0 + k * 0.005
            probe.pubs["joint_states"].publish(
                make_joint_state(JOINTS, np.zeros(3), sec_to_stamp(t))
            )
            if k % 7 == 0:
                probe.pubs["camera/front/image_raw"].publish(
                    numpy_to_image(image, "rgb8", sec_to_stamp(t))
                )
            time.sleep(0.005)
        time.sleep(1.0)  # several flush intervals (0.2 s) after the last message
        rec.kill()  # SIGKILL mid-episode: no chance to close the bag

    assert read_metadata(bag).status == STATUS_RECORDING
    assert not (bag / "metadata.yaml").exists()
    scan, messages = scan_mcap(bag / f"{bag.name}.mcap")
    scanned: dict[str, int] = {}
    for channel, _, _ in messages:
        scanned[channel.topic] = scanned.get(channel.topic, 0) + 1
    assert not scan.complete
    assert scanned["/joint_states"] == 300  # everything up to the last flush is there

    # A fresh participant: the old one still lists the killed recorder's endpoints until their
    # lease expires, and a request sent before the new server is matched would be lost.
    probe.close()
    fresh = Probe()
    try:
        with recorder(tmp_path, ros_env, output_dir=out) as rec2:
            fresh.wait_ready(rec2, topics)
            # the recorder repairs the killed episode's bag as soon as it is up (a thread), so
            # the start does not wait for it; were it still repairing, the start would finish it
            reply = fresh.call(fresh.start, Trigger.Request())
            assert reply.success, reply.message
            assert fresh.call(fresh.cancel, Trigger.Request()).success
    finally:
        fresh.close()

    meta = read_metadata(bag)
    assert meta.status == STATUS_RECOVERED and meta.repair["recovered_messages"] > 0
    assert meta.topics["joint_states"].count == 300
    with Reader(bag) as reader:
        assert reader.message_count == sum(scanned.values())
    with (bag / f"{bag.name}.mcap").open("rb") as f:
        summary = make_reader(f).get_summary()
        assert summary.statistics.message_count == sum(scanned.values())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs (needs root / CAP_SYS_ADMIN; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_nearly_full_disk_ends_episode_before_full(
    tmp_path: Path, ros_env: dict[str, str], probe: Probe, small_disk: Path
) -> None:
    out = small_disk / "episodes"
    with recorder(tmp_path, ros_env, output_dir=out, min_free_disk_mb=8.0,
                  flush_interval_s=0.1) as rec:  # fmt: skip
        probe.wait_ready(rec, ["camera/front/image_raw"])
        reply = probe.call(probe.start, Trigger.Request())
        assert reply.success, reply.message
        bag = Path(reply.message.split(";")[0])
        image = np.full((480, 640, 3), 5, np.uint8)
        deadline = time.monotonic() + 20
        while read_metadata(bag).status == STATUS_RECORDING and time.monotonic() < deadline:
            probe.pubs["camera/front/image_raw"].publish(
                numpy_to_image(image, "rgb8", sec_to_stamp(1.0))
            )
            time.sleep(1 / 30)
        reply = probe.call(probe.stop, SetBool.Request(data=True))
        assert not reply.success and "min_free_disk_mb" in reply.message, reply.message
        assert rec.proc.poll() is None  # the recorder keeps running
        assert rec.stop() == 0

    meta = read_metadata(bag)
    assert meta.status == STATUS_ENDED_ON_ERROR and meta.end_reason == "disk_full"
    st = os.statvfs(small_disk)
    assert st.f_bavail * st.f_frsize > 4 * 2**20  # ended before the disk was full
    with Reader(bag) as reader:
        assert reader.message_count == meta.message_count > 0
