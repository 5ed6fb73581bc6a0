"""Robot drivers behind one RobotDriver interface (PiPER, G1, MuJoCo sim) and their bridge nodes."""
