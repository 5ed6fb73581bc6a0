"""QoS profiles by meaning (docs/design.md, "Topics and services").

- sensor data (camera frames, joint states from a bridge): best effort, keep last, small depth;
  a late frame is worth less than the next one.
- commands (joint/policy/operator commands, action chunks): reliable, keep last, small depth.
- latched state (task, intervention flag, model info): reliable + transient local, depth 1, so a
  late joiner receives the last value.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
"""Camera frames and high-rate state: drop rather than queue."""

STATE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""joint_states and world-model states: reliable on shared memory, small queue."""

COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=5,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Per-tick commands and action chunks."""

LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
"""Task, intervention flag, model info: late joiners get the last value."""
