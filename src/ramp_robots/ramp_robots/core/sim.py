"""MuJoCo simulation of the PiPER-like arm behind the RobotDriver contract (ROS-free).

The scene (``mjcf/piper_scene.xml``) holds the arm, a table, a pushable cube and a goal pad.
Physics runs in its own thread in real time (absolute ``time.monotonic`` deadlines, bounded
catch-up); cameras render offscreen from a snapshot of the state, in the caller's thread, so a
slow render never stalls physics.

Units and frames: joint positions in rad (revolute) or m (``gripper`` = total finger opening),
velocities rad/s (m/s), efforts N*m (N, mean of the two finger servo forces). Poses are in the
world frame of the scene (z up, origin at the robot base on the table top, x forward), positions
in m, quaternions (w, x, y, z). Stamps are wall-clock seconds (``time.time()``).
"""

from __future__ import annotations

import os

# EGL renders headless on CPU and GPU machines; the backend is chosen when mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from ramp_robots.core.driver import DriverError, RobotDriver, RobotState

PUBLIC_JOINTS: tuple[str, ...] = (
    "joint1",
    "joint2",
    "joint3",
    "joint4",
    "joint5",
    "joint6",
    "gripper",
)
"""Joint names the simulated arm offers, in the default order."""

GRIPPER = "gripper"
FINGER_JOINTS = ("finger_left", "finger_right")
HOME_KEYFRAME = "home"
CUBE_BODY = "cube"
GOAL_SITE = "goal"
TCP_SITE = "tcp"
MJCF_NAME = "piper_scene.xml"

CUBE_START_JITTER_M = 0.02
"""Half-width of the uniform xy jitter of the cube's start position on reset."""
CUBE_START_YAW_JITTER_RAD = 0.3
"""Half-width of the uniform yaw jitter of the cube on reset."""
OVERRUN_FAULT_WINDOW_S = 1.0
"""An overrun this recent shows up as a fault in read_state()."""


def default_mjcf_path() -> Path:
    """The scene file: in the source tree next to the package, else in the ament share dir.

    Raises DriverError when neither exists.
    """
    in_tree = Path(__file__).resolve().parents[2] / "mjcf" / MJCF_NAME
    if in_tree.is_file():
        return in_tree
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        try:
            shared = Path(get_package_share_directory("ramp_robots")) / "mjcf" / MJCF_NAME
        except (PackageNotFoundError, OSError):  # OSError: AMENT_PREFIX_PATH not set
            shared = None
    except ImportError:
        shared = None
    if shared is not None and shared.is_file():
        return shared
    raise DriverError(
        f"cannot find {MJCF_NAME}: not at {in_tree} and not in the ramp_robots share directory "
        "(is the workspace installed and AMENT_PREFIX_PATH set?)"
    )


@dataclass(frozen=True)
class Pose:
    """A pose in the scene's world frame: position (3,) in m, quaternion (4,) as (w, x, y, z)."""

    position: np.ndarray
    quaternion: np.ndarray


@dataclass(frozen=True)
class PhysicsStats:
    """How well physics keeps up with the wall clock since connect()."""

    steps: int
    """Physics steps taken by the thread."""
    sim_time_s: float
    """Simulated time advanced by those steps."""
    wall_time_s: float
    """Monotonic time since connect()."""
    late_steps: int
    """Steps run late, as catch-up after a missed deadline."""
    overruns: int
    """Times physics fell more than ``max_catchup_steps`` behind and skipped ahead."""

    @property
    def real_time_factor(self) -> float:
        """Simulated seconds per wall-clock second (1.0 = real time)."""
        return self.sim_time_s / self.wall_time_s if self.wall_time_s > 0 else 0.0


class MujocoSimDriver(RobotDriver):
    """The simulated arm: position targets in, measured state and camera frames out.

    Thread-safe: ``send``/``read_state``/task queries take a short lock shared with the physics
    thread; ``render``/``render_cameras`` copy the state under that lock and render outside it.
    """

    def __init__(
        self,
        mjcf_path: str | Path | None = None,
        physics_dt: float = 0.002,
        camera_names: Sequence[str] = ("front", "wrist"),
        camera_width: int = 320,
        camera_height: int = 240,
        joint_names: Sequence[str] = PUBLIC_JOINTS,
        max_catchup_steps: int = 25,
    ) -> None:
        """Load and check the scene; physics starts with connect().

        Args:
            mjcf_path: scene file; None or '' uses :func:`default_mjcf_path`.
            physics_dt: physics time step in s (replaces the file's timestep).
            camera_names: cameras :meth:`render_cameras` renders by default.
            camera_width: rendered image width in pixels.
            camera_height: rendered image height in pixels.
            joint_names: the public joints this driver's arrays hold, in that order
                (any order of a subset of :data:`PUBLIC_JOINTS`).
            max_catchup_steps: most steps run at once after a missed deadline; beyond that
                physics skips ahead (counted as an overrun) rather than run faster than real time.

        Raises:
            DriverError naming the file and the missing or wrong element.
        """
        path = Path(mjcf_path) if mjcf_path else default_mjcf_path()
        if not path.is_file():
            raise DriverError(f"MJCF file {path} does not exist")
        if not physics_dt > 0:
            raise DriverError(f"physics_dt must be > 0 s, got {physics_dt}")
        if camera_width <= 0 or camera_height <= 0:
            raise DriverError(f"camera size must be positive, got {camera_width}x{camera_height}")
        if max_catchup_steps < 1:
            raise DriverError(f"max_catchup_steps must be >= 1, got {max_catchup_steps}")
        try:
            self._model = mujoco.MjModel.from_xml_path(str(path))
        except ValueError as exc:
            raise DriverError(f"MJCF file {path} does not load: {exc}") from exc
        self._path = path
        self._model.opt.timestep = physics_dt
        self._dt = float(physics_dt)
        self._max_catchup = int(max_catchup_steps)

        model = self._model
        names = list(joint_names)
        unknown = [n for n in names if n not in PUBLIC_JOINTS]
        if unknown:
            raise DriverError(f"unknown joints {unknown}; the simulated arm has {PUBLIC_JOINTS}")
        if len(set(names)) != len(names):
            raise DriverError(f"joint_names has duplicates: {names}")
        if not names:
            raise DriverError("joint_names is empty")
        self._joint_names = names

        self._arm_index = np.array([i for i, n in enumerate(names) if n != GRIPPER], dtype=int)
        arm_joints = [names[i] for i in self._arm_index]
        arm_ids = [self._joint_id(n) for n in arm_joints]
        self._arm_qadr = model.jnt_qposadr[arm_ids]
        self._arm_dadr = model.jnt_dofadr[arm_ids]
        self._arm_act = np.array([self._actuator_for(j) for j in arm_ids], dtype=int)
        self._grip_index = names.index(GRIPPER) if GRIPPER in names else None
        finger_ids = [self._joint_id(n) for n in FINGER_JOINTS]
        self._finger_qadr = model.jnt_qposadr[finger_ids]
        self._finger_dadr = model.jnt_dofadr[finger_ids]
        self._finger_act = np.array([self._actuator_for(j) for j in finger_ids], dtype=int)

        self._home_key = self._require(mujoco.mjtObj.mjOBJ_KEY, HOME_KEYFRAME, "keyframe")
        self._cube_body = self._require(mujoco.mjtObj.mjOBJ_BODY, CUBE_BODY, "body")
        cube_joint = model.body_jntadr[self._cube_body]
        if cube_joint < 0 or model.jnt_type[cube_joint] != mujoco.mjtJoint.mjJNT_FREE:
            raise DriverError(f"MJCF file {path}: body '{CUBE_BODY}' needs a free joint")
        self._cube_qadr = int(model.jnt_qposadr[cube_joint])
        self._cube_dadr = int(model.jnt_dofadr[cube_joint])
        cube_geom = model.body_geomadr[self._cube_body]
        self._cube_half = float(model.geom_size[cube_geom][2])
        self._goal_site = self._require(mujoco.mjtObj.mjOBJ_SITE, GOAL_SITE, "site")
        self._tcp_site = self._require(mujoco.mjtObj.mjOBJ_SITE, TCP_SITE, "site")
        self._cube_start = model.key_qpos[self._home_key][
            self._cube_qadr : self._cube_qadr + 3
        ].copy()

        self._camera_names = list(camera_names)
        for cam in self._camera_names:
            self._camera_id(cam)
        offscreen = (model.vis.global_.offwidth, model.vis.global_.offheight)
        if camera_width > offscreen[0] or camera_height > offscreen[1]:
            raise DriverError(
                f"camera size {camera_width}x{camera_height} exceeds the offscreen buffer "
                f"{offscreen[0]}x{offscreen[1]} of {path} (<visual><global offwidth/offheight>)"
            )
        self._width = int(camera_width)
        self._height = int(camera_height)

        self._lock = threading.Lock()
        self._data = mujoco.MjData(model)
        self._render_lock = threading.Lock()
        self._render_data = mujoco.MjData(model)
        self._renderer: mujoco.Renderer | None = None

        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None
        self._steps = 0
        self._late_steps = 0
        self._overruns = 0
        self._last_overrun = -np.inf
        self._started = time.monotonic()

        self._home = self._public_from_qpos(model.key_qpos[self._home_key])
        self._target = self._home.copy()
        self._state_stamp = time.time()
        with self._lock:
            self._reset_locked(seed=0, jitter=False)

    # ------------------------------------------------------------------ model lookups

    def _joint_id(self, name: str) -> int:
        jid = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise DriverError(f"MJCF file {self._path}: no joint '{name}'")
        return jid

    def _actuator_for(self, joint_id: int) -> int:
        model = self._model
        for act in range(model.nu):
            if (
                model.actuator_trntype[act] == mujoco.mjtTrn.mjTRN_JOINT
                and model.actuator_trnid[act][0] == joint_id
            ):
                return act
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint_id)
        raise DriverError(f"MJCF file {self._path}: joint '{name}' has no actuator")

    def _require(self, kind: mujoco.mjtObj, name: str, label: str) -> int:
        obj = mujoco.mj_name2id(self._model, kind, name)
        if obj < 0:
            raise DriverError(f"MJCF file {self._path}: no {label} '{name}'")
        return obj

    def _camera_id(self, name: str) -> int:
        cam = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_CAMERA, name)
        if cam < 0:
            available = [self._model.camera(i).name for i in range(self._model.ncam)]
            raise DriverError(f"MJCF file {self._path}: no camera '{name}' (has {available})")
        return cam

    # ------------------------------------------------------------------ public joint mapping

    def _public_from_qpos(self, qpos: np.ndarray) -> np.ndarray:
        out = np.empty(len(self._joint_names))
        out[self._arm_index] = qpos[self._arm_qadr]
        if self._grip_index is not None:
            out[self._grip_index] = qpos[self._finger_qadr].sum()
        return out

    def _apply_target_locked(self) -> None:
        ctrl = self._data.ctrl
        ctrl[self._arm_act] = self._target[self._arm_index]
        if self._grip_index is not None:
            ctrl[self._finger_act] = 0.5 * self._target[self._grip_index]

    # ------------------------------------------------------------------ RobotDriver

    @property
    def joint_names(self) -> list[str]:
        """Public joint names, the order of every array in and out."""
        return list(self._joint_names)

    @property
    def mjcf_path(self) -> Path:
        """The scene file in use."""
        return self._path

    @property
    def physics_dt(self) -> float:
        """Physics step in s."""
        return self._dt

    @property
    def camera_names(self) -> list[str]:
        """Cameras rendered by default."""
        return list(self._camera_names)

    @property
    def home_positions(self) -> np.ndarray:
        """The home (ready) pose in public joint order."""
        return self._home.copy()

    def joint_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) position range of each public joint in the model (gripper: opening)."""
        model = self._model
        lower = np.empty(len(self._joint_names))
        upper = np.empty(len(self._joint_names))
        ranges = model.jnt_range[[self._joint_id(n) for n in self._joint_names if n != GRIPPER]]
        lower[self._arm_index], upper[self._arm_index] = ranges[:, 0], ranges[:, 1]
        if self._grip_index is not None:
            fingers = model.jnt_range[[self._joint_id(n) for n in FINGER_JOINTS]]
            lower[self._grip_index], upper[self._grip_index] = fingers.sum(axis=0)
        return lower, upper

    def connect(self) -> None:
        """Start the real-time physics thread (no-op when it already runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread_error = None
        with self._lock:
            self._steps = 0
            self._late_steps = 0
            self._overruns = 0
            self._started = time.monotonic()
        self._thread = threading.Thread(target=self._physics_loop, name="sim-physics", daemon=True)
        self._thread.start()

    def disconnect(self) -> None:
        """Stop physics and free the renderers. Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        with self._render_lock:
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None

    def read_state(self) -> RobotState:
        """Latest physics state in public joint order; stamp = wall time of that state.

        Raises DriverError when the physics thread died.
        """
        if self._thread_error is not None:
            raise DriverError(f"physics thread stopped: {self._thread_error!r}")
        with self._lock:
            data = self._data
            qpos = data.qpos.copy()
            qvel = data.qvel.copy()
            force = data.actuator_force.copy()
            stamp = self._state_stamp
            recent_overrun = time.monotonic() - self._last_overrun < OVERRUN_FAULT_WINDOW_S
        n = len(self._joint_names)
        positions = self._public_from_qpos(qpos)
        velocities = np.empty(n)
        efforts = np.empty(n)
        velocities[self._arm_index] = qvel[self._arm_dadr]
        efforts[self._arm_index] = force[self._arm_act]
        if self._grip_index is not None:
            velocities[self._grip_index] = qvel[self._finger_dadr].sum()
            efforts[self._grip_index] = force[self._finger_act].mean()
        faults = ["physics behind real time"] if recent_overrun else []
        return RobotState(stamp, positions, velocities, efforts, faults)

    def send(self, positions: np.ndarray) -> None:
        """Set the position target (public joint order); physics applies it at its next step.

        Raises ValueError for a wrong size or non-finite values (the previous target stays).
        """
        target = np.asarray(positions, dtype=np.float64)
        if target.shape != (len(self._joint_names),):
            raise ValueError(
                f"target has shape {target.shape}, expected ({len(self._joint_names)},) "
                f"for {self._joint_names}"
            )
        bad = [self._joint_names[i] for i in np.flatnonzero(~np.isfinite(target))]
        if bad:
            raise ValueError(f"target is not finite for joints {bad}")
        with self._lock:
            self._target = target.copy()

    # ------------------------------------------------------------------ physics

    def _physics_loop(self) -> None:
        dt = self._dt
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now < next_tick:
                    self._stop.wait(next_tick - now)
                    continue
                due = int((now - next_tick) / dt) + 1
                n = min(due, self._max_catchup)
                with self._lock:
                    self._apply_target_locked()
                    for _ in range(n):
                        mujoco.mj_step(self._model, self._data)
                    self._state_stamp = time.time()
                    self._steps += n
                    self._late_steps += n - 1
                    if due > n:
                        self._overruns += 1
                        self._last_overrun = now
                if due > n:
                    # Too far behind: give up on the lost time rather than run fast to recover.
                    next_tick = now + dt
                else:
                    next_tick += n * dt
        except BaseException as exc:  # surfaced through read_state()
            self._thread_error = exc

    def step(self, n: int = 1) -> None:
        """Advance physics by ``n`` steps now (only while the real-time thread is not running).

        For tests and faster-than-real-time data generation. Raises DriverError when connected.
        """
        if self._thread is not None and self._thread.is_alive():
            raise DriverError("step() is not allowed while the real-time physics thread runs")
        with self._lock:
            self._apply_target_locked()
            for _ in range(n):
                mujoco.mj_step(self._model, self._data)
            self._state_stamp = time.time()

    def physics_stats(self) -> PhysicsStats:
        """Counters of the physics thread since connect()."""
        with self._lock:
            return PhysicsStats(
                steps=self._steps,
                sim_time_s=self._steps * self._dt,
                wall_time_s=time.monotonic() - self._started,
                late_steps=self._late_steps,
                overruns=self._overruns,
            )

    # ------------------------------------------------------------------ rendering

    def render(self, camera: str) -> tuple[float, np.ndarray]:
        """Render one camera: (capture wall time in s, (H, W, 3) uint8 RGB)."""
        stamp, frames = self.render_cameras([camera])
        return stamp, frames[camera]

    def render_cameras(
        self, cameras: Sequence[str] | None = None
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Render several cameras from one state snapshot.

        Returns (capture wall time in s, {camera: (H, W, 3) uint8 RGB}). Default: the configured
        cameras. Raises DriverError for an unknown camera or when no GL context can be made.
        """
        names = self._camera_names if cameras is None else list(cameras)
        ids = [self._camera_id(name) for name in names]
        model, rdata = self._model, self._render_data
        with self._render_lock:
            with self._lock:
                src = self._data
                rdata.time = src.time
                rdata.qpos[:] = src.qpos
                rdata.qvel[:] = src.qvel
                rdata.mocap_pos[:] = src.mocap_pos
                rdata.mocap_quat[:] = src.mocap_quat
                stamp = self._state_stamp
            mujoco.mj_kinematics(model, rdata)
            mujoco.mj_comPos(model, rdata)
            mujoco.mj_camlight(model, rdata)
            renderer = self._get_renderer()
            frames = {}
            try:
                for name, cam in zip(names, ids, strict=True):
                    renderer.update_scene(rdata, camera=cam)
                    frames[name] = renderer.render()
            finally:
                _release_gl_context()
        return stamp, frames

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            try:
                self._renderer = mujoco.Renderer(self._model, self._height, self._width)
            except Exception as exc:
                raise DriverError(
                    f"cannot create an offscreen renderer (MUJOCO_GL="
                    f"{os.environ.get('MUJOCO_GL')!r}): {exc}"
                ) from exc
        return self._renderer

    # ------------------------------------------------------------------ task

    def reset(self, seed: int | None = None) -> None:
        """Arm to home (target too), cube to its start pose jittered by ``seed``, objects still."""
        with self._lock:
            self._reset_locked(seed, jitter=True)

    def _reset_locked(self, seed: int | None, jitter: bool) -> None:
        model, data = self._model, self._data
        mujoco.mj_resetDataKeyframe(model, data, self._home_key)
        self._target = self._home.copy()
        if jitter:
            rng = np.random.default_rng(seed)
            xy = self._cube_start[:2] + rng.uniform(
                -CUBE_START_JITTER_M, CUBE_START_JITTER_M, size=2
            )
            yaw = float(rng.uniform(-CUBE_START_YAW_JITTER_RAD, CUBE_START_YAW_JITTER_RAD))
            self._place_cube_locked(np.array([xy[0], xy[1], self._cube_start[2]]), yaw)
        self._apply_target_locked()
        mujoco.mj_forward(model, data)
        self._state_stamp = time.time()

    def set_cube_pose(self, position: Sequence[float], yaw: float = 0.0) -> None:
        """Teleport the cube to ``position`` (world, m) with ``yaw`` (rad about z), at rest."""
        pos = np.asarray(position, dtype=np.float64)
        if pos.shape != (3,) or not np.all(np.isfinite(pos)):
            raise ValueError(f"cube position must be 3 finite values, got {position!r}")
        with self._lock:
            self._place_cube_locked(pos, yaw)
            mujoco.mj_forward(self._model, self._data)

    def _place_cube_locked(self, position: np.ndarray, yaw: float) -> None:
        data = self._data
        data.qpos[self._cube_qadr : self._cube_qadr + 3] = position
        data.qpos[self._cube_qadr + 3 : self._cube_qadr + 7] = [
            np.cos(yaw / 2),
            0.0,
            0.0,
            np.sin(yaw / 2),
        ]
        data.qvel[self._cube_dadr : self._cube_dadr + 6] = 0.0

    def cube_pose(self) -> Pose:
        """Pose of the cube's centre in the world frame."""
        with self._lock:
            pos = self._data.xpos[self._cube_body].copy()
            quat = self._data.xquat[self._cube_body].copy()
        return Pose(pos, quat)

    @property
    def cube_half_size(self) -> float:
        """Half the cube's edge length in m."""
        return self._cube_half

    def goal_position(self) -> np.ndarray:
        """Centre of the goal region on the table (world, m)."""
        with self._lock:
            return self._data.site_xpos[self._goal_site].copy()

    def goal_half_extent(self) -> np.ndarray:
        """Half sizes (x, y) of the goal region in m, along the goal site's axes."""
        return self._model.site_size[self._goal_site][:2].copy()

    def ee_pose(self) -> Pose:
        """Pose of the tool centre point (between the fingertips) in the world frame."""
        quat = np.empty(4)
        with self._lock:
            pos = self._data.site_xpos[self._tcp_site].copy()
            mat = self._data.site_xmat[self._tcp_site].copy()
        mujoco.mju_mat2Quat(quat, mat)
        return Pose(pos, quat)

    def task_success(self) -> bool:
        """True when the cube's centre lies inside the goal region and the cube rests on the table.

        "Rests" means its centre is lower than one edge length above the goal pad (not carried).
        """
        with self._lock:
            cube = self._data.xpos[self._cube_body].copy()
            goal = self._data.site_xpos[self._goal_site].copy()
            goal_mat = self._data.site_xmat[self._goal_site].reshape(3, 3).copy()
        local = goal_mat.T @ (cube - goal)
        half = self._model.site_size[self._goal_site][:2]
        inside = bool(np.all(np.abs(local[:2]) <= half))
        resting = bool(0.0 < local[2] < 2.0 * self._cube_half)
        return inside and resting


def _release_gl_context() -> None:
    """Detach this thread's current EGL context so any thread can use or free it next.

    An EGL context can be current in one thread only; mujoco's Renderer makes its context current
    on each render and leaves it so, which would pin it to the first thread that rendered.
    """
    if os.environ.get("MUJOCO_GL", "").lower() != "egl":
        return
    from OpenGL import EGL

    display = EGL.eglGetCurrentDisplay()
    if display:
        EGL.eglMakeCurrent(display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
