"""What to start for a robot's stack, ROS-free: parameter file, environment, node commands.

``ramp up`` (its own process supervisor) and the launch files (``ros2 launch``) both build a
:class:`StackPlan` from the same robot config and options, so they start the same node
processes with the same parameters and DDS environment:

- parameters: the robot config (ROS parameter file), then ``-p`` overrides
  (``node.param:=value`` for one node, ``param:=value`` for all), ``use_fake_hardware``, and the
  node keys rewritten under a namespace (``/<ns>/<node>``) so a namespaced stack still finds
  its parameters; written once as one effective parameter file;
- environment: ROS domain id, discovery range (localhost only for development), the Fast DDS
  profile, the model folder, glibc malloc settings for frame-sized buffers (``MALLOC_ENV``),
  and ``RAMP_PARENT_PID`` (nodes end with their launcher);
- a fleet (:class:`Fleet`, ``config/fleet/<name>.yaml``): the robots one inference host serves
  with one batched world-model / policy pair; the plan then starts the inference nodes once,
  outside any namespace, with their ``robots`` parameter naming the robots' namespaces.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ALL_NODES_KEY = "/**"
DEFAULT_DOMAIN_ID = 42
DEFAULT_MODEL_DIR = "~/ramp_models"
"""Model folder when neither ``model_dir`` nor ``RAMP_MODEL_DIR`` says (absolute once expanded,
never relative to wherever the launch was started)."""

DDS_PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
NO_PROFILE = ("", "none", "default")
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(16 << 20), "MALLOC_TRIM_THRESHOLD_": str(32 << 20)}
"""glibc malloc settings of every node process (values already in the environment win).

Without them glibc maps each large buffer (a camera frame is 0.23-0.92 MB, and every copy of it
is one) freshly from the kernel and returns it on free, so every frame pays a page fault per
4 KiB page: 0.9-1.3 ms per 640x480 copy on the 2-core development VM, 0.05-0.07 ms with these
(``docs/latency.md``). Buffers up to 16 MiB (a 1920x1080 rgb8 frame is 6.2 MB) come from the
heap, and the heap keeps up to 32 MiB of free memory at its top instead of returning it at once.
A process's resident memory stays bounded by its own peak use."""


class PlanError(ValueError):
    """Options or a config that cannot make a stack; the message names what and why."""


@dataclass(frozen=True)
class Override:
    """One ``-p`` override: ``node`` is None for every node (``/**``)."""

    node: str | None
    name: str
    value: Any

    @classmethod
    def parse(cls, text: str) -> Override:
        """``node.param:=value`` or ``param:=value``; the value is read as YAML (as ROS does)."""
        key, sep, raw = text.partition(":=")
        if not sep or not key:
            raise PlanError(f"parameter override {text!r}: expected NODE.PARAM:=VALUE")
        node, dot, name = key.rpartition(".")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise PlanError(
                f"parameter override {text!r}: value is not valid YAML ({exc})"
            ) from None
        return cls(node if dot else None, name, value)


@dataclass(frozen=True)
class StackOptions:
    """Everything a user chooses about a run, shared by ``ramp up`` and the launch files."""

    config_file: Path
    namespace: str = ""
    fake_hardware: bool = False
    overrides: tuple[Override, ...] = ()
    domain_id: int | None = None
    localhost_only: bool | None = None
    dds_profile: str | None = None
    model_dir: str | None = None
    log_level: str = "info"
    role: str = "all"
    """Start only the nodes of this role (``robot`` / ``inference``), or ``all``."""
    discovery_server: str | None = None
    """``host:port[;host:port...]`` of Fast DDS discovery servers (networks without multicast);
    sets ``ROS_DISCOVERY_SERVER``. None: the environment's, else multicast discovery."""
    robots: tuple[str, ...] = ()
    """Batched serving (a fleet): namespaces of the robots the inference nodes serve; only with
    ``role="inference"`` and no ``namespace``."""


FLEET_KEY = "ramp_fleet"


@dataclass(frozen=True)
class Fleet:
    """The robots one inference host serves with one batched model pair (a fleet file).

    ``robot`` is the robot config every robot of the fleet runs (one model pair serves robots
    with the same joints and cameras); ``namespaces`` are theirs (``/robot1``); ``domain_id``
    the ROS domain they share (None: the usual default).
    """

    robot: str
    namespaces: tuple[str, ...]
    domain_id: int | None = None
    source: str = ""

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Fleet:
        """Read a fleet file; PlanError names the file and what is wrong.

        Format (YAML)::

            ramp_fleet:
              robot: piper            # robot config of every robot (config/<robot>.yaml)
              domain_id: 42           # optional
              robots:                 # namespace, optionally with its robot config
                - namespace: robot1
                - {namespace: robot2, robot: piper}
        """
        src = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PlanError(f"cannot read fleet file {src}: {exc}") from exc
        fleet = (data or {}).get(FLEET_KEY) if isinstance(data, dict) else None
        if not isinstance(fleet, dict):
            raise PlanError(f"{src}: expected a mapping under {FLEET_KEY!r}")
        robot = fleet.get("robot")
        if not isinstance(robot, str) or not robot:
            raise PlanError(f"{src}: {FLEET_KEY}.robot: expected a robot config name")
        entries = fleet.get("robots")
        if not isinstance(entries, list) or not entries:
            raise PlanError(f"{src}: {FLEET_KEY}.robots: expected a non-empty list")
        namespaces = []
        for i, entry in enumerate(entries):
            where = f"{src}: {FLEET_KEY}.robots[{i}]"
            if isinstance(entry, str):
                entry = {"namespace": entry}
            if not isinstance(entry, dict) or not isinstance(entry.get("namespace"), str):
                raise PlanError(f"{where}: expected a namespace or {{namespace: ..., robot: ...}}")
            unknown = sorted(set(entry) - {"namespace", "robot"})
            if unknown:
                raise PlanError(f"{where}: unknown field {unknown[0]!r}")
            if entry.get("robot", robot) != robot:
                raise PlanError(
                    f"{where}: robot {entry['robot']!r} differs from the fleet's {robot!r}: one "
                    "batched model pair serves robots with one config (one fleet file per kind)"
                )
            ns = normalize_namespace(entry["namespace"])
            if not ns:
                raise PlanError(f"{where}: the namespace must not be empty")
            namespaces.append(ns)
        dupes = sorted({n for n in namespaces if namespaces.count(n) > 1})
        if dupes:
            raise PlanError(f"{src}: {FLEET_KEY}.robots names {dupes} twice")
        domain = fleet.get("domain_id")
        if domain is not None and (isinstance(domain, bool) or not isinstance(domain, int)):
            raise PlanError(f"{src}: {FLEET_KEY}.domain_id: expected an integer, got {domain!r}")
        return cls(robot, tuple(namespaces), domain, src)


@dataclass
class NodeLaunch:
    """One node process: name, package/executable (launch) and module (runner)."""

    name: str
    package: str
    executable: str
    module: str
    required: bool
    namespace: str = ""
    ros_args: list[str] = field(default_factory=list)
    """Arguments after ``--ros-args`` other than the node name and namespace."""

    def command(self, python: str) -> list[str]:
        """Command line for the runner: the node's module under ``python``."""
        names = ["-r", f"__node:={self.name}"]
        if self.namespace:
            names += ["-r", f"__ns:={self.namespace}"]
        return [python, "-m", self.module, "--ros-args", *names, *self.ros_args]


@dataclass
class StackPlan:
    """The node processes, the effective parameter file and the environment of a run."""

    nodes: list[NodeLaunch]
    params_file: Path
    env: dict[str, str]
    unset_env: tuple[str, ...]
    namespace: str

    def process_env(self, base: Mapping[str, str], parent_pid: int) -> dict[str, str]:
        """``base`` with this plan's variables set and unset, and the launcher's PID."""
        out = {k: v for k, v in base.items() if k not in self.unset_env}
        out.update(self.env)
        out["RAMP_PARENT_PID"] = str(parent_pid)
        return out


def normalize_namespace(namespace: str) -> str:
    """``""`` or ``/robot1`` (leading slash, no trailing one); rejects what ROS would."""
    ns = namespace.strip().strip("/")
    if not ns:
        return ""
    for part in ns.split("/"):
        if (
            not part
            or not (part[0].isalpha() or part[0] == "_")
            or not all(c.isalnum() or c == "_" for c in part)
        ):
            raise PlanError(f"namespace {namespace!r} is not a valid ROS namespace")
    return "/" + ns


def effective_parameters(
    config: Mapping[str, Any],
    overrides: Iterable[Override],
    *,
    fake_hardware: bool,
    namespace: str,
    node_names: Iterable[str],
) -> dict[str, Any]:
    """The robot config with overrides applied and node keys under ``namespace``."""
    names = set(node_names)
    data: dict[str, Any] = {
        key: {"ros__parameters": dict((value or {}).get("ros__parameters") or {})}
        for key, value in config.items()
    }
    data.setdefault(ALL_NODES_KEY, {"ros__parameters": {}})
    if fake_hardware:
        data[ALL_NODES_KEY]["ros__parameters"]["use_fake_hardware"] = True
    for override in overrides:
        key = ALL_NODES_KEY if override.node is None else override.node
        if override.node is not None and override.node not in names:
            raise PlanError(
                f"parameter override for node {override.node!r}: not in this stack "
                f"(nodes: {sorted(names)})"
            )
        data.setdefault(key, {"ros__parameters": {}})["ros__parameters"][override.name] = (
            override.value
        )
    if namespace:
        data = {
            (f"{namespace}/{key}" if key in names else key): value for key, value in data.items()
        }
    return data


def discovery_environment(
    domain_id: int | None, localhost_only: bool | None, env: Mapping[str, str]
) -> dict[str, str]:
    """ROS domain and discovery range: explicit options, else the environment, else the
    development defaults (domain 42, localhost only)."""
    out: dict[str, str] = {}
    if domain_id is not None:
        if not 0 <= domain_id <= 232:
            raise PlanError(f"domain_id {domain_id} is outside 0..232")
        out["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        out["ROS_DOMAIN_ID"] = env.get("ROS_DOMAIN_ID") or str(DEFAULT_DOMAIN_ID)
    if localhost_only is None:
        if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or env.get("ROS_LOCALHOST_ONLY"):
            return out  # the environment already chose
        localhost_only = True
    if env.get("ROS_DISTRO") == "humble":
        out["ROS_LOCALHOST_ONLY"] = "1" if localhost_only else "0"
    else:  # Jazzy and newer (ROS_LOCALHOST_ONLY is deprecated there)
        out["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST" if localhost_only else "SUBNET"
    return out


def build_plan(
    options: StackOptions,
    specs: Iterable[Any],
    run_dir: Path,
    shipped_dds_profile: Path,
    env: Mapping[str, str] | None = None,
) -> StackPlan:
    """The plan for ``options``; ``specs`` are the config's NodeSpecs (ramp_bringup.stack).

    Writes the effective parameter file into ``run_dir``.
    """
    env = os.environ if env is None else env
    specs = list(specs)
    all_names = [s.name for s in specs]  # overrides and namespacing cover the whole config
    if options.role != "all":
        specs = [s for s in specs if s.role == options.role]
    namespace = normalize_namespace(options.namespace)
    overrides = tuple(options.overrides)
    if options.robots:
        if options.role != "inference" or namespace:
            raise PlanError(
                "a fleet starts the inference side of its robots only (role inference, no "
                "namespace); start each robot with --role robot --namespace <ns>"
            )
        robots = [normalize_namespace(r) for r in options.robots]
        # a list per node: one shared object would be dumped as a YAML alias, which rcl refuses
        overrides += tuple(Override(s.name, "robots", list(robots)) for s in specs)
    try:
        config = yaml.safe_load(Path(options.config_file).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PlanError(f"cannot read robot config {options.config_file}: {exc}") from exc
    params = effective_parameters(
        config,
        overrides,
        fake_hardware=options.fake_hardware,
        namespace=namespace,
        node_names=all_names,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    params_file = run_dir / "params.yaml"
    params_file.write_text(
        f"# effective parameters of this run: {options.config_file} + options\n"
        + yaml.safe_dump(params, sort_keys=False)
    )

    out_env = discovery_environment(options.domain_id, options.localhost_only, env)
    out_env["RMW_IMPLEMENTATION"] = env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    unset: tuple[str, ...] = ()
    profile = options.dds_profile
    if profile is None:
        profile = env.get(DDS_PROFILE_VARS[0]) or str(shipped_dds_profile)
    if profile in NO_PROFILE:
        unset = DDS_PROFILE_VARS  # Fast DDS's own default; an empty variable is an XML error
    else:
        if not Path(profile).is_file():
            raise PlanError(f"DDS profile {profile} does not exist")
        for var in DDS_PROFILE_VARS:
            out_env[var] = profile
    if options.discovery_server:
        out_env["ROS_DISCOVERY_SERVER"] = options.discovery_server
    out_env.update({var: env.get(var, value) for var, value in MALLOC_ENV.items()})
    model_dir = options.model_dir or env.get("RAMP_MODEL_DIR") or DEFAULT_MODEL_DIR
    out_env["RAMP_MODEL_DIR"] = str(Path(os.path.expanduser(model_dir)).resolve())

    nodes = []
    for spec in specs:
        ros_args = ["--params-file", str(params_file), "--log-level", options.log_level]
        nodes.append(
            NodeLaunch(
                spec.name,
                spec.package,
                spec.executable,
                spec.module,
                spec.required,
                namespace,
                ros_args,
            )
        )
    return StackPlan(nodes, params_file, out_env, unset, namespace)
