"""ramp-bag info / repair / export from the command line (no ROS), and error handling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ramp_hilr_teleop.bag_cli import main
from ramp_hilr_teleop.core.episode import STATUS_RECORDING, read_metadata, write_metadata
from ramp_hilr_teleop.core.synthetic import synthetic_episode


@pytest.fixture
def bags(tmp_path: Path) -> Path:
    root = tmp_path / "episodes"
    synthetic_episode(root / "sim_a", duration_s=2.0, interventions=[(0.5, 1.0)])
    synthetic_episode(root / "sim_b", duration_s=1.0, success=False,
                      t0_ns=1_700_000_100_000_000_000)  # fmt: skip
    return root


def test_info_text_and_json(bags: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(bags)]) == 0
    text = capsys.readouterr().out
    assert "sim_a" in text and "sim_b" in text
    assert "duration 2.00 s" in text and "intervention ratio 25.0%" in text
    assert "success True" in text and "success False" in text
    assert "task 'pick the red cube'" in text and "policy=policy-v1" in text
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("joint_states"))
    assert line.split()[-3:] == ["400", "200.0", "0"]  # count, rate Hz, dropped

    assert main(["info", "--json", str(bags / "sim_a")]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    assert info["topics"]["camera/front/image_raw"]["count"] == 60
    assert info["topics"]["camera/front/image_raw"]["rate_hz"] == pytest.approx(30.0)
    assert info["intervention_ratio"] == pytest.approx(0.25, abs=1e-3)
    assert info["model_ids"]["world_model"] == ["wm-v1"]


def test_info_on_unfinished_bag_says_repair(bags: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = bags / "sim_a"
    meta = read_metadata(bag)
    meta.status = STATUS_RECORDING
    write_metadata(bag, meta)
    (bag / "metadata.yaml").unlink()
    mcap = bag / "sim_a.mcap"
    os.truncate(mcap, mcap.stat().st_size // 2)
    assert main(["info", str(bag)]) == 1
    assert "ramp-bag repair" in capsys.readouterr().err
    assert main(["repair", str(bags)]) == 0
    assert "sim_a: repaired" in capsys.readouterr().out
    assert main(["info", str(bag)]) == 0
    assert "status recovered" in capsys.readouterr().out


def test_export_command(bags: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    assert main(["export", str(bags), "--out", str(out), "--fps", "5"]) == 0
    captured = capsys.readouterr()
    assert "exported 2 episodes, 15 frames at 5 Hz" in captured.out
    assert "[1/2] sim_a" in captured.err and "[2/2] sim_b" in captured.err
    info = json.loads((out / "meta/info.json").read_text())
    assert info["fps"] == 5 and info["total_frames"] == 15


def test_errors_are_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "holds no episode bag folders" in capsys.readouterr().err
