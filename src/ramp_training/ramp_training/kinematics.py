"""Forward kinematics, Jacobian and damped least-squares IK of the simulated arm (MuJoCo).

Uses its own ``MjModel``/``MjData`` of the scene the simulator loads (``ramp_robots`` MJCF), so it
never touches a running simulation. Only the six arm joints move the tool; the gripper opening is
passed through.

Units and frames: joint positions rad (arm) / m (``gripper`` opening) in ``PIPER_JOINTS`` order;
positions in m in the scene's world frame (z up, origin at the robot base on the table top);
rotation matrices world-from-tool, whose columns are the tool axes in the world frame. The tool
frame is the ``tcp`` site: x along the fingers (out of the palm), y the axis the fingers open
along, z = x cross y.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco
import numpy as np

ARM_JOINTS = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6")
TCP_SITE = "tcp"


@dataclass(frozen=True)
class ToolPose:
    """Tool centre point position (3,) m and orientation (3, 3) world-from-tool."""

    position: np.ndarray
    rotation: np.ndarray


class ArmKinematics:
    """Kinematics of the arm in a scene file (default: the one the simulator uses).

    Not thread-safe (one scratch ``MjData``); make one per thread.
    """

    def __init__(self, mjcf_path: str | Path | None = None) -> None:
        if mjcf_path is None:
            from ramp_robots.core.sim import default_mjcf_path

            mjcf_path = default_mjcf_path()
        self._model = mujoco.MjModel.from_xml_path(str(mjcf_path))
        self._data = mujoco.MjData(self._model)
        model = self._model
        ids = []
        for name in ARM_JOINTS:
            jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
            if jid < 0:
                raise ValueError(f"{mjcf_path}: no joint {name!r}")
            ids.append(jid)
        self._qadr = model.jnt_qposadr[ids]
        self._dadr = model.jnt_dofadr[ids]
        self.lower = model.jnt_range[ids, 0].copy()
        """Arm joint lower limits (6,), rad."""
        self.upper = model.jnt_range[ids, 1].copy()
        """Arm joint upper limits (6,), rad."""
        self._site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, TCP_SITE)
        if self._site < 0:
            raise ValueError(f"{mjcf_path}: no site {TCP_SITE!r}")
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _set(self, arm_q: np.ndarray) -> None:
        self._data.qpos[self._qadr] = arm_q
        mujoco.mj_kinematics(self._model, self._data)

    def tool_pose(self, q: np.ndarray) -> ToolPose:
        """Tool pose for joint positions ``q`` (7 values or the 6 arm joints)."""
        self._set(np.asarray(q, dtype=np.float64)[:6])
        data = self._data
        return ToolPose(
            data.site_xpos[self._site].copy(), data.site_xmat[self._site].reshape(3, 3).copy()
        )

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """(6, 6) Jacobian of [tool linear velocity; angular velocity] w.r.t. the arm joints."""
        self._set(np.asarray(q, dtype=np.float64)[:6])
        mujoco.mj_comPos(self._model, self._data)
        mujoco.mj_jacSite(self._model, self._data, self._jacp, self._jacr, self._site)
        return np.vstack([self._jacp[:, self._dadr], self._jacr[:, self._dadr]])

    def solve(
        self,
        q: np.ndarray,
        position: np.ndarray,
        rotation: np.ndarray | None = None,
        iterations: int = 8,
        damping: float = 0.02,
        rotation_weight: float = 0.3,
        max_step: float | None = None,
    ) -> np.ndarray:
        """Damped least-squares IK from ``q`` toward the tool target; -> new joint positions.

        Args:
            q: start joint positions (7 values; the gripper entry is passed through).
            position: target tool position (3,), m.
            rotation: target world-from-tool rotation (3, 3), or None for position only.
            iterations: Gauss-Newton iterations (each one Jacobian).
            damping: damping factor lambda (m); keeps steps bounded near singularities.
            rotation_weight: m per rad; how much an orientation error counts against position.
            max_step: largest total change of any arm joint, rad (None: unbounded). The result
                is scaled back onto this bound, so a far target is approached, not jumped to.
        Returns:
            Joint positions (7,) within the arm's joint ranges.
        """
        q = np.asarray(q, dtype=np.float64)
        start = q[:6].copy()
        arm = start.copy()
        target = np.asarray(position, dtype=np.float64)
        for _ in range(iterations):
            self._set(arm)
            current = self._data.site_xpos[self._site]
            error_p = target - current
            if rotation is None:
                jac = self.jacobian(arm)[:3]
                error = error_p
            else:
                current_r = self._data.site_xmat[self._site].reshape(3, 3)
                error_r = 0.5 * sum(np.cross(current_r[:, i], rotation[:, i]) for i in range(3))
                jac = self.jacobian(arm)
                jac[3:] *= rotation_weight
                error = np.concatenate([error_p, rotation_weight * error_r])
            gram = jac @ jac.T + (damping**2) * np.eye(jac.shape[0])
            arm = np.clip(arm + jac.T @ np.linalg.solve(gram, error), self.lower, self.upper)
        if max_step is not None:
            change = arm - start
            largest = float(np.max(np.abs(change)))
            if largest > max_step:
                arm = start + change * (max_step / largest)
        out = q.copy()
        out[:6] = arm
        return out


def tool_rotation(
    push_direction: np.ndarray,
    tool_position: np.ndarray,
    tilt: float = 0.3,
    reference_y: np.ndarray | None = None,
) -> np.ndarray:
    """World-from-tool rotation for pushing along ``push_direction`` (horizontal, (2,) or (3,)).

    The fingers point down, tilted by ``tilt`` rad away from the robot base (radially outward
    through ``tool_position``; the arm cannot point straight down at full reach), and open across
    the push direction, so both fingertips press on the object's face. Of the two finger-axis
    signs the one closer to ``reference_y`` (the current tool y axis) is chosen, so the wrist
    never turns half a revolution for nothing.
    """
    d = np.zeros(3)
    d[:2] = np.asarray(push_direction, dtype=np.float64)[:2]
    norm = float(np.linalg.norm(d))
    d = d / norm if norm > 1e-9 else np.array([1.0, 0.0, 0.0])
    radial = np.array([tool_position[0], tool_position[1], 0.0])
    r_norm = float(np.linalg.norm(radial))
    radial = radial / r_norm if r_norm > 1e-9 else np.array([1.0, 0.0, 0.0])
    x = np.array([0.0, 0.0, -np.cos(tilt)]) + np.sin(tilt) * radial
    y = np.cross(x, d)
    y_norm = float(np.linalg.norm(y))
    y = y / y_norm if y_norm > 1e-9 else np.array([0.0, 1.0, 0.0])
    if reference_y is not None and float(np.dot(y, reference_y)) < 0.0:
        y = -y
    return np.column_stack([x, y, np.cross(x, y)])
