"""Operator takeover (teleop, intervention arbiter), episode recording and the ramp-bag tools."""
