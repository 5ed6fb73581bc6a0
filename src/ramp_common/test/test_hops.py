"""Hop timing and the capture -> command breakdown (ROS-free)."""

import pytest

from ramp_common.diagnostics import NodeHealth
from ramp_common.hops import MONITOR_ROW, REFLECTING_ROW, HopTimer, decompose


def test_hop_timer_reports_percentiles_in_ms():
    timer = HopTimer(("wait", "inference"))
    for ms in range(1, 101):
        timer.add("wait", ms / 1000)
    timer.add("inference", -0.001)  # a clock step never gives a negative hop
    health = NodeHealth()
    timer.report(health)
    values = health.snapshot()[2]
    assert float(values["hop_wait_ms_p50"]) == pytest.approx(50.5, abs=0.01)
    assert float(values["hop_wait_ms_max"]) == pytest.approx(100.0)
    assert float(values["hop_inference_ms_max"]) == 0.0


def test_decompose_adds_up_to_the_monitored_latency():
    def diag(**values):
        return {"values": {k: str(v) for k, v in values.items()}}

    diagnostics = {
        "/worldmodel_node": diag(
            hop_input_ms_p50=4.0, hop_input_ms_p99=9.0, hop_wait_ms_p50=20.0, hop_wait_ms_p99=60.0,
            hop_inference_ms_p50=1.0, hop_inference_ms_p99=2.0, observation_age_ms_p50=25.5,
        ),
        "/policy_node": diag(
            hop_input_ms_p50=27.0, hop_input_ms_p99=70.0, hop_wait_ms_p50=30.0,
            hop_wait_ms_p99=90.0, hop_inference_ms_p50=0.5, hop_inference_ms_p99=1.0,
            chunk_age_at_publish_ms_p50=58.0,
        ),
        "/chunk_executor": diag(
            hop_chunk_arrival_ms_p50=59.5, hop_chunk_arrival_ms_p99=120.0,
            hop_align_ms_p50=2.5, hop_align_ms_p99=5.0,
            hop_capture_to_tick_ms_p50=62.0, hop_capture_to_tick_ms_p99=124.0,
        ),
        "/intervention_arbiter": diag(hop_forward_ms_p50=6.0, hop_forward_ms_p99=9.0),
    }  # fmt: skip
    rows = decompose(diagnostics, {"p50": 68.0, "p99": 130.0})
    by_stage = {stage: (p50, p99) for stage, p50, p99, _ in rows}
    assert by_stage["world model -> policy transport"] == (1.5, None)
    assert by_stage["policy -> executor transport"] == (1.5, None)
    assert by_stage["executor -> arbiter -> joint_command (transport + tick)"] == (6.0, 9.0)
    per_chunk = "capture -> executor's first command (per chunk)"
    assert by_stage[per_chunk] == (62.0, 124.0)
    parts = [p50 for stage, p50, _, how in rows[:-1] if stage != per_chunk and how != "sum"]
    # the two publish hops (0.5 ms each, inside the ages) are the only time not in a row
    assert sum(parts) == pytest.approx(68.0 - 1.0)
    # end to end: the executor's first command from the frame plus the forward hop
    assert by_stage[REFLECTING_ROW] == (68.0, 133.0)
    assert rows[-1] == (MONITOR_ROW, 68.0, 130.0, "measured")


def test_decompose_without_hop_diagnostics_has_no_numbers():
    rows = decompose({}, {})
    assert all(p50 is None and p99 is None for _, p50, p99, _ in rows)
