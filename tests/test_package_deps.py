"""Every import of every package is declared in its package.xml.

For each package under ``src/``, every module-level or lazy ``import`` (ast, absolute imports) of
its Python code must name the standard library, the package itself, or a dependency its
``package.xml`` declares: ``<depend>``/``<exec_depend>`` for the package's code, those or
``<test_depend>`` for its tests. ROS packages (ours and ROS 2's, found in the ament index) are
their own keys; third-party Python modules go through :data:`ROSDEP_KEYS`.
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ament_index_python.packages import get_packages_with_prefixes

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGES = sorted(p.parent for p in SRC.glob("*/package.xml"))

ROSDEP_KEYS: dict[str, str | None] = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
    "can": "python3-can",
    "OpenGL": "python3-opengl",
    "matplotlib": "python3-matplotlib",
    "aiohttp": "python3-aiohttp",
    "selenium": "python3-selenium",
    "psutil": "python3-psutil",
    "lz4": "python3-lz4",
    "av": "python3-av",
    "torch": "python3-torch",
    "onnxruntime": "python3-onnxruntime-pip",
    "onnx": "python3-onnx-pip",
    "mujoco": "python3-mujoco-pip",
    "pyarrow": "python3-pyarrow-pip",
    "rosbags": "python3-rosbags-pip",
    "mcap": "python3-mcap-pip",
    "mcap_ros2": "python3-mcap-ros2-support-pip",
    # Not rosdep keys: installed by the project's own files, documented there.
    "piper_sdk": None,  # requirements-robot.txt (the PiPER SDK, PyPI)
    "unitree_sdk2py": None,  # scripts/setup_g1_dds.sh (CycloneDDS 0.10.x stack of the G1)
    "cyclonedds": None,  # scripts/setup_g1_dds.sh
    "backports": None,  # backports.zstd, the fallback of compression.zstd before Python 3.14
    "compression": None,  # compression.zstd: standard library from Python 3.14
}
"""Python module -> rosdep key (rosdistro's python3-<name>, -pip for PyPI-only ones); None:
not a rosdep key (see the comment)."""


def _declared(package: Path) -> tuple[set[str], set[str]]:
    """(run dependencies, test-only dependencies) of a package.xml."""
    root = ET.parse(package / "package.xml").getroot()
    run = {e.text.strip() for tag in ("depend", "exec_depend") for e in root.iter(tag)}
    test = {e.text.strip() for e in root.iter("test_depend")}
    return run, test


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _key(module: str, ros_packages: set[str]) -> str | None:
    if module in ros_packages:
        return module
    if module in ROSDEP_KEYS:
        return ROSDEP_KEYS[module]
    raise AssertionError(
        f"import {module!r} is neither a ROS package nor in ROSDEP_KEYS: add its rosdep key"
    )


@pytest.mark.parametrize("package", PACKAGES, ids=[p.name for p in PACKAGES])
def test_every_import_is_declared(package: Path) -> None:
    ros_packages = set(get_packages_with_prefixes()) | {p.name for p in PACKAGES}
    ignored = set(sys.stdlib_module_names) | {"__future__", package.name}
    run, test = _declared(package)
    missing: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        if path.name == "setup.py":
            continue
        is_test = path.relative_to(package).parts[0] == "test"
        allowed = run | test if is_test else run
        for module in sorted(_imports(path) - ignored):
            key = _key(module, ros_packages)
            if key is not None and key not in allowed:
                missing.setdefault(key, set()).add(str(path.relative_to(SRC)))
    assert not missing, f"{package.name}/package.xml misses: " + "; ".join(
        f"{key} ({', '.join(sorted(files)[:3])})" for key, files in sorted(missing.items())
    )


def test_no_unused_our_package_dependency() -> None:
    """A dependency on one of our packages is real (imported somewhere in the package)."""
    ours = {p.name for p in PACKAGES}
    for package in PACKAGES:
        run, _ = _declared(package)
        imported = set().union(*(_imports(p) for p in package.rglob("*.py")))
        unused = sorted((run & ours) - imported - _LAUNCH_ONLY.get(package.name, set()))
        assert not unused, f"{package.name}/package.xml depends on {unused} but never imports it"


_LAUNCH_ONLY: dict[str, set[str]] = {
    # ramp_bringup starts the nodes of these packages (runner and launch files) by name.
    "ramp_bringup": {
        "ramp_worldmodel_node",
        "ramp_policy_node",
        "ramp_robots",
        "ramp_hilr_teleop",
        "ramp_models",
    },
}
