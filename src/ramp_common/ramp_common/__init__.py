"""Shared ROS helpers of the RAMP stack: QoS profiles, message conversions, diagnostics, parameter declaration."""
