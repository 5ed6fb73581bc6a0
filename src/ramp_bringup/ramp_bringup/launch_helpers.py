"""Launch description of a robot's stack (``ros2 launch ramp_bringup <robot>.launch.py``).

One process per node, from the same :class:`~ramp_bringup.core.plan.StackPlan` that ``ramp up``
runs: the node list comes from the chosen ``config`` at launch time, parameters and DDS
environment are the runner's, a node whose ``on_exit`` is ``shutdown`` (the robot bridge, the
arbiter) ends the launch when it exits, the others respawn; every exit is announced on
``ramp/node_exited`` (``ramp_common.node_exits``) from the launch process's own participant.
Needs the ``launch`` and ``launch_ros`` packages of a ROS 2 install (Humble or Jazzy;
``scripts/setup.sh`` adds them on the development machines).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ramp_bringup.core.plan import (
    DDS_PROFILE_VARS,
    DEFAULT_MODEL_DIR,
    Fleet,
    PlanError,
    StackOptions,
    build_plan,
)
from ramp_bringup.stack import (
    ROLE_CHOICES,
    config_path,
    dds_profile_path,
    fleet_path,
    stack_nodes,
)

RESPAWN_DELAY_S = 1.0
TRUE_WORDS = ("true", "1", "yes", "on")


def _default_localhost_only() -> str:
    """``ramp up``'s choice: the environment's discovery range if it sets one, else localhost."""
    if os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE"):
        return str(os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST").lower()
    if os.environ.get("ROS_LOCALHOST_ONLY"):
        return str(os.environ["ROS_LOCALHOST_ONLY"] == "1").lower()
    return "true"


def launch_arguments(robot: str) -> list[tuple[str, str, str]]:
    """(name, default, description) of every launch argument; defaults are ``ramp up``'s."""
    env_profile = os.environ.get(DDS_PROFILE_VARS[0])
    return [
        ("config", str(config_path(robot)), f"ROS parameter file of the {robot} stack."),
        ("namespace", "", "Namespace of every node and topic (one per robot), e.g. robot1."),
        (
            "fake_hardware",
            "false",
            "true: the bridge drives its protocol-level fake (no robot), cameras are synthetic.",
        ),
        (
            "domain_id",
            os.environ.get("ROS_DOMAIN_ID") or "42",
            "ROS_DOMAIN_ID of every node (default: the environment's, else 42).",
        ),
        (
            "localhost_only",
            _default_localhost_only(),
            "true: DDS discovery on this computer only; false: the subnet (several hosts).",
        ),
        (
            "dds_profile",
            env_profile or str(dds_profile_path()),
            "Fast DDS XML profile (shared memory + UDPv4 shipped); 'none' for Fast DDS's default.",
        ),
        (
            "model_dir",
            os.environ.get("RAMP_MODEL_DIR") or DEFAULT_MODEL_DIR,
            "Folder holding <name>/world_model.yaml and policy.yaml (sets RAMP_MODEL_DIR).",
        ),
        ("log_level", "info", "Log level of every node (debug, info, warn, error)."),
        (
            "role",
            "all",
            "Which nodes: all; robot (next to the robot); inference (world model + policy).",
        ),
        (
            "discovery_server",
            os.environ.get("ROS_DISCOVERY_SERVER", ""),
            "HOST:PORT of a Fast DDS discovery server (no multicast); '' for multicast.",
        ),
        (
            "fleet",
            "",
            "Fleet file (path, or a name in config/fleet/): one batched world model + policy "
            "for every robot it lists (an inference host; implies role:=inference).",
        ),
    ]


def generate_robot_launch_description(robot: str):
    """LaunchDescription for ``robot`` (sim, piper, g1) with documented launch arguments."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    actions = [
        DeclareLaunchArgument(name, default_value=default, description=description)
        for name, default, description in launch_arguments(robot)
    ]
    actions.append(OpaqueFunction(function=_launch_stack))
    return LaunchDescription(actions)


def options_from_launch(values: dict[str, str]) -> StackOptions:
    """StackOptions from resolved launch arguments (strings)."""
    try:
        domain_id = int(values["domain_id"])
    except ValueError:
        raise PlanError(f"domain_id:={values['domain_id']!r} is not a number") from None
    role = values.get("role", "all")
    if role not in ("all", *ROLE_CHOICES):
        raise PlanError(f"role:={role!r}: one of all, {', '.join(ROLE_CHOICES)}")
    robots: tuple[str, ...] = ()
    if values.get("fleet"):
        fleet = Fleet.load(fleet_path(values["fleet"]))
        if role == "robot":
            raise PlanError("fleet:= starts an inference host: role:=inference (or leave it)")
        if Path(values["config"]).stem != fleet.robot:
            raise PlanError(
                f"fleet {fleet.source} serves {fleet.robot!r} robots: use {fleet.robot}.launch.py"
            )
        role, robots = "inference", fleet.namespaces
    return StackOptions(
        robots=robots,
        config_file=Path(values["config"]).expanduser(),
        namespace=values["namespace"],
        fake_hardware=values["fake_hardware"].lower() in TRUE_WORDS,
        domain_id=domain_id,
        localhost_only=values["localhost_only"].lower() in TRUE_WORDS,
        dds_profile=values["dds_profile"],
        model_dir=values["model_dir"],
        log_level=values["log_level"],
        role=role,
        discovery_server=values.get("discovery_server") or None,
    )


class _ExitAnnouncer:
    """The launch process's own participant in the stack's domain: announces on
    ``ramp/node_exited`` each node process that exits while the launch runs (as ``ramp up``
    does; ``ramp_common.node_exits``), so the control path holds at once."""

    def __init__(self, plan, env: dict[str, str], robots: tuple[str, ...]) -> None:
        import rclpy
        from rclpy.context import Context

        from ramp_common.node_exits import NodeExitAnnouncer

        # the participant must see the nodes: their domain, discovery range and DDS profile
        for var in plan.unset_env:
            os.environ.pop(var, None)
        os.environ.update({k: v for k, v in plan.env.items() if k != "ROS_DOMAIN_ID"})
        self._context = Context()
        rclpy.init(context=self._context, domain_id=int(env["ROS_DOMAIN_ID"]))
        self._node = rclpy.create_node(
            "ramp_launch_supervisor",
            namespace=plan.namespace or "/",
            context=self._context,
            start_parameter_services=False,
        )
        self._announcer = NodeExitAnnouncer(self._node, robots)

    def on_exit(self, name: str, context) -> None:
        """OnProcessExit callback body: announce, unless the launch is shutting down."""
        if not context.is_shutdown and self._context.ok():
            self._announcer.announce(name)

    def close(self, *_args) -> None:
        if self._context.ok():
            self._node.destroy_node()
            self._context.try_shutdown()


def _launch_stack(context, *_args, **_kwargs):
    """OpaqueFunction body: reads the chosen config at launch time and returns the nodes."""
    from launch.actions import (
        LogInfo,
        RegisterEventHandler,
        Shutdown,
        UnsetEnvironmentVariable,
    )
    from launch.event_handlers import OnProcessExit, OnShutdown
    from launch_ros.actions import Node

    options = options_from_launch(dict(context.launch_configurations))
    run_dir = Path(tempfile.mkdtemp(prefix="ramp-launch-"))
    plan = build_plan(options, stack_nodes(options.config_file), run_dir, dds_profile_path())
    env = plan.process_env({}, os.getpid())
    actions = [UnsetEnvironmentVariable(var) for var in plan.unset_env]
    actions.append(
        LogInfo(
            msg=f"ramp: {options.config_file.name}, nodes {[n.name for n in plan.nodes]}, "
            f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, model_dir {env['RAMP_MODEL_DIR']}, "
            f"parameters {plan.params_file}"
        )
    )
    announcer = _ExitAnnouncer(plan, env, options.robots)
    actions.append(RegisterEventHandler(OnShutdown(on_shutdown=announcer.close)))
    for node in plan.nodes:
        extra = (
            {"on_exit": [Shutdown(reason=f"{node.name} exited: the stack never runs without it")]}
            if node.required
            else {"respawn": True, "respawn_delay": RESPAWN_DELAY_S}
        )
        action = Node(
            package=node.package,
            executable=node.executable,
            name=node.name,
            namespace=plan.namespace or None,
            arguments=["--ros-args", *node.ros_args],
            additional_env=env,
            output="screen",
            emulate_tty=True,
            **extra,
        )
        actions.append(action)
        actions.append(
            RegisterEventHandler(
                OnProcessExit(
                    target_action=action,
                    on_exit=lambda _event, ctx, name=node.name: announcer.on_exit(name, ctx),
                )
            )
        )
    return actions
