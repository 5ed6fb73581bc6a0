"""ObservationBuffer: synchronisation of latest inputs, staleness, observation time."""

import numpy as np
import pytest

from ramp_models.observation import ObservationBuffer, StaleInputError


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
