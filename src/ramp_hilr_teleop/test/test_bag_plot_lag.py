"""ramp-bag plot and ramp-bag lag, as a user types them, on bags written with the project's
own bag writer and on a dataset exported from them with ``ramp-bag export``.

The episode is built so that the answers are known: the commands lead the measured joints by
exactly 2 frames (0.2 s at 10 fps) under the policy and by 1 frame under the operator.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ramp_hilr_teleop.bag_cli import main
from ramp_hilr_teleop.core.bag_writer import parse_topic_specs
from ramp_hilr_teleop.core.episode import EpisodeError, EpisodeMetadata, read_metadata
from ramp_hilr_teleop.core.episode_plot import (
    CHUNK_GID,
    INTERVENTION_GID,
    draw_episode,
    load_episode_plot,
)
from ramp_hilr_teleop.core.synthetic import MessageFactory, write_episode

T0 = 1_700_000_000_000_000_000
FPS = 10
NAMES = ["joint1", "joint2", "gripper"]
AMPLITUDE = np.array([0.5, 0.3, 0.02])
OMEGA = np.array([1.5, 2.0, 1.0])  # rad/s of the joints' sines
INTERVENTION = (2.0, 3.5)  # s: operator in control
LEAD_POLICY, LEAD_OPERATOR = 2, 1  # frames the command leads the measured joints by


def position(t: float) -> np.ndarray:
    return AMPLITUDE * np.sin(OMEGA * t + 0.3)


def lead_frames(t: float, operator: bool = True) -> int:
    return LEAD_OPERATOR if operator and INTERVENTION[0] <= t < INTERVENTION[1] else LEAD_POLICY


def write_lagged_episode(bag_dir: Path, duration_s: float = 6.0, success: bool = True) -> None:
    """Joints at 200 Hz, commands leading them by ``lead_frames``, operator commands while the
    operator is in control (episodes longer than INTERVENTION), one 10 Hz camera, 10 Hz chunks."""
    f = MessageFactory()
    operator = duration_s > INTERVENTION[1]

    def ns(t: float) -> int:
        return T0 + round(t * 1e9)

    msgs: list[tuple[str, int, bytes]] = [
        ("ramp/task", ns(0), f.string("push the cube")),
        ("ramp/intervention", ns(0), f.boolean(False)),
    ]
    if operator:
        msgs.append(("ramp/intervention", ns(INTERVENTION[0]), f.boolean(True)))
        msgs.append(("ramp/intervention", ns(INTERVENTION[1]), f.boolean(False)))
    for k in range(round(duration_s * FPS)):
        t = k / FPS
        msgs.append(("camera/front/image_raw", ns(t) + 1000,
                     f.image(ns(t), np.full((16, 16, 3), k % 256, np.uint8))))  # fmt: skip
        steps = np.arange(1, 6) * 0.1
        chunk = np.stack([position(t + s) for s in steps])
        msgs.append(("ramp/action_chunk", ns(t) + 30_000_000,
                     f.trajectory(ns(t), NAMES, steps, chunk, "policy-v1")))  # fmt: skip
    for k in range(round(duration_s * 200)):
        t = k / 200
        msgs.append(("joint_states", ns(t) + 1000, f.joint_state(ns(t), NAMES, position(t))))
        command = position(t + lead_frames(t, operator) / FPS)
        msgs.append(("joint_command", ns(t) + 1000, f.joint_state(ns(t), NAMES, command)))
        if lead_frames(t, operator) == LEAD_OPERATOR and k % 2 == 0:  # teleop at 100 Hz
            msgs.append(("ramp/operator_command", ns(t) + 1000,
                         f.joint_state(ns(t), NAMES, command)))  # fmt: skip
    msgs.sort(key=lambda m: m[1])
    topics = parse_topic_specs([
        "camera/front/image_raw", "joint_states", "joint_command", "ramp/operator_command",
        "ramp/action_chunk", "ramp/intervention", "ramp/task",
    ])  # fmt: skip
    meta = EpisodeMetadata(name=bag_dir.name, robot="sim", operator="tester", start_ns=T0,
                           success=success)  # fmt: skip
    write_episode(bag_dir, topics, msgs, meta, f.ts)


@pytest.fixture
def episodes(tmp_path: Path) -> Path:
    root = tmp_path / "episodes"
    write_lagged_episode(root / "sim_20250101-120000_0001")
    return root


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; fails unless the file is a PNG."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_plot_command_writes_the_episode_png(episodes: Path, tmp_path: Path) -> None:
    bag = episodes / "sim_20250101-120000_0001"
    out = tmp_path / "plot" / "episode.png"
    exe = shutil.which("ramp-bag")
    assert exe, "ramp-bag console script not installed (run scripts/setup.sh)"
    done = subprocess.run([exe, "plot", str(bag), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "success" in done.stdout and "1 intervention(s), 60 chunks" in done.stdout
    width, height = png_size(out)
    assert width == 1100 and 500 <= height <= 800  # 11 in x (1.45 x 3 joints + 1.3) in at 100 dpi
    assert out.stat().st_size > 20_000  # drawn lines, not an empty canvas

    # Several episodes: one PNG each into the --out folder.
    write_lagged_episode(episodes / "sim_20250101-120000_0002", duration_s=2.0, success=False)
    folder = tmp_path / "plots"
    folder.mkdir()
    assert main(["plot", str(episodes), "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "sim_20250101-120000_0001.png",
        "sim_20250101-120000_0002.png",
    ]
    png_size(folder / "sim_20250101-120000_0002.png")


def test_plot_shows_the_episodes_interventions_chunks_and_label(episodes: Path) -> None:
    bag = episodes / "sim_20250101-120000_0001"
    meta = read_metadata(bag)
    data = load_episode_plot(bag)
    assert data.interventions_s == [(s.start_s, s.end_s) for s in meta.interventions]
    assert data.interventions_s == [INTERVENTION]
    assert data.label == "success" and "SUCCESS" in data.title and "push the cube" in data.title
    assert data.joint_names == NAMES
    assert list(data.series) == ["joint_states", "joint_command", "ramp/operator_command"]
    np.testing.assert_allclose(data.chunk_arrivals_s, np.arange(60) / FPS + 0.03, atol=1e-9)
    operator = data.series["ramp/operator_command"]
    assert operator.t_s.min() >= INTERVENTION[0] and operator.t_s.max() < INTERVENTION[1]
    states = data.series["joint_states"]
    np.testing.assert_allclose(states.positions[400], position(2.0), atol=1e-12)

    fig = draw_episode(data)
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == NAMES
    for ax in axes:
        spans = [p for p in ax.patches if p.get_gid() == INTERVENTION_GID]
        extents = [(p.get_x(), p.get_x() + p.get_width()) for p in spans]
        np.testing.assert_allclose(extents, [INTERVENTION], atol=1e-9)
        (ticks,) = [c for c in ax.collections if c.get_gid() == CHUNK_GID]
        assert len(ticks.get_segments()) == 60
        assert len(ax.get_lines()) == 3  # position, command, operator command

    failed = episodes / "sim_20250101-120000_0002"
    write_lagged_episode(failed, duration_s=2.0, success=False)
    data = load_episode_plot(failed, joints=["joint2"])
    assert data.label == "failure" and data.joint_names == ["joint2"]
    assert data.interventions_s == [] and "0 intervention(s)" in data.title
    assert list(data.series) == ["joint_states", "joint_command"]  # no operator commands
    with pytest.raises(EpisodeError, match=r"no data for joints \['elbow'\]"):
        load_episode_plot(failed, joints=["joint2", "elbow"])


def _lag_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["lag", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_lag_of_bags_finds_the_known_lags(
    episodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _lag_json([str(episodes), "--autonomous-only"], capsys)
    pooled = policy["pooled"]
    assert policy["joints"] == ["joint1", "joint2"]  # the gripper is left out by default
    assert pooled["best_lag_frames"] == pytest.approx(LEAD_POLICY)
    assert pooled["best_lag_ms"] == pytest.approx(200.0)
    assert pooled["residual"] < 1e-4  # only the 200 Hz state's interpolation error is left
    assert pooled["residual_at_zero"] > 0.05
    for joint in pooled["per_joint"].values():
        assert joint["best_lag_frames"] == pytest.approx(LEAD_POLICY)

    operator = _lag_json([str(episodes), "--operator-only"], capsys)["pooled"]
    assert operator["best_lag_frames"] == pytest.approx(LEAD_OPERATOR)
    assert operator["frames"] == 15  # 2.0 <= t < 3.5 s at 10 fps
    assert operator["residual"] < 1e-4

    mixed = _lag_json([str(episodes), "--joints", "gripper"], capsys)["pooled"]
    assert mixed["frames"] == 57  # every frame whose t + 3 frames is still measured
    assert mixed["residual"] > 10 * operator["residual"]  # two lags cannot both fit

    plot = tmp_path / "lag.png"
    assert main(["lag", str(episodes), "--operator-only", "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "operator frames" in table
    row = next(ln for ln in table.splitlines() if ln.startswith("all episodes"))
    assert row.split()[2:5] == ["15", "1.00", "100"]  # frames, best lag (frames), (ms)
    width, height = png_size(plot)
    assert (width, height) == (1100, 420)

    # A lag longer than the episode leaves no frame to compare: said, not a zero.
    assert main(["lag", str(episodes), "--max-lag", "100", "--lag-step", "10", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["pooled"]["residual"] is None
    assert "no frames to compare" in captured.err


def test_lag_of_an_exported_dataset_matches_the_bags(
    episodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "dataset"
    assert main(["export", str(episodes), "--out", str(dataset), "--fps", str(FPS),
                 "--codec", "mpeg4"]) == 0  # fmt: skip
    capsys.readouterr()
    policy = _lag_json([str(dataset), "--autonomous-only"], capsys)["pooled"]
    assert policy["name"] == "all episodes"
    assert policy["best_lag_frames"] == pytest.approx(LEAD_POLICY)
    assert policy["residual"] < 1e-6  # the state is sampled on the frames: exact up to float32
    operator = _lag_json([str(dataset), "--operator-only"], capsys)
    assert operator["pooled"]["best_lag_frames"] == pytest.approx(LEAD_OPERATOR)
    assert operator["episodes"][0]["name"] == "0: sim_20250101-120000_0001"
    assert operator["pooled"]["frames"] == 15


def test_lag_errors_are_reported_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lag", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "no such file" in err and "Traceback" not in err
    assert main(["plot", str(tmp_path / "nope")]) == 1
    assert "no such file" in capsys.readouterr().err
