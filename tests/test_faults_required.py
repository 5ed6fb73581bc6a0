"""Killing a node the stack cannot run without (``ramp up``, one process per node), CI-sized.

Its own module: the respawn cases (tests/test_faults.py) keep one stack running for the whole
module, and a second stack in the same domain would feed this test's probe. Killing the arbiter
(or the bridge) stops the stack by design (docs/launch.md): the run ends with exit code 1 and an
error naming the node, no traceback, and the recorder closes the episode's bag on the way out.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.faultkit import SimStack, check_bag
from tests.rosutil import probe_node

pytestmark = pytest.mark.ros


def test_killing_the_arbiter_stops_the_stack_naming_it_and_the_episode_is_closed(tmp_path):
    with probe_node("faults_probe_arbiter") as probe:
        sim = SimStack(probe, tmp_path)
        try:
            assert sim.wait_flowing(time.time(), 120.0), sim.proc.stderr()[-3000:]
            bag = sim.start_episode()
            assert bag
            time.sleep(1.0)
            sim.kill("intervention_arbiter")
            code = sim.proc.proc.wait(60.0)
        finally:
            sim.stop()
    assert code == 1
    report = json.loads(sim.report_path.read_text())
    assert any("intervention_arbiter exited with code -9" in e for e in report["errors"])
    stderr = sim.proc.stderr()
    assert "Traceback" not in stderr
    checked = check_bag(bag)
    assert checked["readable"], checked
    assert not checked["repaired_now"], "the recorder did not close the episode at the stop"
    assert checked["status"] in ("ended_on_error", "complete"), checked
