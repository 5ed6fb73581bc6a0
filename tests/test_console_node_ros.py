"""operator_console as a node process over real DDS: refused bind, and live topics on demand."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from diagnostic_msgs.msg import DiagnosticArray

from tests.rosutil import NodeProcess, probe_node, processes, wait_for

pytestmark = pytest.mark.ros
MODULE = "ramp_operator_console.operator_console"


def test_non_loopback_without_token_refuses_to_start(tmp_path):
    with processes(tmp_path) as procs:
        proc = NodeProcess.module(MODULE, ["-p", "host:=0.0.0.0"], tmp_path, "console")
        procs.append(proc)
        assert proc.wait(60) == 1
        err = proc.stderr() + proc.stdout_path.read_text()
        assert "refusing to listen on '0.0.0.0' without a token" in err, err[-2000:]


def test_camera_and_joint_topics_are_subscribed_only_while_watched(tmp_path):
    url = {"value": ""}

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == "operator_console":
                url["value"] = next((kv.value for kv in status.values if kv.key == "url"), "")

    with processes(tmp_path) as procs, probe_node("console_node_probe") as probe:
        procs.append(NodeProcess.module(MODULE, ["-p", "port:=0"], tmp_path, "console"))
        probe.create_subscription(DiagnosticArray, "diagnostics", on_diag, 10)
        wait_for(lambda: bool(url["value"]), 60, "the console's url")

        def subscribers(topic: str) -> int:
            return probe.count_subscribers(topic)

        live = ("/camera/front/image_raw", "/camera/wrist/image_raw", "/joint_states")
        time.sleep(1.0)
        assert [subscribers(t) for t in live] == [0, 0, 0], "nobody watches: no subscription"
        assert subscribers("/ramp/arbiter_state") == 1

        async def watch(seconds: float) -> None:
            async with aiohttp.ClientSession() as s, s.ws_connect(url["value"] + "ws") as ws:
                hello = await ws.receive_json(timeout=10)
                assert hello["type"] == "hello"
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    await asyncio.sleep(0.2)
                    if all(subscribers(t) == 1 for t in live):
                        return
                raise AssertionError([subscribers(t) for t in live])

        asyncio.run(watch(15.0))
        # the viewer left: the live subscriptions go after the linger time (5 s)
        wait_for(lambda: all(subscribers(t) == 0 for t in live), 20, "the live topics dropped")
        assert procs[0].alive()
