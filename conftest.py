"""Session-wide test environment: an own ROS domain id, localhost-only discovery, the DDS profile.

Set before any test initialises rclpy or starts a node process, so every in-process context and
every child process of the test session is isolated from other ROS traffic on the machine.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
_DOMAIN = os.environ.get("RAMP_TEST_DOMAIN_ID") or str(120 + os.getpid() % 80)
os.environ["RAMP_TEST_DOMAIN_ID"] = _DOMAIN
os.environ["ROS_DOMAIN_ID"] = _DOMAIN
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)
os.environ.setdefault(
    "FASTRTPS_DEFAULT_PROFILES_FILE", str(_ROOT / "src/ramp_bringup/dds/fastdds_shm.xml")
)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")
