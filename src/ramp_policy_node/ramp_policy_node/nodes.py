"""The ROS nodes of ramp_policy_node: the one table that names them (schema and uses:
``ramp_bringup.stack``). Restart policy: the policy is stateless between latents; the executor's
first command after a start ramps from the measured pose, and while it is down the arbiter and
the bridge hold.
"""

NODES = {
    "policy_node": {
        "class": "ramp_policy_node.policy_node:PolicyNode",
        "role": "inference",
        "on_exit": "respawn",
    },
    "chunk_executor": {
        "class": "ramp_policy_node.chunk_executor_node:ChunkExecutorNode",
        "role": "robot",
        "on_exit": "respawn",
    },
}
