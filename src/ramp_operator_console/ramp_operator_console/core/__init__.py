"""ROS-free core of the operator console: state model, rate limits, frames, access, commands."""
