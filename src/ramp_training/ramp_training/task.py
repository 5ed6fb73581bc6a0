"""The task distribution of the experiments: where the cube starts (seeded).

The simulator's own ``reset(seed)`` jitters the cube by +-2 cm around one start point, so a policy
that ignores the cameras can push it in almost always. The experiments place the cube over a
wider area after each reset, so the policy has to see where the cube is; ``TaskDistribution.sim``
keeps the simulator's own start poses.

Positions in m in the scene's world frame (z up, table top z = 0); yaw rad about z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUBE_REST_Z = 0.02
"""Cube centre height when it rests on the table (half its 4 cm edge), m."""


@dataclass(frozen=True)
class TaskDistribution:
    """Uniform cube start over ``x_range`` x ``y_range`` with yaw in ``yaw_range``.

    ``name == "sim"`` means: keep the pose the simulator's reset chose.
    """

    name: str = "wide"
    x_range: tuple[float, float] = (0.30, 0.42)
    y_range: tuple[float, float] = (0.06, 0.16)
    yaw_range: tuple[float, float] = (-0.5, 0.5)

    @classmethod
    def sim(cls) -> TaskDistribution:
        return cls("sim", (0.0, 0.0), (0.0, 0.0), (0.0, 0.0))

    @classmethod
    def named(cls, name: str) -> TaskDistribution:
        """'wide' (default experiments) or 'sim' (the simulator's own reset jitter)."""
        if name == "wide":
            return cls()
        if name == "sim":
            return cls.sim()
        raise ValueError(f"unknown task distribution {name!r}; known: 'wide', 'sim'")

    def cube_start(self, seed: int) -> tuple[np.ndarray, float] | None:
        """(cube centre (3,), yaw) for an episode seed, or None to keep the simulator's."""
        if self.name == "sim":
            return None
        rng = np.random.default_rng([seed, 0x7A5C])
        x = rng.uniform(*self.x_range)
        y = rng.uniform(*self.y_range)
        yaw = rng.uniform(*self.yaw_range)
        return np.array([x, y, CUBE_REST_Z]), float(yaw)

    def place(self, driver: object, seed: int) -> None:
        """Move the cube of a ``MujocoSimDriver`` (just reset) to this episode's start."""
        start = self.cube_start(seed)
        if start is not None:
            driver.set_cube_pose(start[0], start[1])  # type: ignore[attr-defined]
