"""Episode recording without ROS: a bounded queue in front of one writer thread per episode.

Subscription callbacks call :meth:`EpisodeRecorder.offer` with serialized messages; it never
blocks (a full queue drops the message and counts it per topic). A writer thread drains the
queue into a :class:`~.bag_writer.BagWriter`, feeds an :class:`~.episode.EpisodeTracker`, closes
and flushes a chunk every ``flush_interval_s``, saves ``episode.yaml`` with it, and watches free
disk space. When free space falls below ``min_free_disk_mb`` (or the episode reaches
``max_episode_duration_s``, or a write fails) the writer ends the episode itself, cleanly, and
reports why through ``on_event`` and :meth:`EpisodeRecorder.status`.

Latched topics (task, intervention) are cached while idle and written first into each new
episode at its start time, so every bag knows its task and the operator state from the start.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import WriterError

from .bag_writer import BagWriter, TopicSpec, check_types, make_typestore
from .episode import (
    CUSTOM_DATA_KEY,
    STATUS_CANCELLED,
    STATUS_COMPLETE,
    STATUS_ENDED_ON_ERROR,
    EpisodeMetadata,
    EpisodeTracker,
    RecordingLock,
    TopicStats,
    find_unfinished,
    next_episode_name,
    read_metadata,
    wall_iso,
    write_metadata,
)
from .repair import RepairReport, disk_free_bytes, repair_bag

MB = 2**20
DISK_CHECK_BYTES = 4 * MB
"""Free space is checked at least every this many written bytes (and every flush)."""
NAME_ATTEMPTS = 100


class RecorderError(RuntimeError):
    """A request the recorder refuses (start while recording, unwritable folder, ...)."""


@dataclass
class RecorderConfig:
    """Recorder settings (units in the names)."""

    output_dir: Path
    robot: str = ""
    operator: str = ""
    namespace: str = "/"
    min_free_disk_mb: float = 1024.0
    flush_interval_s: float = 1.0
    max_queue_mb: float = 512.0
    max_episode_duration_s: float = 0.0
    """0 = unlimited."""
    fsync: bool = False
    """fsync at each flush (survives power loss, not only a crash of the recorder)."""


@dataclass
class RecorderStatus:
    """A snapshot for diagnostics."""

    recording: bool
    episode: str
    bag_path: str
    queued_messages: int
    queued_mb: float
    written_messages: int
    written_mb: float
    dropped: int
    free_disk_mb: float
    last_error: str
    episodes_recorded: int


@dataclass
class _Episode:
    name: str
    path: Path
    writer: BagWriter
    tracker: EpisodeTracker
    lock: RecordingLock
    thread: threading.Thread | None = None
    drops: dict[str, int] = field(default_factory=dict)
    stop_request: tuple[str, bool | None] | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: EpisodeMetadata | None = None


class EpisodeRecorder:
    """Records episodes of ``topics`` into one rosbag2 (MCAP) folder each."""

    def __init__(
        self,
        topics: Sequence[TopicSpec],
        config: RecorderConfig,
        typestore: Any = None,
        free_bytes: Callable[[Path], int] = disk_free_bytes,
        on_event: Callable[[str, str], None] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        writer_factory: Callable[..., BagWriter] = BagWriter,
    ) -> None:
        """``free_bytes(path)`` tells free disk bytes; ``on_event(level, text)`` gets reports
        from the writer thread (level 'info' | 'warn' | 'error'); ``clock_ns`` is the bag clock;
        ``writer_factory`` makes each episode's :class:`BagWriter` (same arguments; the fault
        campaign passes one whose storage is slow).
        """
        self.topics = list(topics)
        self.config = config
        self._typestore = typestore or make_typestore()
        check_types(self.topics, self._typestore)
        self._specs = {s.topic: s for s in self.topics}
        self._free_bytes = free_bytes
        self._on_event = on_event or (lambda level, text: None)
        self._clock_ns = clock_ns
        self._writer_factory = writer_factory
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[tuple[str, int, bytes]] = deque()
        self._queue_bytes = 0
        self._latched: dict[str, tuple[int, bytes]] = {}
        self._episode: _Episode | None = None
        self._last_error = ""
        self._episodes_recorded = 0
        self._last_free_mb = float("nan")
        self._repair_lock = threading.Lock()
        self.queue_full_drops = 0
        """Offers refused because the queue was full, every episode together (each is also
        counted in its episode's drops)."""
        self._unclosed: dict[Path, EpisodeMetadata] = {}
        """Episodes whose bag could not be closed (disk full, write error), by folder: what
        the writer had handed to the bag, to count what the repair could not recover."""

    # -- called from subscription callbacks -----------------------------------------------

    def offer(self, topic: str, raw: bytes, recv_ns: int | None = None) -> bool:
        """Queue one serialized message of ``topic``; False when dropped or not recording."""
        spec = self._specs.get(topic)
        if spec is None:
            return False
        recv_ns = self._clock_ns() if recv_ns is None else recv_ns
        with self._lock:
            if spec.latched:
                self._latched[topic] = (recv_ns, raw)
            episode = self._episode
            if episode is None or episode.stop_request is not None:
                return False
            if self._queue_bytes + len(raw) > self.config.max_queue_mb * MB:
                episode.drops[topic] = episode.drops.get(topic, 0) + 1
                self.queue_full_drops += 1
                return False
            self._queue.append((topic, recv_ns, raw))
            self._queue_bytes += len(raw)
            self._wake.notify()
            return True

    # -- service requests -------------------------------------------------------------------

    def start(self) -> tuple[EpisodeMetadata, list[RepairReport]]:
        """Open a new episode; returns its metadata and the repairs of crashed episodes done.

        Raises RecorderError with the reason when recording cannot start.
        """
        with self._lock:
            if self._episode is not None:
                raise RecorderError(f"episode {self._episode.name} is already recording")
        out = Path(self.config.output_dir).expanduser()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecorderError(f"output_dir {out} cannot be created: {exc.strerror}") from None
        if not out.is_dir():
            raise RecorderError(f"output_dir {out} is not a folder")
        repairs = self.repair_unfinished()
        free_mb = self._free_bytes(out) / MB
        self._last_free_mb = free_mb
        if free_mb < self.config.min_free_disk_mb:
            raise RecorderError(
                f"only {free_mb:.0f} MB free in {out}, below min_free_disk_mb="
                f"{self.config.min_free_disk_mb:.0f}"
            )
        episode = self._open_episode(out)
        with self._lock:
            self._episode = episode
            self._queue.clear()
            self._queue_bytes = 0
            start_ns = episode.tracker.meta.start_ns
            for topic, (_, raw) in sorted(self._latched.items()):
                self._queue.append((topic, start_ns, raw))
                self._queue_bytes += len(raw)
        episode.thread = threading.Thread(
            target=self._run, args=(episode,), name=f"bag-writer-{episode.name}", daemon=True
        )
        episode.thread.start()
        self._last_error = ""
        return episode.tracker.meta, repairs

    def stop(self, success: bool | None, timeout_s: float = 60.0) -> EpisodeMetadata:
        """End the episode with a success label; waits until the bag is closed."""
        return self._end("stopped", success, timeout_s)

    def cancel(self, timeout_s: float = 60.0) -> EpisodeMetadata:
        """End the episode marked cancelled (the bag is kept)."""
        return self._end("cancelled", None, timeout_s)

    def close(self) -> None:
        """End an episode still recording (as 'shutdown') and join its writer thread."""
        with contextlib.suppress(RecorderError):
            self._end("shutdown", None, 30.0)

    def status(self) -> RecorderStatus:
        with self._lock:
            episode = self._episode
            queued = len(self._queue)
            queued_mb = self._queue_bytes / MB
            dropped = (
                episode.tracker.meta.dropped_count + sum(episode.drops.values()) if episode else 0
            )
        tracker = episode.tracker if episode else None
        return RecorderStatus(
            recording=episode is not None,
            episode=episode.name if episode else "",
            bag_path=str(episode.path) if episode else "",
            queued_messages=queued,
            queued_mb=queued_mb,
            written_messages=tracker.meta.message_count if tracker else 0,
            written_mb=episode.writer.bytes_written / MB if episode else 0.0,
            dropped=dropped,
            free_disk_mb=self._last_free_mb,
            last_error=self._last_error,
            episodes_recorded=self._episodes_recorded,
        )

    # -- internals ----------------------------------------------------------------------------

    def repair_unfinished(self) -> list[RepairReport]:
        """Repair the bags in ``output_dir`` a crashed recorder left open; -> the reports.

        ``start`` does it first; a node calls it from a thread when it comes up, so a respawned
        recorder's first start does not wait for the repair of the episode it was killed in
        (a bag of tens of MB takes seconds to rewrite, tens of seconds on a loaded machine).
        Serialized: a start during a repair waits for it, then finds nothing left to repair.
        """
        out = Path(self.config.output_dir).expanduser()
        with self._repair_lock:
            return self._repair_unfinished(out)

    def _repair_unfinished(self, out: Path) -> list[RepairReport]:
        reports = []
        for bag_dir in find_unfinished(out):
            try:
                report = repair_bag(bag_dir, self._typestore, self._free_bytes)
            except Exception as exc:  # a broken old bag must not block new recordings
                report = RepairReport(bag_dir, False, message=f"{bag_dir}: repair failed: {exc}")
            if report.repaired and bag_dir in self._unclosed:
                report.message += self._count_unrecovered(bag_dir, self._unclosed.pop(bag_dir))
            reports.append(report)
            self._on_event("info" if report.repaired else "error", report.message)
        return reports

    def _count_unrecovered(self, bag_dir: Path, written: EpisodeMetadata) -> str:
        """After the repair of a bag this recorder failed to close: the messages it had written
        that the repair could not recover (the chunk being written when the disk failed) are
        added to the drops, and the episode keeps its real end reason and error. -> a note."""
        repaired = read_metadata(bag_dir)
        lost = 0
        for topic, stats in written.topics.items():
            kept = repaired.topics.get(topic)
            missing = stats.count - (kept.count if kept else 0)
            if missing > 0:
                entry = repaired.topics.setdefault(topic, TopicStats(type=stats.type))
                entry.dropped = max(entry.dropped, stats.dropped) + missing
                lost += missing
            elif kept is not None:
                kept.dropped = max(kept.dropped, stats.dropped)
        repaired.dropped_count = sum(t.dropped for t in repaired.topics.values())
        repaired.end_reason = written.end_reason or repaired.end_reason
        repaired.error = written.error
        write_metadata(bag_dir, repaired)
        return f"; {lost} messages written after its last complete chunk counted as dropped"

    def _open_episode(self, out: Path) -> _Episode:
        for _ in range(NAME_ATTEMPTS):
            now = self._clock_ns()
            name = next_episode_name(out, self.config.robot, now)
            path = out / name
            try:
                writer = self._writer_factory(
                    path,
                    self.topics,
                    self._typestore,
                    self.config.namespace,
                    fsync=self.config.fsync,
                )
            except WriterError:
                continue  # another recorder took this name first: count up
            except OSError as exc:
                raise RecorderError(f"cannot create episode in {out}: {exc.strerror}") from None
            break
        else:
            raise RecorderError(f"no free episode name in {out} after {NAME_ATTEMPTS} tries")
        lock = RecordingLock(path)
        try:
            lock.acquire()
            meta = EpisodeMetadata(
                name=name,
                robot=self.config.robot,
                operator=self.config.operator,
                namespace=self.config.namespace,
                start_ns=now,
                start_wall=wall_iso(now),
                bag_file=writer.mcap_path.name,
            )
            tracker = EpisodeTracker(
                meta, {s.topic: s.msgtype for s in self.topics}, self._typestore
            )
            write_metadata(path, meta)
        except OSError as exc:
            with contextlib.suppress(Exception):
                writer.abort()
            lock.release()
            shutil.rmtree(path, ignore_errors=True)
            raise RecorderError(f"cannot write episode files in {out}: {exc.strerror}") from None
        return _Episode(name, path, writer, tracker, lock)

    def _end(self, reason: str, success: bool | None, timeout_s: float) -> EpisodeMetadata:
        with self._lock:
            episode = self._episode
            if episode is None:
                last = f" (last episode ended: {self._last_error})" if self._last_error else ""
                raise RecorderError("no episode is recording" + last)
            if episode.stop_request is None:
                episode.stop_request = (reason, success)
            self._wake.notify()
        if not episode.done.wait(timeout_s):
            raise RecorderError(f"episode {episode.name} did not close within {timeout_s} s")
        assert episode.result is not None
        return episode.result

    def _run(self, episode: _Episode) -> None:
        """Writer thread: drain, write, flush, watch disk; close the bag at the end."""
        cfg = self.config
        next_flush = time.monotonic() + cfg.flush_interval_s
        checked_bytes = 0
        end: tuple[str, bool | None, str] | None = None  # reason, success, error
        try:
            while end is None:
                with self._lock:
                    while not self._queue and episode.stop_request is None:
                        remaining = next_flush - time.monotonic()
                        if remaining <= 0:
                            break
                        self._wake.wait(remaining)
                    batch = list(self._queue)
                    self._queue.clear()
                    self._queue_bytes = 0
                    request = episode.stop_request
                    drops, episode.drops = episode.drops, {}
                for topic, n in drops.items():
                    episode.tracker.on_drop(topic, n)
                for i, (topic, log_ns, raw) in enumerate(batch):
                    try:
                        episode.writer.write(topic, log_ns, raw)
                    except BaseException:
                        # the rest of the batch never reaches the bag: counted, not lost silently
                        for lost_topic, _, _ in batch[i:]:
                            episode.tracker.on_drop(lost_topic)
                        raise
                    episode.tracker.on_message(topic, log_ns, raw)
                if request is not None:
                    end = (request[0], request[1], "")
                    break
                if episode.writer.bytes_written - checked_bytes >= DISK_CHECK_BYTES:
                    checked_bytes = episode.writer.bytes_written
                    end = self._disk_check(episode)
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + cfg.flush_interval_s
                    episode.writer.flush()
                    now = self._clock_ns()
                    write_metadata(episode.path, episode.tracker.snapshot(now))
                    end = end or self._disk_check(episode) or self._duration_check(episode, now)
        except OSError as exc:
            end = ("write_error", None, f"writing {episode.path} failed: {exc.strerror or exc}")
            if exc.errno == errno.ENOSPC:
                end = ("disk_full", None, f"disk full while writing {episode.path}")
        except Exception as exc:
            end = ("write_error", None, f"writing {episode.path} failed: {exc}")
        self._finish(episode, *end)

    def _disk_check(self, episode: _Episode) -> tuple[str, bool | None, str] | None:
        free_mb = self._free_bytes(episode.path) / MB
        self._last_free_mb = free_mb
        if free_mb < self.config.min_free_disk_mb:
            return (
                "disk_full",
                None,
                f"free disk space {free_mb:.1f} MB fell below min_free_disk_mb="
                f"{self.config.min_free_disk_mb:g}; episode {episode.name} ended early",
            )
        return None

    def _duration_check(self, episode: _Episode, now_ns: int) -> tuple[str, None, str] | None:
        limit = self.config.max_episode_duration_s
        if limit > 0 and (now_ns - episode.tracker.meta.start_ns) / 1e9 >= limit:
            return ("max_duration", None, f"episode {episode.name} reached {limit:g} s; ended")
        return None

    def _finish(self, episode: _Episode, reason: str, success: bool | None, error: str) -> None:
        """Drain what is left (unless the disk failed), close the bag, write the metadata."""
        with self._lock:
            batch = list(self._queue)
            self._queue.clear()
            self._queue_bytes = 0
            if episode.stop_request is None:
                episode.stop_request = (reason, success)
            drops, episode.drops = episode.drops, {}
        tracker = episode.tracker
        for topic, n in drops.items():
            tracker.on_drop(topic, n)
        if reason in ("disk_full", "write_error"):
            for topic, _, _ in batch:
                tracker.on_drop(topic)
            batch = []
        meta = tracker.meta
        try:
            for topic, log_ns, raw in batch:
                episode.writer.write(topic, log_ns, raw)
                tracker.on_message(topic, log_ns, raw)
            end_ns = self._clock_ns()
            tracker.finish(end_ns)
            meta.end_reason = reason
            meta.cancelled = reason == "cancelled"
            meta.success = success if reason == "stopped" else None
            if reason == "cancelled":
                meta.status = STATUS_CANCELLED
            elif reason == "stopped":
                meta.status = STATUS_COMPLETE
            else:
                meta.status = STATUS_ENDED_ON_ERROR
                meta.error = error or f"episode ended: {reason}"
            episode.writer.close({CUSTOM_DATA_KEY: meta.to_json()})
            write_metadata(episode.path, meta)
        except Exception as exc:  # the bag stays unfinished; the next start repairs it
            with contextlib.suppress(Exception):
                episode.writer.abort()
            meta.status = STATUS_ENDED_ON_ERROR
            meta.error = f"closing {episode.path} failed ({exc}); repaired at the next start"
            error = meta.error
            self._unclosed[episode.path] = meta
            with contextlib.suppress(Exception):
                write_metadata(episode.path, _as_recording(meta))
        episode.lock.release()
        episode.result = meta
        with self._lock:
            self._episode = None
            self._episodes_recorded += 1
            if error:
                self._last_error = error
        if error:
            self._on_event("error", error)
        episode.done.set()


def _as_recording(meta: EpisodeMetadata) -> EpisodeMetadata:
    """Leave the status 'recording' so the next start finds and repairs the bag."""
    meta.status = "recording"
    return meta
