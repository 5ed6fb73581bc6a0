"""The ROS nodes of ramp_robots: the one table that names them (schema and uses:
``ramp_bringup.stack``). Restart policy: no node of this package respawns: a bridge is the
robot.
"""

NODES = {
    "sim_bridge": {
        "class": "ramp_robots.sim_bridge:SimBridgeNode",
        "role": "robot",
        "on_exit": "shutdown",
    },
    "piper_bridge": {
        "class": "ramp_robots.piper_bridge:PiperBridgeNode",
        "role": "robot",
        "on_exit": "shutdown",
    },
    "g1_bridge": {
        "class": "ramp_robots.g1_bridge:G1BridgeNode",
        "role": "robot",
        "on_exit": "shutdown",
    },
}
