"""The rclpy side of model serving: :class:`ramp_models.ros.model_node.ModelNode`, the base of the
world-model and policy nodes. The only part of ramp_models that imports rclpy."""
