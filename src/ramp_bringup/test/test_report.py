"""Run report: rates, end-to-end latency matching, motion, errors, JSON output."""

import json

import numpy as np

from ramp_bringup.core.report import RunRecorder, write_report
from ramp_bringup.core.summary import summarize


def test_report_rates_latency_motion(tmp_path):
    rec = RunRecorder(["j1", "j2", "gripper"])
    for k in range(201):  # 200 Hz for 1 s
        t = 100.0 + k * 0.005
        rec.message("joint_command", t, t - 0.001)
        rec.joint_state(np.array([0.1 * k / 200, 0.0, 0.0]))
    rec.chunk(received=100.30, observation_stamp=100.25)
    rec.command(received=100.31)
    rec.command(received=100.32)  # only the first command after a chunk counts
    report = rec.report({"robot": "sim"}, 100.0, 101.0)
    assert report["topics"]["joint_command"]["rate_hz"] == 200.0
    assert report["topics"]["joint_command"]["stamp_delay_ms"]["p50"] == 1.0
    e2e = report["latency_ms"]["capture_to_first_command"]
    assert e2e["n"] == 1 and abs(e2e["p50"] - 60.0) < 1e-6
    assert report["joint_motion"]["moving"] is True
    assert report["ok"] is True
    path = tmp_path / "r.json"
    write_report(report, path)
    assert json.loads(path.read_text())["robot"] == "sim"
    assert "joint_command" in summarize(report)


def test_error_diagnostics_and_logs_make_report_not_ok():
    rec = RunRecorder(["j1", "gripper"])
    rec.diagnostic("/camera_node", 2, "camera front: cannot open /dev/video0", {})
    rec.log_error("policy_node: chunk rejected")
    report = rec.report({}, 0.0, 1.0)
    assert report["ok"] is False
    assert any("cannot open" in e for e in report["errors"])
    assert report["joint_motion"]["moving"] is False
