"""ROS-free core of ramp_worldmodel_node (importable and testable without rclpy)."""
