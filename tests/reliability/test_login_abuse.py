"""Login abuse against a real dashboard process (issue 17): concurrent guesses, memory, lockout of staff.

The dashboard runs as ``infusion-monitor dashboard`` in a subprocess on 127.0.0.1 with a real mosquitto; its
memory is read from /proc. Clients bind their sockets to other loopback addresses (127.0.0.2, 127.0.0.10 ...),
so the dashboard sees them as different client addresses, as it would see different machines.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.auth import UsersFile
from dashboard.throttle import PAIR_FREE_FAILURES
from tests.servers import Mosquitto, Server, free_port, wait_port

pytestmark = pytest.mark.integration
PASSWORD = "station password 1"
REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


class DashboardProcess(Server):
    """The real ``infusion-monitor dashboard`` in a subprocess."""

    name = "dashboard"

    def __init__(self, workdir: Path, mqtt_url: str, users_file: Path) -> None:
        super().__init__(workdir)
        self.port = free_port()
        self.mqtt_url = mqtt_url
        self.users_file = users_file

    def command(self) -> list[str]:
        return [sys.executable, "-m", "infusion_monitor", "dashboard", "--host", "127.0.0.1", "--port", str(self.port),
                "--mqtt-url", self.mqtt_url, "--store-url", f"sqlite:///{self.workdir / 'vitals.db'}",
                "--users-file", str(self.users_file)]

    def start(self) -> None:
        """Start the dashboard with the repository on PYTHONPATH and wait until it listens."""
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env)
        log.close()
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_port(self.port, 30, self.proc)

    def rss(self, field: str = "VmRSS") -> int:
        """Return the process's resident memory (or another /proc status field) in bytes."""
        assert self.proc is not None
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024  # type: ignore[union-attr]


@pytest.fixture
def dashboard(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[DashboardProcess]:
    users = tmp_path / "users.json"
    UsersFile(users).add("nurse.kim", "nurse", PASSWORD)
    process = DashboardProcess(tmp_path / "dashboard", mosquitto.url, users)
    process.start()
    yield process
    process.stop()


class Browserless:
    """One client of the dashboard from one source address: a cookie jar and the login form's token."""

    def __init__(self, port: int, source: str) -> None:
        self.port = port
        self.source = source
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120, source_address=(self.source, 0))
        try:
            sent = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), **(headers or {})}
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            for value in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return response.status, text, dict(response.headers)
        finally:
            conn.close()

    def open_form(self) -> str:
        """Fetch the sign-in form; return its CSRF token."""
        status, text, _ = self.request("GET", "/login")
        assert status == 200
        return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]

    def submit(self, token: str, user: str, password: str) -> int:
        """Post the sign-in form; return the status."""
        from urllib.parse import urlencode

        body = urlencode({"csrf": token, "username": user, "password": password, "next": "/"})
        return self.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})[0]


def burst(clients: list[Browserless], logins: list[tuple[str, str]], last_waits_for: int = 0) -> list[int]:
    """Post the sign-in forms all at once (the last one after ``last_waits_for`` answers); return the statuses."""
    tokens = [c.open_form() for c in clients]
    statuses: list[int | None] = [None] * len(clients)
    answered = threading.Semaphore(0)
    barrier = threading.Barrier(len(clients))

    def post(i: int) -> None:
        barrier.wait()
        if i == len(clients) - 1:
            for _ in range(last_waits_for):
                answered.acquire()
        statuses[i] = clients[i].submit(tokens[i], *logins[i])
        answered.release()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(s is not None for s in statuses)
    return statuses  # type: ignore[return-value]


def test_thirty_concurrent_logins_right_password_last_none_succeeds(dashboard: DashboardProcess) -> None:
    clients = [Browserless(dashboard.port, "127.0.0.2") for _ in range(30)]
    logins = [("nurse.kim", f"guess {i}") for i in range(29)] + [("nurse.kim", PASSWORD)]
    # The right password is sent once the limit is spent: after PAIR_FREE_FAILURES of the guesses were answered.
    statuses = burst(clients, logins, last_waits_for=PAIR_FREE_FAILURES)
    counts = Counter(statuses[:-1])
    print(f"\n30 concurrent logins from one address: guesses {dict(counts)}, right password last: {statuses[-1]}")
    assert statuses[-1] == 429  # the right password, past the limit: not signed in
    assert counts[401] <= PAIR_FREE_FAILURES and counts[429] >= 29 - PAIR_FREE_FAILURES and set(counts) <= {401, 429}
    # From the nurse's own station (another address) the same password works at once.
    station = Browserless(dashboard.port, "127.0.0.1")
    assert station.submit(station.open_form(), "nurse.kim", PASSWORD) == 303


def test_memory_stays_flat_under_forty_concurrent_unauthenticated_logins(dashboard: DashboardProcess) -> None:
    warm = Browserless(dashboard.port, "127.0.0.1")
    assert warm.submit(warm.open_form(), "nurse.kim", PASSWORD) == 303  # argon2 and the login path loaded
    time.sleep(1.0)
    idle = dashboard.rss()
    peak = idle
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, dashboard.rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    counts: Counter[int] = Counter()
    try:
        for wave in range(3):
            clients = [Browserless(dashboard.port, f"127.0.0.{10 + i}") for i in range(40)]
            counts.update(burst(clients, [(f"intruder{wave}-{i}", "not the password") for i in range(40)]))
    finally:
        done.set()
        sampler.join()
    print(f"\nRSS idle {idle / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB (+{(peak - idle) / MIB:.0f} MiB) over 3 waves of 40 "
          f"concurrent logins from 40 addresses: {dict(counts)}; VmHWM {dashboard.rss('VmHWM') / MIB:.0f} MiB")
    assert peak < idle + 300 * MIB
    assert counts[401] >= 3 and counts[429] >= 40 and set(counts) <= {401, 429}
    assert counts[401] <= 3 * 40 - counts[429]


def test_guesses_from_one_address_do_not_stop_a_login_from_another_nor_a_session(dashboard: DashboardProcess) -> None:
    station = Browserless(dashboard.port, "127.0.0.1")
    assert station.submit(station.open_form(), "nurse.kim", PASSWORD) == 303
    stop = threading.Event()
    attacker_statuses: Counter[int] = Counter()

    def attack() -> None:  # four parallel guessers on one address, for nurse.kim and sprayed names
        intruder = Browserless(dashboard.port, "127.0.0.2")
        i = 0
        while not stop.is_set():
            i += 1
            attacker_statuses[intruder.submit(intruder.open_form(), "nurse.kim" if i % 2 else f"x{i}", f"guess {i}")] += 1

    attackers = [threading.Thread(target=attack) for _ in range(4)]
    for t in attackers:
        t.start()
    session_statuses: Counter[int] = Counter()
    logins_elsewhere: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            session_statuses[station.request("GET", "/_dash-layout")[0]] += 1
            if len(logins_elsewhere) < 3 and attacker_statuses[429] > 20:
                other = Browserless(dashboard.port, f"127.0.0.{3 + len(logins_elsewhere)}")
                logins_elsewhere.append(other.submit(other.open_form(), "nurse.kim", PASSWORD))
            time.sleep(0.2)
    finally:
        stop.set()
        for t in attackers:
            t.join(60)
    print(f"\nattacker (4 threads, one address): {dict(attacker_statuses)}; station session: {dict(session_statuses)}; "
          f"nurse.kim from other addresses: {logins_elsewhere}")
    assert attacker_statuses[429] > 20  # the attacker was being throttled all along
    assert logins_elsewhere == [303, 303, 303]
    assert set(session_statuses) == {200} and sum(session_statuses.values()) > 20
