"""Batched serving over real DDS: one world-model node and one policy node serve several robot
namespaces (``robots`` parameter), with the demo pair (exported with a dynamic batch axis).

- each robot gets its own output in its namespace, stamped with its own observation, and the
  values are that robot's (equal to a batch-1 run on its inputs: no cross-talk between rows);
- a robot that sends nothing is never waited for (the others are served; diagnostics say it is
  waiting and count it as skipped), and it is served once its first complete observation comes;
- a robot whose inputs stop: the others go on;
- a card with ``batch: 1`` still serves every robot, one call each (``batch_mode``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from ramp_common.conversions import (
    image_to_numpy,
    make_joint_state,
    numpy_to_image,
    sec_to_stamp,
    stamp_to_sec,
)
from ramp_common.qos import COMMAND_QOS, SENSOR_QOS, STATE_QOS
from ramp_models.inputs import InputPlan, camera_key
from ramp_models.model_card import ModelCard
from ramp_models.observation import Observation, Sample
from ramp_models.onnx_runtime import CPU, load_model
from tests.rosutil import probe_node, spun_node, wait_for

pytestmark = pytest.mark.ros

MODEL_DIR = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / "demo"


def _card(name: str) -> Path:
    path = MODEL_DIR / f"{name}.yaml"
    if not path.is_file():
        pytest.skip(f"{path} missing: run scripts/setup.sh (exports the demo models)")
    if not ModelCard.load(path).batched:
        pytest.skip(f"{path} has batch 1: export the demo models again (ramp-train export-demo)")
    return path


def _node(cls_path: str, name: str, card: Path, robots: list[str]) -> Callable[[Context], Node]:
    def make(context: Context) -> Node:
        module, cls = cls_path.split(":")
        node_cls = getattr(__import__(module, fromlist=[cls]), cls)
        loaded = ModelCard.load(card)
        return node_cls(
            name,
            context=context,
            parameter_overrides=[
                Parameter("model_card", value=str(card)),
                Parameter("joint_names", value=list(loaded.joints)),
                Parameter("camera_names", value=list(loaded.cameras)),
                Parameter("robots", value=robots),
            ],
        )

    return make


class _Diagnostics:
    """The latest key/values of one node's diagnostics status."""

    def __init__(self, probe: Node, node: str) -> None:
        self.values: dict[str, str] = {}
        self.message = ""

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if node in status.name:
                    self.values = {kv.key: kv.value for kv in status.values}
                    self.message = status.message

        probe.create_subscription(DiagnosticArray, "diagnostics", on_diag, 10)


@contextmanager
def _sending(period_s: float, send: Callable[[], None]) -> Iterator[threading.Event]:
    """Call ``send`` every ``period_s`` on a thread; yields the event that stops it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(period_s):
            send()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(2.0)


def test_batched_world_model_serves_each_robot_its_own_latent() -> None:
    card_path = _card("world_model")
    card = ModelCard.load(card_path)
    joints, cameras = list(card.joints), list(card.cameras)
    robots = ["r1", "r2", "r3"]
    rng = np.random.default_rng(1)
    pictures = {r: rng.integers(0, 255, (60, 80, 3), dtype=np.uint8) for r in robots}
    positions = {r: rng.uniform(-0.5, 0.5, len(joints)) for r in robots}
    sent: dict[str, set[float]] = {r: set() for r in robots}
    got: dict[str, dict[float, np.ndarray]] = {r: {} for r in robots}
    active = {"r1": True, "r2": True, "r3": False}
    name = "batched_wm_test"

    with (
        spun_node(
            _node("ramp_worldmodel_node.worldmodel_node:WorldModelNode", name, card_path, robots)
        ),
        probe_node("batched_wm_probe") as probe,
    ):
        diag = _Diagnostics(probe, name)
        pubs = {}
        for r in robots:
            probe.create_subscription(
                Image,
                f"/{r}/ramp/wm_state",
                lambda msg, r=r: got[r].__setitem__(
                    round(stamp_to_sec(msg.header.stamp), 6), image_to_numpy(msg).copy()
                ),
                STATE_QOS,
            )
            pubs[r] = (
                probe.create_publisher(JointState, f"/{r}/joint_states", STATE_QOS),
                {
                    c: probe.create_publisher(Image, f"/{r}/camera/{c}/image_raw", SENSOR_QOS)
                    for c in cameras
                },
            )

        def send() -> None:
            for i, r in enumerate(robots):
                if not active[r]:
                    continue
                stamp = sec_to_stamp(time.time() + 1e-4 * i)
                js, cams = pubs[r]
                js.publish(make_joint_state(joints, positions[r], stamp))
                for pub in cams.values():
                    pub.publish(numpy_to_image(pictures[r], "rgb8", stamp, r))
                sent[r].add(round(stamp_to_sec(stamp), 6))

        with _sending(1.0 / 15.0, send):
            wait_for(lambda: len(got["r1"]) >= 5 and len(got["r2"]) >= 5, 20.0, "r1 and r2 latents")
            wait_for(
                lambda: (
                    "r3: no data yet" in diag.message and int(diag.values.get("r3.skipped", 0)) > 0
                ),
                10.0,
                "r3 reported waiting and skipped",
            )
            assert not got["r3"], "r3 sent nothing but got a latent"
            assert diag.values["batch_mode"].startswith("batched")
            # stamps are each robot's own
            for r in ("r1", "r2"):
                assert set(got[r]) <= sent[r], f"{r} got stamps it never sent"
            # a robot that joins late is served from its first complete observation
            active["r3"] = True
            wait_for(lambda: len(got["r3"]) >= 3, 20.0, "r3's latents after it started")
            assert set(got["r3"]) <= sent["r3"]
            # a robot whose inputs stop does not hold up the others
            active["r1"] = False
            time.sleep(0.5)
            n1, n2 = len(got["r1"]), len(got["r2"])
            wait_for(lambda: len(got["r2"]) >= n2 + 5, 10.0, "r2 going on without r1")
            assert len(got["r1"]) == n1, "r1 got latents after its inputs stopped"
            wait_for(lambda: "stale" in diag.values.get("r1.waiting", ""), 5.0, "r1 stale")

    # each latent is its robot's: equal to a batch-1 run on that robot's inputs
    model = load_model(card_path, [CPU])
    plan = InputPlan.from_card(card)
    for r in robots:
        samples = {"joint_state": Sample(0.0, positions[r].astype(np.float32))}
        samples.update({camera_key(c): Sample(0.0, pictures[r]) for c in cameras})
        expected = model.run(plan.feeds(Observation(0.0, samples)))["wm_state"][0]
        for latent in got[r].values():
            np.testing.assert_allclose(latent, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch", ["dynamic", 1])
def test_batched_policy_chunks_per_robot(tmp_path: Path, batch: object) -> None:
    card_path = _card("policy")
    if batch == 1:  # the same model under a card written before batching
        shutil.copy(card_path.with_suffix(".onnx"), tmp_path / "policy.onnx")
        data = yaml.safe_load(card_path.read_text())
        data.pop("batch")
        card_path = tmp_path / "policy.yaml"
        card_path.write_text(yaml.safe_dump(data, sort_keys=False))
    card = ModelCard.load(card_path)
    joints = list(card.joints)
    wm_shape = card.input_by_role("wm_state").shape[1:]
    robots = ["a", "b"]
    rng = np.random.default_rng(2)
    latents = {r: rng.normal(size=wm_shape).astype(np.float32) for r in robots}
    positions = {r: rng.uniform(-0.5, 0.5, len(joints)) for r in robots}
    sent: dict[str, set[float]] = {r: set() for r in robots}
    chunks: dict[str, dict[float, np.ndarray]] = {r: {} for r in robots}
    name = "batched_policy_test"

    def on_chunk(robot: str, msg: JointTrajectory) -> None:
        assert list(msg.joint_names) == joints
        chunk = np.array([p.positions for p in msg.points])
        chunks[robot][round(stamp_to_sec(msg.header.stamp), 6)] = chunk

    with (
        spun_node(_node("ramp_policy_node.policy_node:PolicyNode", name, card_path, robots)),
        probe_node("batched_policy_probe") as probe,
    ):
        diag = _Diagnostics(probe, name)
        pubs = {}
        for r in robots:
            probe.create_subscription(
                JointTrajectory,
                f"/{r}/ramp/action_chunk",
                lambda m, r=r: on_chunk(r, m),
                COMMAND_QOS,
            )
            pubs[r] = (
                probe.create_publisher(JointState, f"/{r}/joint_states", STATE_QOS),
                probe.create_publisher(Image, f"/{r}/ramp/wm_state", STATE_QOS),
            )

        def send() -> None:
            for r in robots:
                stamp = sec_to_stamp(time.time())
                js, wm = pubs[r]
                js.publish(make_joint_state(joints, positions[r], stamp))
                wm.publish(numpy_to_image(latents[r], "32FC1", stamp, "probe"))
                sent[r].add(round(stamp_to_sec(stamp), 6))

        with _sending(0.1, send):
            wait_for(lambda: all(len(chunks[r]) >= 5 for r in robots), 20.0, "chunks of a and b")
            wait_for(lambda: "batch_mode" in diag.values, 5.0, "diagnostics")
        expected_mode = "batched" if batch == "dynamic" else "one call per robot"
        assert diag.values["batch_mode"].startswith(expected_mode)

    model = load_model(card_path, [CPU])
    for r in robots:
        assert set(chunks[r]) <= sent[r], f"{r}: chunk stamps are not its world-model stamps"
        feeds = {
            "wm_state": latents[r][None],
            "joint_state": positions[r].astype(np.float32)[None],
        }
        expected = model.run(feeds)["action_chunk"][0]
        for chunk in chunks[r].values():
            np.testing.assert_allclose(chunk, expected, rtol=1e-4, atol=1e-5)
