"""ramp-bag: inspect, repair, export, replay, plot episode bags and measure their lag.

    ramp-bag info PATH... [--json]
    ramp-bag repair PATH...
    ramp-bag export PATH... --out DIR [--fps 10] [--cameras front wrist] [--include-cancelled]
    ramp-bag replay PATH [--rate 1.0] [--out DIR]
    ramp-bag plot EPISODE... [--out FILE.png | DIR] [--joints j1 j2]
    ramp-bag lag DATASET_OR_EPISODES... [--fps 10] [--operator-only] [--plot FILE.png] [--json]

PATH is an episode bag folder or a folder of them (``lag`` also takes LeRobot v3 dataset
folders). Every command but ``replay`` needs no ROS; ``replay`` publishes into the running
stack (rclpy, this shell's ROS_DOMAIN_ID) and is the only part that imports rclpy.
Formats and alignment rules: docs/episodes.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ramp_common.cli_tools import closed_pipe
from ramp_hilr_teleop.core.bag_reader import EpisodeBag, episode_info, format_info
from ramp_hilr_teleop.core.bag_writer import TopicSpecError
from ramp_hilr_teleop.core.episode import EpisodeError, find_unfinished, iter_episode_dirs
from ramp_hilr_teleop.core.export import ExportConfig, export_lerobot
from ramp_hilr_teleop.core.repair import needs_repair, repair_bag


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ramp-bag", description="Inspect, repair, export and replay RAMP episode bags."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="per-episode summary: duration, topics, labels, models")
    info.add_argument("paths", nargs="+", type=Path)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")

    repair = sub.add_parser("repair", help="rebuild bags a crashed recorder left unfinished")
    repair.add_argument("paths", nargs="+", type=Path)

    export = sub.add_parser("export", help="training dataset in the LeRobot v3.0 layout")
    export.add_argument("paths", nargs="+", type=Path)
    export.add_argument("--out", required=True, type=Path, help="new (or empty) dataset folder")
    export.add_argument("--fps", type=int, default=10, help="frame rate = policy rate (Hz)")
    export.add_argument("--cameras", nargs="+", help="camera names (default: all in the bag)")
    export.add_argument("--joint-names", nargs="+", help="joint order (default: joint_states')")
    export.add_argument("--state-topic", default="joint_states")
    export.add_argument("--action-topic", default="joint_command")
    export.add_argument("--include-cancelled", action="store_true")
    export.add_argument("--codec", help="PyAV encoder (default: libsvtav1, else libx264, mpeg4)")
    export.add_argument("--crf", type=int, default=30)

    replay = sub.add_parser("replay", help="play a bag into the running stack, score its chunks")
    replay.add_argument("path", type=Path)
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    replay.add_argument("--out", type=Path, help="report folder (default: ./replay_<episode>)")
    replay.add_argument("--topics", nargs="+", help="extra relative topics to replay")
    replay.add_argument("--wait-s", type=float, default=10.0, help="wait for the stack (s)")
    replay.add_argument("--settle-s", type=float, default=1.0, help="listen after the end (s)")

    plot = sub.add_parser(
        "plot", help="PNG of an episode: joints, commands, operator commands, interventions, chunks"
    )
    plot.add_argument("paths", nargs="+", type=Path)
    plot.add_argument(
        "--out",
        type=Path,
        help="PNG file (one episode; default ./<episode>.png) or folder (several episodes)",
    )
    plot.add_argument("--joints", nargs="+", help="joints to draw (default: all)")
    plot.add_argument("--dpi", type=int, default=100)

    lag = sub.add_parser(
        "lag", help="action-to-state lag of episodes or a LeRobot v3 dataset (table, plot)"
    )
    lag.add_argument("paths", nargs="+", type=Path, help="dataset folders, bags, folders of bags")
    lag.add_argument("--fps", type=float, default=10.0, help="frame rate for bags (Hz, 10)")
    frames = lag.add_mutually_exclusive_group()
    frames.add_argument(
        "--operator-only", action="store_true", help="only frames under operator control"
    )
    frames.add_argument(
        "--autonomous-only", action="store_true", help="only frames under policy control"
    )
    lag.add_argument("--joints", nargs="+", help="joints (default: all but grippers)")
    lag.add_argument("--max-lag", type=float, default=3.0, help="largest lag (frames, 3)")
    lag.add_argument("--lag-step", type=float, default=0.05, help="lag grid step (frames, 0.05)")
    lag.add_argument("--plot", type=Path, help="write residual vs lag as a PNG")
    lag.add_argument("--json", action="store_true", help="print JSON instead of the table")
    lag.add_argument("--include-cancelled", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {
            "info": _info,
            "repair": _repair,
            "export": _export,
            "replay": _replay,
            "plot": _plot,
            "lag": _lag,
        }[args.command](args)
    except (EpisodeError, TopicSpecError, FileNotFoundError) as exc:
        print(f"ramp-bag {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ramp-bag {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return closed_pipe()


def _info(args: argparse.Namespace) -> int:
    infos = []
    failed = 0
    for path in iter_episode_dirs(args.paths):
        try:
            infos.append(episode_info(path))
        except EpisodeError as exc:
            failed += 1
            print(f"ramp-bag info: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(infos, indent=2))
    else:
        print("\n\n".join(format_info(i) for i in infos))
    return 1 if failed else 0


def _repair(args: argparse.Namespace) -> int:
    targets: list[Path] = []
    for path in args.paths:
        unfinished = find_unfinished(path) if path.is_dir() else []
        if needs_repair(path):
            targets.append(path)
        targets += [p for p in unfinished if p not in targets]
    if not targets:
        print("nothing to repair")
        return 0
    failed = 0
    for path in targets:
        report = repair_bag(path)
        failed += not report.repaired
        print(report.message)
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    config = ExportConfig(
        fps=args.fps,
        cameras=args.cameras,
        joint_names=args.joint_names,
        state_topic=args.state_topic,
        action_topic=args.action_topic,
        include_cancelled=args.include_cancelled,
        codec=args.codec,
        crf=args.crf,
    )
    report = export_lerobot(
        args.paths, args.out, config, progress=lambda text: print(text, file=sys.stderr)
    )
    print(
        f"exported {report.episodes} episodes, {report.frames} frames at {args.fps} Hz "
        f"({report.codec} video) to {report.out_dir} in {report.seconds:.1f} s "
        f"({report.frames_per_s:.1f} frames/s)"
    )
    for skipped in report.skipped:
        print(f"  skipped {skipped}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from ramp_hilr_teleop.core.episode_plot import plot_episode

    bags = list(iter_episode_dirs(args.paths))
    several = len(bags) > 1 or (args.out is not None and args.out.is_dir())
    failed = 0
    for bag in bags:
        if several:
            out = (args.out or Path(".")) / f"{bag.name}.png"
        else:
            out = args.out or Path(f"{bag.name}.png")
        try:
            data = plot_episode(bag, out, args.joints, args.dpi)
        except EpisodeError as exc:
            failed += 1
            print(f"ramp-bag plot: {exc}", file=sys.stderr)
            continue
        print(
            f"{data.name}: {data.label}, {data.duration_s:.1f} s, "
            f"{len(data.interventions_s)} intervention(s), {data.chunk_arrivals_s.size} chunks, "
            f"topics {', '.join(data.series)} -> {out}"
        )
    return 1 if failed else 0


def _lag(args: argparse.Namespace) -> int:
    from ramp_hilr_teleop.core import lag

    frames = lag.FRAMES_ALL
    if args.operator_only:
        frames = lag.FRAMES_OPERATOR
    elif args.autonomous_only:
        frames = lag.FRAMES_AUTONOMOUS
    episodes, skipped = lag.load_episodes(args.paths, args.fps, args.include_cancelled)
    grid = lag.lag_grid(args.max_lag, args.lag_step)
    report = lag.analyse(episodes, grid, args.joints, frames, skipped)
    print(report.to_json() if args.json else lag.format_table(report))
    if args.plot:
        lag.plot_lag(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    if not report.pooled.frames:
        print(f"ramp-bag lag: no frames to compare ({frames} frames, largest lag "
              f"{args.max_lag} frames)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


# --------------------------------------------------------------------------------------------
# replay (the only rclpy part)
# --------------------------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    from ramp_hilr_teleop.core.replay import (
        ObservedChunk,
        compare_chunks,
        load_replay,
        plot_replay,
        replay_topics,
    )

    if args.rate <= 0:
        raise EpisodeError(f"--rate must be > 0, got {args.rate}")
    with EpisodeBag(args.path) as bag:
        topics = replay_topics(bag, args.topics or ())
        messages = load_replay(bag, topics)
        if not bag.has("joint_command"):
            raise EpisodeError(f"{bag.path}: no joint_command topic to compare with")
        executed = bag.joint_series("joint_command")
        interventions = list(bag.meta.interventions)
        name = bag.meta.name
    if not messages:
        raise EpisodeError(f"{args.path}: nothing to replay in {topics}")
    out = args.out or Path(f"replay_{name}")
    out.mkdir(parents=True, exist_ok=True)

    received, clock = _publish_into_stack(messages, args)
    chunks = [
        ObservedChunk(clock.to_bag(stamp), tfs, positions, names, model)
        for stamp, tfs, positions, names, model in received
    ]
    report = compare_chunks(name, chunks, executed, interventions, args.rate)
    (out / "report.json").write_text(report.to_json())
    plot_replay(out / "replay.png", report, chunks, executed, interventions)
    mae = "n/a" if report.mae is None else f"{report.mae:.4f}"
    print(
        f"{name}: replayed {len(messages)} messages at {args.rate}x, received "
        f"{report.chunks_received} chunks, compared {report.chunks_compared}; action MAE {mae} "
        f"(policy {report.mae_policy}, operator {report.mae_intervention}); "
        f"report {out / 'report.json'}, plot {out / 'replay.png'}"
    )
    if report.chunks_received == 0:
        print("no action chunk arrived: is the stack (worldmodel_node, policy_node) running on "
              "this ROS_DOMAIN_ID, without a robot bridge publishing joint_states?",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _publish_into_stack(messages: list[Any], args: argparse.Namespace) -> tuple[list, Any]:
    """Publish ``messages`` with their relative timing; collect action chunks meanwhile."""
    import importlib

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from trajectory_msgs.msg import JointTrajectory

    from ramp_common.conversions import MessageError, stamp_to_sec, trajectory_to_numpy
    from ramp_common.qos import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, STATE_QOS
    from ramp_hilr_teleop.core.bag_writer import DEFAULT_TOPIC_TYPES
    from ramp_hilr_teleop.core.replay import ReplayClock

    qos_by_class = {"sensor": SENSOR_QOS, "state": STATE_QOS, "command": COMMAND_QOS,
                    "latched": LATCHED_QOS}  # fmt: skip
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("ramp_bag_replay", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    received: list[tuple] = []
    lock = threading.Lock()

    def on_chunk(msg: JointTrajectory) -> None:
        try:
            tfs, positions = trajectory_to_numpy(msg, list(msg.joint_names))
        except MessageError:
            return
        stamp_ns = round(stamp_to_sec(msg.header.stamp) * 1e9)
        with lock:
            received.append((stamp_ns, tfs, positions, list(msg.joint_names), msg.header.frame_id))

    node.create_subscription(JointTrajectory, "ramp/action_chunk", on_chunk, COMMAND_QOS)
    publishers = {}
    for topic, msgtype in sorted({(m.topic, m.msgtype) for m in messages}):
        package, _, cls_name = msgtype.split("/")
        cls = getattr(importlib.import_module(f"{package}.msg"), cls_name)
        if topic.startswith("camera/"):
            qos = SENSOR_QOS
        else:
            qos = qos_by_class.get(DEFAULT_TOPIC_TYPES.get(topic, ("", "state"))[1], STATE_QOS)
        publishers[topic] = node.create_publisher(cls, topic, qos)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        deadline = time.monotonic() + args.wait_s
        while time.monotonic() < deadline:
            if any(p.get_subscription_count() for p in publishers.values()):
                break
            time.sleep(0.1)
        else:
            print(f"ramp-bag replay: no subscriber after {args.wait_s} s; replaying anyway",
                  file=sys.stderr)  # fmt: skip
        time.sleep(0.5)  # let the remaining matches complete
        clock = ReplayClock(messages[0].log_ns, time.time_ns() + 200_000_000, args.rate)
        total = len(messages)
        for i, msg in enumerate(messages):
            delay = (clock.to_wall(msg.log_ns) - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            publishers[msg.topic].publish(msg.restamped(clock))
            if i % 500 == 0:
                print(f"replay {i}/{total}", file=sys.stderr)
        time.sleep(args.settle_s)
    finally:
        executor.shutdown()
        spin.join(5.0)  # out of rclpy before teardown: a daemon thread left there aborts at exit
        node.destroy_node()
        rclpy.shutdown(context=context)
    with lock:
        return list(received), clock


if __name__ == "__main__":
    raise SystemExit(main())
