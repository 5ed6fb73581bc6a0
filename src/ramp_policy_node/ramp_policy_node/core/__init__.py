"""ROS-free core of ramp_policy_node (importable and testable without rclpy)."""
