"""Run the services of docker-compose.yml on the host, as their containers would (tests/deploy/test_rehearsal.py).

No Docker engine runs on the CI machines. This module reads docker-compose.yml, resolves it the way compose
does (variable interpolation from an .env file), and runs each service built from this repository with the
image's entrypoint, the service's `command` and its `environment`. Only what a container supplies is mapped:
the service hostnames `mosquitto` and `influxdb` become 127.0.0.1 and the ports chosen for this run, container
paths (/data, /mosquitto/...) become temporary directories. Every other value is used as compose resolves it.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.helpers import REPO, env_example
from tests.servers import Influxd, Server, free_port

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"

# One ${...} or $NAME or $$ of the Compose interpolation syntax (https://docs.docker.com/compose/how-tos/environment-variables/variable-interpolation/).
_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                       r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")


class InterpolationError(ValueError):
    """A ${VAR:?message} whose variable is missing: compose refuses the file with that message."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """Return text with ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?msg}, ${VAR?msg}, ${VAR:+alt}, $VAR, $$ resolved."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if missing else str(value)
        if op in (":?", "?"):
            if missing:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if missing else arg
        return "" if value is None else value

    return _VARIABLE.sub(one, text)


def resolve(node: Any, env: dict[str, str]) -> Any:
    """Return a parsed compose document with every string interpolated (compose interpolates values, not keys)."""
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def compose_env(secrets: dict[str, str]) -> dict[str, str]:
    """Return the variables of .env.example with the secrets replaced (what an operator's .env holds)."""
    example = env_example()
    placeholders = {name for name, value in example.items() if value == "change-me"}
    if not placeholders <= set(secrets):
        raise AssertionError(f"secrets of .env.example without a test value: {sorted(placeholders - set(secrets))}")
    for name, value in secrets.items():
        if len(value) < 16 or "change-me" in value:
            raise AssertionError(f"the test value of {name} would be refused: 16 characters at least, no placeholder")
    return {**example, **secrets}


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    """Return docker-compose.yml resolved with these variables (profiles are not applied: every service is there)."""
    return resolve(yaml.safe_load(COMPOSE.read_text()), env)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Return the Dockerfile's (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def image_env() -> dict[str, str]:
    """Return the ENV the image sets (Dockerfile ENV instructions, KEY=VALUE form)."""
    env: dict[str, str] = {}
    for word, rest in dockerfile_instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def image_entrypoint() -> list[str]:
    """Return the image's ENTRYPOINT (exec form)."""
    entries = [json.loads(rest) for word, rest in dockerfile_instructions() if word == "ENTRYPOINT"]
    assert entries, "the Dockerfile has no ENTRYPOINT"
    return entries[-1]


def image_installs() -> dict[str, Path]:
    """Return the image's installed paths -> the repository files they come from (`install -m MODE SRC DEST`)."""
    found: dict[str, Path] = {}
    for word, rest in dockerfile_instructions():
        if word == "RUN":
            for command in re.split(r"&&|;", rest):
                words = shlex.split(command)
                if words[:1] == ["install"] and "-m" in words and len(words) >= 4:
                    found[words[-1]] = REPO / words[-2]
    return found


def duration_s(text: str) -> float:
    """Return seconds of a compose duration such as 10s, 1m30s."""
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def health_deadline(service: dict[str, Any]) -> float:
    """Return how long compose gives a service to become healthy: start_period + retries x interval."""
    check = service.get("healthcheck") or {}
    return duration_s(check.get("start_period", "0s")) + int(check.get("retries", 3)) * duration_s(check.get("interval", "30s"))


class AuthInfluxd(Influxd):
    """InfluxDB 1.x with authentication on, initialised as the compose `influxdb` service initialises 2.x.

    InfluxDB 2.x cannot be installed here. The 1.x equivalents of the 2.x setup mode: the initial admin user
    (DOCKER_INFLUXDB_INIT_USERNAME/PASSWORD) is a 1.x admin user; the operator token (DOCKER_INFLUXDB_INIT_ADMIN_TOKEN)
    is, in the 1.x-compatibility form InfluxDB 1.8+ and 2.x accept, `username:password` of a second user with all
    privileges; the bucket with its retention is a database with that retention (the DBRP mapping 10-dbrp.sh
    makes on 2.x is what a 1.x database is already).
    """

    name = "influxd"

    def command(self) -> list[str]:
        # Authentication on with no user yet: setup() creates the users as the 2.x setup mode would.
        command = super().command()
        conf = self.workdir / "influxdb.conf"
        conf.write_text(conf.read_text().replace("auth-enabled = false", "auth-enabled = true", 1))
        return command

    def influxql(self, query: str, credentials: tuple[str, str] | None, db: str = "") -> tuple[int, dict]:
        """Run InfluxQL over HTTP (basic auth when given); return (status, decoded JSON)."""
        fields = {"q": query, "epoch": "ms", **({"db": db} if db else {})}
        headers = {}
        if credentials:
            headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        request = urllib.request.Request(f"{self.url}/query", data=urllib.parse.urlencode(fields).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def setup(self, env: dict[str, str]) -> None:
        """Do the 1.x equivalent of DOCKER_INFLUXDB_INIT_MODE=setup with the influxdb service's environment."""
        admin = (env["DOCKER_INFLUXDB_INIT_USERNAME"], env["DOCKER_INFLUXDB_INIT_PASSWORD"])
        token_user = tuple(env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"].split(":", 1))
        assert len(token_user) == 2, "a 1.x token is username:password"
        self.admin = admin
        # With auth on and no user yet, 1.x accepts exactly this statement without credentials.
        statements = [(f"CREATE USER \"{admin[0]}\" WITH PASSWORD '{admin[1]}' WITH ALL PRIVILEGES", None),
                      (f"CREATE USER \"{token_user[0]}\" WITH PASSWORD '{token_user[1]}' WITH ALL PRIVILEGES", admin)]
        retention = env.get("DOCKER_INFLUXDB_INIT_RETENTION", "0")
        duration = "INF" if retention in ("", "0") else retention
        statements.append((f"CREATE DATABASE \"{env['DOCKER_INFLUXDB_INIT_BUCKET']}\" WITH DURATION {duration}", admin))
        for statement, credentials in statements:
            status, body = self.influxql(statement, credentials)
            assert status == 200 and "error" not in json.dumps(body), (statement.split(" WITH")[0], status, body)

    def count(self, query: str, db: str) -> int:
        """Return the first value of a count query, read as the admin user (0 when there is no series)."""
        status, body = self.influxql(query, self.admin, db)
        assert status == 200, body
        series = body["results"][0].get("series") or []
        return int(series[0]["values"][0][1]) if series else 0


class HostService(Server):
    """One service of docker-compose.yml built from this repository, run on the host as its container runs it."""

    def __init__(self, name: str, service: dict[str, Any], workdir: Path, hosts: dict[str, int]) -> None:
        self.name = name
        super().__init__(workdir / name)
        self.service = service
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.hosts = hosts  # "host:port" on the compose network -> port on 127.0.0.1
        # The port the service listens on inside its container (its HEALTHCHECK_URL), moved to a free one here.
        health = (service.get("environment") or {}).get("HEALTHCHECK_URL")
        self.own_port = urllib.parse.urlsplit(health).port if health else None
        self.port = free_port() if self.own_port else None

    def on_host(self, value: str) -> str:
        """Return a command argument or environment value with the container's names mapped to this host."""
        # 2.x -> 1.x: the store URL names the same database on the 1.x server (docs/deployment.md says what differs).
        value = re.sub(r"influxdb2://influxdb:8086/([^?]+)\?org=[^&]*", r"influxdb://influxdb:8086/\1", value)
        for target, port in self.hosts.items():
            value = value.replace(f"@{target}", f"@127.0.0.1:{port}").replace(f"//{target}", f"//127.0.0.1:{port}")
        if self.own_port:
            own = str(self.own_port)
            value = str(self.port) if value == own else re.sub(rf"(?<=127\.0\.0\.1:){own}(?![0-9])", str(self.port), value)
        # In a container 0.0.0.0 is the container's own interface; on the host it would be every interface.
        value = "127.0.0.1" if value == "0.0.0.0" else value
        return re.sub(r"^/data(?=/|$)", str(self.data), value)

    def environment(self) -> dict[str, str]:
        """Return the process environment: the image's ENV, what a container adds, the service's environment."""
        env = {key: self.on_host(value) for key, value in image_env().items()}
        env |= {
            # The image's PATH has python and infusion-monitor in /usr/local/bin; here they are the venv's.
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.data),  # the image's user has /data as its home
            "LANG": "C.UTF-8",  # set by the python image
        }
        env |= {key: self.on_host(str(value)) for key, value in (self.service.get("environment") or {}).items()}
        return env

    def argv(self, command: list[str] | None = None) -> list[str]:
        """Return the image's entrypoint with the service's command (or the given one, as `compose run` does)."""
        installed = image_installs()
        argv: list[str] = []
        for word in image_entrypoint():
            if word == "check-secrets":
                source = installed.get("/usr/local/bin/check-secrets")
                assert source is not None, "the image does not install deploy/check-secrets"
                argv += ["/bin/sh", str(source)]
            elif word == "infusion-monitor":
                binary = Path(sys.executable).parent / "infusion-monitor"
                assert binary.exists(), f"{binary} is missing: install the package (scripts/test does)"
                argv.append(str(binary))
            else:
                argv.append(word)
        return argv + [self.on_host(str(word)) for word in (command if command is not None else self.service["command"])]

    def run(self, command: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run a one-off command in the service's environment (`docker compose run --rm --no-deps SERVICE ...`)."""
        return subprocess.run(self.argv(command), env=self.environment(), cwd=self.data, input=stdin, text=True,
                              capture_output=True, timeout=60)

    def start(self) -> None:
        """Start the service's command (WORKDIR /data)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.argv(), env=self.environment(), cwd=self.data, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()

    def grace_s(self) -> float:
        """Return how long `docker compose stop` waits after SIGTERM before it kills (stop_grace_period, default 10 s)."""
        return duration_s(self.service.get("stop_grace_period", "10s"))

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """Run the service's compose healthcheck command (CMD form) with its environment."""
        test = self.service["healthcheck"]["test"]
        assert test[0] == "CMD", test
        installed = image_installs()
        argv = [sys.executable if word == "python" else str(installed.get(word, word)) for word in test[1:]]
        return subprocess.run(argv, env=self.environment(), capture_output=True, text=True, timeout=30)


def wait_healthy(check: Any, deadline_s: float, what: str, proc: subprocess.Popen | None = None,
                 log: Any = None) -> None:
    """Run a healthcheck every second until it passes; fail after compose would have called the service unhealthy."""
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}:\n{log() if log else ''}"[-4000:])
        result = check()
        if result.returncode == 0:
            return
        last = (result.stdout + result.stderr).strip()
        time.sleep(1.0)
    raise AssertionError(f"{what} not healthy within {deadline_s:g} s: {last}\n{log() if log else ''}"[-4000:])


def mosquitto_health_command(service: dict[str, Any], auth_dir: Path, port: int) -> str:
    """Return the broker's CMD-SHELL healthcheck with its container paths and port mapped."""
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL", test
    return test[1].replace("/mosquitto/auth/", f"{auth_dir}/").replace("-p 1883", f"-p {port}")
