"""DDS faults next to the running stack (case 5 of bench/faults.py), CI-sized.

A separate process floods one topic at 10x its rate with valid messages
(``ramp/operator_command``, which the arbiter subscribes to): no node crashes or respawns, the
bridge keeps commanding the arm, no command jumps, and the stack drives again afterwards. The
link-down case (robot and inference host in two network namespaces) is
tests/test_fleet_netns.py; a participant leaving abruptly is tests/test_faults.py (kill -9).
"""

from __future__ import annotations

import time

import pytest

from bench.faults_dds import FLOODS, flood_trial
from tests.faultkit import SimStack
from tests.rosutil import probe_node

pytestmark = pytest.mark.ros


def test_a_flooded_topic_crashes_nothing_and_the_arm_never_jumps(tmp_path):
    topic, kind, normal_hz, rate_hz = FLOODS[0]
    with probe_node("dds_faults_probe") as probe:
        sim = SimStack(probe, tmp_path)
        try:
            assert sim.wait_flowing(time.time(), 120.0), sim.proc.stderr()[-3000:]
            result = flood_trial(sim, topic, kind, normal_hz, rate_hz, 3.0)
        finally:
            sim.stop()
    assert "error" not in result, result
    assert result["flood_sent"] >= 10 * normal_hz * 3.0 * 0.5, result  # a real flood
    assert result["pids_unchanged"] and result["stack_alive"], result
    assert result["during"]["sent_hz"] > 0, result  # the bridge kept commanding the arm
    assert result["jumps"] == 0, result
    assert result["recovered"], result
