"""The experiment's bookkeeping: configuration checks and the comparison against (a)."""

from __future__ import annotations

import math

import pytest

from ramp_training.experiment import (
    ExperimentConfig,
    results_table,
    two_proportion_p,
    versus_base,
)


def test_two_proportion_p_matches_the_normal_approximation() -> None:
    # 60/100 vs 73/100: pooled p = 0.665, se = 0.06675, z = 1.9476 -> two-sided p = 0.0515
    assert two_proportion_p(60, 100, 73, 100) == pytest.approx(0.05146, abs=1e-4)
    assert two_proportion_p(50, 100, 50, 100) == pytest.approx(1.0)
    assert two_proportion_p(73, 100, 60, 100) == two_proportion_p(60, 100, 73, 100)
    assert two_proportion_p(120, 200, 146, 200) < two_proportion_p(60, 100, 73, 100)


def test_two_proportion_p_without_variance_is_one() -> None:
    assert two_proportion_p(0, 10, 0, 10) == 1.0
    assert two_proportion_p(10, 10, 10, 10) == 1.0


def _result(label: str, successes: int, trials: int) -> dict:
    return {
        "label": label,
        "successes": successes,
        "trials": trials,
        "success_rate": successes / trials,
        "ci95": [0.0, 1.0],
        "mean_time_to_success_s": math.nan if successes == 0 else 7.0,
    }


def test_versus_base_per_backend_and_in_the_table() -> None:
    results = {
        "a_base": {"sim": _result("(a)", 60, 100), "stack": _result("(a)", 10, 20)},
        "c_after_hilr": {"sim": _result("(c)", 73, 100)},
        "b_no_world_model": {"sim": _result("(b)", 0, 100), "stack": _result("(b)", 0, 20)},
    }
    versus = versus_base(results)
    assert set(versus) == {"c_after_hilr", "b_no_world_model"}
    assert versus["c_after_hilr"]["sim"]["difference_points"] == 13.0
    assert versus["c_after_hilr"]["sim"]["p_value"] == 0.0515
    assert versus["b_no_world_model"]["stack"]["difference_points"] == -50.0
    table = results_table({"results": results, "versus_base": versus})
    assert "| (c) | sim | 73/100 (73%) | 0-100% | +13, p=0.051 | 7.0 s |" in table
    assert "| (a) | sim | 60/100 (60%) | 0-100% | - | 7.0 s |" in table
    assert "| (b) | sim | 0/100 (0%) | 0-100% | -60, p<0.001 | - |" in table
    assert "| (b) | stack | 0/20 (0%) | 0-100% | -50, p<0.001 | - |" in table


@pytest.mark.parametrize("backends", [(), ("gpu",), ("sim", "sim")])
def test_config_refuses_unknown_or_repeated_hilr_backends(backends: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="hilr_backends"):
        ExperimentConfig(hilr_backends=backends)
