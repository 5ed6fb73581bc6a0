"""The operator console in a real headless browser against the simulated stack (issue 13).

The whole sim stack runs as one process per node (as ``ros2 launch`` does), the console among
them; Debian's chromium, driven by selenium through chromium-driver, opens the page and the
operator works only through it (clicks and keyboard shortcuts). A probe node checks on the ROS
side what the page claims: the arbiter's mode, the arm's joint velocities, the recorded bag.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from ramp_common.qos import LATCHED_QOS, STATE_QOS
from ramp_hilr_teleop.core.bag_reader import EpisodeBag
from tests.rosutil import SIM_CONFIG, probe_node, processes, start_sim_stack, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "chromium and chromium-driver are not installed (scripts/setup.sh installs them with "
        "apt when run as root)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402  (only where a browser exists)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1500,1400",
]
WATCHDOG_S = 0.5  # sim_bridge command_timeout_s in sim.yaml
TASK = "push the cube onto the green pad"


@dataclass
class Probe:
    """What the test sees on the ROS side."""

    url: str = ""
    arbiter: list[str] = field(default_factory=list)
    velocities: list[tuple[float, np.ndarray]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == "operator_console":
                values = {kv.key: kv.value for kv in status.values}
                self.url = values.get("url", self.url)

    def on_arbiter(self, msg: String) -> None:
        with self.lock:
            self.arbiter.append(json.loads(msg.data)["state"])

    def on_joints(self, msg: JointState) -> None:
        with self.lock:
            self.velocities.append((time.monotonic(), np.abs(np.asarray(msg.velocity[:6]))))

    def mode(self) -> str:
        with self.lock:
            return self.arbiter[-1] if self.arbiter else ""

    def max_speed(self, since: float, until: float = float("inf")) -> float:
        with self.lock:
            v = [s for t, s in self.velocities if since <= t <= until]
        return float(np.max(v)) if v else float("nan")


@dataclass
class Console:
    driver: webdriver.Chrome
    probe: Probe
    episodes: Path
    artifacts: Path
    node: Node
    opened_at: float
    """time.monotonic() just before the page was requested (no frame can be sent earlier)."""

    def wait(self, condition, timeout_s: float, what: str):
        return WebDriverWait(self.driver, timeout_s, poll_frequency=0.1).until(
            lambda d: condition(d), message=f"page: {what}"
        )

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).text

    def key(self, keys: str) -> None:
        self.driver.find_element(By.TAG_NAME, "body").send_keys(keys)

    def click(self, element_id: str) -> None:
        self.driver.find_element(By.ID, element_id).click()

    def result_ok(self, command: str, timeout_s: float = 15.0) -> None:
        """Wait until the page lists a successful result of ``command``; fail on a failed one."""

        def listed(d) -> bool:
            items = d.find_elements(By.CSS_SELECTOR, f'#results li[data-command="{command}"]')
            if items and items[0].get_attribute("data-success") == "false":
                raise AssertionError(f"{command} failed: {items[0].text}")
            return bool(items)

        self.wait(listed, timeout_s, f"the result of {command}")

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        assert path.stat().st_size > 10_000
        return path


def console_config(tmp: Path) -> Path:
    config = yaml.safe_load(SIM_CONFIG.read_text())
    config["teleop_node"]["ros__parameters"]["keyboard"] = False
    config["episode_recorder"]["ros__parameters"].update(
        {"output_dir": str(tmp / "episodes"), "min_free_disk_mb": 50.0}
    )
    config["operator_console"]["ros__parameters"]["port"] = 0  # any free port; url in diagnostics
    path = tmp / "sim_console.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def chromium(tmp: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in HEADLESS_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp / 'chromium-profile'}")
    os.environ.setdefault("SE_AVOID_STATS", "true")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp / "chromedriver.log"))
    return webdriver.Chrome(service=service, options=options)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("console")
    probe = Probe()
    with processes(tmp) as procs, probe_node("console_test_probe") as node:
        start_sim_stack(procs, tmp, console_config(tmp))
        node.create_subscription(DiagnosticArray, "diagnostics", probe.on_diagnostics, 50)
        node.create_subscription(String, "ramp/arbiter_state", probe.on_arbiter, LATCHED_QOS)
        node.create_subscription(JointState, "joint_states", probe.on_joints, STATE_QOS)
        wait_for(lambda: bool(probe.url), 90, "the console's url in its diagnostics")
        driver = chromium(tmp)
        try:
            opened_at = time.monotonic()
            driver.get(probe.url)
            yield Console(driver, probe, tmp / "episodes", tmp, node, opened_at)
        finally:
            driver.quit()
            for proc in procs:
                assert proc.alive(), f"{proc.name} died: {proc.stderr()[-2000:]}"


def test_page_shows_live_camera_frames_and_node_health(console):
    c = console
    for camera in ("front", "wrist"):
        c.wait(
            lambda d, cam=camera: (
                int(d.find_element(By.ID, f"cam-{cam}").get_attribute("data-frames") or 0) >= 5
            ),
            90,
            f"frames of camera {camera}",
        )
        # data-frames counts a frame when its JPEG is handed to the <img>; naturalWidth reads 0
        # while that one decodes (a new frame every 0.1 s), so wait for a decoded one
        c.wait(
            lambda d, cam=camera: (
                d.execute_script(
                    "return document.querySelector(arguments[0]).naturalWidth", f"#cam-{cam} img"
                )
                == 320
            ),
            10,
            f"a JPEG of camera {camera} decoded in the browser at the camera's size (320)",
        )
    before = int(c.driver.find_element(By.ID, "cam-front").get_attribute("data-frames"))
    time.sleep(2.0)
    after = int(c.driver.find_element(By.ID, "cam-front").get_attribute("data-frames"))
    since_open = time.monotonic() - c.opened_at
    assert after - before >= 5, "frames keep coming (live, about 10 per second by default)"
    # Counted over the whole time since the page was opened: a browser stalled by a busy
    # machine receives the frames queued in its socket in a burst (24 in one 2 s window in a
    # CI run), but never more than the server sent at 10 fps (the camera sends 30).
    assert after <= 10 * since_open + 3, (after, since_open, "the 10 fps per-viewer limit")
    assert c.text("conn") == "connected"
    c.wait(lambda d: "/sim_bridge" in d.find_element(By.ID, "health").text, 30, "node health")
    c.wait(lambda d: "free disk" in d.find_element(By.ID, "recorder").text, 30, "recorder")
    c.screenshot("console_live")


def test_episode_with_takeover_is_recorded_with_its_label(console):
    c = console
    c.wait(lambda d: d.find_element(By.ID, "arbiter-state").text == "AUTONOMOUS", 60, "mode")
    task = c.driver.find_element(By.ID, "task-input")
    task.send_keys(TASK, Keys.ENTER)
    c.wait(lambda d: d.find_element(By.ID, "task-current").text == TASK, 15, "the task shown")

    c.click("btn-episode_start")
    c.result_ok("episode_start")
    c.wait(lambda d: "recording" in d.find_element(By.ID, "episode-status").text, 15, "recording")
    time.sleep(2.0)

    c.key("t")  # keyboard shortcut: take over
    c.result_ok("takeover")
    wait_for(lambda: c.probe.mode() == "CORRECTING", 10, "the arbiter to hand over (probe)")
    c.wait(lambda d: d.find_element(By.ID, "arbiter-state").text == "CORRECTING", 10, "mode")
    assert c.text("in-control") == "operator"
    time.sleep(2.0)
    c.screenshot("console_correcting")

    c.click("btn-handback")
    c.result_ok("handback")
    wait_for(lambda: c.probe.mode() == "AUTONOMOUS", 10, "the arbiter to take back (probe)")
    c.wait(lambda d: d.find_element(By.ID, "arbiter-state").text == "AUTONOMOUS", 10, "mode")
    time.sleep(2.0)

    c.key("y")  # keyboard shortcut: stop with success
    c.result_ok("episode_success")
    c.wait(lambda d: "success" in d.find_element(By.ID, "episode-status").text, 15, "label")
    segments = json.loads(c.driver.find_element(By.ID, "timeline").get_attribute("data-segments"))
    assert "CORRECTING" in segments and segments[-1] == "AUTONOMOUS", segments

    (bag,) = [p for p in c.episodes.iterdir() if p.is_dir()]
    with EpisodeBag(bag) as episode:
        meta = episode.meta
        assert meta.status == "complete" and meta.success is True and not meta.cancelled
        assert meta.task == TASK
        assert len(meta.interventions) == 1
        assert episode.header_stamps("camera/front/image_raw").size > 0
        assert episode.joint_series("joint_states").positions.shape[0] > 0


def test_estop_in_the_page_stops_the_arm_and_the_page_shows_it(console):
    c = console
    # a fresh scene gives the policy something to do: the arm moves when the e-stop comes
    reset = c.node.create_client(Trigger, "sim/reset")
    assert reset.wait_for_service(timeout_sec=10)
    future = reset.call_async(Trigger.Request())
    wait_for(future.done, 10, "sim/reset")
    wait_for(lambda: c.probe.max_speed(time.monotonic() - 0.3) > 0.05, 60, "the arm to move")
    assert c.driver.find_element(By.ID, "estop-banner").get_attribute("class") == "hidden"

    c.key(" ")  # space: E-STOP
    c.result_ok("estop", 5)
    engaged = time.monotonic()  # the bridge has answered: its e-stop is latched
    c.wait(lambda d: d.find_element(By.ID, "estop-banner").is_displayed(), 5, "the banner")
    c.wait(lambda d: d.find_element(By.ID, "arbiter-state").text == "ESTOP", 5, "mode ESTOP")
    time.sleep(WATCHDOG_S + 2.0)
    # decelerating at the acceleration limit takes < 0.2 s from full speed; within the
    # watchdog time the arm is still, and stays still
    profile = [
        round(c.probe.max_speed(engaged + t, engaged + t + 0.25), 4)
        for t in np.arange(-0.5, 2.5, 0.25)
    ]
    speed = c.probe.max_speed(engaged + WATCHDOG_S, time.monotonic())
    moving = c.probe.max_speed(engaged - 1.0, engaged)
    assert moving > 0.05, f"the arm was moving when the e-stop came ({moving:.3f} rad/s)"
    assert speed < 0.01, f"joint speed {speed:.4f} rad/s after the e-stop; per 0.25 s: {profile}"
    c.screenshot("console_estop")

    c.key("r")  # release asks for a confirmation first
    c.wait(lambda d: d.find_element(By.ID, "confirm-release").is_displayed(), 5, "confirm")
    time.sleep(0.5)
    assert c.driver.find_element(By.ID, "estop-banner").is_displayed(), "not released yet"
    c.key(Keys.ENTER)
    c.result_ok("estop_release")
    c.wait(lambda d: not d.find_element(By.ID, "estop-banner").is_displayed(), 5, "released")
    c.wait(lambda d: d.find_element(By.ID, "arbiter-state").text == "PAUSED", 5, "PAUSED")
