"""ROS-free core of ramp_bringup (importable and testable without rclpy)."""
