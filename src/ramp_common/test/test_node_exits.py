"""ExitDeduplicator: a node's repeated exit announcements reach the handler once."""

from __future__ import annotations

from ramp_common.node_exits import ANNOUNCE_REPEATS_S, DEDUP_S, ExitDeduplicator


def test_repeats_of_one_exit_pass_once_and_other_nodes_and_later_exits_pass():
    seen: list[str] = []
    once = ExitDeduplicator(seen.append)
    for delay in ANNOUNCE_REPEATS_S:  # the announcer's three publications of one exit
        once("policy_node", now=10.0 + delay)
    assert seen == ["policy_node"]
    assert once("camera_node", now=10.05)  # another node's exit is its own
    assert not once("policy_node", now=10.0 + DEDUP_S - 0.01)
    assert once("policy_node", now=10.0 + DEDUP_S + 0.01)  # the restarted node died again
    assert seen == ["policy_node", "camera_node", "policy_node"]
