"""Robot configs: every shipped config lists known nodes and consistent shared parameters."""

from pathlib import Path

import pytest
import yaml

from ramp_bringup.stack import StackConfigError, dev_environment, node_registry, stack_nodes
from ramp_common.limits import JointLimits

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_is_consistent(config):
    specs = stack_nodes(config)
    assert specs, "a robot stack has nodes"
    data = yaml.safe_load(config.read_text())
    shared = data["/**"]["ros__parameters"]
    limits = JointLimits.from_lists(
        shared["joint_names"],
        shared["position_lower"],
        shared["position_upper"],
        shared["max_velocity"],
        shared["max_acceleration"],
    )
    assert limits.dof == len(shared["joint_names"])
    for spec in specs:
        assert spec.name in data, f"{config.name}: no parameters section for {spec.name}"


def test_unknown_node_and_missing_section_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ramp_stack:\n  ros__parameters:\n    nodes: [sim_bridge, teleporter]\n")
    with pytest.raises(StackConfigError, match=r"unknown nodes \['teleporter'\]"):
        stack_nodes(bad)
    bad.write_text("sim_bridge: {}\n")
    with pytest.raises(StackConfigError, match="missing ramp_stack"):
        stack_nodes(bad)


@pytest.mark.parametrize("name", sorted(node_registry()))
def test_node_registry_points_at_real_classes(name):
    assert isinstance(node_registry()[name].load_class(), type)


def test_dev_environment_defaults_to_isolated_discovery(monkeypatch):
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTRTPS_DEFAULT_PROFILES_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    env = dev_environment()
    assert env["ROS_DOMAIN_ID"] == "42"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml")
    assert dev_environment(7)["ROS_DOMAIN_ID"] == "7"
