"""Human-in-the-loop rollout on the simulated arm, end to end over real DDS (issue 5).

The policy runs; a scripted operator sets the task, starts an episode, takes over through the
same service the keyboard and gamepad use (``ramp/takeover``), corrects with a leader arm
(``leader/joint_states`` -> teleop_node -> arbiter), hands back, and stops the episode with
success. Then: the bag holds every topic of the loop, its intervention segment matches what
happened, ``ramp-bag export`` yields the right number of frames with the right flags, and
``joint_command`` never jumped at either handover.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from ramp_common.conversions import make_joint_state, sec_to_stamp
from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, STATE_QOS
from tests.rosutil import SIM_CONFIG, call, probe_node, processes, start_sim_stack, wait_for
from tests.test_chunk_execution_ros import Recorder, assert_no_jump

pytestmark = pytest.mark.ros

JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
LOOP_TOPICS = [
    "camera/front/image_raw",
    "camera/wrist/image_raw",
    "joint_states",
    "ramp/wm_state",
    "ramp/action_chunk",
    "ramp/policy_command",
    "ramp/operator_command",
    "joint_command",
    "ramp/intervention",
    "ramp/task",
]
FPS = 10


def hilr_config(tmp_path: Path) -> Path:
    config = yaml.safe_load(SIM_CONFIG.read_text())
    config["teleop_node"]["ros__parameters"].update(
        {"mode": "leader", "leader_joint_names": JOINTS, "keyboard": False}
    )
    config["episode_recorder"]["ros__parameters"].update(
        {"output_dir": str(tmp_path / "episodes"), "min_free_disk_mb": 50.0}
    )
    path = tmp_path / "sim_hilr.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_operator_takeover_is_recorded_and_exported(tmp_path):
    config = hilr_config(tmp_path)
    commands, states = Recorder(), Recorder()
    with processes(tmp_path) as procs, probe_node("scripted_operator") as operator:
        start_sim_stack(procs, tmp_path, config)  # incl. arbiter, teleop and recorder
        operator.create_subscription(JointState, "joint_command", commands, COMMAND_QOS)
        operator.create_subscription(JointState, "joint_states", states, STATE_QOS)
        task_pub = operator.create_publisher(String, "ramp/task", LATCHED_QOS)
        task_pub.publish(String(data="push the cube onto the green pad"))
        wait_for(lambda: commands.moving(1.0), 90, "the policy to move the arm")

        started = call(operator, Trigger, "ramp/episode/start", Trigger.Request())
        assert started.success, started.message
        bag = Path(started.message.split(";")[0])
        episode_start = time.time()
        time.sleep(3.0)

        # The operator grabs the leader arm where the robot is and moves joint 1 and 4.
        leader_pub = operator.create_publisher(JointState, "leader/joint_states", COMMAND_QOS)
        grab_pose = states.since(time.monotonic() - 0.2)[-1].copy()
        stop_leader = threading.Event()

        def leader_arm() -> None:
            t0 = time.time()
            while not stop_leader.wait(0.01):
                pose = grab_pose.copy()
                pose[0] += 0.25 * np.sin(0.8 * (time.time() - t0))
                pose[3] += 0.2 * np.sin(0.8 * (time.time() - t0))
                leader_pub.publish(make_joint_state(JOINTS, pose, sec_to_stamp(time.time())))

        leader = threading.Thread(target=leader_arm, daemon=True)
        leader.start()
        time.sleep(0.3)
        took = call(operator, SetBool, "ramp/takeover", SetBool.Request(data=True))
        assert took.success, took.message
        takeover_at = time.time() - episode_start
        time.sleep(3.0)
        handed = call(operator, SetBool, "ramp/takeover", SetBool.Request(data=False))
        assert handed.success, handed.message
        handback_at = time.time() - episode_start
        stop_leader.set()
        leader.join(1.0)
        time.sleep(3.0)
        stopped = call(operator, SetBool, "ramp/episode/stop", SetBool.Request(data=True))
        assert stopped.success, stopped.message
        for proc in procs:
            assert proc.alive(), f"{proc.name} died: {proc.stderr()[-2000:]}"
        assert_no_jump(commands, 0.0)  # the whole run, both handovers included

    meta = yaml.safe_load((bag / "episode.yaml").read_text())
    assert meta["status"] == "complete" and meta["success"] is True
    assert meta["task"] == "push the cube onto the green pad"
    for topic in LOOP_TOPICS:
        assert meta["topics"][topic]["count"] > 0, f"{topic} missing from the bag"
    assert meta["dropped_count"] == 0
    (segment,) = meta["interventions"]
    # the segment is stamped when the recorder takes in the latched ramp/intervention message;
    # on a loaded 2-core CI machine that lagged the service reply by 0.69 s. It must still sit
    # at this takeover and handback (3 s apart), not anywhere else.
    assert abs(segment["start_s"] - takeover_at) < 1.0, (segment, takeover_at)
    assert abs(segment["end_s"] - handback_at) < 1.0, (segment, handback_at)

    out = tmp_path / "dataset"
    subprocess.run(
        [sys.executable, "-m", "ramp_hilr_teleop.bag_cli", "export", str(bag), "--out", str(out),
         "--fps", str(FPS)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    frames = pq.read_table(out / "data/chunk-000/file-000.parquet").to_pydict()
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    n = len(frames["frame_index"])
    # frames start once every stream has a sample: under CI load the first camera frame came
    # 0.3 s into the episode (98 frames for 10.13 s)
    assert abs(n - meta["duration_s"] * FPS) <= 5, (n, meta["duration_s"])
    flags = np.array(frames["intervention"], dtype=bool)
    assert abs(flags.sum() - segment["duration_s"] * FPS) <= 3
    first, last = np.flatnonzero(flags)[[0, -1]]
    assert flags[first : last + 1].all(), "one contiguous corrected stretch"
    assert all(frames["success"])
    assert (out / "videos/observation.images.front/chunk-000/file-000.mp4").stat().st_size > 0
