"""Hot reload of the world model and the policy while the simulated stack runs.

ROS-free part: ``HotSwap`` (stage/take between inferences, refusal keeps the old model, file
changes) and ``check_same_interface``.

Integration (separate node processes over real DDS, as ``ros2 launch`` runs them): the stack
runs pair A from a watched folder (``watch_model: true``); pair B is exported into that folder
while it runs and both nodes switch (new model ids on ``ramp/wm_state`` / ``ramp/action_chunk``
frame_id and in diagnostics); the policy is then switched back by a ``model_card`` parameter
change, and a corrupted model is refused by ``worldmodel_node/reload`` while the old one runs
on. Throughout, ``joint_command`` streams without a gap and without a jump.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ramp_common.qos import COMMAND_QOS, STATE_QOS
from ramp_models.hot_swap import FileStamp, HotSwap, check_same_interface
from ramp_models.model_card import ModelCard, ModelCardError
from ramp_training.demo import DemoConfig, export_demo
from tests.rosutil import SIM_CONFIG, call, probe_node, processes, start_sim_stack, wait_for
from tests.test_chunk_execution_ros import Recorder, assert_no_jump

TINY = DemoConfig(seed=3, steps=150, samples=4096, latent_bank=64, log_every=50)
OTHER = DemoConfig(seed=4, steps=150, samples=4096, latent_bank=64, log_every=50)
DEEP_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE
)
"""The probe's queue for joint_command: 5 s at 200 Hz."""
MAX_COMMAND_GAP_S = 0.2
"""joint_command comes at 200 Hz; a stall of the executor (or a restart) would exceed this."""


def _quiet(_line: str) -> None:
    pass


@pytest.fixture(scope="module")
def pair_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pair_a")
    export_demo(out, TINY, log=_quiet)
    return out


# --------------------------------------------------------------------------- ROS-free
def test_hot_swap_switches_only_when_taken(tmp_path: Path) -> None:
    card = tmp_path / "model.yaml"
    card.write_text("a")
    swap = HotSwap("old", str(card))
    assert swap.take() == ("old", False)
    assert not swap.card_changed()
    swap.stage("new", str(card), "staged")
    assert swap.active == "old"  # the running inference keeps the old model
    assert swap.take() == ("new", True)
    assert swap.take() == ("new", False)
    assert (swap.reloads, swap.switches, swap.refused) == (1, 1, 0)


def test_hot_swap_refusal_and_file_changes(tmp_path: Path) -> None:
    card = tmp_path / "model.yaml"
    card.write_text("a")
    swap = HotSwap("old", str(card))
    stamp = FileStamp.of(card)
    card.write_text("bb")
    assert FileStamp.of(card) != stamp
    assert swap.card_changed()
    swap.refuse(str(card), "refused: broken")
    assert not swap.card_changed()  # the refused version is not retried until it changes again
    assert swap.take() == ("old", False)
    assert swap.refused == 1 and "broken" in swap.last_message
    card.unlink()
    assert not swap.card_changed()  # a missing card is no change to load


def test_check_same_interface(pair_a: Path) -> None:
    wm = ModelCard.load(pair_a / "world_model.yaml")
    policy = ModelCard.load(pair_a / "policy.yaml")
    check_same_interface(wm, wm, ["front", "wrist"])
    check_same_interface(policy, policy, ["front", "wrist"])
    with pytest.raises(ModelCardError, match="kind"):
        check_same_interface(wm, policy, ["front", "wrist"])
    with pytest.raises(ModelCardError, match="cameras"):
        check_same_interface(wm, wm, ["front"])
    data = yaml.safe_load((pair_a / "policy.yaml").read_text())
    data["inputs"][0]["shape"] = [1, 4, 32]
    changed = ModelCard.from_dict(data, pair_a / "changed.yaml")  # in memory only
    with pytest.raises(ModelCardError, match="wm_state input"):
        check_same_interface(policy, changed, ["front", "wrist"])
    data = yaml.safe_load((pair_a / "world_model.yaml").read_text())
    data["inputs"] = data["inputs"][:1]
    fewer = ModelCard.from_dict(data, pair_a / "fewer.yaml")
    with pytest.raises(ModelCardError, match="roles"):
        check_same_interface(wm, fewer, ["front", "wrist"])


# --------------------------------------------------------------------------- integration
class Ids:
    """Model ids seen on a topic's frame_id and in diagnostics, in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wm: list[str] = []
        self.policy: list[str] = []
        self.diag: dict[str, dict[str, str]] = {}

    def on_wm(self, msg: Image) -> None:
        with self.lock:
            if not self.wm or self.wm[-1] != msg.header.frame_id:
                self.wm.append(msg.header.frame_id)

    def on_chunk(self, msg: JointTrajectory) -> None:
        with self.lock:
            if not self.policy or self.policy[-1] != msg.header.frame_id:
                self.policy.append(msg.header.frame_id)

    def on_diag(self, msg: DiagnosticArray) -> None:
        with self.lock:
            for status in msg.status:
                self.diag[status.name.lstrip("/")] = {kv.key: kv.value for kv in status.values}

    def last(self, which: str) -> str:
        with self.lock:
            seq = self.wm if which == "wm" else self.policy
            return seq[-1] if seq else ""

    def diag_value(self, node: str, key: str) -> str:
        with self.lock:
            return self.diag.get(node, {}).get(key, "")


def _config(tmp_path: Path, watched: Path) -> Path:
    data = yaml.safe_load(SIM_CONFIG.read_text())
    for node, card in (("worldmodel_node", "world_model.yaml"), ("policy_node", "policy.yaml")):
        params = data[node]["ros__parameters"]
        params.update(
            model_card=str(watched / card),
            providers=["CPUExecutionProvider"],
            watch_model=True,
            watch_period_s=0.2,
        )
    # No arbiter in this test: the executor drives the bridge directly.
    data["chunk_executor"]["ros__parameters"]["command_topic"] = "joint_command"
    data["ramp_stack"]["ros__parameters"]["nodes"] = [
        "sim_bridge",
        "camera_node",
        "worldmodel_node",
        "policy_node",
        "chunk_executor",
    ]
    path = tmp_path / "hot_reload.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _max_gap(recorder: Recorder, since: float) -> float:
    stamps, _ = recorder.stamped_since(since)
    return float(np.max(np.diff(stamps))) if len(stamps) > 1 else float("inf")


@pytest.mark.ros
def test_models_switch_while_the_stack_runs(pair_a: Path, tmp_path: Path) -> None:
    watched = tmp_path / "models"
    shutil.copytree(pair_a, watched)
    ids_a = {
        "wm": ModelCard.load(pair_a / "world_model.yaml").model_id,
        "policy": ModelCard.load(pair_a / "policy.yaml").model_id,
    }
    config = _config(tmp_path, watched)
    commands, ids = Recorder(), Ids()
    with processes(tmp_path) as procs, probe_node("hot_reload_probe") as probe:
        start_sim_stack(procs, tmp_path, config)
        # a deep queue: the exports below run in this process and stall the probe's thread; a
        # 5-deep queue dropped commands meanwhile (a 0.31 s "gap" in one CI run)
        probe.create_subscription(JointState, "joint_command", commands, DEEP_QOS)
        probe.create_subscription(Image, "ramp/wm_state", ids.on_wm, STATE_QOS)
        probe.create_subscription(JointTrajectory, "ramp/action_chunk", ids.on_chunk, COMMAND_QOS)
        probe.create_subscription(DiagnosticArray, "diagnostics", ids.on_diag, 10)
        wait_for(lambda: commands.moving(1.0), 90, "the policy to move the arm")
        wait_for(
            lambda: ids.last("wm") == ids_a["wm"] and ids.last("policy") == ids_a["policy"],
            30,
            "states and chunks from pair A",
        )
        started = time.monotonic()

        # 1. A new pair is exported into the watched folder: both nodes switch by themselves.
        export_demo(watched, OTHER, log=_quiet)
        ids_b = {
            "wm": ModelCard.load(watched / "world_model.yaml").model_id,
            "policy": ModelCard.load(watched / "policy.yaml").model_id,
        }
        assert ids_b["wm"] != ids_a["wm"] and ids_b["policy"] != ids_a["policy"]
        wait_for(lambda: ids.last("wm") == ids_b["wm"], 30, "wm_state from the new world model")
        wait_for(lambda: ids.last("policy") == ids_b["policy"], 30, "chunks from the new policy")
        wait_for(
            lambda: (
                ids.diag_value("worldmodel_node", "model_id") == ids_b["wm"]
                and ids.diag_value("policy_node", "model_id") == ids_b["policy"]
            ),
            10,
            "diagnostics to name the new models",
        )
        wait_for(lambda: commands.moving(0.5), 10, "the arm to move with the new models")

        # 2. A model_card parameter change switches the policy back to pair A's.
        value = ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value=str(pair_a / "policy.yaml")
        )
        request = SetParameters.Request(parameters=[ParameterMsg(name="model_card", value=value)])
        result = call(probe, SetParameters, "policy_node/set_parameters", request)
        assert result.results[0].successful, result.results[0].reason
        wait_for(lambda: ids.last("policy") == ids_a["policy"], 30, "chunks from policy A again")

        # 3. A corrupted model is refused; the running world model goes on.
        onnx = watched / "world_model.onnx"
        onnx.write_bytes(onnx.read_bytes()[:-100])
        answer = call(probe, Trigger, "worldmodel_node/reload", Trigger.Request())
        assert not answer.success and "sha256" in answer.message, answer.message
        wait_for(
            lambda: ids.diag_value("worldmodel_node", "reloads_refused") == "1",
            10,
            "the refusal in diagnostics",
        )
        time.sleep(1.0)
        assert ids.last("wm") == ids_b["wm"]
        assert commands.moving(0.5), "the arm stopped after a refused reload"

        for proc in procs:
            assert proc.alive(), f"{proc.name} died: {proc.stderr()[-2000:]}"
        assert _max_gap(commands, started) < MAX_COMMAND_GAP_S
        assert_no_jump(commands, started)
