"""CI-sized run of the whole loop (``ramp-train experiment --quick``): each stage's output is
what the next stage reads.

demos (synchronous sim) -> pre-training (ONNX pair + cards) -> HILR round on the real stack
(scripted operator through teleop, episode_recorder bags, ramp-bag export) -> continual
training from the base checkpoint -> evaluations -> experiment.json / results.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ramp_models.model_card import ModelCard, check_compatible
from ramp_models.onnx_runtime import load_model
from ramp_training import cli
from ramp_training.dataset import dataset_kind, load_episodes

pytestmark = pytest.mark.ros

LEROBOT_COLUMNS = {
    "observation.state",
    "action",
    "episode_index",
    "frame_index",
    "timestamp",
    "index",
    "task_index",
    "intervention",
    "success",
}


def _run_files(folder: Path) -> None:
    for name in ("world_model", "policy", "policy_no_wm"):
        load_model(folder / f"{name}.yaml")  # card, sha256 and session checks of the nodes
    check_compatible(
        ModelCard.load(folder / "world_model.yaml"), ModelCard.load(folder / "policy.yaml")
    )
    for name in ("checkpoint.npz", "checkpoint.json", "training_report.json"):
        assert (folder / name).is_file(), name
    assert (folder / "training_curves.png").stat().st_size > 1000


def test_quick_experiment(tmp_path: Path) -> None:
    out = tmp_path / "experiment"
    assert cli.main(["experiment", "--quick", "--out", str(out)]) == 0

    demos = out / "demos"
    assert dataset_kind(demos) == "demos"
    index = json.loads((demos / "ramp_demos.json").read_text())
    assert len(index["episodes"]) == 3 and index["image_size"] == [32, 32]

    _run_files(out / "base")
    base_report = json.loads((out / "base" / "training_report.json").read_text())
    assert base_report["data"]["datasets"][0]["path"] == str(demos)

    bags = sorted(p for p in (out / "hilr" / "bags").iterdir() if p.is_dir())
    assert len(bags) == 2
    dataset = out / "hilr" / "dataset"
    assert dataset_kind(dataset) == "lerobot"
    table = pq.read_table(dataset / "data" / "chunk-000" / "file-000.parquet")
    assert set(table.column_names) >= LEROBOT_COLUMNS
    assert sorted(set(table.column("episode_index").to_pylist())) == [0, 1]
    info = json.loads((dataset / "meta" / "info.json").read_text())
    for cam in ("front", "wrist"):
        assert (dataset / info["video_path"].format(
            video_key=f"observation.images.{cam}", chunk_index=0, file_index=0
        )).is_file()  # fmt: skip
    episodes, _ = load_episodes(
        [dataset], (32, 32), ("front", "wrist"), tuple(info["features"]["action"]["names"])
    )
    assert len(episodes) == 2 and all(e.length > 10 for e in episodes)

    hilr_model = out / "hilr" / "model"
    _run_files(hilr_model)
    checkpoint = json.loads((hilr_model / "checkpoint.json").read_text())
    assert checkpoint["init"] == str(out / "base")
    hilr_report = json.loads((hilr_model / "training_report.json").read_text())
    paths = [d["path"] for d in hilr_report["data"]["datasets"]]
    assert paths == [str(demos), str(dataset)]
    assert hilr_report["model_ids"]["policy"] != base_report["model_ids"]["policy"]

    doc = json.loads((out / "experiment.json").read_text())
    assert set(doc["results"]) == {"a_base", "b_no_world_model", "c_after_hilr"}
    for key, by_backend in doc["results"].items():
        assert by_backend["sim"]["trials"] == 2, key
        assert (out / "eval" / f"{key}_sim.json").is_file()
    assert doc["results"]["c_after_hilr"]["sim"]["model_ids"] == {
        "policy": hilr_report["model_ids"]["policy"],
        "world_model": hilr_report["model_ids"]["world_model"],
    }
    assert set(doc["versus_base"]) == {"b_no_world_model", "c_after_hilr"}
    assert doc["hilr_collection"]["stack"]["episodes"] == 2
    results_md = (out / "results.md").read_text()
    assert "(c) after one HILR round" in results_md and "vs (a)" in results_md
