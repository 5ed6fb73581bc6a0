"""Which nodes make up a robot's stack, and where its config and DDS profile live.

Shared by the single-process runner (``ramp up``) and the launch files, so both start the same
nodes from the same parameter file.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGE = "ramp_bringup"
STACK_KEY = "ramp_stack"


@dataclass(frozen=True)
class NodeSpec:
    """A node of the stack: ROS package, console executable, and the class the runner builds."""

    name: str
    package: str
    executable: str
    factory: str  # "module:Class"

    def load_class(self) -> type:
        module_name, class_name = self.factory.split(":")
        return getattr(importlib.import_module(module_name), class_name)


NODES: dict[str, NodeSpec] = {
    spec.name: spec
    for spec in (
        NodeSpec("sim_bridge", "ramp_robots", "sim_bridge", "ramp_robots.sim_bridge:SimBridgeNode"),
        NodeSpec(
            "camera_node",
            "ramp_worldmodel_node",
            "camera_node",
            "ramp_worldmodel_node.camera_node:CameraNode",
        ),
        NodeSpec(
            "worldmodel_node",
            "ramp_worldmodel_node",
            "worldmodel_node",
            "ramp_worldmodel_node.worldmodel_node:WorldModelNode",
        ),
        NodeSpec(
            "policy_node",
            "ramp_policy_node",
            "policy_node",
            "ramp_policy_node.policy_node:PolicyNode",
        ),
        NodeSpec(
            "chunk_executor",
            "ramp_policy_node",
            "chunk_executor",
            "ramp_policy_node.chunk_executor_node:ChunkExecutorNode",
        ),
        NodeSpec(
            "piper_bridge",
            "ramp_robots",
            "piper_bridge",
            "ramp_robots.piper_bridge:PiperBridgeNode",
        ),
        NodeSpec("g1_bridge", "ramp_robots", "g1_bridge", "ramp_robots.g1_bridge:G1BridgeNode"),
        NodeSpec(
            "teleop_node",
            "ramp_hilr_teleop",
            "teleop_node",
            "ramp_hilr_teleop.teleop_node:TeleopNode",
        ),
        NodeSpec(
            "intervention_arbiter",
            "ramp_hilr_teleop",
            "intervention_arbiter",
            "ramp_hilr_teleop.intervention_arbiter:InterventionArbiterNode",
        ),
        NodeSpec(
            "episode_recorder",
            "ramp_hilr_teleop",
            "episode_recorder",
            "ramp_hilr_teleop.episode_recorder:EpisodeRecorderNode",
        ),
        NodeSpec(
            "operator_console",
            "ramp_operator_console",
            "operator_console",
            "ramp_operator_console.operator_console:OperatorConsoleNode",
        ),
    )
}


class StackConfigError(ValueError):
    """A robot config that cannot be used; names the file and the problem."""


def share_dir() -> Path:
    """Installed share folder of ramp_bringup, or the source folder when not installed."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:
        return Path(__file__).resolve().parent.parent


def config_path(robot: str) -> Path:
    """``config/<robot>.yaml`` of ramp_bringup."""
    path = share_dir() / "config" / f"{robot}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (share_dir() / "config").glob("*.yaml"))
        raise StackConfigError(f"no config for robot {robot!r} at {path}; known robots: {known}")
    return path


def dds_profile_path() -> Path:
    """The Fast DDS profile shipped with ramp_bringup (shared memory + UDPv4)."""
    return share_dir() / "dds" / "fastdds_shm.xml"


def stack_nodes(config_file: Path) -> list[NodeSpec]:
    """The nodes listed under ``ramp_stack.ros__parameters.nodes`` in a robot config."""
    try:
        data = yaml.safe_load(Path(config_file).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StackConfigError(f"cannot read robot config {config_file}: {exc}") from exc
    try:
        names = data[STACK_KEY]["ros__parameters"]["nodes"]
    except (KeyError, TypeError):
        raise StackConfigError(
            f"{config_file}: missing {STACK_KEY}.ros__parameters.nodes (the list of nodes)"
        ) from None
    unknown = [n for n in names if n not in NODES]
    if unknown:
        raise StackConfigError(f"{config_file}: unknown nodes {unknown}; known: {sorted(NODES)}")
    return [NODES[n] for n in names]


def dev_environment(domain_id: int | None = None) -> dict[str, str]:
    """Environment defaults for a dev run: DDS profile, own domain id, localhost-only discovery.

    Values already set in the environment win, so a robot install can choose its own.
    """
    env = {
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(dds_profile_path()),
        "FASTDDS_DEFAULT_PROFILES_FILE": str(dds_profile_path()),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "ROS_DOMAIN_ID": str(domain_id if domain_id is not None else 42),
    }
    if os.environ.get("ROS_DISTRO") == "humble":
        env["ROS_LOCALHOST_ONLY"] = "1"
    else:  # Jazzy and newer; ROS_LOCALHOST_ONLY is deprecated there
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    out = {k: os.environ.get(k, v) for k, v in env.items()}
    if domain_id is not None:
        out["ROS_DOMAIN_ID"] = str(domain_id)
    return out
