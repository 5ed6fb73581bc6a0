"""Repair of an episode bag whose recorder died: keep every complete chunk, rebuild the index.

A recorder killed mid-episode leaves an MCAP file without summary and footer (and no
``metadata.yaml``). :func:`scan_mcap` reads such a file record by record and yields the messages
of every complete chunk, stopping at the first truncated record. :func:`repair_bag` writes those
messages into a new, properly indexed bag with ``rosbags``, checks it reads back, then swaps it
in with renames (the original stays untouched until then) and rebuilds ``episode.yaml`` from the
messages (counts, task, model ids, intervention segments) and the labels saved at start.

No ROS import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lz4.frame import decompress as lz4_decompress
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.storage_mcap import get_qos

from .bag_writer import ROSBAG2_VERSION, make_typestore
from .episode import (
    CUSTOM_DATA_KEY,
    EPISODE_FILE,
    STATUS_RECORDING,
    STATUS_RECOVERED,
    EpisodeError,
    EpisodeMetadata,
    EpisodeTracker,
    TopicStats,
    read_metadata,
    wall_iso,
    write_metadata,
)

try:  # Python >= 3.14 ships zstd; rosbags depends on the backport below it
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 1, 2, 3, 4, 5, 6
_OP_DATA_END = 0x0F
REPAIR_DIR = ".repair"
SPACE_MARGIN_BYTES = 16 * 2**20


@dataclass
class McapChannel:
    """An MCAP channel with its schema: topic, ROS type, message definition and QoS metadata."""

    id: int
    topic: str
    msgtype: str
    encoding: str
    msgdef: str
    metadata: bytes


@dataclass
class McapScan:
    """What a tolerant scan found; ``messages`` is filled as the scan goes."""

    path: Path
    size: int
    channels: dict[int, McapChannel] = field(default_factory=dict)
    valid_end: int = 0
    """File offset after the last complete record."""
    complete: bool = False
    """True when the file ended with a footer (it was closed properly)."""


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    return bytes(buf[pos + 4 : pos + 4 + n]).decode("utf-8", errors="replace"), pos + 4 + n


def _parse_schema(buf: memoryview, schemas: dict[int, tuple[str, str]]) -> None:
    (sid,) = struct.unpack_from("<H", buf, 0)
    name, pos = _string(buf, 2)
    _encoding, pos = _string(buf, pos)
    (n,) = struct.unpack_from("<I", buf, pos)
    schemas[sid] = (name, bytes(buf[pos + 4 : pos + 4 + n]).decode("utf-8", errors="replace"))


def _parse_channel(
    buf: memoryview, schemas: dict[int, tuple[str, str]], channels: dict[int, McapChannel]
) -> None:
    cid, sid = struct.unpack_from("<HH", buf, 0)
    topic, pos = _string(buf, 4)
    encoding, pos = _string(buf, pos)
    (n,) = struct.unpack_from("<I", buf, pos)
    metadata = bytes(buf[pos + 4 : pos + 4 + n])
    msgtype, msgdef = schemas.get(sid, ("", ""))
    channels[cid] = McapChannel(cid, topic, msgtype, encoding, msgdef, metadata)


def _records(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(opcode, content start, content end) of each complete record in buf[start:end]."""
    pos = start
    while pos + 9 <= end:
        op = buf[pos]
        (length,) = struct.unpack_from("<Q", buf, pos + 1)
        content = pos + 9
        if content + length > end:
            return
        yield op, content, content + length
        pos = content + length


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "zstd":
        return zstd.decompress(data)
    if compression == "lz4":
        return lz4_decompress(data)
    raise EpisodeError(f"unsupported MCAP chunk compression {compression!r}")


def scan_mcap(path: Path) -> tuple[McapScan, Iterator[tuple[McapChannel, int, bytes]]]:
    """Scan an MCAP file tolerantly; returns the scan state and a message iterator.

    The iterator yields (channel, log time ns, serialized data) of every message in a complete
    record, in file order, and fills ``scan.channels`` / ``scan.valid_end`` / ``scan.complete``
    as it goes. Raises EpisodeError when the file is not MCAP.
    """
    path = Path(path)
    size = path.stat().st_size
    scan = McapScan(path, size)
    with path.open("rb") as f:
        head = f.read(8)
    if head != MCAP_MAGIC:
        raise EpisodeError(f"{path}: not an MCAP file (bad magic)")

    def messages() -> Iterator[tuple[McapChannel, int, bytes]]:
        schemas: dict[int, tuple[str, str]] = {}
        scan.valid_end = 8
        with path.open("rb") as f:
            f.seek(8)
            pos = 8
            while pos + 9 <= size:
                head = f.read(9)
                op = head[0]
                (length,) = struct.unpack_from("<Q", head, 1)
                if pos + 9 + length > size:
                    return  # truncated record: the crash point
                content = memoryview(f.read(length))
                pos += 9 + length
                if op in (_OP_FOOTER, _OP_DATA_END):
                    scan.complete = True
                    scan.valid_end = pos
                    return
                if op == _OP_CHUNK:
                    _, _, usize, _ = struct.unpack_from("<QQQI", content, 0)
                    compression, cpos = _string(content, 28)
                    (csize,) = struct.unpack_from("<Q", content, cpos)
                    data = _decompress(
                        bytes(content[cpos + 8 : cpos + 8 + csize]), compression, usize
                    )
                    inner = memoryview(data)
                    for iop, istart, iend in _records(inner, 0, len(data)):
                        yield from _handle(iop, inner[istart:iend], schemas, scan.channels)
                else:
                    yield from _handle(op, content, schemas, scan.channels)
                scan.valid_end = pos

    return scan, messages()


def _handle(
    op: int,
    rec: memoryview,
    schemas: dict[int, tuple[str, str]],
    channels: dict[int, McapChannel],
) -> Iterator[tuple[McapChannel, int, bytes]]:
    if op == _OP_SCHEMA:
        _parse_schema(rec, schemas)
    elif op == _OP_CHANNEL:
        _parse_channel(rec, schemas, channels)
    elif op == _OP_MESSAGE:
        cid, _seq, log_time = struct.unpack_from("<HIQ", rec, 0)
        channel = channels.get(cid)
        if channel is not None:
            yield channel, log_time, bytes(rec[22:])


@dataclass
class RepairReport:
    """Outcome of :func:`repair_bag`."""

    path: Path
    repaired: bool
    messages: int = 0
    file_bytes: int = 0
    kept_bytes: int = 0
    message: str = ""


def needs_repair(bag_dir: Path) -> bool:
    """True for a bag folder whose MCAP file was never closed (no metadata.yaml)."""
    return any(bag_dir.glob("*.mcap")) and not (bag_dir / "metadata.yaml").is_file()


def repair_bag(bag_dir: Path, typestore: Any = None, free_bytes: Any = None) -> RepairReport:
    """Rebuild a readable, indexed bag from an unfinished one, in place.

    Keeps every message of every complete chunk; rebuilds ``metadata.yaml`` and ``episode.yaml``
    (status 'recovered', end = last recovered message). ``free_bytes(path) -> int`` tells the
    free space (default: statvfs); a repair needs the bag's size again plus 16 MiB, else it is
    refused with a message and the bag is left as it is. Raises EpisodeError for a folder that
    holds no single MCAP file.
    """
    bag_dir = Path(bag_dir)
    files = sorted(bag_dir.glob("*.mcap"))
    if len(files) != 1:
        raise EpisodeError(f"{bag_dir}: expected one .mcap file, found {len(files)}")
    mcap_path = files[0]
    size = mcap_path.stat().st_size
    free = (free_bytes or disk_free_bytes)(bag_dir)
    if free < size + SPACE_MARGIN_BYTES:
        return RepairReport(
            bag_dir,
            False,
            file_bytes=size,
            message=f"{bag_dir}: not repaired, needs {size + SPACE_MARGIN_BYTES} bytes free, "
            f"{free} free",
        )
    typestore = typestore or make_typestore()
    try:
        meta = read_metadata(bag_dir)
    except EpisodeError:
        meta = EpisodeMetadata(name=bag_dir.name, robot="", operator="")
    fresh = _reset_counts(meta)

    work = bag_dir / REPAIR_DIR
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    target = work / mcap_path.stem
    scan, messages = scan_mcap(mcap_path)
    writer = Writer(target, version=ROSBAG2_VERSION, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    connections: dict[int, Any] = {}
    tracker: EpisodeTracker | None = None
    count = 0
    first_ns: int | None = None
    last_ns = 0
    try:
        for channel, log_ns, data in messages:
            conn = connections.get(channel.id)
            if conn is None:
                conn = connections[channel.id] = _add_connection(writer, channel, typestore)
            if tracker is None:
                first_ns = log_ns
                if not fresh.start_ns:
                    fresh.start_ns, fresh.start_wall = log_ns, wall_iso(log_ns)
                tracker = EpisodeTracker(fresh, {}, typestore)
            tracker.on_message(_relative(channel.topic, fresh.namespace), log_ns, data)
            writer.write(conn, log_ns, data)
            count += 1
            last_ns = max(last_ns, log_ns)
        if tracker is None:
            tracker = EpisodeTracker(fresh, {}, typestore)
        end_ns = last_ns or first_ns or fresh.start_ns
        result = tracker.finish(end_ns)
        for topic, stats in meta.topics.items():
            result.topics.setdefault(topic, TopicStats(type=stats.type)).dropped = stats.dropped
        result.dropped_count = meta.dropped_count
        result.status = STATUS_RECOVERED
        result.end_reason = "recorder stopped without closing the bag (crash); repaired"
        result.bag_file = mcap_path.name
        result.repair = {
            "repaired_wall": wall_iso(time.time_ns()),
            "file_bytes": size,
            "kept_bytes": scan.valid_end,
            "lost_bytes": size - scan.valid_end,
            "recovered_messages": count,
            "was_closed": scan.complete,
        }
        writer.set_custom_data(CUSTOM_DATA_KEY, result.to_json())
        writer.close()
    except BaseException:
        with contextlib.suppress(Exception):
            writer.abort()
        shutil.rmtree(work, ignore_errors=True)
        raise

    with Reader(target) as reader:
        if reader.message_count != count:
            shutil.rmtree(work, ignore_errors=True)
            raise EpisodeError(
                f"{bag_dir}: repaired copy reads {reader.message_count} messages, wrote {count}"
            )
    (target / mcap_path.name).replace(mcap_path)
    (target / "metadata.yaml").replace(bag_dir / "metadata.yaml")
    write_metadata(bag_dir, result)
    shutil.rmtree(work, ignore_errors=True)
    return RepairReport(
        bag_dir,
        True,
        messages=count,
        file_bytes=size,
        kept_bytes=scan.valid_end,
        message=f"{bag_dir.name}: repaired, kept {count} messages "
        f"({scan.valid_end} of {size} bytes)",
    )


def _relative(topic: str, namespace: str) -> str:
    ns = namespace.rstrip("/") + "/"
    return topic[len(ns) :] if topic.startswith(ns) else topic.lstrip("/")


def _reset_counts(meta: EpisodeMetadata) -> EpisodeMetadata:
    """A copy with the labels of ``meta`` and every derived field cleared."""
    return EpisodeMetadata(
        name=meta.name,
        robot=meta.robot,
        operator=meta.operator,
        namespace=meta.namespace,
        status=STATUS_RECORDING,
        success=meta.success,
        cancelled=meta.cancelled,
        start_ns=meta.start_ns,
        start_wall=meta.start_wall,
    )


def _add_connection(writer: Writer, channel: McapChannel, typestore: Any) -> Any:
    if channel.msgtype in typestore.fielddefs:
        rihs01 = typestore.hash_rihs01(channel.msgtype)
    else:  # a type the store lacks: keep its definition, without a type hash
        rihs01 = "RIHS01_" + "0" * 64
    try:
        qos = get_qos(channel.metadata)
    except Exception:  # QoS metadata is optional for readers
        qos = []
    return writer.add_connection(
        channel.topic,
        channel.msgtype,
        msgdef=channel.msgdef,
        rihs01=rihs01,
        serialization_format=channel.encoding or "cdr",
        offered_qos_profiles=qos,
    )


def disk_free_bytes(path: Path) -> int:
    """Bytes available to an unprivileged writer on the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


__all__ = [
    "EPISODE_FILE",
    "McapChannel",
    "McapScan",
    "RepairReport",
    "disk_free_bytes",
    "needs_repair",
    "repair_bag",
    "scan_mcap",
]
