"""`infusion-monitor demo` as a user runs it: a subprocess that prints the dashboard URL, serves live chairs,
and leaves nothing running after Ctrl-C (SIGINT).

The browser test opens the printed URL in a real headless Chromium (system /usr/bin/chromium through
Playwright) and waits for a simulated chair's tile to show a live heart rate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infusion_monitor.broker import port_open
from infusion_monitor.demo import simulated_start_ms

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT_S = 90.0  # generous: a shared 2-core machine


@dataclass
class DemoProcess:
    """A running `python -m infusion_monitor demo` and what it printed."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until a printed line matches ``pattern``; fail with the output when it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no line matching {pattern!r}; output:\n" + "".join(self.lines[-60:]))

    def ports(self) -> dict[str, int]:
        """Return the dashboard, broker and ingest health ports from the banner."""
        return {
            "dashboard": int(self.wait_for(r"Dashboard:\s+http://127\.0\.0\.1:(\d+)", 5).group(1)),
            "broker": int(self.wait_for(r"Broker:\s+mqtt://demo@127\.0\.0\.1:(\d+)", 5).group(1)),
            "ingest": int(self.wait_for(r"Ingest:\s+http://127\.0\.0\.1:(\d+)/healthz", 5).group(1)),
        }

    def interrupt(self, timeout: float = 60.0) -> int:
        """Send SIGINT (Ctrl-C) and return the exit status."""
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("the demo did not stop within a minute of Ctrl-C:\n" + "".join(self.lines[-60:]))


def start_demo(*args: str, command: list[str] | None = None, pythonpath: Path = REPO, cwd: Path = REPO,
               env: dict[str, str] | None = None) -> DemoProcess:
    """Start the demo as a user would (by default from this repository, importable on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = command or [sys.executable, "-m", "infusion_monitor"]
    proc = subprocess.Popen([*command, "demo", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    demo = DemoProcess(proc)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            demo.lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return demo


@pytest.fixture
def demo_factory() -> Iterator:  # type: ignore[type-arg]
    started: list[DemoProcess] = []

    def make(*args: str, **how: object) -> DemoProcess:
        demo = start_demo(*args, **how)  # type: ignore[arg-type]
        started.append(demo)
        return demo

    yield make
    for demo in started:
        if demo.proc.poll() is None:
            demo.proc.kill()
            demo.proc.wait(10)


def readings_stored(data_dir: Path) -> int:
    """Return how many readings the demo's SQLite store holds."""
    from vitals.store import open_store

    store = open_store(f"sqlite:///{data_dir / 'vitals.db'}")
    try:
        return store.count_readings()
    finally:
        store.close()


def processes_mentioning(text: str) -> list[str]:
    """Return the command lines of live processes that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline and str(os.getpid()) != entry.name:
                found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.integration
@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
def test_demo_serves_live_chairs_and_ctrl_c_leaves_nothing_running(demo_factory, tmp_path: Path, broker: str) -> None:  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "demo-data"
    # A production shell's settings must not leak into the demo: another site, real notification targets.
    hostile = {"INFUSION_SITE": "elsewhere", "INFUSION_TOPIC_PREFIX": "other",
               "INFUSION_NOTIFY__URLS": '["json://127.0.0.1:9/must-not-be-called"]',
               "INFUSION_DASHBOARD_HOST": "0.0.0.0", "INFUSION_DASHBOARD_USERS_FILE": str(tmp_path / "none.json"),
               "INFUSION_STORE_URL": "influxdb2://127.0.0.1:9/x?org=o"}
    demo = demo_factory("--chairs", "3", "--data-dir", str(data_dir), "--broker", broker, env=hostile)
    url = demo.wait_for(r"Dashboard:\s+(http://127\.0\.0\.1:\d+)", START_TIMEOUT_S).group(1)
    assert any("no login" in line for line in demo.lines)
    ports = demo.ports()
    with urllib.request.urlopen(url + "/", timeout=10) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['ingest']}/healthz", timeout=10) as resp:
        assert resp.status == 200
    deadline = time.monotonic() + 30
    while readings_stored(data_dir) == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert readings_stored(data_dir) > 0, "".join(demo.lines[-40:])
    assert not [line for line in demo.lines if "ts_future" in line or "in the future" in line]

    assert demo.interrupt() == 0, "".join(demo.lines[-40:])
    assert any("demo stopped" in line for line in demo.lines)
    for name, port in ports.items():
        assert not port_open("127.0.0.1", port), f"{name} port {port} still open"
    assert processes_mentioning(str(data_dir)) == []
    assert not [line for line in demo.lines if "Traceback" in line], "".join(demo.lines)


@pytest.mark.integration
def test_a_taken_dashboard_port_fails_cleanly(demo_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = demo_factory("--port", str(port), "--data-dir", str(tmp_path / "d"))
        assert demo.proc.wait(60) == 1
    assert any(str(port) in line and "not available" in line for line in demo.lines), demo.lines
    assert processes_mentioning(str(tmp_path / "d")) == []


@pytest.mark.integration
def test_a_kept_data_dir_keeps_its_alarm_state_across_runs(demo_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Each run's embedded broker listens on a new free port; the demo names it, so its state stays its own.
    from tests.servers import free_port

    data_dir = tmp_path / "demo-data"
    first_port = free_port()
    ports = [first_port, next(p for p in iter(free_port, None) if p != first_port)]
    for run, port in enumerate(ports):
        demo = demo_factory("--chairs", "2", "--data-dir", str(data_dir), "--broker-port", str(port))
        demo.wait_for(r"Dashboard:\s+http://", START_TIMEOUT_S)
        assert demo.ports()["broker"] == port
        if run == 0:
            deadline = time.monotonic() + 30
            while readings_stored(data_dir) == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
        else:
            restored = demo.wait_for(r"(\d+) chairs restored", 5)
            assert int(restored.group(1)) == 2, "".join(demo.lines[-40:])
        assert demo.interrupt() == 0, "".join(demo.lines[-40:])
    assert not [line for line in demo.lines if "Refusing" in line or "Traceback" in line], "".join(demo.lines)
    assert json.loads((data_dir / "alarm_state.json").read_text())["origin"]["broker"] == "demo-embedded-broker"


def browser_sees_live_values(url: str, screenshot: Path) -> str:
    """Open the demo's dashboard in headless Chromium; wait for a chair's live heart rate and return it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.goto(url + "/")
            assert "/login" not in page.url  # the demo runs without login, and says so
            live = page.locator("[id^='tile-demo--'][data-mode='live'] .num-hr .num-value").first
            live.wait_for(timeout=60_000)
            page.screenshot(path=str(screenshot))
            return live.inner_text()
        finally:
            browser.close()


@pytest.mark.integration
@pytest.mark.browser
def test_a_real_browser_shows_live_values(demo_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = demo_factory("--chairs", "2", "--data-dir", str(tmp_path / "demo-data"))
    url = demo.wait_for(r"Dashboard:\s+(http://127\.0\.0\.1:\d+)", START_TIMEOUT_S).group(1)
    try:
        assert re.fullmatch(r"\d{2,3}", browser_sees_live_values(url, tmp_path / "demo.png"))
    finally:
        assert demo.interrupt() == 0


def test_a_fast_run_never_publishes_into_the_future() -> None:
    now = 1_800_000_000_000
    assert simulated_start_ms(3600, 1.0, now) is None
    assert simulated_start_ms(3600, 0.5, now) is None
    start = simulated_start_ms(3600, 10.0, now)
    assert start is not None
    # The simulated clock at real time t is start + speed * t; the run lasts 3600 / speed real seconds.
    for t in (0, 60, 180, 359.9, 360):
        assert start + 10.0 * t * 1000 <= now + t * 1000
    assert simulated_start_ms(3600, 0, now) == now - 3_600_000  # as fast as possible: the whole span in the past
