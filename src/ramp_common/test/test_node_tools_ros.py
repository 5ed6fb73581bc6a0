"""run_node ends a node cleanly on Ctrl-C, also when a callback is mid-publish at that moment.

rclpy's SIGINT handler shuts the context down from its own thread; a timer callback that is
already running then fails to publish ("publisher's context is invalid"). That race made
node processes exit 1 with a traceback on an ordinary Ctrl-C (seen as a flaky exit code).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

NODE_SCRIPT = """
import sys, time
from rclpy.node import Node
from std_msgs.msg import String
from ramp_common.node_tools import run_node

class Slow(Node):
    def __init__(self):
        super().__init__("slow_publisher")
        self.pub = self.create_publisher(String, "slow", 10)
        self.create_timer(0.05, self.tick)

    def tick(self):
        print("in callback", flush=True)
        # Stands for a callback busy in C code when Ctrl-C comes (a render, a DDS call): it
        # does not see the KeyboardInterrupt, and goes on to publish on the dead context.
        deadline = time.monotonic() + 10.0
        while self.context.ok() and time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except KeyboardInterrupt:
                pass
        self.pub.publish(String(data="late"))

raise SystemExit(run_node(Slow, sys.argv))
"""


def test_ctrl_c_during_a_publishing_callback_exits_zero(tmp_path: Path) -> None:
    script = tmp_path / "slow_node.py"
    script.write_text(NODE_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "in callback"
        time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
