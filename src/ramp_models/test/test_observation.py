"""ObservationBuffer: synchronisation of latest inputs, staleness, observation time."""

import numpy as np
import pytest

from ramp_models.observation import (
    FrameSetGate,
    Observation,
    ObservationBuffer,
    Sample,
    StaleInputError,
)


def test_observation_uses_oldest_stamp_and_latest_samples():
    buf = ObservationBuffer(["camera/front", "joint_state"])
    buf.put("camera/front", 10.00, np.zeros(1))
    buf.put("camera/front", 10.03, np.ones(1))
    buf.put("joint_state", 10.05, np.full(1, 2.0))
    obs = buf.observation(now=10.06, max_age_s=0.1)
    assert obs.stamp == pytest.approx(10.03)
    assert obs.samples["camera/front"].value[0] == 1.0


def test_out_of_order_sample_is_ignored():
    buf = ObservationBuffer(["a"])
    buf.put("a", 2.0, np.ones(1))
    buf.put("a", 1.0, np.zeros(1))
    assert buf.observation(2.0, 1.0).samples["a"].value[0] == 1.0


def test_missing_and_stale_inputs_are_named():
    buf = ObservationBuffer(["camera/front", "camera/wrist"])
    buf.put("camera/front", 1.0, np.zeros(1))
    with pytest.raises(StaleInputError, match="camera/wrist"):
        buf.observation(1.0, 0.1)
    buf.put("camera/wrist", 1.0, np.zeros(1))
    with pytest.raises(StaleInputError, match=r"camera/front 500 ms old"):
        buf.observation(1.5, 0.25)


def test_unknown_key_refused():
    with pytest.raises(KeyError, match="unknown input"):
        ObservationBuffer(["a"]).put("b", 0.0, np.zeros(1))


def test_key_stamps_detect_no_new_data():
    buf = ObservationBuffer(["a"])
    buf.put("a", 1.0, np.zeros(1))
    first = buf.observation(1.0, 1.0).key_stamps()
    assert buf.observation(1.1, 1.0).key_stamps() == first
    buf.put("a", 1.05, np.zeros(1))
    assert buf.observation(1.1, 1.0).key_stamps() != first


def _obs(**stamps: float) -> Observation:
    """An observation with these stamps; ``camera_front`` stands for the key ``camera/front``."""
    keys = {k: k.replace("camera_", "camera/") for k in stamps}
    samples = {keys[k]: Sample(t, np.zeros(1)) for k, t in stamps.items()}
    return Observation(stamp=min(stamps.values()), samples=samples)


def test_frame_set_gate_waits_for_every_camera_of_the_set():
    gate = FrameSetGate(["camera/front", "camera/wrist"], sync_timeout_s=0.05)
    first = _obs(camera_front=1.0, camera_wrist=1.0)
    assert gate.ready(first, now=1.01)
    gate.used(first)
    # the front frame of the next set arrived, the wrist frame not yet: hold
    half = _obs(camera_front=1.033, camera_wrist=1.0)
    assert not gate.ready(half, now=1.035)
    assert not gate.ready(half, now=1.06)
    # the wrist frame arrives: the set is complete, run at once
    assert gate.ready(_obs(camera_front=1.033, camera_wrist=1.033), now=1.061)


def test_frame_set_gate_gives_up_on_a_silent_camera_after_the_sync_timeout():
    gate = FrameSetGate(["camera/front", "camera/wrist"], sync_timeout_s=0.05)
    gate.used(_obs(camera_front=1.0, camera_wrist=1.0))
    only_front = _obs(camera_front=1.033, camera_wrist=1.0)
    assert not gate.ready(only_front, now=1.04)
    assert not gate.ready(only_front, now=1.089)
    assert gate.ready(only_front, now=1.09)
    gate.used(only_front)
    # nothing new at all: never ready, however long
    assert not gate.ready(only_front, now=5.0)


def test_frame_set_gate_with_one_trigger_runs_on_every_new_sample():
    gate = FrameSetGate(["wm_state"], sync_timeout_s=0.05)
    for t in (1.0, 1.1, 1.2):
        obs = _obs(wm_state=t)
        assert gate.ready(obs, now=t)
        gate.used(obs)
        assert not gate.ready(obs, now=t + 1)
