"""EpisodeRecorder core without ROS: labels, latched topics, drops, disk, names, repair."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from ramp_hilr_teleop.core.bag_writer import (
    BagWriter,
    TopicSpecError,
    default_topics,
    make_typestore,
    parse_topic_specs,
)
from ramp_hilr_teleop.core.episode import (
    STATUS_CANCELLED,
    STATUS_COMPLETE,
    STATUS_ENDED_ON_ERROR,
    STATUS_RECORDING,
    STATUS_RECOVERED,
    find_unfinished,
    next_episode_name,
    read_metadata,
    write_metadata,
)
from ramp_hilr_teleop.core.recorder import EpisodeRecorder, RecorderConfig, RecorderError
from ramp_hilr_teleop.core.repair import needs_repair, repair_bag, scan_mcap
from ramp_hilr_teleop.core.synthetic import MessageFactory, synthetic_episode

TS = make_typestore("jazzy")
F = MessageFactory(TS)
JOINTS = ["joint1", "joint2"]
TOPICS = parse_topic_specs(default_topics(["front"]))


def make_recorder(tmp_path: Path, **config) -> EpisodeRecorder:
    cfg = RecorderConfig(output_dir=tmp_path / "episodes", robot="sim", operator="ann",
                         min_free_disk_mb=0.0, flush_interval_s=0.05)  # fmt: skip
    for key, value in config.items():
        setattr(cfg, key, value)
    return EpisodeRecorder(TOPICS, cfg, typestore=TS)


def test_parse_topic_specs_known_extra_and_errors() -> None:
    specs = parse_topic_specs(["camera/top/image_raw", "ramp/task", "sim/flag:std_msgs/msg/Bool"])
    assert [(s.msgtype, s.qos) for s in specs] == [
        ("sensor_msgs/msg/Image", "sensor"),
        ("std_msgs/msg/String", "latched"),
        ("std_msgs/msg/Bool", "default"),
    ]
    with pytest.raises(TopicSpecError, match="odometry"):
        parse_topic_specs(["odometry"])
    with pytest.raises(TopicSpecError, match="pkg/msg/Name"):
        parse_topic_specs(["x:Bool"])
    with pytest.raises(TopicSpecError, match="qos"):
        parse_topic_specs(["x:std_msgs/msg/Bool:fast"])


def test_episode_records_labels_latched_topics_and_interventions(tmp_path: Path) -> None:
    clock = [1_000_000_000_000]
    rec = make_recorder(tmp_path)
    rec._clock_ns = lambda: clock[0]
    rec.offer("ramp/task", F.string("stack cubes"), 10)  # latched before the episode
    rec.offer("ramp/intervention", F.boolean(False), 11)
    rec.offer("joint_states", F.joint_state(5, JOINTS, [0, 0]), 12)  # not recording: ignored
    meta, repairs = rec.start()
    assert repairs == []
    t0 = meta.start_ns
    for k in range(50):
        t = t0 + k * 10_000_000
        rec.offer("joint_states", F.joint_state(t - 1000, JOINTS, [k, -k]), t)
        if k == 10:
            rec.offer("ramp/intervention", F.boolean(True), t)
        if k == 30:
            rec.offer("ramp/intervention", F.boolean(False), t)
    rec.offer("ramp/action_chunk", F.trajectory(t0, JOINTS, [0.1], np.zeros((1, 2)), "pol-7"), t0)
    clock[0] = t0 + 600_000_000
    result = rec.stop(success=True)

    bag = tmp_path / "episodes" / meta.name
    on_disk = read_metadata(bag)
    for m in (result, on_disk):
        assert m.status == STATUS_COMPLETE and m.success is True and not m.cancelled
        assert m.task == "stack cubes" and m.robot == "sim" and m.operator == "ann"
        assert m.topics["joint_states"].count == 50
        assert m.model_ids["policy"] == ["pol-7"]
        assert len(m.interventions) == 1
        seg = m.interventions[0]
        assert (seg.start_ns, seg.end_ns) == (t0 + 100_000_000, t0 + 300_000_000)
        assert seg.start_s == pytest.approx(0.1) and seg.end_s == pytest.approx(0.3)
        assert m.intervention_ratio == pytest.approx(0.2 / 0.6, abs=1e-6)
    with Reader(bag) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/joint_states"] == 50
        assert counts["/ramp/task"] == 1  # the latched value, written at the start
        first = next(reader.messages())
        assert first[1] == t0  # latched messages are logged at the episode start
        stamps = [
            TS.deserialize_cdr(raw, c.msgtype).header.stamp
            for c, _, raw in reader.messages([x for x in reader.connections
                                              if x.topic == "/joint_states"])
        ]  # fmt: skip
        assert stamps[3].nanosec == (t0 + 30_000_000 - 1000) % 10**9  # header stamps kept


def test_cancel_keeps_the_bag_marked_cancelled(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path)
    meta, _ = rec.start()
    rec.offer("joint_states", F.joint_state(1, JOINTS, [0, 0]))
    result = rec.cancel()
    assert result.status == STATUS_CANCELLED and result.cancelled and result.success is None
    assert read_metadata(tmp_path / "episodes" / meta.name).cancelled
    with pytest.raises(RecorderError, match="no episode is recording"):
        rec.stop(True)


def test_names_never_collide_or_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "episodes"
    out.mkdir()
    now = 1_700_000_000_000_000_000
    taken = next_episode_name(out, "sim", now)
    (out / taken).mkdir()  # e.g. another recorder created it a moment ago
    (out / taken / "keep.txt").write_text("x")
    rec_a, rec_b = make_recorder(tmp_path), make_recorder(tmp_path)
    rec_a._clock_ns = rec_b._clock_ns = lambda: now
    meta_a, _ = rec_a.start()
    meta_b, _ = rec_b.start()
    rec_a.stop(True)
    rec_b.stop(False)
    names = {taken, meta_a.name, meta_b.name}
    assert len(names) == 3
    assert (out / taken / "keep.txt").read_text() == "x"
    assert sorted(int(n.rsplit("_", 1)[1]) for n in names) == [1, 2, 3]


def test_unwritable_output_dir_is_refused_with_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    rec = make_recorder(tmp_path, output_dir=blocker / "episodes")
    with pytest.raises(RecorderError, match="cannot be created"):
        rec.start()
    assert blocker.read_text() == "not a folder"
    rec.config.output_dir = tmp_path / "good"
    meta, _ = rec.start()  # still usable afterwards
    assert rec.stop(True).status == STATUS_COMPLETE
    assert (tmp_path / "good" / meta.name / "metadata.yaml").is_file()


def test_low_disk_ends_episode_cleanly(tmp_path: Path) -> None:
    free = [10_000 * 2**20]
    events: list[tuple[str, str]] = []
    rec = EpisodeRecorder(
        TOPICS,
        RecorderConfig(output_dir=tmp_path / "ep", min_free_disk_mb=100, flush_interval_s=0.02),
        typestore=TS,
        free_bytes=lambda _path: free[0],
        on_event=lambda level, text: events.append((level, text)),
    )
    meta, _ = rec.start()
    rec.offer("joint_states", F.joint_state(1, JOINTS, [0, 0]))
    free[0] = 50 * 2**20
    rec._episode.done.wait(5.0)  # the writer thread ends the episode by itself
    with pytest.raises(RecorderError, match="below min_free_disk_mb"):
        rec.stop(True)
    done = read_metadata(tmp_path / "ep" / meta.name)
    assert done.status == STATUS_ENDED_ON_ERROR and done.end_reason == "disk_full"
    assert "min_free_disk_mb" in done.error
    assert any(level == "error" for level, _ in events)
    with Reader(tmp_path / "ep" / meta.name) as reader:
        assert reader.message_count >= 1
    with pytest.raises(RecorderError, match="MB free"):
        rec.start()  # and no new episode starts below the threshold


def test_full_queue_drops_are_counted(tmp_path: Path) -> None:
    # A queue bound below one image: every image is dropped, small messages still pass.
    rec = make_recorder(tmp_path, max_queue_mb=0.1)
    meta, _ = rec.start()
    image = F.image(1, np.zeros((240, 320, 3), np.uint8))  # 230 kB
    accepted = [rec.offer("camera/front/image_raw", image) for _ in range(5)]
    accepted += [rec.offer("joint_states", F.joint_state(1, JOINTS, [0, 0])) for _ in range(3)]
    assert accepted == [False] * 5 + [True] * 3
    assert rec.status().dropped == 5
    result = rec.stop(True)
    assert result.dropped_count == 5
    assert result.topics["camera/front/image_raw"].dropped == 5
    assert result.topics["camera/front/image_raw"].count == 0
    assert result.topics["joint_states"].count == 3
    assert read_metadata(tmp_path / "episodes" / meta.name).dropped_count == 5


def test_truncated_bag_is_repaired_up_to_last_complete_chunk(tmp_path: Path) -> None:
    ep = synthetic_episode(tmp_path / "out" / "crashed", interventions=[(1.0, 1.5)])
    bag = ep.path
    meta = read_metadata(bag)
    meta.status = STATUS_RECORDING  # what a killed recorder leaves
    write_metadata(bag, meta)
    (bag / "metadata.yaml").unlink()
    mcap = bag / "crashed.mcap"
    os.truncate(mcap, mcap.stat().st_size * 3 // 4)
    assert needs_repair(bag)
    assert find_unfinished(tmp_path / "out") == [bag]

    scan, messages = scan_mcap(mcap)
    recoverable = sum(1 for _ in messages)
    assert 0 < recoverable < ep.meta.message_count and not scan.complete
    report = repair_bag(bag, TS)
    assert report.repaired and report.messages == recoverable
    fixed = read_metadata(bag)
    assert fixed.status == STATUS_RECOVERED
    assert fixed.task == "pick the red cube" and fixed.success is True
    assert fixed.message_count == recoverable
    assert [(s.start_s, s.end_s) for s in fixed.interventions] == [(1.0, 1.5)]
    with Reader(bag) as reader:
        assert reader.message_count == recoverable
    assert find_unfinished(tmp_path / "out") == []
    assert not (bag / ".repair").exists()


def test_repair_refused_without_space_leaves_bag(tmp_path: Path) -> None:
    ep = synthetic_episode(tmp_path / "b", duration_s=0.5)
    (ep.path / "metadata.yaml").unlink()
    before = (ep.path / "b.mcap").read_bytes()
    report = repair_bag(ep.path, TS, free_bytes=lambda _p: 1000)
    assert not report.repaired and "free" in report.message
    assert (ep.path / "b.mcap").read_bytes() == before
    shutil.rmtree(ep.path)


def test_a_failing_disk_loses_no_message_silently(tmp_path: Path) -> None:
    # Found by bench/faults.py (recorder, disk full): the rest of a batch after a failed write,
    # and the messages of the chunk the repair cannot recover, were lost without a count.
    class FailingDisk(BagWriter):
        """Writes fail with ENOSPC after 40 messages; closing fails too (the disk is full)."""

        def write(self, topic, log_time_ns, raw):
            if self.bytes_written > 40 * len(raw):
                raise OSError(errno.ENOSPC, "No space left on device")
            super().write(topic, log_time_ns, raw)

        def close(self, custom_data=None):
            raise OSError(errno.ENOSPC, "No space left on device")

    cfg = RecorderConfig(output_dir=tmp_path / "episodes", min_free_disk_mb=0.0,
                         flush_interval_s=0.05)  # fmt: skip
    rec = EpisodeRecorder(TOPICS, cfg, typestore=TS, writer_factory=FailingDisk)
    meta, _ = rec.start()
    state = F.joint_state(1, JOINTS, [0.0, 0.0])
    accepted = 0
    for _ in range(200):
        accepted += rec.offer("joint_states", state)
    for _ in range(500):
        if not rec.status().recording:
            break
        time.sleep(0.02)
    assert not rec.status().recording
    assert "No space left" in rec.status().last_error
    # the disk has space again: the same recorder's next start repairs the bag
    rec._writer_factory = BagWriter
    _meta2, repairs = rec.start()
    rec.stop(True)
    bag = tmp_path / "episodes" / meta.name
    assert [r.repaired for r in repairs] == [True]
    assert "counted as dropped" in repairs[0].message
    fixed = read_metadata(bag)
    with Reader(bag) as reader:
        in_bag = reader.message_count
    assert fixed.status == STATUS_RECOVERED and fixed.end_reason == "disk_full"
    assert fixed.error and "No space left" in fixed.error
    assert in_bag + fixed.dropped_count == accepted
    assert fixed.dropped_count > 0


def test_repair_before_the_first_start_leaves_the_start_nothing_to_repair(tmp_path: Path) -> None:
    # A respawned recorder node repairs at start-up (a thread), not inside the first start
    # request: under load a repair of tens of MB made that answer ~30 s late.
    ep = synthetic_episode(tmp_path / "episodes" / "crashed", duration_s=0.5)
    meta = read_metadata(ep.path)
    meta.status = STATUS_RECORDING
    write_metadata(ep.path, meta)
    (ep.path / "metadata.yaml").unlink()
    rec = make_recorder(tmp_path)
    reports = rec.repair_unfinished()
    assert [r.repaired for r in reports] == [True]
    assert read_metadata(ep.path).status == STATUS_RECOVERED
    _meta, repairs = rec.start()
    assert repairs == []
    rec.stop(True)
