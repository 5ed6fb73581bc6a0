"""The ROS nodes of ramp_hilr_teleop: the one table that names them (schema and uses:
``ramp_bringup.stack``). Restart policy: teleop holds no state the arbiter needs (a silent
source times out), and the recorder repairs an interrupted episode when it starts; the arbiter
owns who is in control and is not respawned (a restart would forget an operator's takeover).
"""

NODES = {
    "intervention_arbiter": {
        "class": "ramp_hilr_teleop.intervention_arbiter:InterventionArbiterNode",
        "role": "robot",
        "on_exit": "shutdown",
    },
    "teleop_node": {
        "class": "ramp_hilr_teleop.teleop_node:TeleopNode",
        "role": "robot",
        "on_exit": "respawn",
    },
    "episode_recorder": {
        "class": "ramp_hilr_teleop.episode_recorder:EpisodeRecorderNode",
        "role": "robot",
        "on_exit": "respawn",
    },
}
