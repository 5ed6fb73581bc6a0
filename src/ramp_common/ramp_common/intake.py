"""Subscriptions that a node reads at its own tick instead of per message (rclpy adapter).

Why: rclpy's executor costs 0.4-0.8 ms of CPU per delivered message on the 2-core development
VM (py-spy of a node receiving joint_states at 200 Hz: ~60 % in the executor's Python machinery,
task objects and wait-set rebuilds, ~15 % converting the message, ~10 % in rcl and Fast DDS).
Every 200 Hz subscription handled that way takes 8-17 % of a core. Most receivers only need what
arrived by their next tick: the chunk executor and the arbiter read ``joint_states`` (and the
arbiter ``ramp/policy_command``) once per 5 ms control tick, the model nodes read the newest
joint state when an inference starts. They take those messages from the DDS reader at that
moment, and the executor never wakes up for them.

How: the subscription belongs to a callback group that never lets an executor run it
(:class:`TakeOnlyGroup`: rclpy's executors leave such entities out of their wait sets), and
:class:`Intake` takes waiting messages with the subscription handle's ``take_message``, the call
rclpy's executors and ``wait_for_message`` make (the same in Humble and Jazzy). The reader's
KEEP_LAST history holds what arrived since the last take (its QoS depth: 10 for states, 5 for
commands, i.e. 25-50 ms at 200 Hz). Each message comes with its DDS receive time, so a receiver
that ages inputs sees the same times as with a callback.

:meth:`Intake.feed` takes and hands every message to a handler under the intake's lock; a node
that must order something after everything already received (a hold on its sender's exit) does
it inside :meth:`Intake.held` after a ``feed``, so no command taken before reaches the handler
after it.

Topic names, namespaces and remappings resolve as for any subscription of the node.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from rclpy.callback_groups import CallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile


class TakeOnlyGroup(CallbackGroup):
    """A callback group whose entities no executor runs: they are read by :class:`Intake`."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        return None


class Taken(NamedTuple):
    """A message taken from the reader and its receive time (wall clock s, DDS reception)."""

    msg: Any
    received_s: float


class Intake:
    """One topic read on demand: :meth:`take_all` (in arrival order) or :meth:`take_newest`.

    Thread-safe. After the node or the subscription is destroyed it yields nothing.
    """

    def __init__(
        self, node: Node, msg_type: Any, topic: str, qos: QoSProfile, *, raw: bool = False
    ) -> None:
        self._lock = threading.RLock()
        self._sub = node.create_subscription(
            msg_type, topic, _never_called, qos, callback_group=TakeOnlyGroup(), raw=raw
        )

    @property
    def topic_name(self) -> str:
        """The resolved topic name."""
        return self._sub.topic_name

    def take_all(self) -> list[Taken]:
        """Every message waiting since the last take, oldest first (at most the QoS depth)."""
        out: list[Taken] = []
        sub = self._sub
        with self._lock:
            try:
                with sub.handle:
                    while (item := sub.handle.take_message(sub.msg_type, sub.raw)) is not None:
                        out.append(Taken(item[0], _received_s(item[1])))
            except RuntimeError:  # rclpy's InvalidHandle: destroyed while shutting down
                pass
        return out

    def feed(self, handler: Callable[[Any, float], None]) -> int:
        """Take every waiting message and call ``handler(msg, received_s)`` for each, oldest
        first, all under the intake's lock; -> how many."""
        with self._lock:
            taken = self.take_all()
            for item in taken:
                handler(item.msg, item.received_s)
        return len(taken)

    def held(self) -> threading.RLock:
        """The intake's lock, as a context manager: while it is held no other thread takes or
        feeds (``with intake.held(): intake.feed(h); hold()``)."""
        return self._lock

    def take_newest(self) -> Taken | None:
        """The newest waiting message (older waiting ones are dropped), or None."""
        taken = self.take_all()
        return taken[-1] if taken else None


def _received_s(info: Any) -> float:
    stamp = info.get("received_timestamp") if isinstance(info, dict) else None
    return stamp * 1e-9 if stamp else time.time()


def _never_called(_msg: Any) -> None:  # pragma: no cover - TakeOnlyGroup keeps it from running
    raise AssertionError("an Intake subscription was dispatched by an executor")
