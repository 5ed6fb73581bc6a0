"""Chunk splicing benchmark: smoothness and tracking of every ChunkExecutor strategy.

Generates a reproducible chunk stream: a smooth reference trajectory (6 arm joints, rad, and a
gripper, m), observed every ~0.1 s; each chunk (H=20 steps of 0.02 s) is the reference seen from a
noisy observation, with a per-chunk bias and a per-chunk drift (so consecutive chunks disagree),
small per-step noise, and arrives 20-150 ms after its observation. The stream is replayed at
200 Hz through every strategy, with a robot that follows the command exactly, twice:

- raw: limits so wide that the command is the strategy's own target stream (what the splice does);
- limited: PiPER-like limits (3 rad/s, 10 rad/s^2), the command the robot would get.

Printed per strategy (arm joints; the gripper switches by design): the largest jump of the
finite-difference velocity (rad/s) and acceleration (rad/s^2) between consecutive ticks over the
run (after the first splice every tick lies in some splice's window; the no-splice row shows the
floor from linear interpolation between chunk steps), the RMS error (rad) to the reference for
the raw and limited runs, and the share of limited ticks where the limiter changed the target
(mostly the 1 mrad per-step noise: linear interpolation of 50 Hz steps turns it into acceleration
spikes beyond 10 rad/s^2 at every chunk step); ratios against ``replace``.

Usage: ``python bench/chunk_splice.py [--seed N] [--duration S]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from ramp_common.limits import JointLimits
except ImportError:  # run from a plain checkout without PYTHONPATH
    _SRC = Path(__file__).resolve().parents[1] / "src"
    sys.path[:0] = [str(_SRC / "ramp_common"), str(_SRC / "ramp_policy_node")]
    from ramp_common.limits import JointLimits

from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import ChunkExecutor
from ramp_policy_node.core.splice import SPLICE_STRATEGIES

CONTROL_HZ = 200.0
STEP_DT = 0.02
HORIZON = 20
OBS_PERIOD_S = 0.1
LATENCY_S = (0.020, 0.150)
ARM = slice(0, 6)
GRIPPER = 6
NAMES = [f"joint{i}" for i in range(1, 7)] + ["gripper"]

LIMITS = JointLimits.from_lists(
    NAMES,
    [-2.6, -0.1, -3.0, -1.8, -1.3, -2.1, 0.0],
    [2.6, 3.1, 0.1, 1.8, 1.3, 2.1, 0.07],
    [3.0] * 6 + [0.1],
    [10.0] * 6 + [1.0],
)
WIDE = JointLimits.from_lists(NAMES, [-1e3] * 7, [1e3] * 7, [1e4] * 7, [1e8] * 7)


class Reference:
    """Smooth ground truth: per arm joint a sum of sines (rad); gripper opens/closes smoothly."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.center = (LIMITS.lower[ARM] + LIMITS.upper[ARM]) / 2
        self.amp = rng.uniform(0.1, 0.3, size=(6, 3))
        self.freq = rng.uniform(0.1, 0.5, size=(6, 3))
        self.phase = rng.uniform(0, 2 * np.pi, size=(6, 3))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """(len(t), 7) positions at times t (s)."""
        t = np.atleast_1d(t)[:, None, None]
        arm = self.center + (self.amp * np.sin(2 * np.pi * self.freq * t + self.phase)).sum(-1)
        # Gripper: toggles every 2.5 s, 1 s smooth transitions, 0.01..0.06 m.
        cycle = np.mod(t[:, 0, 0], 5.0)
        s = np.clip((cycle - 1.5) / 1.0, 0, 1) - np.clip((cycle - 4.0) / 1.0, 0, 1)
        grip = 0.01 + 0.05 * (0.5 - 0.5 * np.cos(np.pi * s))
        return np.concatenate([arm, grip[:, None]], axis=1)


@dataclass
class Arrival:
    time: float
    chunk: ActionChunk


def make_stream(seed: int, duration: float) -> tuple[Reference, list[Arrival]]:
    """The reference and the chunks, in arrival order (inference is sequential, so in order)."""
    rng = np.random.default_rng(seed)
    reference = Reference(rng)
    arrivals: list[Arrival] = []
    stamp = 0.3
    last_arrival = 0.0
    offsets = (np.arange(HORIZON) + 1) * STEP_DT
    while stamp < duration - 0.2:
        truth = reference(stamp + offsets)
        bias = rng.normal(0.0, 0.01, 6)  # rad: observation noise + model error
        drift = rng.normal(0.0, 0.05, 6)  # rad/s: disagreement growing along the horizon
        positions = truth.copy()
        positions[:, ARM] += bias + drift * offsets[:, None]
        positions[:, ARM] += rng.normal(0.0, 0.001, (HORIZON, 6))
        arrival = max(stamp + rng.uniform(*LATENCY_S), last_arrival + 1e-3)
        arrivals.append(Arrival(arrival, ActionChunk.from_step_dt(stamp, positions, STEP_DT)))
        last_arrival = arrival
        stamp += OBS_PERIOD_S + rng.uniform(-0.01, 0.01)
    return reference, arrivals


@dataclass
class Run:
    commands: np.ndarray  # (N, 7)
    times: np.ndarray  # (N,)
    first_splice_tick: int
    clamped_ticks: int


def replay(
    arrivals: list[Arrival], limits: JointLimits, strategy: str, duration: float, **kwargs
) -> Run:
    dt = 1.0 / CONTROL_HZ
    executor = ChunkExecutor(limits, dt, strategy=strategy, gripper_indices=[GRIPPER], **kwargs)
    ticks = int(duration * CONTROL_HZ)
    times = np.arange(ticks) * dt
    first = arrivals[0].chunk
    executor.update_measured(first.positions[0], 0.0)
    commands = np.empty((ticks, limits.dof))
    next_arrival = 0
    first_splice = ticks
    for k, now in enumerate(times):
        while next_arrival < len(arrivals) and arrivals[next_arrival].time <= now:
            reason = executor.submit(arrivals[next_arrival].chunk, now)
            if reason is not None:
                raise RuntimeError(f"bench chunk refused: {reason}")
            if next_arrival == 1:
                first_splice = k
            next_arrival += 1
        command = executor.step(now)
        assert command is not None
        commands[k] = command
        executor.update_measured(command, now)
    return Run(commands, times, first_splice, int(executor.stats()["clamped_ticks"]))


def jumps(commands: np.ndarray, start: int) -> tuple[float, float]:
    """Largest tick-to-tick change of finite-difference velocity and acceleration (arm)."""
    dt = 1.0 / CONTROL_HZ
    arm = commands[:, ARM]
    velocity = np.diff(arm, axis=0) / dt
    acceleration = np.diff(velocity, axis=0) / dt
    dv = np.abs(np.diff(velocity, axis=0))[start:]
    da = np.abs(np.diff(acceleration, axis=0))[start:]
    return float(dv.max()), float(da.max())


def rms_error(run: Run, reference: Reference, start: int) -> float:
    error = run.commands[start:, ARM] - reference(run.times[start:])[:, ARM]
    return float(np.sqrt(np.mean(error**2)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="stream seed (default 0)")
    parser.add_argument("--duration", type=float, default=20.0, help="replay length, s")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    reference, arrivals = make_stream(args.seed, args.duration)
    # The floor: one chunk holding the whole true trajectory, no splice ever.
    floor_steps = np.arange(1, int(args.duration / STEP_DT) + 1) * STEP_DT
    floor_chunk = ActionChunk(0.0, floor_steps, reference(floor_steps))
    floor_stream = [Arrival(0.0, floor_chunk)]

    rows = []
    variants: list[tuple[str, str, dict]] = [(s, s, {}) for s in SPLICE_STRATEGIES]
    variants.append(("crossfade(3 steps)", "crossfade", {"crossfade_steps": 3}))
    for label, strategy, kwargs in variants:
        raw = replay(arrivals, WIDE, strategy, args.duration, **kwargs)
        limited = replay(arrivals, LIMITS, strategy, args.duration, **kwargs)
        start = raw.first_splice_tick
        dv, da = jumps(raw.commands, start)
        rows.append(
            (
                label,
                dv,
                da,
                rms_error(raw, reference, start),
                rms_error(limited, reference, start),
                limited.clamped_ticks / len(limited.times),
            )
        )
    floor_run = replay(floor_stream, WIDE, "replace", args.duration, watchdog_timeout_s=1e3)
    start = int(1.0 * CONTROL_HZ)
    floor_dv, floor_da = jumps(floor_run.commands, start)

    base = rows[0]
    print(
        f"chunk splice bench: seed {args.seed}, {args.duration:.0f} s at {CONTROL_HZ:.0f} Hz, "
        f"{len(arrivals)} chunks (H={HORIZON}, step {STEP_DT} s, every ~{OBS_PERIOD_S} s, "
        f"latency {LATENCY_S[0] * 1e3:.0f}-{LATENCY_S[1] * 1e3:.0f} ms)"
    )
    header = (
        f"{'strategy':<19}{'max dv rad/s':>13}{'x':>7}{'max da rad/s2':>15}{'x':>7}"
        f"{'rms raw rad':>13}{'x':>7}{'rms lim rad':>13}{'x':>7}{'clamped':>9}"
    )
    print(header)
    print("-" * len(header))
    for label, dv, da, rms_raw, rms_lim, clamped in rows:
        print(
            f"{label:<19}{dv:>13.3f}{dv / base[1]:>7.3f}{da:>15.1f}{da / base[2]:>7.3f}"
            f"{rms_raw:>13.5f}{rms_raw / base[3]:>7.3f}{rms_lim:>13.5f}{rms_lim / base[4]:>7.3f}"
            f"{clamped:>9.1%}"
        )
    print(
        f"{'no splice (floor)':<19}{floor_dv:>13.3f}{floor_dv / base[1]:>7.3f}"
        f"{floor_da:>15.1f}{floor_da / base[2]:>7.3f}"
    )
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
