"""Builds the launch description of a robot's stack (for ``ros2 launch`` on ROS machines).

The nodes come from the same robot config the runner reads (``ramp_stack.nodes``), each as its
own process with the same parameter file, the shipped Fast DDS profile and, for dev use, its own
domain id and localhost-only discovery unless the environment already sets them.
Needs the ``launch`` and ``launch_ros`` packages of a ROS 2 install (Humble or Jazzy).
"""

from __future__ import annotations

from ramp_bringup.stack import config_path, dds_profile_path, stack_nodes


def generate_robot_launch_description(robot: str):
    """LaunchDescription for ``robot`` (sim, piper, g1) with documented launch arguments."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
    from launch.substitutions import EnvironmentVariable, LaunchConfiguration
    from launch_ros.actions import Node

    default_config = str(config_path(robot))
    config = LaunchConfiguration("config")
    namespace = LaunchConfiguration("namespace")
    dds_profile = LaunchConfiguration("dds_profile")
    actions = [
        DeclareLaunchArgument(
            "config",
            default_value=default_config,
            description=f"ROS parameter file of the {robot} stack (ramp_bringup/config).",
        ),
        DeclareLaunchArgument(
            "namespace", default_value="", description="Namespace of every node (one per robot)."
        ),
        DeclareLaunchArgument(
            "dds_profile",
            default_value=str(dds_profile_path()),
            description="Fast DDS XML profile (shared memory + UDPv4); '' for the default.",
        ),
        DeclareLaunchArgument(
            "model_dir",
            default_value=EnvironmentVariable("RAMP_MODEL_DIR", default_value="models"),
            description="Folder holding the model cards (sets RAMP_MODEL_DIR for the nodes).",
        ),
        DeclareLaunchArgument(
            "log_level", default_value="info", description="Log level of every node."
        ),
        SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", dds_profile),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", dds_profile),
        SetEnvironmentVariable("RAMP_MODEL_DIR", LaunchConfiguration("model_dir")),
    ]
    for spec in stack_nodes(default_config):
        actions.append(
            Node(
                package=spec.package,
                executable=spec.executable,
                name=spec.name,
                namespace=namespace,
                parameters=[config],
                output="screen",
                emulate_tty=True,
                arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            )
        )
    return LaunchDescription(actions)
