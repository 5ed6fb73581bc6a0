"""The ROS nodes of ramp_operator_console: the one table that names them (schema and uses:
``ramp_bringup.stack``). Restart policy: the console holds no state the robot needs (every
button calls the stack's own services; the page is never the only e-stop), so it respawns.
"""

NODES = {
    "operator_console": {
        "class": "ramp_operator_console.operator_console:OperatorConsoleNode",
        "role": "robot",
        "on_exit": "respawn",
    },
}
