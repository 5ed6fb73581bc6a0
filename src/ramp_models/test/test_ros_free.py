"""ramp_models is ROS-free outside ``ramp_models.ros``: training imports it without rclpy."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ramp_models"
ROS_MODULES = {"rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "std_srvs", "ramp_common"}


def test_no_ros_import_outside_the_ros_subpackage() -> None:
    offenders = []
    files = [p for p in PACKAGE.rglob("*.py") if "ros" not in p.relative_to(PACKAGE).parts[:-1]]
    assert len(files) >= 6
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ROS_MODULES]
    assert not offenders, offenders
