"""The whole stack on the simulated arm, over real DDS: data flow end to end and bad input.

frames -> wm_state -> chunk -> commands -> joints move, once in one process (``ramp up``) and once
as separate node processes (as ``ros2 launch`` starts them), plus the failure cases of issue 2:
missing / corrupt / mismatching model files, a camera that cannot be opened, malformed messages.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_bringup.stack import stack_nodes
from ramp_common.conversions import (
    numpy_to_image,
    numpy_to_trajectory,
    sec_to_stamp,
)
from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS
from tests.rosutil import (
    SIM_CONFIG,
    NodeProcess,
    assert_ramp_up_ended_cleanly,
    probe_node,
    processes,
    start_sim_stack,
    wait_for,
)

pytestmark = pytest.mark.ros

MODEL_DIR = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / "demo"
JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]


def run_ramp_up(
    tmp_path: Path,
    duration_s: float,
    config: Path | None = None,
    robot: str = "sim",
    fake_hardware: bool = False,
    extra: tuple[str, ...] = (),
) -> tuple[int, dict, str]:
    """Run ``ramp up`` as a process; (exit code, report, stderr)."""
    report_path = tmp_path / "report.json"
    args = [sys.executable, "-m", "ramp_bringup.cli", "up", "--robot", robot]
    if fake_hardware:
        args.append("--fake-hardware")
    args += ["--duration", str(duration_s), "--report", str(report_path)]
    args += ["--domain-id", os.environ["ROS_DOMAIN_ID"]]
    if config is not None:
        args += ["--config", str(config)]
    args += list(extra)
    with processes(tmp_path) as procs:
        proc = NodeProcess(args, tmp_path, "ramp_up")
        procs.append(proc)
        code = proc.wait(duration_s + 90)
    return code, json.loads(report_path.read_text()), proc.stderr()


def test_ramp_up_runs_the_loop_end_to_end(tmp_path):
    code, report, stderr = run_ramp_up(tmp_path, 20)
    assert_ramp_up_ended_cleanly(code, report, stderr)
    assert "Traceback" not in stderr
    topics = report["topics"]
    for topic in (
        "camera/front/image_raw",
        "camera/wrist/image_raw",
        "joint_states",
        "ramp/wm_state",
        "ramp/action_chunk",
        "joint_command",
    ):
        assert topics[topic]["count"] > 20, f"{topic} barely flowed: {topics[topic]}"
    assert report["latency_ms"]["capture_to_first_command"]["n"] > 10
    assert report["joint_motion"]["moving"], report["joint_motion"]
    assert set(report["inference_ms"]) == {"/worldmodel_node", "/policy_node"}
    # the production layout: every node its own process, all ended cleanly
    assert report["layout"] == "process-per-node"
    # every stage timed itself: each row of the capture -> first command breakdown has a p50
    from ramp_common.hops import decompose

    rows = decompose(report["diagnostics"], report["latency_ms"]["capture_to_first_command"])
    assert all(p50 is not None for _, p50, _, _ in rows), rows
    assert len(set(report["pids"].values())) == len(report["nodes"]) == len(stack_nodes(SIM_CONFIG))
    assert set(report["exit_codes"]) == set(report["nodes"])  # each ended (exit codes above)

    # The picture of the same run: rates against sim.yaml's, histograms of the kept samples.
    from ramp_bringup.cli import main as ramp_main
    from ramp_bringup.core.summary_plot import summary_plot_data

    plot = tmp_path / "summary.png"
    assert ramp_main(["summary", str(tmp_path / "report.json"), "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000
    data = summary_plot_data(report)
    assert {r.topic: r.configured_hz for r in data.rates}["joint_command"] == 200.0
    e2e = next(h for h in data.histograms if h.name == "capture_to_first_command")
    assert e2e.samples_ms.size == min(report["latency_ms"]["capture_to_first_command"]["n"], 2000)


def test_ramp_up_takes_parameter_overrides_as_ros_users_type_them(tmp_path):
    code, report, stderr = run_ramp_up(
        tmp_path, 8, extra=("-p", "sim_bridge.state_rate_hz:=100.0", "--single-process")
    )
    assert code == 0, stderr
    assert report["layout"] == "single-process"
    # the node took the value (its start-up line), and the stream is not at the default 200 Hz;
    # no lower bound: one process on a loaded 2-core machine has run it at 36 Hz
    assert "joint_states at 100.0 Hz" in stderr, stderr[-3000:]
    rate = report["topics"]["joint_states"]["rate_hz"]
    assert 0 < rate < 130, f"joint_states at {rate} Hz: the 100 Hz override did not apply"


def test_ramp_up_stops_when_the_robot_bridge_cannot_run(tmp_path):
    code, report, stderr = run_ramp_up(tmp_path, 60, extra=("-p", "sim_bridge.state_rate_hz:=-1.0"))
    assert code == 1
    assert report["duration_s"] < 50  # it did not wait for --duration without its robot
    assert any("sim_bridge exited with code 1" in e for e in report["errors"]), report["errors"]
    assert "state_rate_hz" in stderr  # the bridge's own reason, prefixed with its name
    assert "Traceback" not in stderr


def test_separate_processes_flow_and_survive_malformed_messages(tmp_path):
    seen: dict[str, int] = {}
    positions: list[np.ndarray] = []
    lock = threading.Lock()

    def counter(topic: str):
        def callback(msg) -> None:
            with lock:
                seen[topic] = seen.get(topic, 0) + 1
                if topic == "joint_states":
                    positions.append(np.array(msg.position[:6]))

        return callback

    with processes(tmp_path) as procs, probe_node() as probe:
        start_sim_stack(procs, tmp_path)
        probe.create_subscription(
            Image, "camera/front/image_raw", counter("camera/front/image_raw"), SENSOR_QOS
        )
        probe.create_subscription(Image, "ramp/wm_state", counter("ramp/wm_state"), STATE_QOS)
        probe.create_subscription(
            JointTrajectory, "ramp/action_chunk", counter("ramp/action_chunk"), COMMAND_QOS
        )
        probe.create_subscription(
            JointState, "joint_command", counter("joint_command"), COMMAND_QOS
        )
        probe.create_subscription(JointState, "joint_states", counter("joint_states"), STATE_QOS)

        def all_flowing() -> bool:
            with lock:
                return all(
                    seen.get(t, 0) > 5
                    for t in (
                        "camera/front/image_raw",
                        "ramp/wm_state",
                        "ramp/action_chunk",
                        "joint_command",
                    )
                )

        wait_for(all_flowing, 60, "frames, states, chunks and commands")

        def moved() -> bool:
            with lock:
                q = np.stack(positions) if positions else np.zeros((1, 6))
            return float((q.max(axis=0) - q.min(axis=0)).max()) > 0.05

        wait_for(moved, 30, "the arm to move")
        for proc in procs:
            assert proc.alive(), f"{proc.name} died: {proc.stderr()[-2000:]}"

        # Malformed input on every link of the loop: each is logged once, dropped, nobody dies.
        now = sec_to_stamp(0.0)
        bad_image = numpy_to_image(np.zeros((4, 4), np.uint8), "mono8", now, "front")
        bad_latent = numpy_to_image(np.zeros((3, 3), np.float32), "32FC1", now, "wm-x")
        bad_chunk = numpy_to_trajectory(["elbow"], np.array([0.1]), np.zeros((1, 1)), now)
        bad_command = JointState(name=["elbow"], position=[1.0])
        publishers = [
            (probe.create_publisher(Image, "camera/front/image_raw", SENSOR_QOS), bad_image),
            (probe.create_publisher(Image, "ramp/wm_state", STATE_QOS), bad_latent),
            (probe.create_publisher(JointTrajectory, "ramp/action_chunk", COMMAND_QOS), bad_chunk),
            (probe.create_publisher(JointState, "joint_command", COMMAND_QOS), bad_command),
        ]
        for _ in range(10):
            for pub, msg in publishers:
                pub.publish(msg)
            threading.Event().wait(0.05)
        with lock:
            before = dict(seen)

        def still_flowing() -> bool:
            with lock:
                return all(seen[t] > before[t] + 5 for t in ("ramp/action_chunk", "joint_command"))

        wait_for(still_flowing, 20, "chunks and commands after the malformed messages")
        for proc in procs:
            assert proc.alive(), f"{proc.name} died: {proc.stderr()[-2000:]}"
    logs = {p.stem: p.read_text() for p in tmp_path.glob("*.err")}
    assert "dropping ramp/wm_state" in logs["policy_node"]
    assert logs["policy_node"].count("dropping ramp/wm_state") == 1  # logged once, then counted
    assert "rejecting action chunk" in logs["chunk_executor"]
    assert "Traceback" not in "".join(logs.values())


def test_camera_that_cannot_be_opened_is_reported_and_the_arm_holds(tmp_path):
    config = yaml.safe_load(SIM_CONFIG.read_text())
    config["camera_node"]["ros__parameters"]["camera_sources"][1] = "device:/dev/video97"
    path = tmp_path / "sim_no_wrist.yaml"
    path.write_text(yaml.safe_dump(config))
    code, report, stderr = run_ramp_up(tmp_path, 10, config=path)
    assert code == 0, stderr
    assert any("video97" in e for e in report["errors"]), report["errors"]
    topics = report["topics"]
    assert topics["camera/front/image_raw"]["count"] > 20  # the other camera keeps running
    assert topics.get("ramp/action_chunk", {"count": 0})["count"] == 0
    assert topics["joint_command"]["count"] > 100  # the executor keeps holding position
    assert not report["joint_motion"]["moving"]


# -- model files: refused at start with the file and the mismatch named ----------------------


@pytest.fixture
def rclpy_context():
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


def make_worldmodel(context, card: Path):
    from ramp_worldmodel_node.worldmodel_node import WorldModelNode

    params = [
        Parameter("model_card", value=str(card)),
        Parameter("joint_names", value=JOINTS),
        Parameter("camera_names", value=["front", "wrist"]),
    ]
    return WorldModelNode(context=context, parameter_overrides=params)


def copy_models(tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(MODEL_DIR, target)
    return target


def test_missing_model_file_refused(tmp_path, rclpy_context):
    models = copy_models(tmp_path)
    (models / "world_model.onnx").unlink()
    with pytest.raises(Exception, match=r"world_model\.onnx"):
        make_worldmodel(rclpy_context, models / "world_model.yaml")


def test_truncated_model_file_refused(tmp_path, rclpy_context):
    models = copy_models(tmp_path)
    onnx_path = models / "world_model.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[:1000])
    with pytest.raises(Exception, match=r"(?i)sha256.*world_model\.onnx|world_model\.onnx.*sha256"):
        make_worldmodel(rclpy_context, models / "world_model.yaml")


def test_model_not_matching_robot_refused(tmp_path, rclpy_context):
    from ramp_worldmodel_node.worldmodel_node import WorldModelNode

    params = [
        Parameter("model_card", value=str(MODEL_DIR / "world_model.yaml")),
        Parameter("joint_names", value=["a", "b", "c", "d", "e", "f", "g"]),
        Parameter("camera_names", value=["front", "wrist"]),
    ]
    with pytest.raises(Exception, match="joint"):
        WorldModelNode(context=rclpy_context, parameter_overrides=params)


def test_card_shape_mismatch_refused(tmp_path, rclpy_context):
    models = copy_models(tmp_path)
    card_path = models / "world_model.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["outputs"][0]["shape"][1] += 1
    card_path.write_text(yaml.safe_dump(card))
    with pytest.raises(Exception, match="shape"):
        make_worldmodel(rclpy_context, card_path)


def test_node_process_refuses_missing_model_with_clear_error(tmp_path):
    config = yaml.safe_load(SIM_CONFIG.read_text())
    config["worldmodel_node"]["ros__parameters"]["model_card"] = f"{tmp_path}/nope.yaml"
    path = tmp_path / "sim_missing_model.yaml"
    path.write_text(yaml.safe_dump(config))
    with processes(tmp_path) as procs:
        proc = NodeProcess.module(
            "ramp_worldmodel_node.worldmodel_node", ["--params-file", str(path)], tmp_path, "wm"
        )
        procs.append(proc)
        code = proc.wait(60)
    assert code != 0
    assert "nope.yaml" in proc.stderr()
    assert "Traceback" not in proc.stderr()
