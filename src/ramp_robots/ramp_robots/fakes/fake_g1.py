"""fake_g1: a stand-in Unitree G1 on DDS, at the protocol level (``unitree_hg`` LowCmd/LowState).

What it does, per tick of ``--rate`` (default 500 Hz):

- publishes ``rt/lowstate`` with the CRC set (every motor's q/dq/tau_est, ``mode_machine``, tick);
- follows commands with a first-order joint model (time constant ``--tau``, s):
  ``rt/lowcmd`` (fresh within ``LOWCMD_FRESH_S``, right ``mode_machine``): every enabled motor
  with kp > 0 goes to its ``q``; disabled motors stay where they are. Otherwise the last
  ``rt/arm_sdk`` command: waist and arm targets are ``w * q_cmd + (1 - w) * q_loco``, with
  ``w`` = slot 29's q clipped to [0, 1] and ``q_loco`` the fake locomotion controller's pose (the
  start pose); the legs always stay with the locomotion controller;
- verifies every incoming LowCmd's CRC: a bad one is counted and ignored.

Test hooks: ``--silent-after S`` stops publishing LowState after S seconds (the joints still follow
commands), SIGUSR1 goes silent and SIGUSR2 speaks again; ``--corrupt-crc-every N`` sends every
N-th LowState with a wrong CRC; ``--stats-file`` receives a JSON summary every 0.2 s and at exit
(counts, the last weight, all 29 positions). SIGINT/SIGTERM end it with exit code 0.

Usage: ``fake_g1 --iface lo --domain 0``. Units: rad, rad/s, N*m.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ramp_common.rate_loop import RateLoop
from ramp_robots.core.driver import DriverError
from ramp_robots.core.g1_driver import (
    ARM_SDK_WEIGHT_SLOT,
    G1_JOINT_NAMES,
    G1_NUM_MOTORS,
    MOTOR_ENABLE,
    TOPIC_ARM_SDK,
    TOPIC_LOWCMD,
    TOPIC_LOWSTATE,
    UPPER_BODY_SLOTS,
    dds_subscribe,
    dds_unsubscribe,
    dds_writer,
    init_dds,
)

MODE_MACHINE = 5
"""Robot type id this fake reports (a real G1 reports its own; drivers echo it back)."""
LOWCMD_FRESH_S = 0.1
"""A rt/lowcmd command older than this no longer overrides the locomotion controller."""
STATS_PERIOD_S = 0.2

START_POSE: dict[str, float] = {
    "left_hip_pitch_joint": -0.1,
    "left_knee_joint": 0.3,
    "left_ankle_pitch_joint": -0.2,
    "right_hip_pitch_joint": -0.1,
    "right_knee_joint": 0.3,
    "right_ankle_pitch_joint": -0.2,
    "left_shoulder_pitch_joint": 0.2,
    "left_shoulder_roll_joint": 0.2,
    "left_elbow_joint": 0.9,
    "right_shoulder_pitch_joint": 0.2,
    "right_shoulder_roll_joint": -0.2,
    "right_elbow_joint": 0.9,
}
"""Standing pose (rad) of the fake's locomotion controller; other joints at 0."""


class FakeG1:
    """The fake robot: DDS endpoints, the joint model and the counters."""

    def __init__(
        self,
        rate_hz: float = 500.0,
        tau_s: float = 0.02,
        corrupt_crc_every: int = 0,
        stats_file: Path | None = None,
    ) -> None:
        self._period = 1.0 / rate_hz
        self._tau_s = tau_s
        self._last_step = math.nan
        self._corrupt_every = corrupt_crc_every
        self._stats_file = stats_file
        self._lock = threading.Lock()
        self._loco = np.array([START_POSE.get(n, 0.0) for n in G1_JOINT_NAMES])
        self._q = self._loco.copy()
        self._dq = np.zeros(G1_NUM_MOTORS)
        self._tau = np.zeros(G1_NUM_MOTORS)
        self._arm_sdk: tuple[np.ndarray, np.ndarray, float] | None = None  # q, kp, weight
        self._lowcmd: tuple[np.ndarray, np.ndarray, float] | None = None  # q, drive mask, time
        self.silent = threading.Event()
        self.counts = {
            "lowstate_published": 0,
            "lowstate_corrupted": 0,
            "arm_sdk_received": 0,
            "lowcmd_received": 0,
            "bad_crc": 0,
            "mode_machine_mismatch": 0,
        }
        self.weight = 0.0
        self.max_weight_step = 0.0
        self._tick = 0
        self._next_stats = 0.0
        self._sdk: Any = None
        self._state_pub: Any = None

    def open(self, domain: int, interface: str) -> None:
        """Join DDS and create the endpoints (DriverError naming a missing interface)."""
        sdk = self._sdk = init_dds(domain, interface)
        self._msg = sdk.new_lowstate()
        self._msg.mode_machine = MODE_MACHINE
        self._msg.imu_state.quaternion = [1.0, 0.0, 0.0, 0.0]
        self._state_pub = dds_writer(sdk, TOPIC_LOWSTATE)
        for topic, handler in self._handlers():
            dds_subscribe(sdk, topic, handler)

    def _handlers(self) -> tuple[tuple[str, Callable[[Any], None]], ...]:
        return ((TOPIC_ARM_SDK, self._on_arm_sdk), (TOPIC_LOWCMD, self._on_lowcmd))

    def _crc_ok(self, msg: Any) -> bool:
        if int(self._sdk.crc.Crc(msg)) == int(msg.crc):
            return True
        with self._lock:
            self.counts["bad_crc"] += 1
        return False

    @staticmethod
    def _motor_arrays(msg: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        motors = msg.motor_cmd
        q = np.array([motors[i].q for i in range(G1_NUM_MOTORS)], dtype=np.float64)
        kp = np.array([motors[i].kp for i in range(G1_NUM_MOTORS)], dtype=np.float64)
        mode = np.array([motors[i].mode for i in range(G1_NUM_MOTORS)])
        return q, kp, mode

    def _on_arm_sdk(self, msg: Any) -> None:
        if not self._crc_ok(msg):
            return
        q, kp, _ = self._motor_arrays(msg)
        weight = float(np.clip(msg.motor_cmd[ARM_SDK_WEIGHT_SLOT].q, 0.0, 1.0))
        with self._lock:
            self.counts["arm_sdk_received"] += 1
            self.max_weight_step = max(self.max_weight_step, abs(weight - self.weight))
            self.weight = weight
            self._arm_sdk = (q, kp, weight)

    def _on_lowcmd(self, msg: Any) -> None:
        if not self._crc_ok(msg):
            return
        with self._lock:
            if int(msg.mode_machine) != MODE_MACHINE:
                self.counts["mode_machine_mismatch"] += 1
                return
        q, kp, mode = self._motor_arrays(msg)
        with self._lock:
            self.counts["lowcmd_received"] += 1
            self._lowcmd = (q, (mode == MOTOR_ENABLE) & (kp > 0), time.monotonic())

    def step(self, _now_wall: float = 0.0) -> None:
        """One tick: move the joints toward their targets, then publish LowState."""
        now = time.monotonic()
        # Integrate over the time that really passed, so a stalled tick does not slow the joints.
        dt = self._period if math.isnan(self._last_step) else max(now - self._last_step, 1e-6)
        self._last_step = now
        alpha = 1.0 - math.exp(-dt / self._tau_s)
        with self._lock:
            target = self._loco.copy()
            drive = np.ones(G1_NUM_MOTORS, dtype=bool)
            if self._lowcmd is not None and now - self._lowcmd[2] <= LOWCMD_FRESH_S:
                q_cmd, drive, _ = self._lowcmd
                target = np.where(drive, q_cmd, self._q)
            elif self._arm_sdk is not None:
                q_cmd, kp, weight = self._arm_sdk
                upper = np.array(UPPER_BODY_SLOTS)
                follow = kp[upper] > 0
                target[upper] = np.where(
                    follow,
                    weight * q_cmd[upper] + (1.0 - weight) * self._loco[upper],
                    target[upper],
                )
            previous = self._q
            self._q = np.where(drive, previous + (target - previous) * alpha, previous)
            self._dq = (self._q - previous) / dt
            self._tau = np.where(drive, 40.0 * (target - self._q), 0.0)
            q, dq, tau = self._q.copy(), self._dq.copy(), self._tau.copy()
        if not self.silent.is_set():
            self._publish(q, dq, tau)
        if now >= self._next_stats:
            self._next_stats = now + STATS_PERIOD_S
            self.write_stats()

    def _publish(self, q: np.ndarray, dq: np.ndarray, tau: np.ndarray) -> None:
        msg = self._msg
        self._tick += 1
        msg.tick = self._tick
        for i in range(G1_NUM_MOTORS):
            motor = msg.motor_state[i]
            motor.mode = MOTOR_ENABLE
            motor.q = float(q[i])
            motor.dq = float(dq[i])
            motor.tau_est = float(tau[i])
        msg.crc = self._sdk.crc.Crc(msg)
        corrupt = self._corrupt_every > 0 and self._tick % self._corrupt_every == 0
        if corrupt:
            msg.crc = (msg.crc + 1) & 0xFFFFFFFF
        self._state_pub.Write(msg)
        with self._lock:
            self.counts["lowstate_published"] += 1
            self.counts["lowstate_corrupted"] += int(corrupt)

    def snapshot(self) -> dict[str, Any]:
        """Counters, the last arm-sdk weight and the 29 positions (rad), JSON-ready."""
        with self._lock:
            return {
                **self.counts,
                "weight": self.weight,
                "max_weight_step": self.max_weight_step,
                "silent": self.silent.is_set(),
                "q": self._q.tolist(),
                "joint_names": list(G1_JOINT_NAMES),
            }

    def write_stats(self) -> None:
        if self._stats_file is None:
            return
        tmp = self._stats_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, self._stats_file)

    def close(self) -> None:
        """Stop handling commands (the DDS endpoints live until the process ends)."""
        for topic, handler in self._handlers():
            dds_unsubscribe(topic, handler)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fake_g1", description=__doc__.split("\n\n")[0])
    parser.add_argument("--iface", default="lo", help="network interface (default lo)")
    parser.add_argument("--domain", type=int, default=0, help="DDS domain id (default 0)")
    parser.add_argument("--rate", type=float, default=500.0, help="LowState rate, Hz")
    parser.add_argument("--tau", type=float, default=0.02, help="joint time constant, s")
    parser.add_argument(
        "--silent-after", type=float, default=None, help="stop publishing LowState after S s"
    )
    parser.add_argument(
        "--corrupt-crc-every", type=int, default=0, help="every N-th LowState gets a bad CRC"
    )
    parser.add_argument("--stats-file", type=Path, default=None, help="JSON summary file")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="exit when the parent process ends"
    )
    args = parser.parse_args(argv)
    if not args.rate > 0 or not args.tau > 0:
        parser.error("--rate and --tau must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Console entry point ``fake_g1``."""
    args = parse_args(argv)
    fake = FakeG1(args.rate, args.tau, args.corrupt_crc_every, args.stats_file)
    try:
        fake.open(args.domain, args.iface)
    except DriverError as exc:
        print(f"fake_g1: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: fake.silent.set())
    signal.signal(signal.SIGUSR2, lambda *_: fake.silent.clear())
    parent = os.getppid()
    loop = RateLoop(1.0 / args.rate, fake.step, name="fake_g1")
    loop.start()
    print(
        f"fake_g1: LowState at {args.rate} Hz on domain {args.domain} via {args.iface!r}",
        file=sys.stderr,
        flush=True,
    )
    start = time.monotonic()
    while not stop.wait(0.05):
        if args.silent_after is not None and time.monotonic() - start >= args.silent_after:
            fake.silent.set()
            args.silent_after = None
        if args.exit_with_parent and os.getppid() != parent:
            break
    loop.stop()
    fake.write_stats()
    fake.close()
    if loop.errors:
        print(f"fake_g1: {loop.errors} tick errors, last: {loop.last_error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
