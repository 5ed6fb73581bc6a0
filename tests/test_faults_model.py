"""Model faults hot-reloaded into the running stack (``ramp up``, one process per node), CI-sized.

The CI version of case 3 of bench/faults.py: a truncated ONNX and a card whose sha256 does not
match are refused by ``/<node>/reload`` while the old model keeps serving; a model with the
card's interface that outputs NaN is refused by the reload's probe inference; nothing
crashes, every command stays within the limits, and the good pair serves again once restored.
"""

from __future__ import annotations

import shutil
import time

import pytest

from bench.faults_model import faults, model_fault
from tests.faultkit import SimStack
from tests.rosutil import ROOT, probe_node

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(stack, folder of the good pair, the folder the stack serves from)."""
    work = tmp_path_factory.mktemp("model_faults")
    good = work / "good"
    shutil.copytree(ROOT / "models" / "demo", good)
    model_dir = work / "models" / "demo"
    shutil.copytree(good, model_dir)
    with probe_node("model_faults_probe") as probe:
        sim = SimStack(probe, work, ("--model-dir", str(work / "models")))
        try:
            assert sim.wait_flowing(time.time(), 120.0), sim.proc.stderr()[-3000:]
            yield sim, good, model_dir
        finally:
            sim.stop()


@pytest.mark.parametrize(
    "fault", ["truncated ONNX (policy)", "sha256 mismatch (world model)", "NaN outputs (policy)"]
)
def test_a_broken_model_reloaded_while_running_is_refused_or_held(served, fault):
    stack, good, model_dir = served
    node, apply = faults(model_dir)[fault]
    r = model_fault(stack, fault, node, apply, good, model_dir)
    assert not r["crashed"], r
    assert r["sent_outside_limits"] == 0 and r["sent_jumps"] == 0, r
    # refused at reload (a NaN model by the probe inference), the old model keeps serving
    assert r["reload_accepted"] is False, r
    assert r["message"], r  # the reason, for the operator
    if fault.startswith("NaN"):
        assert "NaN" in r["message"], r
    assert r["served_within_13s"], r  # the old model kept serving
    assert r["restored"] and r["serving_again"], r


def test_a_model_that_outputs_nan_fails_the_probe_inference_and_the_good_one_passes(tmp_path):
    # Found by bench/faults.py (model faults): a NaN policy passed the reload checks (its files
    # and shapes are valid) and then every chunk was dropped. ROS-free.
    from bench.faults_model import nan_policy, set_sha
    from ramp_models.hot_swap import check_probe_inference
    from ramp_models.model_card import ModelCardError
    from ramp_models.onnx_runtime import load_model

    shutil.copytree(ROOT / "models" / "demo", tmp_path / "demo")
    card = tmp_path / "demo" / "policy.yaml"
    check_probe_inference(load_model(card))  # the demo policy answers with finite chunks
    nan_policy(tmp_path / "demo" / "policy.onnx")
    set_sha(card)
    broken = load_model(card)  # loads: files, sha256 and shapes are fine
    with pytest.raises(ModelCardError, match=r"probe inference on zeros inputs: .*NaN/Inf"):
        check_probe_inference(broken)
