"""Faults under the production layout (``ramp up``, one process per node), CI-sized.

The CI versions of bench/faults.py's cases, asserted as correctness properties (no timing
targets; the figures are in docs/reliability.md): a node killed with SIGKILL mid-episode leaves
the robot holding and never makes a command jump; it respawns and the stack drives again; the
episode's bag reads back (a killed recorder's bag is repaired by the next start); killing the
arbiter stops the stack with an error naming it; malformed messages on the stack's topics
crash nothing and never move the arm beyond its limits.
"""

from __future__ import annotations

import time

import pytest

from tests.faultkit import SimStack, check_bag
from tests.rosutil import probe_node, wait_for

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One running sim stack for the respawn cases (a start costs ~15 s on 2 cores)."""
    log_dir = tmp_path_factory.mktemp("faults")
    with probe_node("faults_probe") as probe:
        sim = SimStack(probe, log_dir)
        try:
            assert sim.wait_flowing(time.time(), 120.0), sim.proc.stderr()[-3000:]
            yield sim
        finally:
            sim.stop()


def kill_mid_episode(sim: SimStack, node: str) -> tuple[dict, str | None, bool]:
    """Start an episode, let the arm move, SIGKILL ``node``; (figures, bag, respawned)."""
    assert sim.reset_episode(), "the episode reset did not complete"
    t0 = time.time()
    bag = sim.start_episode()
    assert bag, "the episode did not start"
    assert sim.wait_flowing(t0, 30.0), "the stack did not drive before the kill"
    time.sleep(1.0)
    pid, t_kill = sim.kill(node)
    respawned = sim.wait_respawned(node, pid, 20.0)
    if node != "episode_recorder":
        assert sim.wait_flowing(t_kill + 0.5, 60.0), f"no chunks/commands after {node} respawned"
    time.sleep(1.0)
    return sim.figures(t0, t_kill, time.time()), bag, respawned


HOLDS_ON_EXIT = {"chunk_executor": [("intervention_arbiter", "source_exits")],
                 "policy_node": [("chunk_executor", "upstream_holds"),
                                 ("intervention_arbiter", "upstream_holds")]}  # fmt: skip
"""Killed node -> the nodes that hold on its announced exit, and the counters that say so."""


@pytest.mark.parametrize("node", ["chunk_executor", "policy_node"])
def test_a_killed_node_leaves_the_arm_holding_without_a_jump_and_respawns(stack, node):
    figures, bag, respawned = kill_mid_episode(stack, node)
    assert respawned, stack.proc.stderr()[-3000:]
    assert stack.alive()
    # ramp up announced the exit, and the node downstream held on it (not on its watchdog)
    assert node in [name for _, name in stack.exits], stack.exits
    for holder, counter in HOLDS_ON_EXIT[node]:
        wait_for(  # diagnostics come at 1 Hz
            lambda holder=holder, counter=counter: (
                float(stack.diagnostic(holder, counter) or 0) >= 1
            ),
            5.0,
            f"{holder}'s {counter} >= 1 (it held on the announced exit)",
        )
    # held: the measured speed went below 0.01 rad/s for 0.3 s after the kill
    assert figures["motion_hold_s"] is not None, figures
    assert figures["command_hold_s"] is not None, figures
    # never faster than the limit, before, during and after the respawn
    assert figures["sent_jumps"] == 0 and figures["command_jumps"] == 0, figures
    assert stack.stop_episode()
    checked = check_bag(bag)
    assert checked["readable"] and checked["status"] == "complete", checked
    assert not checked["repaired_now"]


def test_a_killed_recorder_leaves_a_bag_the_next_start_repairs(stack):
    figures, bag, respawned = kill_mid_episode(stack, "episode_recorder")
    assert respawned
    assert figures["sent_jumps"] == 0, figures  # the robot did not notice
    next_bag = stack.start_episode()  # repairs the killed recorder's episode first
    assert next_bag and next_bag != bag
    assert stack.stop_episode()
    killed = check_bag(bag)
    assert killed["readable"], killed
    assert not killed["repaired_now"], "the recorder's start did not repair it"
    assert killed["status"] == "recovered" and killed["messages"] > 100, killed
    assert check_bag(next_bag)["status"] == "complete"


def test_malformed_messages_on_every_topic_crash_nothing_and_move_nothing_unsafely(stack):
    from bench.faults_fuzz import HANDLERS, fuzz_handler

    for i, (topic, kind, _subs) in enumerate(HANDLERS):
        result = fuzz_handler(stack, topic, kind, 200, seed=i)
        assert not result["crashed_or_respawned"], result
        assert result["stack_alive"], result
        # the bridge kept commanding the arm (a dead state loop would make the rest vacuous)
        assert result["sent_commands"] > 50, result
        assert result["sent_outside_limits"] == 0, result
        assert result["sent_jumps"] == 0, result
        # rate-limited logging: far fewer lines than malformed messages
        assert max(result["log_lines"].values(), default=0) < 50, result
