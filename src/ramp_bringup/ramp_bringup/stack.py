"""Which nodes make up a robot's stack, and where its config and DDS profile live.

Shared by the runner (``ramp up``) and the launch files, so both start the same nodes from the
same parameter file. The node table itself lives with each package (``<pkg>/nodes.py``).
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

PACKAGE = "ramp_bringup"
STACK_KEY = "ramp_stack"


NODE_RESOURCE_TYPE = "ramp_nodes"
"""ament index resource type under which a package advertises its ``<pkg>/nodes.py`` table."""

KNOWN_NODE_PACKAGES = (
    "ramp_robots",
    "ramp_worldmodel_node",
    "ramp_policy_node",
    "ramp_hilr_teleop",
    "ramp_operator_console",
)
"""Used only where no ament index is available (sources on PYTHONPATH, not built)."""

ON_EXIT_CHOICES = ("shutdown", "respawn")
ROLE_CHOICES = ("robot", "inference")


@dataclass(frozen=True)
class NodeSpec:
    """A node of the stack, from its package's ``nodes.py`` table.

    ``executable`` is the console script (``ros2 run <package> <executable>``), ``factory`` the
    class the single-process runner builds ("module:Class"), ``role`` where it may run
    (``robot`` / ``inference``) and ``on_exit`` what the stack does when its process ends
    (``shutdown``: everything stops; ``respawn``: it is restarted).
    """

    name: str
    package: str
    factory: str
    role: str = "robot"
    on_exit: str = "shutdown"

    @property
    def executable(self) -> str:
        return self.name

    @property
    def module(self) -> str:
        return self.factory.split(":")[0]

    @property
    def required(self) -> bool:
        return self.on_exit == "shutdown"

    def load_class(self) -> type:
        module_name, class_name = self.factory.split(":")
        return getattr(importlib.import_module(module_name), class_name)


def _node_packages() -> list[str]:
    try:
        from ament_index_python.resources import get_resources

        found = sorted(get_resources(NODE_RESOURCE_TYPE))
    except Exception:
        found = []
    return found or list(KNOWN_NODE_PACKAGES)


@functools.cache
def node_registry() -> dict[str, NodeSpec]:
    """Every node of every package that advertises a ``nodes.py`` table, by node name."""
    registry: dict[str, NodeSpec] = {}
    for package in _node_packages():
        table = importlib.import_module(f"{package}.nodes").NODES
        for name, entry in table.items():
            spec = NodeSpec(name, package, entry["class"], entry["role"], entry["on_exit"])
            if spec.role not in ROLE_CHOICES or spec.on_exit not in ON_EXIT_CHOICES:
                raise StackConfigError(
                    f"{package}/nodes.py: node {name!r} has role {spec.role!r} (one of "
                    f"{ROLE_CHOICES}) and on_exit {spec.on_exit!r} (one of {ON_EXIT_CHOICES})"
                )
            if name in registry:
                raise StackConfigError(
                    f"node {name!r} is named by both {registry[name].package} and {package}"
                )
            registry[name] = spec
    return registry


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


def fleet_path(fleet: str) -> Path:
    """A fleet file: an existing path, else ``config/fleet/<fleet>.yaml`` of ramp_bringup."""
    if Path(fleet).is_file():
        return Path(fleet)
    path = share_dir() / "config" / "fleet" / f"{fleet}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (share_dir() / "config" / "fleet").glob("*.yaml"))
        raise StackConfigError(f"no fleet file {fleet!r} (a path, or one of {known})")
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
    registry = node_registry()
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise StackConfigError(f"{config_file}: unknown nodes {unknown}; known: {sorted(registry)}")
    return [registry[n] for n in names]


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
