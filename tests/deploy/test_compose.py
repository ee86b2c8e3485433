"""docker-compose.yml, .env.example and the Dockerfile, validated without a Docker engine.

`docker-compose config` (Debian's docker-compose 1.29, installed by scripts/test) reads the file with the
real Compose schema and interpolation: it knows profiles and depends_on conditions (the mutation tests
below prove it rejects bad ones), so a pass means something. The Dockerfile is checked against scripts/test,
so the image installs the package the way CI does.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.helpers import DEPLOY, REPO, SECRETS, env_example, run_sh, write_test_env

COMPOSE = REPO / "docker-compose.yml"
LONG_RUNNING = ("mosquitto", "influxdb", "ingest", "dashboard")


def compose(*args: str, env_file: Path, compose_file: Path = COMPOSE) -> subprocess.CompletedProcess[str]:
    """Run Debian's docker-compose against a compose file and an env file."""
    binary = shutil.which("docker-compose") or "/usr/bin/docker-compose"
    if not Path(binary).exists():
        pytest.fail("docker-compose is not installed: run scripts/test (it apt-installs docker-compose)")
    return subprocess.run([binary, "-f", str(compose_file), "--project-directory", str(REPO), "--env-file",
                           str(env_file), *args], capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Return `docker-compose config` of the committed file with a test .env, as a dict."""
    env = write_test_env(tmp_path_factory.mktemp("env") / ".env")
    result = compose("config", env_file=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_config_validates_with_the_test_env(resolved: dict) -> None:
    assert set(resolved["services"]) == {*LONG_RUNNING, "simulator", "hl7-export"}
    assert set(resolved["volumes"]) == {"mosquitto-data", "influxdb-data", "influxdb-config", "ingest-data",
                                        "dashboard-data", "hl7-data"}


def test_secrets_reach_the_services_only_through_env_interpolation(resolved: dict) -> None:
    raw = COMPOSE.read_text()
    for value in SECRETS.values():
        assert value not in raw
    services = resolved["services"]
    ingest_env = services["ingest"]["environment"]
    assert ingest_env["INFUSION_MQTT_URL"] == f"mqtt://svc.ingest:{SECRETS['MQTT_INGEST_PASSWORD']}@mosquitto:1883"
    assert ingest_env["INFUSION_INFLUX_TOKEN"] == SECRETS["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert ingest_env["INFUSION_STORE_URL"] == "influxdb2://influxdb:8086/vitals?org=clinic"
    assert services["dashboard"]["environment"]["INFUSION_MQTT_URL"].startswith(
        f"mqtt://svc.dashboard:{SECRETS['MQTT_DASHBOARD_PASSWORD']}@")
    influx_env = services["influxdb"]["environment"]
    assert influx_env["DOCKER_INFLUXDB_INIT_BUCKET"] == "vitals"
    assert influx_env["DOCKER_INFLUXDB_INIT_RETENTION"] == "90d"
    assert influx_env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == SECRETS["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    # No service gets the whole .env: the ingest never sees the InfluxDB admin password or other users' passwords.
    for name, service in services.items():
        assert "env_file" not in service, name
    assert SECRETS["DOCKER_INFLUXDB_INIT_PASSWORD"] not in str(services["ingest"])
    assert SECRETS["MQTT_DASHBOARD_PASSWORD"] not in str(services["ingest"])


@pytest.mark.parametrize("missing", ["DOCKER_INFLUXDB_INIT_PASSWORD", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN",
                                     "MQTT_INGEST_PASSWORD", "MQTT_DASHBOARD_PASSWORD"])
def test_compose_refuses_to_resolve_without_a_secret(tmp_path: Path, missing: str) -> None:
    result = compose("config", env_file=write_test_env(tmp_path / ".env", **{missing: None}))
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_simulator_runs_only_under_the_demo_profile(resolved: dict) -> None:
    services = resolved["services"]
    assert services["simulator"]["profiles"] == ["demo"]
    for name in LONG_RUNNING:
        assert "profiles" not in services[name], name
    assert services["hl7-export"]["profiles"] == ["hl7"]
    assert "--site" in services["simulator"]["command"]
    assert services["simulator"]["command"][services["simulator"]["command"].index("--site") + 1] == "sim"


def test_healthchecks_restart_policies_and_start_order(resolved: dict) -> None:
    services = resolved["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert services["ingest"]["depends_on"] == {"mosquitto": {"condition": "service_healthy"},
                                                "influxdb": {"condition": "service_healthy"}}
    assert services["dashboard"]["depends_on"]["mosquitto"] == {"condition": "service_healthy"}
    assert services["simulator"]["depends_on"]["ingest"] == {"condition": "service_healthy"}
    # The ingest's healthcheck probes its own /healthz on its HTTP port.
    env = services["ingest"]["environment"]
    assert env["HEALTHCHECK_URL"] == f"http://127.0.0.1:{env['INFUSION_HTTP_PORT']}/healthz"
    assert env["INFUSION_HTTP_HOST"] == "0.0.0.0"
    # The ingest and dashboard come from the one Dockerfile of the project.
    for name in ("ingest", "dashboard", "simulator"):
        assert services[name]["build"]["context"] == str(REPO), name
        assert services[name]["image"] == "infusion-monitor:latest", name


def test_every_service_refuses_placeholder_secrets_at_start(resolved: dict) -> None:
    services = resolved["services"]
    assert services["mosquitto"]["entrypoint"] == ["/bin/sh", "/mosquitto/config/start.sh"]
    assert services["influxdb"]["entrypoint"][:2] == ["/bin/sh", "/usr/local/bin/check-secrets"]  # no exec bit needed
    assert services["influxdb"]["entrypoint"][-1] == "/entrypoint.sh"  # then the image's own entrypoint
    for name in ("ingest", "dashboard", "simulator"):
        assert "INFUSION_MQTT_URL" in services[name]["environment"]["REQUIRED_SECRETS"].split(), name
    # The Dockerfile's entrypoint is what enforces REQUIRED_SECRETS for the app services.
    assert 'ENTRYPOINT ["check-secrets", "--", "infusion-monitor"]' in (REPO / "Dockerfile").read_text()


@pytest.mark.parametrize(("old", "new", "complaint"), [
    ("condition: service_started", "condition: service_up", "condition"),
    ('profiles: ["demo"]', 'profiles: "demo"', "profiles"),
    ("restart: unless-stopped\n    logging", "restart: sometimes\n    logging", None),
])
def test_the_validator_knows_the_features_we_rely_on(tmp_path: Path, old: str, new: str, complaint: str | None) -> None:
    """A broken depends_on condition or profiles entry fails `config`: so its pass on the real file means something."""
    text = COMPOSE.read_text()
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1))
    result = compose("config", "-q", env_file=write_test_env(tmp_path / ".env"), compose_file=broken)
    if complaint is None:
        # docker-compose 1.29 does not check restart values (the engine would); say so rather than pretend.
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert complaint in result.stderr


def test_env_example_documents_every_variable_and_holds_only_placeholders() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    example = env_example()
    assert used <= set(example), f"not in .env.example: {sorted(used - set(example))}"
    for name in SECRETS:
        assert name in example
    secrets = {name: value for name, value in example.items() if name in SECRETS}
    assert all(value in ("change-me", "") for value in secrets.values()), secrets
    # .env.example as it is must not start anything.
    result = run_sh(DEPLOY / "check-secrets", "DOCKER_INFLUXDB_INIT_PASSWORD", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN",
                    "MQTT_INGEST_PASSWORD", "MQTT_DASHBOARD_PASSWORD", "--", "true", env=example)
    assert result.returncode == 78
    assert result.stderr.count("placeholder") == 4


# -- Dockerfile ------------------------------------------------------------------------------------------

def pip_installs(lines: list[str]) -> list[list[str]]:
    """Return the arguments of every `pip install` in shell lines, without interpreter paths and quiet/cache flags."""
    found = []
    for line in lines:
        for command in re.split(r"&&|;", line):
            words = shlex.split(command.strip().rstrip("\\").strip())
            if "pip" in words and "install" in words:
                args = words[words.index("install") + 1:]
                found.append([a for a in args if a not in ("-q", "--quiet", "--no-cache-dir")])
    return found


def dockerfile_run_lines() -> list[str]:
    """Return the Dockerfile's RUN instructions, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_dockerfile_installs_the_package_the_way_scripts_test_does() -> None:
    ci = pip_installs([line for line in (REPO / "scripts" / "test").read_text().splitlines()
                       if not line.lstrip().startswith("#")])
    image = pip_installs(dockerfile_run_lines())
    assert ci, "scripts/test has no pip install"
    assert len(image) == len(ci)
    # Same steps in the same order: upgrade pip, then install the project from its source tree. The only
    # differences allowed: CI installs editable (-e) with the test extras, the image neither.
    normalised = [[re.sub(r"\[[a-z,]+\]$", "", a.strip("\"'")) for a in args if a != "-e"] for args in ci]
    assert normalised == image == [["--upgrade", "pip"], ["."]]


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?\s*CMD \[\"python\", \"/usr/local/lib/infusion-healthcheck.py\"\]", text, re.M)
    assert "install -m 0644 deploy/healthcheck.py /usr/local/lib/infusion-healthcheck.py" in text
    assert "install -m 0755 deploy/check-secrets /usr/local/bin/check-secrets" in text


def test_dockerignore_keeps_secrets_out_and_the_package_in() -> None:
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert ".env" in ignored and "deploy/mosquitto/devices.passwd" in ignored and ".git" in ignored
    packages = yaml.safe_load("[" + re.search(r'include = \[(.*?)\]', (REPO / "pyproject.toml").read_text()).group(1) + "]")
    needed = [p.rstrip("*") for p in packages] + ["pyproject.toml", "README.md", "deploy"]
    for path in needed:
        assert (REPO / path).exists(), path
        assert path not in ignored and f"/{path}" not in ignored, path


def test_influxdb_init_script_maps_the_dbrp_and_is_executable() -> None:
    script = DEPLOY / "influxdb" / "10-dbrp.sh"
    assert script.stat().st_mode & 0o111, "the influxdb image runs only executable *.sh init scripts"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    words = script.read_text().replace("\\\n", " ").split()
    command = words[words.index("influx"):]
    assert command[:4] == ["influx", "v1", "dbrp", "create"]
    flags = dict(zip(command[4::2], command[5::2], strict=False))
    assert flags["--bucket-id"] == '"${DOCKER_INFLUXDB_INIT_BUCKET_ID}"'  # exported by the image's entrypoint
    assert flags["--db"] == '"${DOCKER_INFLUXDB_INIT_BUCKET}"'
    assert flags["--rp"] == "autogen"
    assert "--default" in command


def service_check(name: str, service: dict, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the secret check a service's container runs at start, with its resolved environment."""
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    if name == "mosquitto":
        env |= {"MOSQUITTO_CONFIG_DIR": str(DEPLOY / "mosquitto"), "MOSQUITTO_AUTH_DIR": str(tmp_path / name),
                "MOSQUITTO_DATA_DIR": str(tmp_path / "none"), "CHECK_SECRETS": str(DEPLOY / "check-secrets"),
                "MOSQUITTO_DEVICES_FILE": str(tmp_path / "no-devices")}
        return run_sh(DEPLOY / "mosquitto" / "start.sh", "true", env=env)
    if name == "influxdb":
        entry = service["entrypoint"]
        names = entry[2:entry.index("--")]
        return run_sh(DEPLOY / "check-secrets", *names, "--", "true", env=env)
    # ingest, dashboard, simulator: the Dockerfile's ENTRYPOINT, driven by REQUIRED_SECRETS.
    return run_sh(DEPLOY / "check-secrets", "--", "true", env=env)


def test_each_service_starts_with_real_secrets_and_refuses_the_example_ones(resolved: dict, tmp_path: Path) -> None:
    for name, service in resolved["services"].items():
        result = service_check(name, service, tmp_path)
        assert result.returncode == 0, (name, result.stderr)
    # .env.example as committed resolves (its placeholders are not empty), but nothing may start with it.
    example = tmp_path / "example.env"
    example.write_text((REPO / ".env.example").read_text())
    placeholder = compose("config", env_file=example)
    assert placeholder.returncode == 0, placeholder.stderr
    for name, service in yaml.safe_load(placeholder.stdout)["services"].items():
        result = service_check(name, service, tmp_path)
        assert result.returncode == 78, (name, result.stdout, result.stderr)
        assert "refusing to start" in result.stderr, name
