"""ROS-free core of ramp_robots (importable and testable without rclpy)."""
