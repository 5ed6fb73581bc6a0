"""The RobotDriver contract: every robot (PiPER, G1, MuJoCo sim) implements it.

Units: joint positions in rad (revolute) or m (gripper opening), velocities rad/s (m/s), efforts
N*m (N). Arrays are (D,) in ``joint_names`` order. Times are float seconds on the wall clock
(``time.time()``), the clock ROS stamps use by default.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np


class DriverError(RuntimeError):
    """The device cannot be used: missing interface, no answer, enable refused. Names the cause."""


@dataclass
class RobotState:
    """One measured state of the robot."""

    stamp: float
    positions: np.ndarray
    velocities: np.ndarray
    efforts: np.ndarray
    faults: list[str] = field(default_factory=list)
    """Active fault flags in words (e.g. 'estop', 'joint3 limit', 'comm timeout')."""


class RobotDriver(abc.ABC):
    """Connect / read_state / send / disconnect; nothing ROS in here."""

    @property
    @abc.abstractmethod
    def joint_names(self) -> list[str]:
        """Joint names in the order of every array this driver takes or returns."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Open the device and make it ready to follow position targets. Raises DriverError."""

    @abc.abstractmethod
    def read_state(self) -> RobotState:
        """The latest measured state. Raises DriverError when the device stopped answering."""

    @abc.abstractmethod
    def send(self, positions: np.ndarray) -> None:
        """Send one position target (already limited by the bridge's safety filter)."""

    @abc.abstractmethod
    def disconnect(self) -> None:
        """Hold or disable safely and release the device. Safe to call twice."""
