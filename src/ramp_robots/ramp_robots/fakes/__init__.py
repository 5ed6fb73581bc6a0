"""Protocol-level fakes of robot hardware, for tests and `ramp up` without a robot."""
