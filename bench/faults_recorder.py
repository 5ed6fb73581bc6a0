"""Recorder faults (case 4 of bench/faults.py): the episode recorder's core on real file systems.

The recorder core (``ramp_hilr_teleop.core.recorder.EpisodeRecorder``, what the
``episode_recorder`` node runs) is fed the loop's traffic at its real rates (two 320x240 rgb8
cameras at 30 Hz, joint states / commands at 200 Hz, world-model state at 15 Hz, action chunks
at 10 Hz, diagnostics at 1 Hz: ~14 MB/s) while a fault hits its storage:

- ``sigkill``: the recorder runs in a child process; ``kill -9`` at a random moment mid-write;
  the next ``start()`` (a new process) repairs the bag. Figures: readable after repair, messages
  recovered, seconds of data lost at the end (bounded by the flush interval).
- ``disk_full``: the output folder is a small tmpfs (``mount -t tmpfs -o size=...``, needs root);
  once with ``min_free_disk_mb=0`` (the disk really fills: ENOSPC inside the MCAP writer) and
  once with the guard (the episode ends before the disk is full). Then the tmpfs is grown
  (``remount,size=``: the operator freed space) and the next start repairs what the full disk
  left. Figures: episode ended with a reason, error reported, every accepted message either in
  the bag or counted as dropped/lost.
- ``unwritable``: the output folder is a read-only tmpfs (root ignores ``chmod``): start is
  refused naming the folder and the reason; and mid-episode the bag folder is made unwritable
  for a recorder without the capabilities that bypass permissions (chmod 0555): the episode ends on
  the error, the bag reads back.
- ``slow_disk``: a storage boundary that writes at a fixed rate (``ThrottledWriter``: each write
  blocks ``bytes / rate`` seconds, what a slow SD card or a saturated disk does to the writer
  thread). A FUSE or cgroup throttle is not available here (cgroup v1 blkio does not throttle
  buffered writes; tmpfs has no block device). The queue fills, the overflow is dropped and
  counted per topic in the episode metadata and the recorder's status (diagnostics).

Accounting identity per episode (``silent`` in the figures): messages accepted by ``offer`` +
messages refused at ``offer`` while recording (queue full) == messages read back from the bag +
``dropped_count`` of its metadata. A positive difference is silent loss.

    python bench/faults_recorder.py [--trials 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ramp_hilr_teleop.core.bag_reader import episode_info  # noqa: E402
from ramp_hilr_teleop.core.bag_writer import (  # noqa: E402
    BagWriter,
    default_topics,
    make_typestore,
    parse_topic_specs,
)
from ramp_hilr_teleop.core.recorder import (  # noqa: E402
    EpisodeRecorder,
    RecorderConfig,
    RecorderError,
)
from ramp_hilr_teleop.core.synthetic import MessageFactory  # noqa: E402

JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "gripper"]
TOPICS = parse_topic_specs(default_topics(["front", "wrist"]))


def loop_traffic(ts: Any) -> list[tuple[str, float, bytes]]:
    """(topic, rate Hz, serialized message) of the loop at the sim stack's sizes and rates."""
    f = MessageFactory(ts)
    now = time.time_ns()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    state = f.joint_state(now, JOINTS, [0.1] * 7)
    chunk = f.trajectory(now, JOINTS, [0.05 * i for i in range(16)], np.zeros((16, 7)))
    return [
        ("camera/front/image_raw", 30.0, f.image(now, image)),
        ("camera/wrist/image_raw", 30.0, f.image(now, image[::-1].copy())),
        ("joint_states", 200.0, state),
        ("joint_command", 200.0, state),
        ("ramp/policy_command", 200.0, state),
        ("ramp/wm_state", 15.0, f.image(now, np.zeros((16, 32), np.float32), "32FC1")),
        ("ramp/action_chunk", 10.0, chunk),
        ("diagnostics", 1.0, f.diagnostics(now, "sim_bridge", {"status": "OK"})),
    ]


class Feeder:
    """Offers the loop's traffic to a recorder at the real rates from a thread, and counts."""

    def __init__(self, recorder: EpisodeRecorder, ts: Any) -> None:
        self.recorder = recorder
        self.traffic = loop_traffic(ts)
        self.accepted: Counter = Counter()
        self.refused_recording: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        t0 = time.monotonic()
        sent = {topic: 0 for topic, _, _ in self.traffic}
        while not self._stop.is_set():
            elapsed = time.monotonic() - t0
            for topic, rate, raw in self.traffic:
                while sent[topic] < elapsed * rate:
                    sent[topic] += 1
                    full_before = self.recorder.queue_full_drops
                    if self.recorder.offer(topic, raw):
                        self.accepted[topic] += 1
                    elif self.recorder.queue_full_drops > full_before:
                        # refused because the queue was full (counted as a drop), not because
                        # the episode had ended
                        self.refused_recording[topic] += 1
            time.sleep(0.005)

    @property
    def offered_while_recording(self) -> int:
        return sum(self.accepted.values()) + sum(self.refused_recording.values())


class ThrottledWriter(BagWriter):
    """A BagWriter on a slow disk: every write blocks for ``bytes / rate_bytes_s`` seconds."""

    rate_bytes_s = 2e6

    def write(self, topic: str, log_time_ns: int, raw: bytes | memoryview) -> None:
        time.sleep(len(raw) / self.rate_bytes_s)
        super().write(topic, log_time_ns, raw)


def read_back(bag: Path) -> dict[str, Any]:
    """The bag through the project's reader (``ramp-bag info``): readable, status, counts."""
    try:
        info = episode_info(bag)
    except Exception as exc:  # the figure is whether it reads
        return {"readable": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "readable": True,
        "status": info["status"],
        "messages": info["messages"],
        "dropped": info["dropped"],
        "error": info["error"],
        "end_ns": None,
    }


def accounting(feeder: Feeder, checked: dict[str, Any]) -> int | None:
    """Messages offered while recording that are neither in the bag nor counted (silent loss)."""
    if not checked.get("readable"):
        return None
    return feeder.offered_while_recording - checked["messages"] - checked["dropped"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str, options: str = "") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (root); always unmounted on the way out."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "ramp_faults", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def can_mount() -> bool:
    """True when this process may mount a tmpfs (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tmpfs(Path(tmp) / "m", "1m"):
                return True
        except (subprocess.CalledProcessError, OSError):
            return False


def recorder(
    output_dir: Path, events: list | None = None, **config: Any
) -> tuple[EpisodeRecorder, Any]:
    ts = make_typestore("jazzy")
    cfg = RecorderConfig(output_dir=output_dir, robot="sim", min_free_disk_mb=0.0)
    writer_factory = config.pop("writer_factory", BagWriter)
    for key, value in config.items():
        setattr(cfg, key, value)

    def on_event(level: str, text: str) -> None:
        if events is not None:
            events.append((level, text))

    rec = EpisodeRecorder(TOPICS, cfg, ts, on_event=on_event, writer_factory=writer_factory)
    return rec, ts


def wait_ended(rec: EpisodeRecorder, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not rec.status().recording:
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------------------------- cases
def sigkill_trial(workdir: Path, rng: random.Random) -> dict[str, Any]:
    """A child process records; kill -9 at a random moment; a new recorder repairs the bag."""
    out = workdir / "episodes"
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    assert child.stdout is not None
    line = child.stdout.readline().decode().strip()  # the bag folder, once recording
    time.sleep(rng.uniform(0.3, 2.5))
    t_kill = time.time_ns()
    child.send_signal(signal.SIGKILL)
    child.wait(10.0)
    bag = Path(line)
    rec, _ts = recorder(out)
    meta, repairs = rec.start()
    rec.stop(True)
    checked = read_back(bag)
    lost_tail_s = None
    if checked["readable"]:
        from ramp_hilr_teleop.core.episode import read_metadata

        m = read_metadata(bag)
        last = max((s.last_ns or 0 for s in m.topics.values()), default=0)
        lost_tail_s = (t_kill - last) / 1e9 if last else None
    return {
        "case": "sigkill",
        "bag": str(bag),
        "started": bool(line),
        "repaired_by_next_start": any(r.repaired and Path(r.path) == bag for r in repairs),
        "lost_tail_s": lost_tail_s,
        **checked,
        "next_episode": read_back(out / meta.name),
    }


def disk_full_trial(workdir: Path, min_free_mb: float) -> dict[str, Any]:
    """Record onto a 24 MB tmpfs until it is full; grow it; the next start repairs."""
    mount = workdir / f"full_{min_free_mb:g}"
    events: list = []
    with tmpfs(mount, "24m"):
        out = mount / "episodes"
        rec, ts = recorder(out, events, min_free_disk_mb=min_free_mb, flush_interval_s=0.2)
        meta, _ = rec.start()
        bag = out / meta.name
        with Feeder(rec, ts) as feeder:
            ended = wait_ended(rec, 30.0)
        status = rec.status()
        try:
            rec.stop(True)
            refused_stop = ""
        except RecorderError as exc:
            refused_stop = str(exc)
        try:
            rec.start()
            rec.stop(True)
            restart_refused = ""
        except RecorderError as exc:
            restart_refused = str(exc)
        # the operator frees space; the next start repairs what the full disk left
        subprocess.run(["mount", "-o", "remount,size=96m", str(mount)], check=True)
        meta2, repairs = rec.start()  # the same recorder, as the node's next start
        rec.stop(True)
        checked = read_back(bag)
        result = {
            "case": f"disk_full (min_free_disk_mb={min_free_mb:g})",
            "ended_by_itself": ended,
            "last_error": status.last_error,
            "stop_answer": refused_stop,
            "start_on_full_disk": restart_refused or "accepted",
            "repaired_by_next_start": any(r.repaired and Path(r.path) == bag for r in repairs),
            "errors_reported": [t for level, t in events if level == "error"][:3],
            "offered_while_recording": feeder.offered_while_recording,
            "silent": accounting(feeder, checked),
            **checked,
            "next_episode": read_back(out / meta2.name),
        }
    return result


def unwritable_start_trial(workdir: Path) -> dict[str, Any]:
    """Output folder on a read-only file system: start refused with the reason."""
    mount = workdir / "readonly"
    with tmpfs(mount, "4m", "ro"):
        rec, _ = recorder(mount / "episodes")
        try:
            rec.start()
            answer, refused = "accepted", False
        except RecorderError as exc:
            answer, refused = str(exc), True
    return {"case": "unwritable at start", "refused": refused, "answer": answer}


def unwritable_mid_trial(workdir: Path) -> dict[str, Any]:
    """A recorder without CAP_DAC_OVERRIDE; its bag folder is made read-only mid-episode."""
    out = workdir / "unwritable_mid"
    out.mkdir()
    # root without the capabilities that bypass file permissions (CAP_DAC_*, CAP_FOWNER): the
    # chmod below binds it like any user (the interpreter lives under /root, closed to others)
    drop = "-dac_override,-dac_read_search,-fowner"
    child = subprocess.Popen(
        ["setpriv", "--bounding-set", drop, sys.executable, __file__, "--child", str(out), "-e"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None and child.stdin is not None
    bag = Path(child.stdout.readline().decode().strip())
    time.sleep(1.0)
    bag.chmod(0o555)
    try:
        report = json.loads(child.stdout.readline().decode())  # the episode ended
        bag.chmod(0o755)  # the operator fixes the folder; the same recorder starts again
        child.stdin.write(b"go\n")
        child.stdin.flush()
        report.update(json.loads(child.stdout.readline().decode()))
        child.wait(30.0)
    except (subprocess.TimeoutExpired, ValueError) as exc:
        child.kill()
        report = {"child_error": f"{type(exc).__name__}: {exc}"}
    bag.chmod(0o755)
    checked = read_back(bag)
    silent = None
    if checked["readable"] and "offered_while_recording" in report:
        silent = report["offered_while_recording"] - checked["messages"] - checked["dropped"]
    return {
        "case": "unwritable mid-episode",
        "bag": str(bag),
        **report,
        "silent": silent,
        **checked,
    }


def slow_disk_trial(workdir: Path, rate_mb_s: float = 2.0, seconds: float = 4.0) -> dict:
    """The writer's storage takes ``rate_mb_s``; the queue (16 MB) overflows; drops counted."""

    class Slow(ThrottledWriter):
        rate_bytes_s = rate_mb_s * 1e6

    out = workdir / "slow"
    rec, ts = recorder(out, None, max_queue_mb=16.0, writer_factory=Slow, flush_interval_s=0.2)
    meta, _ = rec.start()
    with Feeder(rec, ts) as feeder:
        time.sleep(seconds)
        status = rec.status()
    rec.stop(True, timeout_s=120.0)
    bag = out / meta.name
    checked = read_back(bag)
    return {
        "case": f"slow disk ({rate_mb_s:g} MB/s)",
        "status_dropped_while_recording": status.dropped,
        "offered_while_recording": feeder.offered_while_recording,
        "refused_at_offer": sum(feeder.refused_recording.values()),
        "silent": accounting(feeder, checked),
        **checked,
    }


# ------------------------------------------------------------------------------------- table
def summarize(results: list[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    """Rows (case, figure, goal, met)."""
    rows = []
    kills = [r for r in results if r["case"] == "sigkill"]
    if kills:
        readable = sum(r["readable"] and r["next_episode"]["readable"] for r in kills)
        repaired = sum(r["repaired_by_next_start"] for r in kills)
        tails = [r["lost_tail_s"] for r in kills if r.get("lost_tail_s") is not None]
        rows.append(
            (
                f"recorder: SIGKILL mid-write x{len(kills)}",
                f"readable {readable}/{len(kills)} (repaired by the next start {repaired}); "
                f"data lost at the end max {max(tails, default=float('nan')):.2f} s "
                "(flush every 1.0 s)",
                "every bag readable; loss <= the flush interval",
                readable == len(kills) and all(t <= 1.5 for t in tails),
            )
        )
    for r in results:
        if r["case"].startswith("disk_full"):
            ok = (
                r["ended_by_itself"]
                and r["readable"]
                and bool(r["last_error"])
                and r["silent"] is not None
                and r["silent"] <= 0
                and r["next_episode"]["readable"]
            )
            rows.append(
                (
                    f"recorder: {r['case']}",
                    f"ended by itself: {r['ended_by_itself']}, error: {r['last_error'][:60]!r}; "
                    f"bag {r.get('status')} ({r.get('messages')} msgs, {r.get('dropped')} "
                    f"dropped, silent {r['silent']}); start on full disk: "
                    f"{r['start_on_full_disk'][:40]!r}",
                    "episode ends with the reason; readable; 0 silent",
                    bool(ok),
                )
            )
        elif r["case"] == "unwritable at start":
            rows.append(
                (
                    "recorder: unwritable folder at start",
                    f"refused: {r['answer'][:90]!r}",
                    "refused naming folder and reason",
                    r["refused"],
                )
            )
        elif r["case"] == "unwritable mid-episode":
            ok = r["readable"] and r.get("silent") is not None and r["silent"] <= 0
            rows.append(
                (
                    "recorder: folder unwritable mid-episode",
                    f"ended: {str(r.get('last_error'))[:60]!r}; bag {r.get('status')} "
                    f"({r.get('messages')} msgs, {r.get('dropped')} dropped, silent "
                    f"{r.get('silent')})",
                    "episode ends with the reason; readable; 0 silent",
                    bool(ok),
                )
            )
        elif r["case"].startswith("slow disk"):
            ok = (
                r["readable"]
                and r["silent"] is not None
                and r["silent"] <= 0
                and r["status_dropped_while_recording"] > 0
            )
            rows.append(
                (
                    f"recorder: {r['case']}",
                    f"{r['offered_while_recording']} offered, {r.get('messages')} in the bag, "
                    f"{r.get('dropped')} dropped (counted in metadata; diagnostics showed "
                    f"{r['status_dropped_while_recording']} while recording), silent "
                    f"{r['silent']}",
                    "drops counted, never silent",
                    bool(ok),
                )
            )
    return rows


def recorder_campaign(trials: int, workdir: Path, log) -> tuple[list, list[dict]]:
    """Every recorder fault; (rows, results)."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(14)
    results: list[dict[str, Any]] = []
    for i in range(trials):
        result = sigkill_trial(workdir / f"kill_{i}", rng)
        log(f"recorder sigkill #{i + 1}: {json.dumps(result, default=str)}")
        results.append(result)
    if can_mount():
        for min_free in (0.0, 4.0):
            results.append(disk_full_trial(workdir, min_free))
            log(f"recorder: {json.dumps(results[-1], default=str)}")
        results.append(unwritable_start_trial(workdir))
        log(f"recorder: {json.dumps(results[-1], default=str)}")
    else:
        log("recorder: cannot mount a tmpfs here (not root): disk-full cases skipped")
    if os.geteuid() == 0 and shutil.which("setpriv"):
        results.append(unwritable_mid_trial(workdir))
        log(f"recorder: {json.dumps(results[-1], default=str)}")
    results.append(slow_disk_trial(workdir))
    log(f"recorder: {json.dumps(results[-1], default=str)}")
    return summarize(results), results


# ------------------------------------------------------------------------------------- child
def child(out: Path, report_end: bool) -> int:
    """Record until killed (or until the episode ends on an error, then print the figures)."""
    rec, ts = recorder(out)
    meta, _ = rec.start()
    print(out / meta.name, flush=True)
    with Feeder(rec, ts) as feeder:
        ended = wait_ended(rec, 30.0)
    status = rec.status()
    if report_end:
        print(
            json.dumps(
                {
                    "ended_by_itself": ended,
                    "last_error": status.last_error,
                    "offered_while_recording": feeder.offered_while_recording,
                }
            ),
            flush=True,
        )
        sys.stdin.readline()  # the folder is writable again
        bag = out / meta.name
        _meta, repairs = rec.start()
        rec.stop(True)
        repaired = any(r.repaired and Path(r.path) == bag for r in repairs)
        print(json.dumps({"repaired_by_next_start": repaired}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="SIGKILL trials")
    parser.add_argument("--json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("-e", "--report-end", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(Path(args.child), args.report_end)
    t0 = time.time()

    def log(text: str) -> None:
        print(f"[{time.time() - t0:6.1f} s] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="ramp_recorder_faults_") as tmp:
        rows, results = recorder_campaign(args.trials, Path(tmp), log)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    from bench.faults import print_table

    print_table(rows)
    return 0 if all(r[3] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
