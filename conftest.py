"""Session-wide test environment: an own ROS domain id, localhost-only discovery, the DDS profile.

Set before any test initialises rclpy or starts a node process, so every in-process context and
every child process of the test session is isolated from other ROS traffic on the machine.
"""

import os
import warnings
from pathlib import Path

from hypothesis import settings

from ramp_common.scheduling import reset_realtime_threads

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

# Property tests: derandomized by default, so a CI run is reproducible (flaky is broken); a
# failure prints its falsifying example. HYPOTHESIS_PROFILE=explore searches with fresh random
# seeds (and keeps found failures in .hypothesis/) when hunting for new counterexamples.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Real-time scheduling guard. A CI run wedged because the test process and every node it
# started ran SCHED_FIFO priority 99: the SVT-AV1 encoder behind `ramp-bag export`, run as
# root, switches the threads of the encoding process (the exporter now resets them, 85c8aaf).
# Two Fast DDS "dds.asyn" threads at that priority busy-looped, and on 2 cores they starved
# everything else: pytest-timeout's and faulthandler's handlers never ran. Before each test,
# every thread of this process goes back to SCHED_OTHER (children inherit it), with a pytest
# warning naming the test before which it was found: a tripwire for the next such setter.
def pytest_runtest_setup(item) -> None:
    reset = reset_realtime_threads()
    if reset:
        warnings.warn(
            f"{reset} real-time thread(s) of the test process reset to SCHED_OTHER before "
            f"{item.nodeid}",
            stacklevel=1,
        )
