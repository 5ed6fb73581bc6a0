"""ROS-free core of ramp_hilr_teleop (importable and testable without rclpy)."""
