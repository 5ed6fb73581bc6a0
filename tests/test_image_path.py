"""Images move without per-pixel Python anywhere on the path.

Proof by profile, not by timing: every conversion a frame goes through (numpy -> serialized Image
as the sim bridge and the camera node publish it, serialized Image -> numpy view as the camera
node and the world model take it, resize, the world model's preprocessing, the latent both ways;
and the rclpy message conversions that tests and tools still use) is run under a Python profiler
on a 320x240 and a 640x480 frame; the number of Python-level events must not grow with the pixel
count (a loop over pixels or bytes would add ~4x more at the larger size). Run in a child process
with ``ROS_PYTHON_CHECK_FIELDS=1``, which gives Jazzy's generated message setters Humble's
always-on field checks (a Python loop over a ``bytes`` payload: the bug this caught).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROFILE_SCRIPT = r"""
import json, sys
import numpy as np
from builtin_interfaces.msg import Time
from ramp_common.conversions import image_to_numpy, numpy_to_image
from ramp_common.image_wire import decode_image, encode_image
from ramp_worldmodel_node.core.camera_sources import resize_image
from ramp_models.model_card import ImageSpec
from ramp_models.preprocess import ImagePreprocessor

preprocess = ImagePreprocessor(ImageSpec(height=96, width=96), ["front", "wrist"])

def path(frame):
    raw = encode_image(frame, "rgb8", 1.0, "front")       # sim bridge / camera node publish
    view = decode_image(raw).pixels                       # subscriber side, zero-copy view
    small = resize_image(view, 160, 120)                  # camera_node output size
    encode_image(small, "rgb8", (1, 0), "front")          # camera_node republish
    preprocess([view, small])                             # world model input tensor
    latent = np.zeros((8, 32), np.float32)
    decode_image(encode_image(latent, "32FC1", 1.0, "wm"))  # wm_state
    image_to_numpy(numpy_to_image(frame, "rgb8", Time(), "front"))  # rclpy messages

counts = {}
for h, w in ((240, 320), (480, 640)):
    frame = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    path(frame)  # warm-up: imports, caches
    events = [0]
    def prof(frame_, event, arg):
        events[0] += 1
    sys.setprofile(prof)
    path(frame)
    sys.setprofile(None)
    counts[f"{w}x{h}"] = events[0]
print(json.dumps(counts))
"""


def test_no_python_loop_over_pixels_on_the_image_path() -> None:
    env = dict(os.environ, ROS_PYTHON_CHECK_FIELDS="1")
    out = subprocess.run(
        [sys.executable, "-c", PROFILE_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    counts = json.loads(out.strip().splitlines()[-1])
    small, large = counts["320x240"], counts["640x480"]
    assert large == small, counts  # 4x the pixels, the same Python work
    assert small < 1000, counts  # and little of it: no loop over rows or bytes either
