"""The stack plan shared by ``ramp up`` and the launch files (ROS-free)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ramp_bringup.core.plan import (
    MALLOC_ENV,
    Fleet,
    Override,
    PlanError,
    StackOptions,
    build_plan,
    discovery_environment,
    normalize_namespace,
)
from ramp_bringup.stack import config_path, dds_profile_path, fleet_path, stack_nodes

SIM = config_path("sim")


def plan_for(tmp_path: Path, env: dict[str, str] | None = None, **options):
    opts = StackOptions(config_file=SIM, **options)
    return build_plan(opts, stack_nodes(SIM), tmp_path, dds_profile_path(), env or {})


@pytest.mark.parametrize(
    ("text", "node", "name", "value"),
    [
        ("episode_recorder.output_dir:=/data", "episode_recorder", "output_dir", "/data"),
        ("chunk_executor.control_rate_hz:=100.0", "chunk_executor", "control_rate_hz", 100.0),
        ("use_fake_hardware:=true", None, "use_fake_hardware", True),
        ("camera_node.camera_sources:=[a, b]", "camera_node", "camera_sources", ["a", "b"]),
        ("teleop_node.mode:=", "teleop_node", "mode", ""),
    ],
)
def test_overrides_parse_as_ros_users_type_them(text, node, name, value):
    assert Override.parse(text) == Override(node, name, value)


@pytest.mark.parametrize("text", ["output_dir=/data", ":=3", "a.b:=[unclosed"])
def test_a_malformed_override_is_named(text):
    with pytest.raises(PlanError, match="parameter override"):
        Override.parse(text)


def test_overrides_land_in_the_effective_parameter_file(tmp_path):
    plan = plan_for(
        tmp_path,
        overrides=(
            Override.parse("episode_recorder.output_dir:=/data"),
            Override.parse("log_everything:=true"),
        ),
        fake_hardware=True,
    )
    params = yaml.safe_load(plan.params_file.read_text())
    assert params["episode_recorder"]["ros__parameters"]["output_dir"] == "/data"
    assert params["episode_recorder"]["ros__parameters"]["robot"] == "sim"  # the rest kept
    assert params["/**"]["ros__parameters"]["log_everything"] is True
    assert params["/**"]["ros__parameters"]["use_fake_hardware"] is True
    assert params["/**"]["ros__parameters"]["joint_names"][0] == "joint1"


def test_an_override_for_a_node_not_in_the_stack_is_refused(tmp_path):
    with pytest.raises(PlanError, match="episode_recordr"):
        plan_for(tmp_path, overrides=(Override.parse("episode_recordr.output_dir:=/x"),))


def test_a_namespace_moves_node_keys_and_remaps_each_node(tmp_path):
    plan = plan_for(tmp_path, namespace="robot1/")
    params = yaml.safe_load(plan.params_file.read_text())
    assert "/robot1/sim_bridge" in params and "sim_bridge" not in params
    assert "/**" in params
    bridge = next(n for n in plan.nodes if n.name == "sim_bridge")
    cmd = bridge.command("python")
    assert cmd[:3] == ["python", "-m", "ramp_robots.sim_bridge"]
    assert cmd[6:8] == ["-r", "__ns:=/robot1"]


@pytest.mark.parametrize("bad", ["1robot", "robot-1", "a//b"])
def test_an_invalid_namespace_is_named(bad):
    with pytest.raises(PlanError, match="namespace"):
        normalize_namespace(bad)


def test_node_list_comes_from_the_chosen_config(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ramp_stack": {"ros__parameters": {"nodes": ["sim_bridge", "teleop_node"]}},
                "sim_bridge": {"ros__parameters": {"state_rate_hz": 100.0}},
            }
        )
    )
    opts = StackOptions(config_file=config)
    plan = build_plan(opts, stack_nodes(config), tmp_path / "run", dds_profile_path(), {})
    assert [n.name for n in plan.nodes] == ["sim_bridge", "teleop_node"]
    assert [n.required for n in plan.nodes] == [True, False]


def test_roles_split_the_stack_between_robot_computer_and_inference_host(tmp_path):
    # an override for a node of the other side is fine: one command line serves both hosts
    camera = (Override.parse("camera_node.width:=160"),)
    inference_plan = plan_for(tmp_path / "x", role="inference", overrides=camera)
    assert "camera_node" in yaml.safe_load(inference_plan.params_file.read_text())
    robot = {n.name for n in plan_for(tmp_path / "r", role="robot").nodes}
    inference = {n.name for n in plan_for(tmp_path / "i", role="inference").nodes}
    assert inference == {"worldmodel_node", "policy_node"}
    assert robot.isdisjoint(inference)
    assert robot | inference == {s.name for s in stack_nodes(SIM)}


def test_development_defaults_and_the_environment_wins(tmp_path):
    plan = plan_for(tmp_path)
    assert plan.env["ROS_DOMAIN_ID"] == "42"
    assert plan.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert plan.env["FASTRTPS_DEFAULT_PROFILES_FILE"] == str(dds_profile_path())
    assert Path(plan.env["RAMP_MODEL_DIR"]).is_absolute()  # never relative to the cwd
    env = {"ROS_DOMAIN_ID": "7", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}
    chosen = plan_for(tmp_path / "env", env=env)
    assert chosen.env["ROS_DOMAIN_ID"] == "7"
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in chosen.env  # left as the environment has it
    explicit = plan_for(tmp_path / "opt", env=env, domain_id=3, localhost_only=True)
    assert explicit.env["ROS_DOMAIN_ID"] == "3"
    assert explicit.env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    humble = discovery_environment(None, True, {"ROS_DISTRO": "humble"})
    assert humble["ROS_LOCALHOST_ONLY"] == "1"


def test_nodes_get_malloc_settings_for_frame_sized_buffers_unless_the_environment_has_its_own(
    tmp_path,
):
    plan = plan_for(tmp_path)
    assert {k: plan.env[k] for k in MALLOC_ENV} == MALLOC_ENV
    assert int(MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]) > 640 * 480 * 3  # a frame stays in the heap
    own = plan_for(tmp_path / "own", env={"MALLOC_TRIM_THRESHOLD_": "0"})
    assert own.env["MALLOC_TRIM_THRESHOLD_"] == "0"
    assert own.process_env({}, 1)["MALLOC_MMAP_THRESHOLD_"] == MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]


def test_no_dds_profile_unsets_the_variables_instead_of_emptying_them(tmp_path):
    plan = plan_for(tmp_path, dds_profile="none")
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in plan.env
    env = plan.process_env({"FASTRTPS_DEFAULT_PROFILES_FILE": "/old.xml", "HOME": "/h"}, 99)
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env
    assert env["HOME"] == "/h"
    assert env["RAMP_PARENT_PID"] == "99"
    with pytest.raises(PlanError, match="does not exist"):
        plan_for(tmp_path / "x", dds_profile="/no/such/profile.xml")
    with pytest.raises(PlanError, match="outside"):
        plan_for(tmp_path / "y", domain_id=300)


def test_shipped_fleet_files_load():
    fleet = Fleet.load(fleet_path("piper_pair"))
    assert fleet.robot == "piper"
    assert fleet.namespaces == ("/robot1", "/robot2")
    assert fleet.domain_id == 42
    assert Fleet.load(fleet_path("piper_four")).namespaces[-1] == "/robot4"


def test_a_fleet_plan_starts_one_batched_inference_pair(tmp_path):
    plan = plan_for(tmp_path, role="inference", robots=("robot1", "/robot2"))
    assert sorted(n.name for n in plan.nodes) == ["policy_node", "worldmodel_node"]
    assert all(n.namespace == "" for n in plan.nodes)
    text = plan.params_file.read_text()
    assert "&id" not in text and "*id" not in text  # rcl refuses YAML aliases
    params = yaml.safe_load(text)
    for node in ("worldmodel_node", "policy_node"):
        assert params[node]["ros__parameters"]["robots"] == ["/robot1", "/robot2"]
        assert params[node]["ros__parameters"]["model_card"]  # the robot config's kept
    assert "robots" not in params["/**"]["ros__parameters"]


@pytest.mark.parametrize("options", [{"role": "all"}, {"role": "inference", "namespace": "r"}])
def test_a_fleet_is_an_inference_host_only(tmp_path, options):
    with pytest.raises(PlanError, match="fleet starts the inference side"):
        plan_for(tmp_path, robots=("robot1",), **options)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("robots: [a]", "expected a mapping under 'ramp_fleet'"),
        ("ramp_fleet: {robots: [a]}", "ramp_fleet.robot: expected a robot config name"),
        ("ramp_fleet: {robot: piper, robots: []}", "robots: expected a non-empty list"),
        ("ramp_fleet: {robot: piper, robots: [a, /a]}", "names \\['/a'\\] twice"),
        ("ramp_fleet: {robot: piper, robots: ['1x']}", "not a valid ROS namespace"),
        (
            "ramp_fleet: {robot: piper, robots: [{namespace: a, robot: g1}]}",
            "robots\\[0\\]: robot 'g1' differs from the fleet's 'piper'",
        ),
        ("ramp_fleet: {robot: piper, robots: [{ns: a}]}", "robots\\[0\\]: expected a namespace"),
        ("ramp_fleet: {robot: piper, domain_id: x, robots: [a]}", "domain_id: expected an int"),
    ],
)
def test_a_bad_fleet_file_is_named(tmp_path, text, error):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(PlanError, match=error):
        Fleet.load(path)


def test_the_launch_files_take_a_fleet_too():
    from ramp_bringup.launch_helpers import launch_arguments, options_from_launch

    values = {name: default for name, default, _ in launch_arguments("piper")}
    assert options_from_launch(values).robots == ()
    values["fleet"] = "piper_pair"
    options = options_from_launch(values)
    assert options.role == "inference" and options.robots == ("/robot1", "/robot2")
    values["role"] = "robot"
    with pytest.raises(PlanError, match="role:=inference"):
        options_from_launch(values)
    sim = {name: default for name, default, _ in launch_arguments("sim")}
    with pytest.raises(PlanError, match=r"use piper\.launch\.py"):
        options_from_launch({**sim, "fleet": "piper_pair"})
