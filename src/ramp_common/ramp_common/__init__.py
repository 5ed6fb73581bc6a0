"""Shared ROS helpers of the RAMP stack: QoS, conversions, diagnostics, parameters."""
