"""ros2 launch ramp_bringup piper.launch.py: the stack on the AgileX PiPER arm, a process per node.

Same nodes and parameter file as ``ramp up --robot piper`` (src/ramp_bringup/config/piper.yaml).
Bring up the CAN interface first (docs/piper.md). Arguments: config, namespace, dds_profile,
model_dir, log_level (``ros2 launch ... --show-args``).
"""

from ramp_bringup.launch_helpers import generate_robot_launch_description


def generate_launch_description():
    """Entry point used by ros2 launch."""
    return generate_robot_launch_description("piper")
