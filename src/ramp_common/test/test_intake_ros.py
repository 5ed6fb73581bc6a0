"""Intake: subscriptions read at the node's tick over real DDS, never dispatched by an executor,
in arrival order with their DDS receive times."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from ramp_common.intake import Intake

pytestmark = pytest.mark.ros

QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture
def nodes() -> Iterator[tuple[Node, Node]]:
    """(receiver, sender): two nodes in two contexts (two DDS participants)."""
    contexts = [Context(), Context()]
    for ctx in contexts:
        rclpy.init(context=ctx)
    receiver = Node("intake_receiver", context=contexts[0])
    sender = Node("intake_sender", context=contexts[1])
    yield receiver, sender
    for node, ctx in zip((receiver, sender), contexts, strict=True):
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _send(publisher, values: list[float]) -> float:
    """Publish one JointState per value and wait until the reader acknowledged them all
    (reliable QoS: they are in its history then); returns the wall time before the first."""
    start = time.time()
    for value in values:
        publisher.publish(JointState(name=["j"], position=[value]))
    assert publisher.wait_for_all_acked(Duration(seconds=10))
    return start


def _wait_matched(publisher, count: int = 2, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while publisher.get_subscription_count() < count and time.monotonic() < end:
        time.sleep(0.05)
    assert publisher.get_subscription_count() >= count, "subscriptions did not match"


def test_the_executor_never_runs_it_and_take_all_gives_every_message_in_order(nodes) -> None:
    receiver, sender = nodes
    intake = Intake(receiver, JointState, "intake_test", QOS)
    dispatched: list[float] = []
    receiver.create_subscription(
        JointState, "intake_test", lambda m: dispatched.append(m.position[0]), QOS
    )
    publisher = sender.create_publisher(JointState, "intake_test", QOS)
    _wait_matched(publisher)
    executor = SingleThreadedExecutor(context=receiver.context)
    executor.add_node(receiver)
    sent_at = _send(publisher, [1.0, 2.0, 3.0, 4.0, 5.0])
    end = time.monotonic() + 10.0
    while len(dispatched) < 5 and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)  # would raise if it dispatched the intake
    for _ in range(5):
        executor.spin_once(timeout_sec=0.01)
    assert dispatched == [1.0, 2.0, 3.0, 4.0, 5.0]  # the ordinary subscription beside it
    taken = intake.take_all()
    assert [t.msg.position[0] for t in taken] == [1.0, 2.0, 3.0, 4.0, 5.0]
    received = [t.received_s for t in taken]
    assert received == sorted(received)
    assert sent_at <= received[0] and received[-1] <= time.time()
    assert intake.take_all() == [] and intake.take_newest() is None
    assert intake.topic_name == "/intake_test"
    executor.shutdown()


def test_take_newest_drops_the_older_and_the_qos_depth_bounds_what_waits(nodes) -> None:
    receiver, sender = nodes
    intake = Intake(receiver, JointState, "intake_depth", QOS)
    publisher = sender.create_publisher(JointState, "intake_depth", QOS)
    _wait_matched(publisher, 1)
    _send(publisher, [float(i) for i in range(12)])
    newest = intake.take_newest()
    assert newest is not None and newest.msg.position[0] == 11.0
    assert intake.take_all() == []
    _send(publisher, [float(i) for i in range(12)])
    assert [t.msg.position[0] for t in intake.take_all()] == [float(i) for i in range(2, 12)]


def test_feed_hands_every_message_over_in_order_and_held_keeps_other_threads_out(nodes) -> None:
    receiver, sender = nodes
    intake = Intake(receiver, JointState, "intake_feed", QOS)
    publisher = sender.create_publisher(JointState, "intake_feed", QOS)
    _wait_matched(publisher, 1)
    sent_at = _send(publisher, [1.0, 2.0, 3.0])
    fed: list[tuple[float, float]] = []
    assert intake.feed(lambda msg, received_s: fed.append((msg.position[0], received_s))) == 3
    assert [value for value, _ in fed] == [1.0, 2.0, 3.0]
    assert all(sent_at <= received <= time.time() for _, received in fed)
    # while one thread holds it (a hold after its sender's exit), another cannot take or feed
    _send(publisher, [4.0])
    other: list[int] = []
    with intake.held():
        assert intake.feed(lambda *_: None) == 1  # the holder itself may (re-entrant)
        thread = threading.Thread(target=lambda: other.append(intake.feed(lambda *_: None)))
        thread.start()
        thread.join(0.2)
        assert thread.is_alive() and other == []
    thread.join(5.0)
    assert other == [0]


def test_after_the_node_is_destroyed_it_yields_nothing(nodes) -> None:
    receiver, _sender = nodes
    intake = Intake(receiver, JointState, "intake_gone", QOS)
    receiver.destroy_subscription(intake._sub)
    assert intake.take_all() == [] and intake.take_newest() is None
