"""The ROS nodes of ramp_worldmodel_node: the one table that names them (schema and uses:
``ramp_bringup.stack``). Restart policy: both are stateless between frames: a restart reopens
the cameras / reloads the model and the consumers wait for fresh stamps.
"""

NODES = {
    "camera_node": {
        "class": "ramp_worldmodel_node.camera_node:CameraNode",
        "role": "robot",
        "on_exit": "respawn",
    },
    "worldmodel_node": {
        "class": "ramp_worldmodel_node.worldmodel_node:WorldModelNode",
        "role": "inference",
        "on_exit": "respawn",
    },
}
