"""How long each stage of the command path takes to hold after the executor stops, with
delivery jitter between the stages (ROS-free: the real cores, a simulated clock).

The command path is three followers in a row, each on its own 200 Hz tick: the chunk executor
(``ChunkExecutor``) -> ``ramp/policy_command`` -> the intervention arbiter
(``InterventionArbiter``) -> ``joint_command`` -> the bridge's safety filter (``SafetyFilter``).
The executor drives the arm along a chunk, then brakes to a hold (``upstream_lost``, what an
announced exit of the policy does). Each message reaches the next stage after a random delay
(exponential, mean ``--mean-delay-ms``; ``--late-fraction`` of them up to ``--late-ms`` more,
as a loaded 2-core machine delivers; in order, as DDS delivers one writer's samples), and each
stage's ticks run late by the same law, in order, a tick a period behind skipped (as
``RateLoop`` runs them). Printed per
stage: the time from the executor's hold to the first 0.3 s in which its output changes by
less than 1e-5 rad per tick (the campaign's "held (command)" in docs/reliability.md), p50 / max
over ``--trials`` seeds, and as a ratio to the executor's in the same run; with the commands
stamped with the actual tick time (what the nodes do) and with the tick's due time.

Without jitter each follower holds ~27 ms after the stage before it: one tick behind a leader
that brakes at the same acceleration limit, it overshoots the stop a little and comes back
(with the executor braking at 0.9x the limit the followers hold 7 ms after it). With jitter the
followers run faster than the stream (up to 1.6-1.8x its speed), overshoot the stop by far
more and come back: the arbiter holds ~130 ms and the filter ~240 ms after the executor
(docs/reliability.md, Finding 11, also for what was tried).

    python bench/follow_jitter.py [--trials 20] [--mean-delay-ms 2] [--late-fraction 0.05]
"""

from __future__ import annotations

import argparse
import heapq

import numpy as np

from ramp_common.limits import JointLimits
from ramp_hilr_teleop.core.arbiter import InterventionArbiter
from ramp_policy_node.core.chunk import ActionChunk
from ramp_policy_node.core.executor import ChunkExecutor
from ramp_robots.core.safety import SafetyFilter

DT = 0.005
"""Control period of every stage, s (200 Hz)."""
LIMITS = JointLimits.from_lists(
    ["joint1", "joint2", "gripper"],
    [-2.6, -3.0, 0.0],
    [2.6, 3.0, 0.07],
    [2.0, 2.0, 0.2],
    [15.0, 15.0, 2.0],
)  # the sim arm's limits (config/sim.yaml), two joints and the gripper
STOP_AT_S = 3.0
"""The executor stops here (s): after the followers measured the delivery jitter for a while."""
STAGES = ("executor", "arbiter", "filter")
QUIET_STEP = 1e-5  # rad per tick
SETTLE_S = 0.3


def _chunk(stamp: float) -> ActionChunk:
    """A chunk moving joint1 at 1.2 rad/s and joint2 at -0.8 rad/s from ``stamp``."""
    offsets = (np.arange(50) + 1) * 0.02
    t = stamp + offsets
    positions = np.stack([1.2 * t, -0.8 * t, 0.03 + 0.0 * t], axis=1)
    return ActionChunk(stamp, offsets, np.clip(positions, -2.5, 2.5))


def trial(
    seed: float,
    mean_delay_s: float,
    late_fraction: float,
    late_s: float,
    playout_s: float,
    max_playout_s: float | None = None,
):
    """Hold time (s after the executor's stop) of each stage, one seeded run: the nodes step
    their cores at the tick's due time and stamp their output with it (as the nodes do);
    followers replay their input ``playout_s`` behind."""
    rng = np.random.default_rng(seed)

    def delay() -> float:
        d = rng.exponential(mean_delay_s) if mean_delay_s > 0 else 0.0
        if rng.random() < late_fraction:
            d += rng.uniform(0.2 * late_s, late_s)
        return d

    executor = ChunkExecutor(LIMITS, DT, gripper_indices=[2], watchdog_timeout_s=0.5)
    playout = {"playout_delay_s": playout_s, "max_playout_delay_s": max_playout_s}
    arbiter = InterventionArbiter(LIMITS, DT, source_timeout_s=0.05, **playout)
    safety = SafetyFilter(LIMITS, DT, command_timeout_s=0.1, **playout)
    pose = np.array([0.0, 0.0, 0.03])
    executor.update_measured(pose, 0.0)
    arbiter.update_measured(pose, 0.0)
    events: list[tuple[float, int, str, object]] = []
    order = 0

    def push(t: float, kind: str, payload: object) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (t, order, kind, payload))

    phases = {"executor": 0.0, "arbiter": 0.0021, "filter": 0.0037}
    for stage, phase in phases.items():
        # as RateLoop runs them: in order, a late tick delays the next ones, and a tick more
        # than one period behind is skipped
        previous = -1.0
        for k in range(int((STOP_AT_S + 1.5) / DT)):
            due_k = k * DT + phase
            t = max(due_k + delay(), previous + 1e-4)
            if t - due_k >= DT and previous > due_k:
                continue  # skipped: the loop is a period behind
            previous = t
            push(t, stage, due_k)
    for k in range(0, int(STOP_AT_S / DT), 20):  # chunks at 10 Hz until the stop
        push(k * DT + 0.001, "chunk", k * DT)
    push(STOP_AT_S, "stop", None)
    outputs: dict[str, list[tuple[float, np.ndarray]]] = {s: [] for s in STAGES}
    delivered = {"arbiter": 0.0, "filter": 0.0}  # a stream's messages arrive in order (DDS)

    def send(stage: str, to: str, t: float, due: float, command: np.ndarray | None) -> None:
        """``stage``'s output of its tick due at ``due`` (run at ``t``), stamped with ``due``,
        delivered to ``to`` after a delay, in order."""
        if command is None:
            return
        outputs[stage].append((due, command))
        delivered[to] = max(t + delay(), delivered[to])
        push(delivered[to], f"to_{to}", (command, due))

    while events:
        t, _, kind, payload = heapq.heappop(events)
        if kind == "chunk":
            executor.submit(_chunk(payload), t)
        elif kind == "stop":
            executor.upstream_lost(t)
        elif kind == "executor":
            send("executor", "arbiter", t, payload, executor.step(payload))
        elif kind == "to_arbiter":
            arbiter.policy_command(payload[0], t, sent_at=payload[1])
        elif kind == "arbiter":
            send("arbiter", "filter", t, payload, arbiter.step(payload))
        elif kind == "to_filter":
            safety.command(payload[0], t, sent_at=payload[1])
        elif kind == "filter":
            pose = safety.output(payload, pose)
            outputs["filter"].append((payload, pose))
            executor.update_measured(pose, t)
            arbiter.update_measured(pose, t)
    holds = {stage: _hold(outputs[stage]) for stage in STAGES}
    overshoots = {stage: _overshoot(outputs[stage]) for stage in STAGES}
    return holds, overshoots


def _overshoot(samples: list[tuple[float, np.ndarray]]) -> float:
    """How far (rad, largest joint) the output went past the pose it finally held, in the
    direction it moved at the stop."""
    times = np.array([t for t, _ in samples])
    q = np.array([p for _, p in samples])
    at_stop = int(np.searchsorted(times, STOP_AT_S))
    direction = np.sign(q[at_stop] - q[at_stop - 1])
    beyond = (q[at_stop:] - q[-1]) * direction
    return float(max(beyond.max(), 0.0))


def _hold(samples: list[tuple[float, np.ndarray]]) -> float:
    times = np.array([t for t, _ in samples])[1:]
    steps = np.abs(np.diff(np.array([q for _, q in samples]), axis=0)).max(axis=1)
    quiet = steps < QUIET_STEP
    for i in np.flatnonzero(times >= STOP_AT_S):
        window = (times >= times[i]) & (times < times[i] + SETTLE_S)
        if times[window][-1] - times[i] >= SETTLE_S - 2 * DT and quiet[window].all():
            return float(times[i] - STOP_AT_S)
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--mean-delay-ms", type=float, default=2.0)
    parser.add_argument("--late-fraction", type=float, default=0.05)
    parser.add_argument("--late-ms", type=float, default=30.0)
    parser.add_argument(
        "--playout",
        nargs="+",
        default=["0", "5", "10", "5:30"],
        help="followers' playout delays to compare, ms: 'D' fixed, 'MIN:MAX' adaptive",
    )
    args = parser.parse_args()
    cases = {
        "no jitter, playout 0 ms": (0.0, 0.0, 0.0, None),
        "no jitter, playout 5 ms": (0.0, 0.0, 0.005, None),
    }
    for spec in args.playout:
        low, _, high = spec.partition(":")
        label = f"adaptive {low}-{high} ms" if high else f"{low} ms"
        cases[f"jitter, playout {label}"] = (
            args.mean_delay_ms / 1e3,
            args.late_fraction,
            float(low) / 1e3,
            float(high) / 1e3 if high else None,
        )
    print(
        f"hold after the executor's stop, ms, p50 / max over {args.trials} seeds (p50 minus the "
        f"executor's); 'past': the largest overshoot of the held pose over the seeds, mrad; "
        f"delay mean {args.mean_delay_ms} ms, {args.late_fraction:.0%} up to {args.late_ms} ms late"
    )
    for name, (mean_s, late, low_s, high_s) in cases.items():
        runs = [
            trial(s, mean_s, late, args.late_ms / 1e3, low_s, high_s) for s in range(args.trials)
        ]
        base = float(np.nanmedian([holds["executor"] for holds, _ in runs])) * 1e3
        cells = []
        for stage in STAGES:
            values = np.array([holds[stage] for holds, _ in runs]) * 1e3
            p50 = float(np.nanmedian(values))
            past = max(overshoots[stage] for _, overshoots in runs) * 1e3
            extra = "" if stage == "executor" else f" (+{p50 - base:.0f})"
            cells.append(f"{stage} {p50:.0f} / {np.nanmax(values):.0f}{extra}, past {past:.1f}")
        print(f"  {name:34s} " + "   ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
