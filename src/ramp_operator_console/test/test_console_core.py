"""Core of the operator console without ROS: rate limiter, access rules, frames, state."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from ramp_operator_console.core.access import (
    AccessError,
    AccessPolicy,
    RequestInfo,
    check_bind,
    is_loopback,
)
from ramp_operator_console.core.commands import COMMANDS, CommandResult, validate_task
from ramp_operator_console.core.frames import FrameError, FrameStore, encode_jpeg, parse_image_cdr
from ramp_operator_console.core.rate import RateLimiter, clamp_rate
from ramp_operator_console.core.state import ConsoleState, Viewer

# ---------------------------------------------------------------------- rate limiter


def test_rate_limiter_never_exceeds_its_rate_and_keeps_the_grid():
    limiter = RateLimiter(10.0)
    sent = [t for t in np.arange(0.0, 10.0, 0.001) if limiter.take(float(t))]
    assert len(sent) == pytest.approx(100, abs=1)
    gaps = np.diff(sent)
    # deadlines stay on a 0.1 s grid: a gap is off by at most the 1 ms polling, never drifts
    assert gaps.min() > 0.1 - 1.5e-3 and gaps.max() < 0.1 + 1.5e-3
    assert sent[-1] - sent[0] == pytest.approx(0.1 * (len(sent) - 1), abs=1.5e-3)


def test_rate_limiter_does_not_burst_after_a_stall():
    limiter = RateLimiter(10.0)
    assert limiter.take(0.0)
    # the viewer stalls for 2 s: one event when it is back, then one per period again
    sent = [t for t in np.arange(2.0, 3.0, 0.001) if limiter.take(float(t))]
    assert sent[0] == pytest.approx(2.0)
    assert len(sent) == pytest.approx(10, abs=1)
    assert np.diff(sent).min() >= 0.1 - 1e-6


def test_rate_limiter_wait_and_validation():
    limiter = RateLimiter(4.0)
    assert limiter.wait_s(5.0) == 0.0
    limiter.mark(5.0)
    assert limiter.wait_s(5.1) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="rate_hz"):
        RateLimiter(0.0)
    assert clamp_rate(None, 10, 30) == 10
    assert clamp_rate("5", 10, 30) == 5
    assert clamp_rate("100", 10, 30) == 30
    assert clamp_rate("nan", 10, 30) == 10
    assert clamp_rate("-1", 10, 30) == 10
    assert clamp_rate("x", 10, 30) == 10


# ---------------------------------------------------------------------- access


def test_loopback_names():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "192.168.1.10", "robot.local", "example.com"):
        assert not is_loopback(host), host


def test_non_loopback_bind_without_token_is_refused():
    check_bind("127.0.0.1", "")
    check_bind("0.0.0.0", "secret")
    with pytest.raises(AccessError, match="without a token"):
        check_bind("0.0.0.0", "")
    with pytest.raises(AccessError, match="token"):
        AccessPolicy("", "192.168.1.10")


def test_token_is_required_in_every_form_when_set():
    policy = AccessPolicy("s3cret", "0.0.0.0")
    base = {"method": "GET", "host": "robot:8088"}
    assert not policy.check(RequestInfo(**base)).allowed
    assert policy.check(RequestInfo(**base)).status == 401
    assert not policy.check(RequestInfo(**base, query_token="wrong")).allowed
    for field in ("query_token", "bearer_token", "header_token", "cookie_token"):
        assert policy.check(RequestInfo(**base, **{field: "s3cret"})).allowed, field
    ws = RequestInfo(method="GET", host="robot:8088", websocket=True)
    assert not policy.check(ws).allowed


def test_without_token_only_loopback_host_headers_pass():
    policy = AccessPolicy("", "127.0.0.1")
    assert policy.check(RequestInfo("GET", host="127.0.0.1:8088")).allowed
    assert policy.check(RequestInfo("GET", host="localhost:8088")).allowed
    assert policy.check(RequestInfo("GET", host="[::1]:8088")).allowed
    rebinding = policy.check(RequestInfo("GET", host="evil.example:8088"))
    assert not rebinding.allowed and rebinding.status == 403


def test_cross_origin_and_non_json_commands_are_refused():
    policy = AccessPolicy("", "127.0.0.1")
    host = "127.0.0.1:8088"
    ok = RequestInfo("POST", host=host, origin=f"http://{host}", content_type="application/json")
    assert policy.check(ok).allowed
    foreign = RequestInfo(
        "POST", host=host, origin="http://evil.example", content_type="application/json"
    )
    assert policy.check(foreign).status == 403
    form = RequestInfo("POST", host=host, content_type="application/x-www-form-urlencoded")
    assert policy.check(form).status == 415
    ws = RequestInfo("GET", host=host, origin="http://evil.example", websocket=True)
    assert not policy.check(ws).allowed
    assert not policy.check(RequestInfo("GET", host=host, origin="null")).allowed


# ---------------------------------------------------------------------- commands


def test_command_table_uses_the_stack_services_and_teleop_keys():
    assert COMMANDS["estop"].service == "ramp/estop" and COMMANDS["estop"].data is True
    assert COMMANDS["estop_release"].data is False and COMMANDS["estop_release"].confirm
    assert COMMANDS["takeover"].service == COMMANDS["handback"].service == "ramp/takeover"
    assert COMMANDS["pause"].service == "ramp/pause"
    assert COMMANDS["episode_success"].service == "ramp/episode/stop"
    assert COMMANDS["episode_success"].data is True and COMMANDS["episode_failure"].data is False
    assert COMMANDS["episode_start"].kind == COMMANDS["episode_cancel"].kind == "Trigger"
    keys = {c.name: c.key for c in COMMANDS.values()}
    assert keys["estop"] == " " and keys["takeover"] == "t" and keys["handback"] == "h"
    assert keys["episode_start"] == "s" and keys["episode_success"] == "y"
    assert keys["episode_failure"] == "n" and keys["episode_cancel"] == "c"
    assert validate_task("  push the cube ") == "push the cube"
    for bad in ("", "   ", None, 3, "x" * 501):
        with pytest.raises(ValueError):
            validate_task(bad)


# ---------------------------------------------------------------------- frames


def serialized_image(pixels: np.ndarray, encoding: str, stamp=(12, 500_000_000)) -> bytes:
    from rclpy.serialization import serialize_message

    from ramp_common.conversions import numpy_to_image, sec_to_stamp

    msg = numpy_to_image(pixels, encoding, sec_to_stamp(stamp[0] + stamp[1] * 1e-9), "cam")
    return serialize_message(msg)


@pytest.mark.parametrize(("encoding", "channels"), [("rgb8", 3), ("bgr8", 3), ("mono8", 1)])
def test_cdr_parse_matches_rclpy_serialization(encoding, channels):
    rng = np.random.default_rng(0)
    shape = (48, 64, channels) if channels > 1 else (48, 64)
    pixels = rng.integers(0, 255, size=shape, dtype=np.uint8)
    image = parse_image_cdr(serialized_image(pixels, encoding))
    assert image.encoding == encoding and image.frame_id == "cam"
    assert image.stamp_s == pytest.approx(12.5)
    np.testing.assert_array_equal(image.pixels.reshape(shape), pixels)


def test_cdr_parse_rejects_bad_input():
    raw = serialized_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
    with pytest.raises(FrameError):
        parse_image_cdr(raw[:40])
    with pytest.raises(FrameError):
        parse_image_cdr(b"\x00")
    raw32 = serialized_image(np.zeros((8, 8), np.float32), "32FC1")
    with pytest.raises(FrameError, match="encoding"):
        parse_image_cdr(raw32)


def test_jpeg_keeps_colours_in_order_and_shrinks_wide_frames():
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[:, :80] = (255, 0, 0)  # red left half (RGB)
    rgb[:, 80:] = (0, 0, 255)  # blue right half
    image = parse_image_cdr(serialized_image(rgb, "rgb8"))
    decoded = cv2.imdecode(np.frombuffer(encode_jpeg(image, 90), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (120, 160, 3)
    b, _, r = decoded[60, 20].astype(int)
    assert r > 200 and b < 60, "left half is red"
    b, _, r = decoded[60, 140].astype(int)
    assert b > 200 and r < 60, "right half is blue"
    small = cv2.imdecode(np.frombuffer(encode_jpeg(image, 90, 80), np.uint8), cv2.IMREAD_COLOR)
    assert small.shape == (60, 80, 3)


def test_frame_store_encodes_only_on_demand_and_once_per_frame():
    store = FrameStore(["front", "wrist"], quality=80)
    raw = serialized_image(np.full((32, 32, 3), 100, np.uint8), "rgb8")
    assert store.encoded("front") is None  # nothing received yet
    for _ in range(30):
        store.offer("front", raw)
    assert store.encoded_count == 0, "receiving frames encodes nothing"
    first = store.encoded("front")
    assert first is not None and first.seq == 30 and first.jpeg[:2] == b"\xff\xd8"
    for _ in range(10):  # ten viewers due the same frame
        assert store.encoded("front") is first
    assert store.encoded_count == 1
    store.offer("front", raw)
    assert store.encoded("front").seq == 31 and store.encoded_count == 2
    store.drop_latest()  # nobody watches any more: a later viewer gets no stale frame
    assert store.encoded("front") is None
    store.offer("front", raw)
    assert store.encoded("front").seq == 32
    store.offer("wrist", b"\x00\x01\x00\x00garbage")
    assert store.encoded("wrist") is None and store.encode_errors == 1


# ---------------------------------------------------------------------- state


def arbiter(state: str, since: float, reason: str = "") -> str:
    return json.dumps({"state": state, "since": since, "reason": reason})


def test_timeline_of_an_episode_and_its_label():
    st = ConsoleState(["front"], ["j1", "j2"])
    st.on_arbiter_state(arbiter("AUTONOMOUS", 100.0), 100.0)
    rec = {"free_disk_mb": "5000", "recording": "False", "episode": ""}
    st.on_diagnostic("/episode_recorder", "episode_recorder", 0, "idle", rec, 101.0)
    start = CommandResult("episode_start", True, "/tmp/eps/sim_0001; repaired x", 3.0, 110.0)
    st.on_command_result(start, 109.9)
    st.on_arbiter_state(arbiter("CORRECTING", 112.0, "takeover: service"), 112.0)
    st.on_arbiter_state(arbiter("AUTONOMOUS", 115.0, "handback: service"), 115.0)
    rec = {**rec, "recording": "True", "episode": "sim_0001"}
    st.on_diagnostic("/episode_recorder", "episode_recorder", 0, "recording", rec, 110.5)
    segments = st.timeline(118.0)
    assert [s["state"] for s in segments] == ["AUTONOMOUS", "CORRECTING", "AUTONOMOUS"]
    assert segments[0]["start_s"] == pytest.approx(109.9)  # the episode start, not 100
    assert (segments[1]["start_s"], segments[1]["end_s"]) == (112.0, 115.0)
    assert st.recording()
    stop = CommandResult("episode_success", True, "done", 5.0, 120.0)
    st.on_command_result(stop, 119.9)
    snap = st.snapshot(Viewer(), 130.0)
    assert snap["episode"] == {
        "name": "sim_0001",
        "start_s": 109.9,
        "end_s": 120.0,
        "label": "success",
        "recording": False,
    }
    assert snap["timeline"][-1]["end_s"] == 120.0  # cut at the episode end
    assert snap["recorder"]["free_disk_mb"] == "5000"
    assert [e["command"] for e in snap["events"]] == ["episode_start", "episode_success"]


def test_episode_started_elsewhere_is_seen_from_recorder_diagnostics():
    st = ConsoleState([], ["j1"])
    rec = {"free_disk_mb": "5000", "recording": "True", "episode": "sim_0002"}
    st.on_diagnostic("/episode_recorder", "episode_recorder", 0, "recording", rec, 50.0)
    assert st.recording()
    st.on_diagnostic(
        "/episode_recorder", "episode_recorder", 0, "idle", {**rec, "recording": "False"}, 60.0
    )
    ep = st.snapshot(Viewer(), 61.0)["episode"]
    got = (ep["name"], ep["start_s"], ep["end_s"], ep["label"])
    assert got == ("sim_0002", 50.0, 60.0, "stopped")


def test_snapshot_cursors_send_each_sample_and_event_once():
    st = ConsoleState([], ["j1", "j2"], chart_window_s=1.0, chart_rate_hz=10.0)
    viewer = Viewer()
    for i in range(15):
        st.on_joints(float(i), [i, -i], [i + 0.5, -i] if i % 2 else None)
    first = st.snapshot(viewer, 15.0)["chart"]
    assert len(first["measured"]) == 10, "only the window is kept"
    assert first["measured"][-1] == [14.0, 14, -14]
    st.on_joints(15.0, [15, -15], None)
    second = st.snapshot(viewer, 16.0)["chart"]
    assert second["measured"] == [[15.0, 15, -15]] and second["command"] == []


def test_health_rows_mark_stale_nodes_and_pick_rates_and_latencies():
    st = ConsoleState([], [], stale_after_s=3.0)
    values = {"rate_hz": "15", "inference_ms_p50": "12.5", "inference_ms_p99": "20", "x": "1"}
    st.on_diagnostic("/worldmodel_node", "worldmodel_node", 0, "ok", values, 100.0)
    st.on_diagnostic("/policy_node", "policy_node", 2, "model failed", {}, 104.0)
    viewer = Viewer()
    assert len(st.snapshot(viewer, 105.0)["nodes"]) == 2
    assert st.snapshot(viewer, 105.5)["nodes"] is None, "the node table at most once a second"
    assert len(st.snapshot(viewer, 106.0)["nodes"]) == 2
    rows = {r["name"]: r for r in st.health(105.0)}
    assert rows["/worldmodel_node"]["level"] == "STALE"
    assert rows["/worldmodel_node"]["highlights"] == {"inference_ms_p50": "12.5", "rate_hz": "15"}
    assert rows["/policy_node"]["level"] == "ERROR"
    st.on_arbiter_state("not json", 1.0)
    assert st.arbiter_state() == "UNKNOWN"
