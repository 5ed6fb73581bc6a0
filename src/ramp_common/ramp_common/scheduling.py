"""Thread scheduling guard (no ROS import).

SVT-AV1 (libsvtav1, the AV1 encoder behind ``ramp-bag export``), when it may (as root), switches
the threads of the process that encodes to SCHED_FIFO priority 99. A process that then runs DDS
or a control loop has busy threads at that priority and starves the machine (seen: a CI run
wedged with Fast DDS threads busy-looping at FIFO 99 on 2 cores).
"""

from __future__ import annotations

import os
from pathlib import Path

REALTIME_POLICIES = frozenset({getattr(os, "SCHED_FIFO", -1), getattr(os, "SCHED_RR", -1)})


def is_realtime() -> bool:
    """True when the calling thread runs a real-time policy (SCHED_FIFO / SCHED_RR)."""
    return hasattr(os, "sched_getscheduler") and os.sched_getscheduler(0) in REALTIME_POLICIES


def reset_realtime_threads() -> int:
    """Put every real-time thread of this process back to SCHED_OTHER; -> how many were."""
    if not hasattr(os, "sched_getscheduler"):
        return 0
    count = 0
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        try:
            if os.sched_getscheduler(tid) in REALTIME_POLICIES:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
                count += 1
        except OSError:  # the thread ended meanwhile
            continue
    return count


def lower_process_priority(niceness: int) -> int:
    """Add ``niceness`` to the nice value of every thread of this process; -> threads changed.

    Linux keeps a nice value per thread and a new thread inherits its creator's, so this is
    called once at start-up, after the middleware's threads exist. Best effort: a thread that
    cannot be changed is skipped. Used by nodes that must yield the CPU to the control path
    (the operator console).
    """
    if niceness <= 0:
        return 0
    changed = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            tid = int(task.name)
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
            changed += 1
        except (OSError, ValueError):
            continue
    return changed
