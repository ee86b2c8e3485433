"""The compose stack rehearsed without Docker: every service of docker-compose.yml run on the host, as compose would.

No Docker engine runs on the CI machines, so this test does what `docker compose --profile demo up` would, on the
host (tests/deploy/rehearsal.py): it resolves docker-compose.yml with .env.example's variables and test secrets,
starts a real Mosquitto with the committed deploy/mosquitto (start.sh builds the password file, the ACLs apply)
and a real InfluxDB with authentication, creates the first dashboard admin as docs/deployment.md says, then runs
the ingest, the dashboard and the simulator with the image's entrypoint (deploy/check-secrets, then
`infusion-monitor`), each with its own `command` and `environment`, in the order of their `depends_on`.

It passes when every healthcheck passes, the simulated chair's readings are in the store, the dashboard shows
that chair's trend from the store, a login works, and an admin's limit edit is applied by the engine (published
on the chair's effective_limits topic) and drawn exactly so.

What differs from the real stack, and why:
- InfluxDB is 1.6.7 (2.x cannot be installed here). The store URL `influxdb2://influxdb:8086/vitals?org=...`
  becomes `influxdb://127.0.0.1:PORT/vitals`; INFUSION_INFLUX_TOKEN stays as compose sets it, its value in the
  1.x-compatible form `username:password` (docs/deployment.md, "Rehearsed without Docker").
- InfluxDB's healthcheck `influx ping` is a 2.x CLI command; its 1.x equivalent, GET /ping answering 204, is used.
- Services run as the invoking user, not uid 10001; they listen on 127.0.0.1 and free ports, not 0.0.0.0 and
  the container ports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from simulator.stream import chair_ids
from tests.deploy import helpers
from tests.deploy.rehearsal import (
    AuthInfluxd,
    HostService,
    InterpolationError,
    compose_env,
    health_deadline,
    interpolate,
    load_compose,
    mosquitto_health_command,
    wait_healthy,
)
from tests.servers import MqttCollector

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = helpers.REPO
DEPLOYMENT = REPO / "docs" / "deployment.md"
APP_SERVICES = ("ingest", "dashboard", "simulator")  # built from this repository (build: .)
# The test .env: every secret of .env.example, plus the simulator's for the demo profile. With InfluxDB 1.x the
# operator token is in the 1.x-compatible form username:password (rehearsal.AuthInfluxd makes that user).
SECRETS = {**helpers.SECRETS, "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": "svc-operator:operator-token-0123456789abcdef"}
ADMIN_PASSWORD = "charge nurse password 1"
SITE, CHAIR = "sim", chair_ids(1)[0]  # the simulator's site and first chair (clinic-day starts its session at once)
DATABASE = "vitals"  # the bucket of the influxdb service (DOCKER_INFLUXDB_INIT_BUCKET), a database on 1.x
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@dataclass
class Stack:
    """The running stack."""

    work: Path
    services: dict[str, Any]
    mosquitto: helpers.RepoMosquitto
    influxd: AuthInfluxd
    apps: dict[str, HostService] = field(default_factory=dict)
    admin: str = ""

    @property
    def dashboard_url(self) -> str:
        """Return the dashboard's URL on this host."""
        return f"http://127.0.0.1:{self.apps['dashboard'].port}"

    def logs(self) -> str:
        """Return the tail of every app service's log, for failure messages."""
        return "\n".join(f"--- {name}\n{app.log()[-1500:]}" for name, app in self.apps.items())


def documented_user_add() -> list[str]:
    """Return the arguments of the first-admin command in docs/deployment.md (after `run ... dashboard`)."""
    found = re.search(r"^\s*docker compose run --rm --no-deps dashboard (user add .+)$", DEPLOYMENT.read_text(), re.M)
    assert found, "docs/deployment.md no longer says how to create the first dashboard user"
    return found.group(1).split()


def start_order(services: dict[str, Any], healthy: set[str]) -> list[str]:
    """Return the app services in an order their depends_on allows (each waits for what it depends on)."""
    order: list[str] = []
    pending = [name for name in APP_SERVICES if name in services]
    while pending:
        ready = [n for n in pending if set(services[n].get("depends_on") or {}) <= healthy | set(order)]
        assert ready, f"depends_on cannot be satisfied: {pending}"
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def influx_ping(influxd: AuthInfluxd) -> subprocess.CompletedProcess[str]:
    """The 1.x equivalent of `influx ping` (a 2.x CLI command): GET /ping answers 204, without credentials."""
    try:
        with urllib.request.urlopen(f"{influxd.url}/ping", timeout=5) as resp:
            return subprocess.CompletedProcess(["GET /ping"], 0 if resp.status == 204 else 1, str(resp.status), "")
    except OSError as exc:
        return subprocess.CompletedProcess(["GET /ping"], 1, "", str(exc))


def mosquitto_healthcheck(stack_services: dict[str, Any], broker: helpers.RepoMosquitto) -> subprocess.CompletedProcess[str]:
    """Run the broker's compose healthcheck (mosquitto_sub as svc.health with start.sh's password)."""
    command = mosquitto_health_command(stack_services["mosquitto"], broker.auth, broker.port)
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Start the whole compose stack (profile demo) on the host; stop it after the module's tests."""
    services = load_compose(compose_env(SECRETS))["services"]
    # mosquitto drops to its own user when started as root (as in its container): the directories must be
    # traversable by it, which pytest's 0700 temporary directories are not.
    work = Path(tempfile.mkdtemp(prefix="compose-rehearsal-", dir="/tmp"))
    work.chmod(0o755)
    mosquitto_env = {k: str(v) for k, v in services["mosquitto"]["environment"].items()}
    broker = helpers.RepoMosquitto(work / "mosquitto", mosquitto_env, as_root=False)
    broker.workdir.chmod(0o755)
    influxd = AuthInfluxd(work / "influxd")
    stack = Stack(work, services, broker, influxd)
    # What RepoMosquitto runs is the service's entrypoint and command: start.sh, then mosquitto -c mosquitto.conf.
    assert services["mosquitto"]["entrypoint"] == ["/bin/sh", "/mosquitto/config/start.sh"]
    assert services["mosquitto"]["command"][1:] == ["-c", "/mosquitto/config/mosquitto.conf"]
    assert services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"] == DATABASE
    try:
        broker.start()  # start.sh: checks the secrets, builds the password file, execs mosquitto
        wait_healthy(lambda: mosquitto_healthcheck(services, broker), health_deadline(services["mosquitto"]), "mosquitto",
                     broker.proc, broker.log)
        # The influxdb service's entrypoint: check-secrets with its names, then the image's own entrypoint.
        entry = services["influxdb"]["entrypoint"]
        influx_env = {k: str(v) for k, v in services["influxdb"]["environment"].items()}
        check = helpers.run_sh(helpers.DEPLOY / "check-secrets", *entry[2:entry.index("--")], "--", "true", env=influx_env)
        assert check.returncode == 0, check.stderr
        influxd.start()
        influxd.setup(influx_env)
        wait_healthy(lambda: influx_ping(influxd), health_deadline(services["influxdb"]), "influxdb")
        hosts = {"mosquitto:1883": broker.port, "influxdb:8086": influxd.port}
        for name in APP_SERVICES:
            stack.apps[name] = HostService(name, services[name], work, hosts)

        # docs/deployment.md: the first admin, with `docker compose run --rm --no-deps dashboard user add ...`
        # (not a terminal: the password is the first line of stdin).
        args = documented_user_add()
        added = stack.apps["dashboard"].run(args, stdin=ADMIN_PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
        stack.admin = args[2]

        healthy = {"mosquitto", "influxdb"}
        for name in start_order(services, healthy):
            app = stack.apps[name]
            app.start()
            if (services[name].get("healthcheck") or {}).get("disable"):
                continue
            wait_healthy(app.healthcheck, health_deadline(services[name]), name, app.proc, app.log)
            healthy.add(name)
        yield stack
    finally:
        for app in reversed(list(stack.apps.values())):
            app.stop()
        influxd.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A real headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def sign_in(browser: Any, stack: Stack, path: str = "/") -> Any:
    """Open a dashboard page, get sent to the login page, sign in as the documented admin; return the page."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(stack.dashboard_url + path)
    assert "/login" in page.url
    page.fill("#username", stack.admin)
    page.fill("#password", ADMIN_PASSWORD)
    page.click("#login-submit")
    return page


def readings_stored(stack: Stack) -> int:
    """Return how many readings of the simulated chair the store holds (queried on influxd as its admin)."""
    return stack.influxd.count(f"SELECT count(\"n\") FROM \"vitals\" WHERE \"site\" = '{SITE}' AND \"chair\" = '{CHAIR}'",
                               db=DATABASE)


def trend_state(page: Any) -> dict[str, Any]:
    """Return the chair trend as drawn: points per trace, horizontal limit lines per y axis, the history note."""
    return page.evaluate("""() => {
        const plot = document.querySelector('#chair-trend .js-plotly-plot');
        const note = document.querySelector('#chair-history-note');
        const out = {points: 0, lines: {}, note: note ? note.innerText : null};
        if (!plot || !plot.data) return out;
        for (const trace of plot.data) {
            if (trace.mode && trace.mode.startsWith('lines') && trace.name) {
                out.points += (trace.y || []).filter(v => v !== null && v !== undefined).length;
            }
        }
        for (const shape of (plot.layout.shapes || [])) {
            if (shape.y0 === shape.y1 && String(shape.xref).endsWith('domain')) {
                (out.lines[shape.yref] = out.lines[shape.yref] || []).push(shape.y0);
            }
        }
        return out;
    }""")


# -- the tests -------------------------------------------------------------------------------------------

def test_the_rehearsal_resolves_the_file_as_docker_compose_does(tmp_path: Path) -> None:
    """Our interpolation gives each app service the command and environment `docker-compose config` gives it."""
    binary = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    assert Path(binary).exists(), "docker-compose is not installed: run scripts/test (it apt-installs docker-compose)"
    env_file = helpers.write_test_env(tmp_path / ".env", **SECRETS)
    result = subprocess.run([binary, "-f", str(REPO / "docker-compose.yml"), "--project-directory", str(REPO),
                             "--env-file", str(env_file), "--profile", "demo", "config"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    import yaml

    theirs = yaml.safe_load(result.stdout)["services"]
    services = load_compose(compose_env(SECRETS))["services"]
    for name in APP_SERVICES:
        ours = services[name]
        assert [str(a) for a in ours["command"]] == theirs[name]["command"], name
        assert {k: str(v) for k, v in ours["environment"].items()} == theirs[name]["environment"], name


def test_every_healthcheck_passes(stack: Stack) -> None:
    assert mosquitto_healthcheck(stack.services, stack.mosquitto).returncode == 0
    assert influx_ping(stack.influxd).returncode == 0
    for name in ("ingest", "dashboard"):
        result = stack.apps[name].healthcheck()
        assert result.returncode == 0, (name, result.stdout, stack.apps[name].log()[-2000:])
    # The simulator has no healthcheck (disabled in compose): it must at least still be running.
    assert stack.apps["simulator"].proc.poll() is None, stack.apps["simulator"].log()[-2000:]


def test_the_first_admin_is_created_before_the_stack_starts() -> None:
    """The dashboard refuses to start without its users file, so the guide must create the admin before `up`."""
    for text in (DEPLOYMENT.read_text(), (REPO / "README.md").read_text()):
        assert text.index("dashboard user add charge.nurse") < text.index("docker compose up -d --build")


def wait_for_readings(stack: Stack, at_least: int = 5, timeout: float = 20.0) -> int:
    """Wait until the store holds some readings of the simulated chair (1 Hz in real time); return how many."""
    deadline = time.monotonic() + timeout
    while (stored := readings_stored(stack)) < at_least and time.monotonic() < deadline:
        time.sleep(1.0)
    return stored


def test_simulated_readings_are_stored(stack: Stack) -> None:
    assert wait_for_readings(stack) >= 5, stack.logs()


def test_a_login_works(stack: Stack, browser: Any) -> None:
    page = sign_in(browser, stack)
    page.wait_for_selector("#overview", timeout=20_000)
    page.wait_for_selector(f"#tile-{SITE}--{CHAIR}[data-mode='live']", timeout=20_000)  # live from MQTT
    page.close()


def test_a_login_is_recorded_in_the_audit_trail(stack: Stack, browser: Any) -> None:
    page = sign_in(browser, stack)
    page.wait_for_selector("#overview", timeout=20_000)
    page.close()
    query = f"SELECT count(\"user\") FROM \"audit\" WHERE \"action\" = 'login' AND \"user\" = '{stack.admin}'"
    deadline = time.monotonic() + 10
    while (logins := stack.influxd.count(query, db=DATABASE)) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert logins >= 1, stack.logs()


def test_the_dashboard_shows_the_chair_trend_from_the_store(stack: Stack, browser: Any) -> None:
    wait_for_readings(stack)
    page = sign_in(browser, stack, f"/chair/{SITE}/{CHAIR}")
    page.wait_for_selector("#chair-trend", timeout=20_000)
    deadline = time.monotonic() + 30
    state = trend_state(page)
    while time.monotonic() < deadline and not state["points"] and not state["note"]:
        time.sleep(0.5)
        state = trend_state(page)
    assert not state["note"], f"{state['note']}\n{stack.logs()}"
    assert state["points"] > 0, state
    page.close()


def test_an_admin_limit_edit_is_applied_by_the_engine_and_drawn(stack: Stack, browser: Any) -> None:
    from dashboard.figures import PANELS

    password = SECRETS["MQTT_DASHBOARD_PASSWORD"]
    topic = f"clinic/{SITE}/chair/{CHAIR}/effective_limits"
    published = MqttCollector(stack.mosquitto.url("svc.dashboard", password), topic)
    try:
        page = sign_in(browser, stack, f"/chair/{SITE}/{CHAIR}")
        field = page.locator("""#limits-panel input[id*='"vital":"hr"'][id*='"name":"low_high"']""")
        field.wait_for(timeout=20_000)
        new = 37.0 if float(field.input_value() or 0) != 37.0 else 38.0
        field.fill(f"{new:g}")
        field.press("Enter")
        page.click("#limits-save")  # first the what-if, answered by the ingest through the deployed ACLs
        page.wait_for_selector("#whatif-box #whatif-current", timeout=20_000)
        page.click("#limits-save")
        page.wait_for_function("() => document.querySelector('#limits-feedback').innerText.startsWith('Saved')"
                               " || document.querySelector('#limits-feedback').innerText.startsWith('Not')",
                               timeout=10_000)
        feedback = page.locator("#limits-feedback").inner_text()
        assert feedback.startswith("Saved"), feedback  # published and recorded in the audit trail (the store)

        assert published.wait_for(lambda c: any(applied(p, new) for p in c.payloads()), timeout=20), (
            f"the ingest did not publish the edit on {topic}: {published.payloads()[-1:]}\n{stack.logs()}")
        engine = json.loads(next(p for p in reversed(published.payloads()) if applied(p, new)))
        assert {"site", "chair", "ts", "limits"} <= set(engine), engine
        assert (engine["site"], engine["chair"]) == (SITE, CHAIR)
        expected: dict[str, list[float]] = {}
        for row, (_title, _vitals, limit_vital) in enumerate(PANELS, start=1):
            axis = "y" if row == 1 else f"y{row}"
            for vital in (limit_vital, "dia") if limit_vital == "sys" else (limit_vital,):
                expected.setdefault(axis, []).extend(engine["limits"].get(vital, {}).values())
        expected = {axis: sorted(values) for axis, values in expected.items() if values}
        drawn: dict[str, list[float]] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page.reload()
            page.wait_for_selector("#chair-trend .js-plotly-plot", timeout=20_000)
            time.sleep(1.0)
            drawn = {axis: sorted(values) for axis, values in trend_state(page)["lines"].items()}
            if drawn == expected:
                break
        assert drawn == expected, "the chart does not draw exactly the limits the engine published"
        page.close()
    finally:
        published.close()


def applied(payload: bytes, value: float) -> bool:
    """Return whether an effective_limits payload carries the edited HR low_high."""
    return json.loads(payload or b"{}").get("limits", {}).get("hr", {}).get("low_high") == value


def test_the_dashboard_is_served_by_a_production_server(stack: Stack) -> None:
    with urllib.request.urlopen(stack.dashboard_url + "/login", timeout=5) as resp:
        server = resp.headers.get("Server", "")
    assert "werkzeug" not in server.lower(), server


def test_compose_stop_ends_every_service_cleanly_within_its_grace_period(stack: Stack) -> None:
    """`docker compose stop` sends SIGTERM and kills after stop_grace_period: each service must exit 0 before that.

    Runs last: it stops the stack.
    """
    for name in reversed(start_order(stack.services, {"mosquitto", "influxdb"})):
        app = stack.apps[name]
        assert app.proc is not None and app.proc.poll() is None, f"{name} is not running:\n{app.log()[-2000:]}"
        app.proc.terminate()
        try:
            code = app.proc.wait(app.grace_s())
        except subprocess.TimeoutExpired:
            app.proc.kill()
            raise AssertionError(f"{name} still running {app.grace_s():g} s after SIGTERM: compose would kill it") from None
        assert code == 0, f"{name} exited with {code}:\n{app.log()[-2000:]}"


def test_interpolation_follows_compose() -> None:
    env = {"SET": "value", "EMPTY": ""}
    assert interpolate("${SET} $SET ${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$SET ${SET:+alt} ${EMPTY:+alt}", env) == \
        "value value value d  d $SET alt "
    assert interpolate("${UNSET}", env) == ""
    for text in ("${UNSET:?say why}", "${EMPTY:?say why}", "${UNSET?say why}"):
        with pytest.raises(InterpolationError, match="say why"):
            interpolate(text, env)
    assert interpolate("${EMPTY?fine}", env) == ""


def test_the_documented_1x_mapping_is_the_one_the_rehearsal_makes(tmp_path: Path) -> None:
    services = load_compose(compose_env(SECRETS))["services"]
    ingest = HostService("ingest", services["ingest"], tmp_path, {"mosquitto:1883": 1, "influxdb:8086": 2})
    env = ingest.environment()
    assert services["ingest"]["environment"]["INFUSION_STORE_URL"].startswith("influxdb2://influxdb:8086/vitals?org=")
    assert env["INFUSION_STORE_URL"] == "influxdb://127.0.0.1:2/vitals"
    assert env["INFUSION_INFLUX_TOKEN"] == SECRETS["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]  # kept as compose sets it
    assert env["INFUSION_MQTT_URL"] == f"mqtt://svc.ingest:{SECRETS['MQTT_INGEST_PASSWORD']}@127.0.0.1:1"
    assert env["INFUSION_DATA_DIR"] == str(ingest.data)
    assert "`influxdb://127.0.0.1:PORT/vitals`" in DEPLOYMENT.read_text()
