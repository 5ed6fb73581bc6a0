"""The model-node base (``ramp_models.ros.ModelNode``) over real DDS, with the demo world model.

One image check for every model node: rgb8 and bgr8 frames of the same picture give the same
world-model state; a frame in another encoding is dropped and counted (``dropped_images``) and
the node goes on; a joint state that does not name the model's joints is dropped and counted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState

from ramp_common.conversions import (
    image_to_numpy,
    make_joint_state,
    numpy_to_image,
    sec_to_stamp,
    stamp_to_sec,
)
from ramp_common.qos import SENSOR_QOS, STATE_QOS
from ramp_models.model_card import ModelCard
from tests.rosutil import probe_node, spun_node, wait_for

pytestmark = pytest.mark.ros

MODEL_DIR = Path(os.environ.get("RAMP_MODEL_DIR", "models")) / "demo"
NODE = "model_node_test_wm"


def _world_model(card: Path, joints: list[str], cameras: list[str]) -> Callable[[Context], Node]:
    def make(context: Context) -> Node:
        from ramp_worldmodel_node.worldmodel_node import WorldModelNode

        return WorldModelNode(
            NODE,
            context=context,
            parameter_overrides=[
                Parameter("model_card", value=str(card)),
                Parameter("joint_names", value=joints),
                Parameter("camera_names", value=cameras),
            ],
        )

    return make


def test_image_checks_and_bgr_equivalence() -> None:
    card_path = MODEL_DIR / "world_model.yaml"
    if not card_path.is_file():
        pytest.skip(f"{card_path} missing: run scripts/setup.sh (exports the demo models)")
    card = ModelCard.load(card_path)
    joints, cameras = list(card.joints), list(card.cameras)
    latents: dict[float, np.ndarray] = {}
    counters: dict[str, str] = {}

    with spun_node(_world_model(card_path, joints, cameras)), probe_node("mn_probe") as probe:

        def on_state(msg: Image) -> None:
            latents[round(stamp_to_sec(msg.header.stamp), 6)] = image_to_numpy(msg).copy()

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if NODE in status.name:
                    counters.update({kv.key: kv.value for kv in status.values})

        probe.create_subscription(Image, "ramp/wm_state", on_state, STATE_QOS)
        probe.create_subscription(DiagnosticArray, "diagnostics", on_diag, 10)
        cam_pubs = {
            c: probe.create_publisher(Image, f"camera/{c}/image_raw", SENSOR_QOS) for c in cameras
        }
        js_pub = probe.create_publisher(JointState, "joint_states", STATE_QOS)
        rng = np.random.default_rng(0)
        picture = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        picture[:, :, 0] = 250  # a red cast, so a channel swap would change the input

        def send(encoding: str, frame: np.ndarray) -> float:
            """One observation: every camera and the joints with one stamp; -> the stamp."""
            stamp = time.time()
            ros_stamp = sec_to_stamp(stamp)
            js_pub.publish(make_joint_state(joints, np.zeros(len(joints)), ros_stamp))
            for pub in cam_pubs.values():
                pub.publish(numpy_to_image(frame, encoding, ros_stamp, "probe"))
            return round(stamp_to_sec(ros_stamp), 6)

        def wait_for_state(encoding: str, frame: np.ndarray) -> np.ndarray:
            """Send until the node answers an observation made of exactly these frames."""
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline:
                stamp = send(encoding, frame)
                time.sleep(0.3)
                if stamp in latents:
                    return latents[stamp]
            raise AssertionError(f"no ramp/wm_state for a {encoding} observation")

        wait_for(lambda: probe.count_publishers("ramp/wm_state") > 0, 10.0, "the world model")
        from_rgb = wait_for_state("rgb8", picture)
        from_bgr = wait_for_state("bgr8", np.ascontiguousarray(picture[:, :, ::-1]))
        np.testing.assert_allclose(from_bgr, from_rgb, rtol=0, atol=1e-6)
        swapped = wait_for_state("rgb8", np.ascontiguousarray(picture[:, :, ::-1]))
        assert not np.allclose(swapped, from_rgb, atol=1e-4), "the input colours did not matter"

        # a frame in another encoding, a joint state without the model's joints: dropped, counted
        mono = numpy_to_image(picture[:, :, 0].copy(), "mono8", sec_to_stamp(time.time()), "p")
        cam_pubs[cameras[0]].publish(mono)
        js_pub.publish(make_joint_state(["nope"], np.zeros(1), sec_to_stamp(time.time())))
        wait_for(
            lambda: (
                int(counters.get("dropped_images", 0)) >= 1
                and int(counters.get("dropped_joint_states", 0)) >= 1
            ),
            5.0,
            "dropped_images and dropped_joint_states in the diagnostics",
        )
        # and the node goes on
        wait_for_state("rgb8", picture)
