"""``ramp``: runs the RAMP stack of one robot, one process per node (the production layout).

``ramp up --robot sim`` starts every node of ``config/<robot>.yaml`` as its own process, the way
``ros2 launch ramp_bringup <robot>.launch.py`` does and from the same plan
(``core/plan.py``: parameter file, ``-p`` overrides, namespace, DDS environment), supervised
by ``core/supervisor.py`` (so it needs no launch system): the bridge or the arbiter exiting ends
the stack, the other nodes respawn, Ctrl-C / SIGTERM stop every node cleanly. Defaults: the
shipped Fast DDS profile, ROS domain 42 and localhost-only discovery. ``--single-process`` runs
every node in this one process instead (debugging). ``--duration`` stops it by itself;
``--report FILE`` writes a JSON health report at exit (topic rates, end-to-end latencies, joint
motion, diagnostics, errors, node exit codes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from ramp_bringup.core.plan import Fleet, Override, PlanError, StackOptions, build_plan
from ramp_bringup.core.report import RunRecorder, write_report
from ramp_bringup.core.smoothness import CommandSmoothness
from ramp_bringup.core.supervisor import Supervisor, ignore_stop_signals, terminate_on_signals
from ramp_bringup.stack import (
    ROLE_CHOICES,
    StackConfigError,
    config_path,
    dds_profile_path,
    fleet_path,
    stack_nodes,
)
from ramp_common.cli_tools import closed_pipe


def _node_params(config_file: Path, node: str) -> dict:
    data = yaml.safe_load(config_file.read_text()) or {}
    return (data.get(node) or {}).get("ros__parameters") or {}


def _stack_options(args: argparse.Namespace) -> StackOptions:
    dds_profile = args.dds_profile or None  # '' (the default): environment, else shipped
    robots: tuple[str, ...] = ()
    if args.fleet:
        fleet = Fleet.load(fleet_path(args.fleet))
        if args.role == "robot":
            raise PlanError(
                "--fleet starts an inference host (--role inference); start each robot with "
                "--role robot --namespace <ns>"
            )
        args.role = "inference"
        args.robot = fleet.robot
        robots = fleet.namespaces
        if args.domain_id is None:
            args.domain_id = fleet.domain_id
    return StackOptions(
        config_file=Path(args.config) if args.config else config_path(args.robot),
        robots=robots,
        namespace=args.namespace,
        fake_hardware=args.fake_hardware,
        overrides=tuple(Override.parse(text) for text in args.param),
        domain_id=args.domain_id,
        localhost_only=None if args.localhost_only is None else args.localhost_only == "true",
        dds_profile=dds_profile,
        model_dir=args.model_dir,
        log_level=args.log_level,
        role=args.role,
        discovery_server=args.discovery_server,
    )


class _Run:
    """What both layouts share: the plan, the monitor (its own rclpy context) and the report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.options = _stack_options(args)
        self.specs = stack_nodes(self.options.config_file)
        run_dir = Path(tempfile.mkdtemp(prefix="ramp-up-"))
        self.plan = build_plan(self.options, self.specs, run_dir, dds_profile_path())
        self.plan_specs = [s for s in self.specs if s.name in {n.name for n in self.plan.nodes}]
        self.env = self.plan.process_env(os.environ, os.getpid())
        os.environ.clear()  # before rclpy is initialised: the middleware reads them at init
        os.environ.update(self.env)
        shared = _node_params(self.options.config_file, "/**")
        self.joint_names = list(shared.get("joint_names", []))
        arbiter = _node_params(self.options.config_file, "intervention_arbiter")
        executor = _node_params(self.options.config_file, "chunk_executor")
        grippers = set(executor.get("gripper_joints", []))
        self.arm_joints = [n for n in self.joint_names if n not in grippers]
        self.smoothness = CommandSmoothness(1.0 / float(arbiter.get("control_rate_hz", 200.0)))
        self.recorder = RunRecorder(self.joint_names)
        self.camera_names = list(shared.get("camera_names", []))
        self.stop = threading.Event()
        self.t_start = self.t_end = time.time()

    def ros_args(self, *, with_params: bool) -> list[str]:
        out = ["--ros-args"]
        if self.plan.namespace:
            out += ["-r", f"__ns:={self.plan.namespace}"]
        if with_params:
            out += ["--params-file", str(self.plan.params_file)]
        return out

    def make_monitor(self):
        from ramp_bringup.monitor import StackMonitor

        return StackMonitor(
            self.recorder,
            self.joint_names,
            self.camera_names,
            command_topic="joint_command",  # what reaches the bridge
            watched_nodes={s.name for s in self.plan_specs},
            smoothness=self.smoothness,
            arm_joints=self.arm_joints,
        )

    def wait(self, alive=lambda: True) -> None:
        """Until --duration, a stop signal, or ``alive()`` turning False."""
        self.t_start = time.time()
        deadline = self.t_start + self.args.duration if self.args.duration else None
        while not self.stop.is_set() and alive():
            if deadline is not None and time.time() >= deadline:
                break
            self.stop.wait(0.1)
        self.t_end = time.time()

    def finish(self, layout: str, extra: dict | None = None) -> None:
        if not self.args.report:
            return
        meta = {
            "robot": self.args.robot,
            "config": str(self.options.config_file),
            "nodes": [s.name for s in self.plan_specs],
            "layout": layout,
            "namespace": self.plan.namespace,
            "robots": list(self.options.robots),
            "ros_domain_id": int(self.env["ROS_DOMAIN_ID"]),
            "dds_profile": self.env.get("FASTRTPS_DEFAULT_PROFILES_FILE"),
            "fake_hardware": bool(self.args.fake_hardware),
            "parameters": str(self.plan.params_file),
            "command_smoothness": self.smoothness.summary(),
            **(extra or {}),
        }
        report = self.recorder.report(meta, self.t_start, self.t_end)
        write_report(report, self.args.report)
        print(f"report written to {self.args.report} (ok={report['ok']})", file=sys.stderr)


def cmd_up(args: argparse.Namespace) -> int:
    """Run the stack of one robot until --duration elapses or Ctrl-C / SIGTERM."""
    run = _Run(args)
    terminate_on_signals(run.stop)
    if args.single_process:
        return _up_single_process(run)
    return _up_processes(run)


def _up_processes(run: _Run) -> int:
    """One process per node (the production layout), with the monitor in this process."""
    import rclpy
    from rclpy.logging import get_logger

    rclpy.init(args=run.ros_args(with_params=False), signal_handler_options=_no_signals())
    log = get_logger("ramp")
    log.info(
        f"robot {run.args.robot}: {len(run.plan.nodes)} node processes from "
        f"{run.options.config_file}, ROS_DOMAIN_ID={run.env['ROS_DOMAIN_ID']}, "
        f"parameters {run.plan.params_file}"
    )
    from ramp_common.node_exits import NodeExitAnnouncer

    monitor = run.make_monitor()
    # a batched inference host announces in every served robot's namespace
    announcer = NodeExitAnnouncer(monitor, run.options.robots)

    def on_exit(name: str, _code: int) -> None:
        if not run.stop.is_set():  # a Ctrl-C to the whole group is a stop, not a fault
            announcer.announce(name)

    supervisor = Supervisor(
        run.plan.nodes, run.env, _event_logger(log, run.recorder), on_exit=on_exit
    )
    spinner = _Spinner([monitor], run.stop, run.recorder)
    exit_code = 0
    try:
        supervisor.start()
        spinner.start()
        run.wait(alive=supervisor.poll)
        if supervisor.failed and run.stop.wait(0.3):
            supervisor.failed = None  # the node ended with a Ctrl-C to the whole group
        run.stop.set()
    finally:
        ignore_stop_signals()
        codes = supervisor.stop()
        spinner.join()
        monitor.destroy_node()
        rclpy.try_shutdown()
    if supervisor.failed or any(code != 0 for code in codes.values()):
        exit_code = 1
    run.finish("process-per-node", {"exit_codes": codes, "pids": supervisor.pids})
    return exit_code


def _up_single_process(run: _Run) -> int:
    """Every node in this process, one single-threaded executor and thread each (debugging)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.logging import get_logger

    rclpy.init(args=run.ros_args(with_params=True), signal_handler_options=_no_signals())
    log = get_logger("ramp")
    log.info(f"robot {run.args.robot}: all nodes in one process (--single-process)")
    nodes = [run.make_monitor()]
    exit_code = 0
    spinner = None
    try:
        for spec in run.plan_specs:
            try:
                nodes.append(spec.load_class()())
            except Exception as exc:
                msg = f"node {spec.name} failed to start: {exc}"
                log.fatal(msg)
                run.recorder.error(msg)
                exit_code = 1
                run.stop.set()
                break
        spinner = _Spinner(nodes, run.stop, run.recorder)
        spinner.start()
        run.wait()
    except ExternalShutdownException:
        pass
    finally:
        run.stop.set()
        ignore_stop_signals()
        if spinner is not None:
            spinner.join()
        for node in reversed(nodes):
            close = getattr(node, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    run.recorder.error(f"closing {node.get_name()}: {exc}")
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    run.finish("single-process")
    return exit_code


def _no_signals():
    from rclpy.signals import SignalHandlerOptions

    return SignalHandlerOptions.NO


def _event_logger(log, recorder: RunRecorder):
    def on_event(level: str, text: str) -> None:
        if level == "error":
            log.error(text)
            recorder.error(text)
        else:
            log.info(text)

    return on_event


class _Spinner:
    """One single-threaded executor and thread per node: small wait sets, no node waits on
    another (rclpy's MultiThreadedExecutor busy-spins, ros2/rclpy#1452)."""

    def __init__(self, nodes: list, stop: threading.Event, recorder: RunRecorder) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self._stop = stop
        self._recorder = recorder
        self._executors = []
        for node in nodes:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            self._executors.append(executor)
        self._threads = [
            threading.Thread(target=_spin, args=(ex, stop, recorder), daemon=True)
            for ex in self._executors
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait for the spin threads to leave rclpy before anything is torn down.

        A daemon thread still inside rclpy's wait (GIL released) when the interpreter finalises
        is killed by ``pthread_exit`` as it takes the GIL back; the forced unwind crosses a
        pybind11 destructor and the process aborts ("terminate called without an active
        exception", exit -6) after a clean run. Each thread leaves within one ``spin_once``
        timeout (0.1 s) plus the callback it is running.
        """
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive() or thread.ident is not None:
                thread.join(max(deadline - time.monotonic(), 0.0))
        stuck = sum(thread.is_alive() for thread in self._threads)
        if stuck:
            self._recorder.error(f"{stuck} executor thread(s) still busy {timeout_s} s after stop")
        for executor in self._executors:
            executor.shutdown(timeout_sec=2.0)


def _spin(executor, stop: threading.Event, recorder: RunRecorder) -> None:
    """Spin until ``stop``; an exception escaping a callback is a bug: log and record it (once
    per distinct message) and keep the rest of the stack running."""
    from rclpy.executors import ExternalShutdownException
    from rclpy.logging import get_logger

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
                get_logger("ramp").error(text)


def cmd_discovery_server(args: argparse.Namespace) -> int:
    """Exec Fast DDS's discovery server with the shared libraries of this environment."""
    from ramp_bringup.core.discovery import discovery_server_command

    try:
        cmd, env = discovery_server_command(args.address, args.port, args.server_id)
    except FileNotFoundError as exc:
        print(f"ramp discovery-server: {exc}", file=sys.stderr)
        return 2
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def cmd_summary(args: argparse.Namespace) -> int:
    """Print a short summary of a report; exit 1 if the report is not ok."""
    import json

    from ramp_bringup.core.summary import summarize

    try:
        report = json.loads(Path(args.report_file).read_text())
    except (OSError, ValueError) as exc:
        print(f"ramp summary: cannot read report {args.report_file}: {exc}", file=sys.stderr)
        return 2
    print(summarize(report))
    if args.plot:
        from ramp_bringup.core.summary_plot import plot_summary

        plot_summary(report, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0 if report.get("ok") else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ramp", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="run a robot's whole stack, one process per node",
        description="Run a robot's stack: every node of its config as its own process "
        "(--single-process: all in this one). Options mirror the launch arguments of "
        "ros2 launch ramp_bringup <robot>.launch.py.",
    )
    up.add_argument("--robot", default="sim", help="robot config name (config/<robot>.yaml)")
    up.add_argument("--config", help="explicit parameter file instead of the robot's config")
    up.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NODE.PARAM:=VALUE",
        help="override one parameter (PARAM:=VALUE for every node); repeatable, e.g. "
        "-p episode_recorder.output_dir:=/data",
    )
    up.add_argument("--duration", type=float, default=0.0, help="stop after SECONDS (0: run)")
    up.add_argument("--report", help="write a JSON health report to FILE at exit")
    up.add_argument(
        "--fake-hardware",
        action="store_true",
        help="run the robot bridge against its protocol-level fake (no robot needed)",
    )
    up.add_argument("--namespace", default="", help="namespace of every node (one per robot)")
    up.add_argument(
        "--fleet",
        help="fleet file (path, or a name in config/fleet/): one batched world model + policy "
        "serve every robot it lists (implies --role inference; docs/fleet.md)",
    )
    up.add_argument(
        "--role",
        choices=("all", *ROLE_CHOICES),
        default="all",
        help="which nodes: all; robot (next to the robot); inference (world model + policy)",
    )
    up.add_argument(
        "--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: env, else 42)"
    )
    up.add_argument(
        "--localhost-only",
        choices=("true", "false"),
        default=None,
        help="DDS discovery on this computer only (default: env, else true)",
    )
    up.add_argument(
        "--dds-profile", default="", help="Fast DDS XML profile ('' shipped one, 'none' default)"
    )
    up.add_argument("--model-dir", help="folder of model cards (default: $RAMP_MODEL_DIR)")
    up.add_argument(
        "--discovery-server",
        help="HOST:PORT of a Fast DDS discovery server (networks without multicast; sets "
        "ROS_DISCOVERY_SERVER); start one with `ramp discovery-server`",
    )
    up.add_argument("--log-level", default="info", help="log level of every node")
    up.add_argument(
        "--single-process",
        action="store_true",
        help="every node in this process, on its own executor thread (debugging; GIL-bound)",
    )
    up.set_defaults(func=cmd_up)
    server = sub.add_parser(
        "discovery-server",
        help="run a Fast DDS discovery server (for networks without multicast)",
        description="Runs Fast DDS's discovery server (the `fastdds discovery` of a ROS 2 "
        "install; here the binary of the ros-jazzy wheels) until Ctrl-C. Point every "
        "participant at it: ramp up --discovery-server HOST:PORT (ROS_DISCOVERY_SERVER).",
    )
    server.add_argument("--address", default="0.0.0.0", help="listen address (0.0.0.0)")
    server.add_argument("--port", type=int, default=11811, help="UDP port (11811)")
    server.add_argument("--server-id", type=int, default=0, help="server id (0)")
    server.set_defaults(func=cmd_discovery_server)
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
    except (StackConfigError, PlanError) as exc:
        print(f"ramp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return closed_pipe()


if __name__ == "__main__":
    raise SystemExit(main())
