"""Announced node exits: the supervisor says at once which node process died.

A watchdog notices a dead node only after its timeout (the chunk executor plays its current
chunk for up to ``watchdog_timeout_s``, 0.5 s). The supervisor (``ramp up``, or the launch
file's exit handler) sees the exit the moment it happens and publishes the node's name on
``ramp/node_exited`` in the robot's namespace (in every served robot's namespace for a batched
inference host). The nodes in the control path act on it:

- the chunk executor brakes to a hold when a node upstream of it exits (``hold_on_exit_of``:
  camera, world model, policy) and refuses chunks observed before the exit, so it resumes
  only on chunks of the restarted pipeline;
- the intervention arbiter treats a source as lost when the node that published it exits, and
  holds while the policy drives when a node of its ``hold_on_exit_of`` exits (braking from its
  own output at once rather than following the executor's braking one stream behind);
- the robot bridge treats its command as stale when the node that published ``joint_command``
  exits.

The watchdogs stay: they cover what no supervisor sees (a wedged process, a network link, an
inference host whose supervisor died with it). A requested stop (Ctrl-C) is not announced.

An announcement is published three times (``ANNOUNCE_REPEATS_S`` after the exit): a reliable
sample lost on a loaded computer is repaired only at the writer's next heartbeat, which took
1.02 s once in the fault campaign (docs/reliability.md, round 3). The subscriber passes one
announcement per node and ``DEDUP_S`` to its handler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

NODE_EXITED_TOPIC = "ramp/node_exited"
"""std_msgs/String: the name of a node (``get_name()``, without namespace) whose process exited
without being asked to."""

NODE_EXITED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
"""Reliable, not latched: an exit matters now; a node that starts later must not act on it."""

ANNOUNCE_REPEATS_S = (0.0, 0.03, 0.1)
"""s after the exit at which the announcement is published (a lost sample is not waited for)."""

DEDUP_S = 0.5
"""Repeats of one node's announcement within this long (s) reach the handler once. A restarted
node takes seconds to come up, so a second real exit is never this close to the first."""


class ExitDeduplicator:
    """Passes the first announcement of a node and drops its repeats for ``DEDUP_S``."""

    def __init__(self, handler: Callable[[str], None]) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def __call__(self, node_name: str, now: float | None = None) -> bool:
        """Handle one received announcement at ``now`` (monotonic s); True when passed on."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._seen.get(node_name)
            if last is not None and now - last < DEDUP_S:
                return False
            self._seen[node_name] = now
        self._handler(node_name)
        return True


def subscribe_node_exits(node: Node, handler: Callable[[str], None], **kwargs) -> None:
    """Call ``handler(node_name)`` once for every announced exit (its repeats dropped;
    relative topic: the namespace's)."""
    once = ExitDeduplicator(handler)
    node.create_subscription(
        String, NODE_EXITED_TOPIC, lambda msg: once(str(msg.data)), NODE_EXITED_QOS, **kwargs
    )


def publisher_names(node: Node, topics: Iterable[str]) -> set[str]:
    """Names of the nodes that publish any of ``topics`` (relative names resolve in ``node``'s
    namespace), from the DDS graph. A node killed a moment ago is still listed: its participant
    stays in the graph until its lease expires."""
    names: set[str] = set()
    for topic in topics:
        names.update(info.node_name for info in node.get_publishers_info_by_topic(topic))
    return names


class NodeExitAnnouncer:
    """Publishes announced exits on ``ramp/node_exited`` of one or several namespaces."""

    def __init__(self, node: Node, namespaces: Iterable[str] = ()) -> None:
        """``namespaces`` empty: the node's own (relative topic); else ``/<ns>/ramp/node_exited``
        for each (a batched inference host announces to every robot it serves)."""
        targets = [f"/{ns.strip('/')}/{NODE_EXITED_TOPIC}" for ns in namespaces]
        self._publishers = [
            node.create_publisher(String, topic, NODE_EXITED_QOS)
            for topic in (targets or [NODE_EXITED_TOPIC])
        ]

    def announce(self, node_name: str) -> None:
        """Publish now, and again at ``ANNOUNCE_REPEATS_S`` from a timer thread."""
        self._publish(node_name)
        for delay in ANNOUNCE_REPEATS_S[1:]:
            timer = threading.Timer(delay, self._publish, args=(node_name,))
            timer.daemon = True
            timer.start()

    def _publish(self, node_name: str) -> None:
        msg = String(data=node_name)
        for publisher in self._publishers:
            try:
                publisher.publish(msg)
            except Exception:  # a repeat after the supervisor's node was destroyed: nothing to do
                return
