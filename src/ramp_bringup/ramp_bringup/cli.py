"""``ramp``: the single-process runner of the RAMP stack.

``ramp up --robot sim`` builds every node of ``config/<robot>.yaml`` in one process on a
multi-threaded executor (the same nodes and parameter file that ``ros2 launch`` uses as separate
processes), with the shipped Fast DDS profile, its own ROS domain id and localhost-only discovery
by default. ``--duration`` stops it by itself; ``--report FILE`` writes a JSON health report at
exit (topic rates, end-to-end latencies, joint motion, diagnostics, errors). Ctrl-C stops it
cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from ramp_bringup.stack import (
    StackConfigError,
    config_path,
    dev_environment,
    stack_nodes,
)


def _shared_params(config_file: Path) -> dict:
    data = yaml.safe_load(config_file.read_text()) or {}
    return (data.get("/**") or {}).get("ros__parameters") or {}


def cmd_up(args: argparse.Namespace) -> int:
    """Run the stack of one robot until --duration elapses or Ctrl-C / SIGTERM."""
    config_file = Path(args.config) if args.config else config_path(args.robot)
    specs = stack_nodes(config_file)
    env = dev_environment(args.domain_id)
    if args.dds_profile == "none":
        env.pop("FASTRTPS_DEFAULT_PROFILES_FILE")
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE")
    elif args.dds_profile:
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = env["FASTDDS_DEFAULT_PROFILES_FILE"] = (
            args.dds_profile
        )
    os.environ.update(env)  # before rclpy is initialised: the middleware reads them at init

    import rclpy
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    from ramp_bringup.core.report import RunRecorder, write_report
    from ramp_bringup.monitor import StackMonitor

    shared = _shared_params(config_file)
    joint_names = list(shared.get("joint_names", []))
    camera_names = list(shared.get("camera_names", []))
    recorder = RunRecorder(joint_names)

    ros_args = ["--ros-args", "--params-file", str(config_file)]
    if args.fake_hardware:  # bridges talk to their protocol fakes; device cameras are synthetic
        ros_args += ["-p", "use_fake_hardware:=true"]
    rclpy.init(
        args=ros_args,
        signal_handler_options=rclpy.signals.SignalHandlerOptions.NO,
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = rclpy.logging.get_logger("ramp")
    log.info(
        f"robot {args.robot}: config {config_file}, ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}, "
        f"DDS profile {env.get('FASTRTPS_DEFAULT_PROFILES_FILE', 'default')}"
    )
    nodes = []
    exit_code = 0
    executors = []
    spinners: list[threading.Thread] = []
    t_start = time.time()
    try:
        monitor = StackMonitor(
            recorder,
            joint_names,
            camera_names,
            command_topic="joint_command",  # what reaches the bridge
            watched_nodes={s.name for s in specs},
        )
        nodes.append(monitor)
        for spec in specs:
            try:
                node = spec.load_class()()
            except Exception as exc:
                msg = f"node {spec.name} failed to start: {exc}"
                log.fatal(msg)
                recorder.error(msg)
                exit_code = 1
                stop.set()
                break
            nodes.append(node)
        if args.executor == "multi":
            executors.append(MultiThreadedExecutor(num_threads=args.threads))
            for node in nodes:
                executors[0].add_node(node)
        else:  # one executor (and thread) per node: small wait sets, nodes never wait on each other
            for node in nodes:
                executors.append(SingleThreadedExecutor())
                executors[-1].add_node(node)
        t_start = time.time()
        deadline = t_start + args.duration if args.duration else None
        if not stop.is_set():
            log.info(
                f"running {[s.name for s in specs]}"
                + (f" for {args.duration} s" if deadline else "")
            )
        for executor in executors:
            spinner = threading.Thread(target=_spin, args=(executor, stop, recorder), daemon=True)
            spinner.start()
            spinners.append(spinner)
        while not stop.is_set():
            if deadline is not None and time.time() >= deadline:
                break
            stop.wait(0.1)
    except ExternalShutdownException:
        pass
    finally:
        t_end = time.time()
        stop.set()
        _join_spinners(spinners, recorder)
        for node in reversed(nodes):
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    recorder.error(f"closing {node.get_name()}: {exc}")
        for executor in executors:
            executor.shutdown(timeout_sec=2.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    if args.report:
        meta = {
            "robot": args.robot,
            "config": str(config_file),
            "nodes": [s.name for s in specs],
            "ros_domain_id": int(env["ROS_DOMAIN_ID"]),
            "dds_profile": env.get("FASTRTPS_DEFAULT_PROFILES_FILE"),
            "fake_hardware": bool(args.fake_hardware),
            "executor": args.executor,
        }
        report = recorder.report(meta, t_start, t_end)
        write_report(report, args.report)
        print(f"report written to {args.report} (ok={report['ok']})", file=sys.stderr)
    return exit_code


def _join_spinners(spinners: list[threading.Thread], recorder, timeout_s: float = 5.0) -> None:
    """Wait for the spin threads to leave rclpy before anything is torn down.

    A daemon thread still inside rclpy's wait (GIL released) when the interpreter finalises is
    killed by ``pthread_exit`` as it takes the GIL back; the forced unwind crosses a pybind11
    destructor and the process aborts ("terminate called without an active exception", exit
    -6) after a clean run. Each thread leaves within one ``spin_once`` timeout (0.1 s) plus the
    callback it is running.
    """
    deadline = time.monotonic() + timeout_s
    for spinner in spinners:
        spinner.join(max(deadline - time.monotonic(), 0.0))
    stuck = sum(spinner.is_alive() for spinner in spinners)
    if stuck:
        recorder.error(f"{stuck} executor thread(s) still busy {timeout_s} s after stop")


def _spin(executor, stop: threading.Event, recorder) -> None:
    """Spin until ``stop``; an exception escaping a callback is a bug: log and record it (once
    per distinct message) and keep the rest of the stack running."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    seen: set[str] = set()
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=0.1)
        except ExternalShutdownException:
            return
        except Exception as exc:
            text = f"callback raised {type(exc).__name__}: {exc}"
            recorder.error(text)
            if text not in seen:
                seen.add(text)
                rclpy.logging.get_logger("ramp").error(text)


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a short summary of a report; exit 1 if the report is not ok."""
    import json

    from ramp_bringup.core.summary import summarize

    report = json.loads(Path(args.report_file).read_text())
    print(summarize(report))
    if args.plot:
        from ramp_bringup.core.summary_plot import plot_summary

        plot_summary(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0 if report.get("ok") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ramp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run a robot's whole stack in this process")
    up.add_argument("--robot", default="sim", help="robot config name (config/<robot>.yaml)")
    up.add_argument("--config", help="explicit parameter file instead of the robot's config")
    up.add_argument("--duration", type=float, default=0.0, help="stop after SECONDS (0: run)")
    up.add_argument("--report", help="write a JSON health report to FILE at exit")
    up.add_argument(
        "--fake-hardware",
        action="store_true",
        help="run the robot bridge against its protocol-level fake (no robot needed)",
    )
    up.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default 42)")
    up.add_argument(
        "--dds-profile", default="", help="Fast DDS XML profile ('' shipped one, 'none' default)"
    )
    up.add_argument(
        "--executor",
        choices=("per-node", "multi"),
        default="per-node",
        help="per-node: a single-threaded executor on its own thread for each node (default); "
        "multi: one MultiThreadedExecutor for all nodes",
    )
    up.add_argument("--threads", type=int, default=6, help="threads of the multi executor")
    up.set_defaults(func=cmd_up)
    summary = sub.add_parser("summary", help="print a short summary of a --report file")
    summary.add_argument("report_file")
    summary.add_argument("--plot", help="write rates and latency histograms as a PNG to FILE")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``ramp``."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StackConfigError as exc:
        print(f"ramp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
