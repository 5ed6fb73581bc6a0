"""ros2 launch ramp_bringup g1.launch.py: the stack on the Unitree G1, a process per node.

Same nodes and parameter file as ``ramp up --robot g1`` (src/ramp_bringup/config/g1.yaml).
Before the first run: scripts/setup_g1_dds.sh (CycloneDDS 0.10.x) and the network set-up in
docs/g1.md. Arguments: config, namespace, dds_profile, model_dir, log_level
(``ros2 launch ... --show-args``).
"""

from ramp_bringup.launch_helpers import generate_robot_launch_description


def generate_launch_description():
    """Entry point used by ros2 launch."""
    return generate_robot_launch_description("g1")
