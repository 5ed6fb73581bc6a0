"""``ramp summary REPORT --plot``: rates vs configured rates and latency histograms from a report
file written by the run recorder, and the bounded raw samples the report now keeps."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from ramp_bringup.cli import main
from ramp_bringup.core.report import RAW_SAMPLES, RunRecorder, write_report
from ramp_bringup.core.summary_plot import configured_rates, summary_plot_data

CONFIG = Path(__file__).resolve().parents[1] / "config"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def recorded_report(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 15 s run: joint commands at 200 Hz with known delays, cameras at 25 Hz, chunks."""
    rec = RunRecorder(["joint1", "gripper"])
    rng = np.random.default_rng(0)
    delays = rng.gamma(2.0, 0.001, size=3000)  # s
    for k, delay in enumerate(delays):
        t = 100.0 + k * 0.005
        rec.message("joint_command", t + delay, t)
        rec.joint_state(np.array([0.2 * np.sin(t), 0.0]))
    for k in range(375):
        t = 100.0 + k * 0.04
        rec.message("camera/front/image_raw", t + 0.03, t)
    for k in range(150):
        t = 100.0 + k * 0.1
        rec.chunk(received=t + 0.12, observation_stamp=t)
        rec.command(received=t + 0.125)
    meta = {"robot": "sim", "config": str(CONFIG / "sim.yaml")}
    path = tmp_path / "r.json"
    write_report(rec.report(meta, 100.0, 115.0), path)
    return path, delays


def test_report_keeps_bounded_raw_samples_and_its_old_keys(tmp_path: Path) -> None:
    path, delays = recorded_report(tmp_path)
    report = json.loads(path.read_text())
    samples = report["stamp_delay_samples_ms"]["joint_command"]
    assert len(samples) == RAW_SAMPLES == 2000
    np.testing.assert_allclose(samples, delays[-RAW_SAMPLES:] * 1e3, atol=5e-4)  # the last ones
    e2e = report["latency_samples_ms"]["capture_to_first_command"]
    assert len(e2e) == 150 and e2e == pytest.approx([125.0] * 150, abs=1e-3)
    # Percentiles still cover every sample, not only the kept ones.
    assert report["topics"]["joint_command"]["stamp_delay_ms"]["n"] == 3000
    assert report["latency_ms"]["capture_to_chunk"]["p50"] == pytest.approx(120.0)
    assert report["ok"] is True and report["topics"]["joint_command"]["rate_hz"] == pytest.approx(
        200.0, abs=0.1
    )


def test_summary_plot_command_and_the_numbers_behind_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, delays = recorded_report(tmp_path)
    out = tmp_path / "summary.png"
    assert main(["summary", str(path), "--plot", str(out)]) == 0
    assert "joint_command" in capsys.readouterr().out  # the text summary is unchanged
    width, height = png_size(out)
    assert width == 1080 and height > 400  # 12 in at 90 dpi

    data = summary_plot_data(json.loads(path.read_text()))
    rates = {r.topic: r for r in data.rates}
    assert rates["joint_command"].measured_hz == pytest.approx(200.0, abs=0.1)
    assert rates["joint_command"].configured_hz == 200.0  # intervention_arbiter.control_rate_hz
    assert rates["camera/front/image_raw"].measured_hz == 25.0
    assert rates["camera/front/image_raw"].ratio == pytest.approx(25 / 30)
    assert rates["camera/wrist/image_raw"].measured_hz == 0.0  # configured, never seen
    assert rates["joint_states"].configured_hz == 200.0  # sim_bridge.state_rate_hz
    hist = {h.name: h for h in data.histograms}
    assert set(hist) == {
        "capture_to_chunk",
        "capture_to_first_command",
        "joint_command",
        "camera/front/image_raw",
    }  # capture_to_wm_state had no samples
    np.testing.assert_allclose(hist["joint_command"].samples_ms, delays[-2000:] * 1e3, atol=5e-4)
    assert hist["capture_to_first_command"].percentiles["p50"] == pytest.approx(125.0)


def test_configured_rates_of_each_robot_config() -> None:
    piper = configured_rates(CONFIG / "piper.yaml")
    assert piper["joint_command"] == 200.0  # no arbiter: the chunk executor's control rate
    assert piper["joint_states"] == 200.0 and piper["ramp/action_chunk"] == 10.0
    assert piper["ramp/wm_state"] == 15.0
    assert any(t.startswith("camera/") for t in piper)
    sim = configured_rates(CONFIG / "sim.yaml")
    assert sim["camera/front/image_raw"] == 30.0 and sim["camera/wrist/image_raw"] == 30.0
    assert configured_rates(CONFIG / "missing.yaml") == {}


def test_old_report_without_samples_plots_rates_only(tmp_path: Path) -> None:
    report = {"robot": "g1", "ok": True, "topics": {"joint_states": {"count": 10, "rate_hz": 50}}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    out = tmp_path / "old.png"
    assert main(["summary", str(path), "--plot", str(out)]) == 0
    png_size(out)
    data = summary_plot_data(report)
    assert data.histograms == [] and [r.topic for r in data.rates] == ["joint_states"]
