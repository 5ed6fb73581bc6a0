"""Launch files: each names a shipped robot config, and every node it would start exists.

``launch``/``launch_ros`` are not installable from PyPI, so the launch description itself is
built only on machines with ROS 2 installed; here we check what it is made from: the robot
config's node list and the executables that ``ros2 launch`` looks up in ``lib/<package>``.
"""

import ast
import os
from pathlib import Path

import pytest

from ramp_bringup.stack import config_path, stack_nodes

ROOT = Path(__file__).resolve().parents[3]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def launched_robot(path: Path) -> str:
    """The robot name passed to generate_robot_launch_description in a launch file."""
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in names, f"{path.name} has no generate_launch_description"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == (
            "generate_robot_launch_description"
        ):
            return node.args[0].value
    raise AssertionError(f"{path.name} does not call generate_robot_launch_description")


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_starts_installed_executables(path):
    robot = launched_robot(path)
    assert path.name == f"{robot}.launch.py"
    install = Path(os.environ.get("RAMP_ROOT", ROOT)) / "install"
    for spec in stack_nodes(config_path(robot)):
        exe = install / spec.package / "lib" / spec.package / spec.executable
        assert exe.is_file(), f"{path.name}: {spec.package}/{spec.executable} is not installed"


def test_every_robot_config_has_a_launch_file():
    configs = {p.stem for p in (ROOT / "src/ramp_bringup/config").glob("*.yaml")}
    assert configs <= {launched_robot(p) for p in LAUNCH_FILES}
