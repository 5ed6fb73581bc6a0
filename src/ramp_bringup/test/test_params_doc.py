"""docs/parameters.md is generated from the nodes' parameter specs and matches them."""

from __future__ import annotations

from pathlib import Path

from ramp_bringup.params_doc import node_params, render
from ramp_bringup.stack import node_registry

DOC = Path(__file__).resolve().parents[3] / "docs" / "parameters.md"


def test_committed_parameters_doc_matches_the_specs() -> None:
    assert DOC.read_text() == render(node_params()), (
        "docs/parameters.md is out of date: run python -m ramp_bringup.params_doc"
    )


def test_every_node_has_a_spec_and_a_table() -> None:
    params = node_params()
    assert set(params) == set(node_registry())
    text = DOC.read_text()
    for node, specs in params.items():
        assert specs, node
        assert f"## `{node}`" in text
        names = [p.name for p in specs]
        assert len(names) == len(set(names)), f"{node}: a parameter listed twice"
