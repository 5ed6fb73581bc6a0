"""ReplanRule: when the policy starts its next inference (replan_remaining_s)."""

from __future__ import annotations

import pytest

from ramp_policy_node.core.replan import ReplanRule


def test_zero_remaining_replans_whenever_asked() -> None:
    rule = ReplanRule(0.0)
    rule.published(observation_stamp=100.0, chunk_duration_s=1.0)
    assert rule.due(100.0)
    assert rule.due(100.5)


def test_waits_until_the_chunk_has_less_than_remaining_left() -> None:
    rule = ReplanRule(0.3)
    assert rule.due(0.0), "no chunk yet: the first inference starts at once"
    rule.published(observation_stamp=10.0, chunk_duration_s=1.0)  # runs out at 11.0
    assert rule.chunk_end == pytest.approx(11.0)
    assert not rule.due(10.5)
    assert not rule.due(10.69)
    assert rule.due(10.7)
    assert rule.due(12.0), "an expired chunk replans"


def test_remaining_longer_than_the_chunk_replans_at_once() -> None:
    rule = ReplanRule(2.0)
    rule.published(observation_stamp=10.0, chunk_duration_s=1.0)
    assert rule.due(10.0)


def test_changing_remaining_takes_effect_at_the_next_check() -> None:
    rule = ReplanRule(0.0)
    rule.published(observation_stamp=10.0, chunk_duration_s=1.0)
    assert rule.due(10.2)
    rule.replan_remaining_s = 0.5
    assert not rule.due(10.2)
    assert rule.due(10.5)
    with pytest.raises(ValueError, match="replan_remaining_s"):
        rule.replan_remaining_s = -0.1
    with pytest.raises(ValueError, match="replan_remaining_s"):
        ReplanRule(-1.0)
