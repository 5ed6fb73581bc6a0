"""Per-robot configuration, DDS profile, launch files and the single-process runner 'ramp'."""
