"""One settings model for every role: flags made from its fields, the reference made from it, the demo sealed off."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from infusion_monitor.cli import COMMANDS, build_parser, main
from vitals.settings import (
    ROLE_SETTINGS,
    FixedSettings,
    Settings,
    SettingsError,
    documented_table,
    env_name,
    flag_name,
    settings_from_args,
    settings_markdown,
    settings_table,
)

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def settings_of(*argv: str) -> Settings:
    """Return the settings a role's command line gives, loaded as the role loads them."""
    args = build_parser().parse_args(list(argv))
    return settings_from_args(args, args.command)


def test_configuration_doc_lists_every_setting_and_is_not_stale() -> None:
    doc = DOC.read_text()
    missing = [name for name, _, _ in settings_table() if f"`{name}`" not in doc]
    assert missing == [], f"docs/configuration.md does not describe: {missing}"
    assert documented_table(doc) == settings_markdown(), (
        "docs/configuration.md is stale: run `python -m vitals.settings --write-docs`")


def test_every_setting_is_read_by_a_role_and_every_role_name_is_a_command() -> None:
    read = {name for names in ROLE_SETTINGS.values() for name in names}
    assert set(Settings.model_fields) - read == set()
    assert read <= set(Settings.model_fields)
    # "export-hl7" is the role of `export hl7` (a subcommand of a command)
    assert {role.replace("export-", "export ").split(" ")[0] for role in ROLE_SETTINGS} - {"benchmarks"} <= set(COMMANDS)


def test_each_role_offers_exactly_the_flags_of_the_settings_it_reads() -> None:
    parser = build_parser()
    roles = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for role in ("ingest", "dashboard", "simulate", "record", "replay"):
        dests = {a.dest for a in roles[role]._actions}
        wanted = {name for name in ROLE_SETTINGS[role] if flag_name(name)}
        assert wanted <= dests, (role, wanted - dests)
        own = {"site"} if role in ("simulate", "replay") else set()  # the site they publish as / replay: role options
        others = set(Settings.model_fields) - set(ROLE_SETTINGS[role]) - own
        assert not (others & dests), (role, others & dests)
    assert flag_name("influx_token") is None  # a secret is never a flag (command lines are visible to all)


def test_existing_flag_spellings_still_work(tmp_path: Path) -> None:
    s = settings_of("dashboard", "--mqtt-url", "mqtt://b:1", "--store-url", "sqlite:///d.db", "--site", "north",
                    "--host", "0.0.0.0", "--port", "8443", "--users-file", str(tmp_path / "u.json"), "--no-login",
                    "--session-hours", "8", "--secure-cookies", "--trust-proxy", "--topic-prefix", "ward")
    assert (s.mqtt_url, s.store_url, s.site, s.topic_prefix) == ("mqtt://b:1", "sqlite:///d.db", "north", "ward")
    assert (s.dashboard_host, s.dashboard_port, s.dashboard_users_file) == ("0.0.0.0", 8443, tmp_path / "u.json")
    assert s.dashboard_no_login and s.dashboard_secure_cookies and s.dashboard_trust_proxy
    assert s.dashboard_session_hours == 8
    s = settings_of("ingest", "--client-id", "ing-1", "--data-dir", str(tmp_path), "--http-host", "0.0.0.0",
                    "--http-port", "9200", "--shared-group", "g", "--mqtt-protocol", "3.1.1")
    assert (s.mqtt_client_id, s.data_dir, s.http_host, s.http_port) == ("ing-1", tmp_path, "0.0.0.0", 9200)
    assert (s.shared_group, s.mqtt_protocol) == ("g", "3.1.1")
    assert settings_of("record", "--out", "-", "--site", "north").site == "north"
    assert settings_of("replay", "--store-url", "sqlite:///r.db").store_url == "sqlite:///r.db"
    # simulate's --site is the site it publishes as, not the settings' filter
    args = build_parser().parse_args(["simulate", "--site", "sim2"])
    assert args.site == "sim2" and settings_from_args(args, "simulate").site is None


def test_a_dashboard_setting_comes_from_file_environment_or_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('dashboard_port = 8001\ndashboard_trust_proxy = true\nstore_url = "sqlite:///file.db"\n')
    s = settings_of("dashboard", "--config", str(config))
    assert (s.dashboard_port, s.dashboard_trust_proxy, s.store_url) == (8001, True, "sqlite:///file.db")
    monkeypatch.setenv("INFUSION_DASHBOARD_PORT", "8002")
    monkeypatch.setenv("INFUSION_DASHBOARD_TRUST_PROXY", "false")
    s = settings_of("dashboard", "--config", str(config))
    assert (s.dashboard_port, s.dashboard_trust_proxy) == (8002, False)
    s = settings_of("dashboard", "--config", str(config), "--port", "8003", "--trust-proxy")
    assert (s.dashboard_port, s.dashboard_trust_proxy) == (8003, True)


def test_bad_values_are_refused_by_name(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):  # argparse: not a number
        build_parser().parse_args(["dashboard", "--port", "eighty"])
    with pytest.raises(SettingsError, match=r"dashboard_port \(--port or INFUSION_DASHBOARD_PORT\): .*0-65535"):
        settings_of("dashboard", "--port", "70000")
    with pytest.raises(SettingsError, match="site id"):
        settings_of("dashboard", "--site", "two words")
    assert main(["ingest", "--http-port", "70000"]) == 2
    assert "http_port (--http-port or INFUSION_HTTP_PORT)" in capsys.readouterr().err
    monkeypatch.setenv("INFUSION_BATCH_MAX_READINGS", "lots")
    assert main(["ingest"]) == 2  # the variable that is wrong is named
    assert "INFUSION_BATCH_MAX_READINGS" in capsys.readouterr().err
    assert main(["record", "--out", "-", "--config", "/nonexistent.toml"]) == 2
    assert "/nonexistent.toml does not exist" in capsys.readouterr().err


def test_dashboard_refuses_unsafe_settings_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFUSION_DASHBOARD_HOST", "0.0.0.0")
    assert main(["dashboard", "--no-login", "--store-url", "sqlite:///x.db"]) == 2
    assert "only allowed on a loopback address" in capsys.readouterr().err
    monkeypatch.setenv("INFUSION_DASHBOARD_USERS_FILE", str(tmp_path / "none.json"))
    assert main(["dashboard"]) == 2
    assert "none.json does not exist; add a user" in capsys.readouterr().err


def test_user_command_and_dashboard_share_the_users_file_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "shared" / "users.json"
    monkeypatch.setenv("INFUSION_DASHBOARD_USERS_FILE", str(users))
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password 1\n"))
    assert main(["user", "add", "nurse.kim", "--role", "nurse"]) == 0
    assert users.exists() and settings_of("dashboard").dashboard_users_file == users
    other = tmp_path / "other.json"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password 2\n"))
    assert main(["user", "add", "admin.lee", "--role", "admin", "--users-file", str(other)]) == 0
    capsys.readouterr()
    assert main(["user", "list"]) == 0
    assert capsys.readouterr().out.split() == ["nurse.kim", "nurse", "*"]  # "*": every site


class SealedEnviron(dict):  # type: ignore[type-arg]
    """os.environ for the test: reads work, any change fails the test."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("os.environ was modified")

    __setitem__ = __delitem__ = pop = popitem = update = clear = setdefault = _refuse  # type: ignore[assignment]


def test_demo_settings_ignore_the_environment_and_never_modify_it(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from infusion_monitor.demo import demo_settings

    hostile = {"INFUSION_SITE": "elsewhere", "INFUSION_TOPIC_PREFIX": "other", "INFLUX_TOKEN": "prod-token",
               "INFUSION_NOTIFY__URLS": '["json://127.0.0.1:9/page-real-staff"]', "INFUSION_DASHBOARD_HOST": "0.0.0.0",
               "INFUSION_STORE_URL": "influxdb2://prod:8086/vitals?org=o"}
    for key, value in hostile.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "c.toml"
    config.write_text('site = "from-file"\n')
    monkeypatch.chdir(tmp_path)
    original, sealed = os.environ, SealedEnviron(os.environ)
    os.environ = sealed  # type: ignore[assignment]  # noqa: B003 - not monkeypatch: pytest writes PYTEST_CURRENT_TEST
    try:
        s = demo_settings(store_url="sqlite:///demo.db", dashboard_no_login=True)
    finally:
        os.environ = original  # noqa: B003
    assert (s.site, s.topic_prefix, s.notify.urls, s.token()) == (None, "clinic", [], None)
    assert (s.store_url, s.dashboard_host, s.dashboard_no_login) == ("sqlite:///demo.db", "127.0.0.1", True)
    assert {k: os.environ.get(k) for k in hostile} == hostile
    # the same environment does reach a production role
    production = Settings()
    assert (production.site, production.token(), production.notify.urls) == (
        "elsewhere", "prod-token", ["json://127.0.0.1:9/page-real-staff"])
    assert FixedSettings().site is None


def test_influx_token_from_either_variable_infusion_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_TOKEN", "influx-own")
    assert Settings().token() == "influx-own"
    monkeypatch.setenv("INFUSION_INFLUX_TOKEN", "ours")
    assert Settings().token() == "ours"
    assert env_name("notify.urls") == "INFUSION_NOTIFY__URLS"
