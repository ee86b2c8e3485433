"""Configuration: one typed settings object for every role (reference: docs/configuration.md).

Precedence, lowest first: defaults < TOML file given with ``--config`` < environment (``INFUSION_*``,
nested sections with ``__``, e.g. ``INFUSION_NOTIFY__URLS='["json://..."]'``) < command-line flags.
Each field is declared once, here; ``ROLE_SETTINGS`` says which roles read it, and ``add_settings_arguments``
makes a role's command-line flags from those fields, so a flag, its variable and its file key cannot drift apart.
Secrets (passwords in URLs, the InfluxDB token) are never logged: use ``redact_url`` before printing.
"""

from __future__ import annotations

import argparse
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vitals.topics import DEFAULT_PREFIX, check_id, check_prefix


class NotifySettings(BaseModel):
    """Staff notifications through apprise."""

    model_config = {"extra": "forbid"}

    urls: list[str] = Field(default_factory=list, description="apprise URLs notified when an alarm is raised or upgraded")
    escalation_urls: list[str] = Field(
        default_factory=list, description="apprise URLs notified when an alarm stays unacknowledged too long"
    )
    escalate_high_s: float = Field(60.0, description="escalate a high-priority alarm unacknowledged this long")
    escalate_medium_s: float = Field(180.0, description="escalate a medium-priority alarm unacknowledged this long")
    notify_low: bool = Field(False, description="also notify low-priority alarms")
    retries: int = Field(3, description="delivery attempts before raising notify_failed")
    retry_backoff_s: float = Field(2.0, description="first retry delay; doubles on each attempt")


class Settings(BaseSettings):
    """Every setting of every role, with its default."""

    model_config = SettingsConfigDict(env_prefix="INFUSION_", env_nested_delimiter="__", extra="forbid")

    # MQTT
    mqtt_url: str | None = Field("mqtt://127.0.0.1:1883", description="broker URL: mqtt[s]://[user:password@]host:port "
                                 "(None: a dashboard without a live feed)")
    mqtt_protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version ('3.1.1' for brokers without v5)")
    mqtt_ca_file: Path | None = Field(None, description="CA certificate for mqtts:// (default: system CAs)")
    mqtt_cert_file: Path | None = Field(None, description="client certificate for mqtts:// mutual TLS")
    mqtt_key_file: Path | None = Field(None, description="client key for mqtts:// mutual TLS")
    mqtt_client_id: str | None = Field(None, description="MQTT client id (ingest default: infusion-ingest-<group>)")
    topic_prefix: str = Field(DEFAULT_PREFIX, description="first topic level of every topic")
    site: str | None = Field(None, description="only this site (default: every site)")
    sites: str | None = Field(None, description="ingest: only these sites, comma-separated; with workers > 1 they are "
                              "split between the worker processes by position (docs/operations.md)")
    workers: int = Field(1, ge=1, le=64, description="ingest processes splitting the sites (needs sites; each keeps "
                         "its chairs' alarm state)")

    # Store
    store_url: str | None = Field("sqlite:///data/vitals.db", description="sqlite:///path, "
                                  "influxdb://[user:password@]host:port/db, influxdb2://host:port/bucket?org=ORG "
                                  "(None: a dashboard without history)")
    influx_token: SecretStr | None = Field(None, description="InfluxDB 2.x/3.x API token, or user:password for an "
                                           "influxdb:// (1.x) URL without credentials (also read from INFLUX_TOKEN; "
                                           "environment or file only, never a flag)")
    influx_retention: str = Field("90d", description="retention of an InfluxDB database the store creates, e.g. 90d; 0 = forever")
    store_timeout_s: float = Field(5.0, description="timeout of one store request")

    # Ingest
    data_dir: Path = Field(Path("data"), description="directory for the ingest's spool and alarm state, and the "
                           "dashboard's login sessions file")
    shared_group: str | None = Field(None, description="MQTT shared-subscription group for ingest replicas (docs/operations.md)")
    session_expiry_s: int = Field(7 * 24 * 3600, description="MQTT session expiry of the ingest's persistent session")
    batch_max_readings: int = Field(5000, description="write a batch when it holds this many readings")
    batch_max_delay_ms: int = Field(50, description="write a batch at most this long after its first reading")
    spool_max_mb: float = Field(512.0, description="bound of the local spool used while the store is down")
    chair_rate_kib_s: float = Field(16.0, description="per-chair sustained readings payload budget, KiB/s (0 = off)")
    chair_burst_kib: float = Field(1024.0, description="per-chair burst budget, KiB (a reconnect backlog fits)")
    http_host: str = Field("127.0.0.1", description="address of the health and metrics HTTP server")
    http_port: int = Field(9108, description="port of the health and metrics HTTP server (0 = disabled)")

    # State bound to its origin ("origin" helper; docs/reliability.md)
    broker_id: str | None = Field(
        None, description="the broker's identity recorded with the spool and alarm state (default: mqtt_url "
        "without credentials, normalised); set it to keep the state when the broker's address changes")
    store_id: str | None = Field(
        None, description="the store's identity recorded with the spool and alarm state (default: store_url "
        "without credentials, normalised; for SQLite the resolved path)")
    state_mismatch: Literal["refuse", "fresh"] = Field(
        "refuse", description="when the spool or alarm state belongs to another broker or store: refuse to "
        "start, or 'fresh' (ingest flag --fresh-state): move the old files aside and start empty")

    # Alarms
    alarm_rules_file: Path | None = Field(None, description="TOML alarm rules overriding the shipped defaults")
    cuff_interval_min: float = Field(10.0, description="expected interval between cuff readings (nibp_overdue at 1.5x)")
    no_data_s: float = Field(15.0, description="wall-clock seconds without readings before no_data")
    audio_pause_s: float = Field(120.0, description="length of an audio pause")
    notify: NotifySettings = Field(default_factory=NotifySettings, description="staff notifications ([notify] section)")
    care_plan_file: Path | None = Field(None, description="TOML care plan (schedule, discharge criteria) overriding "
                                        "the shipped one (docs/care-plan.md)")

    # Dashboard
    dashboard_host: str = Field("127.0.0.1", description="address the dashboard serves on")
    dashboard_port: int = Field(8050, description="port the dashboard serves on")
    dashboard_users_file: Path | None = Field(Path("data/users.json"), description="dashboard users and password hashes "
                                              "(also where the user command writes)")
    dashboard_no_login: bool = Field(False, description="no login (refused unless dashboard_host is loopback; the page says so)")
    dashboard_session_hours: float = Field(12.0, description="a dashboard login lasts at most this long")
    dashboard_secure_cookies: bool = Field(False, description="always mark cookies Secure (they are on any HTTPS request)")
    dashboard_trust_proxy: bool = Field(False, description="trust X-Forwarded-For/Proto/Host from one reverse proxy "
                                        "terminating TLS")
    dashboard_refresh_ms: int = Field(1000, description="how often a dashboard page refreshes its live values")
    dashboard_sessions_file: Path | None = Field(
        None, description="dashboard login sessions file shared by its processes (default <data_dir>/dashboard-sessions.db)")
    dashboard_no_push: bool = Field(False, description="no push channel: the overview polls every dashboard_refresh_ms "
                                    "(the fallback it uses anyway while the push channel is not delivering)")
    dashboard_threads: int = Field(32, ge=1, description="dashboard web server worker threads; an overview screen's "
                                   "push channel holds one, 4 are kept for requests (docs/dashboard.md)")
    dashboard_idle_timeout_s: float = Field(30.0, gt=0, description="the dashboard closes a connection idle this long")
    dashboard_max_request_kb: int = Field(1024, gt=0, description="largest request body the dashboard takes, KiB "
                                          "(callbacks, forms); larger ones get 413")

    # HL7 v2 (interop/; docs/interoperability.md)
    hl7_mllp: str | None = Field(None, description="HOST:PORT of the MLLP receiver PCD-01 messages go to (hl7-export, "
                                 "export hl7)")
    hl7_outbox_file: Path | None = Field(None, description="the HL7 exporter's durable outbox (default <data_dir>/hl7-outbox.db)")
    hl7_numerics_interval_s: float = Field(60.0, ge=0, description="one message of numerics (median hr, spo2, rr) per "
                                           "this many seconds of a session (0 = cuff readings only)")
    hl7_close_grace_s: float = Field(10.0, ge=0, description="an open interval of numerics is sent when its chair sent no "
                                     "numerics for this long (wall clock)")
    hl7_ack_timeout_s: float = Field(10.0, gt=0, description="wait this long for the receiver's acknowledgement")
    hl7_retry_backoff_s: float = Field(2.0, gt=0, description="first retry delay of a message; doubles on each attempt")
    hl7_retry_max_s: float = Field(60.0, gt=0, description="longest delay between two attempts of a message")
    hl7_fail_after: int = Field(3, ge=1, description="failed attempts of a message before the chair's export_failed "
                                "technical alarm is raised")
    hl7_sending_facility: str = Field("CLINIC", description="MSH-4 of outbound messages (the site id follows as its "
                                      "second component)")
    hl7_receiving_application: str = Field("EHR", description="MSH-5 of outbound messages")
    hl7_receiving_facility: str = Field("EHR", description="MSH-6 of outbound messages")
    hl7_patient_lookup_file: Path | None = Field(
        None, description="TOML map from pseudonymous patient refs to the site's identifiers, added to PID-3 "
        "(off by default: only the pseudonymous ref leaves)")
    hl7_listen: str = Field("127.0.0.1:2575", description="HOST:PORT the hl7-gateway listens on for MLLP")
    hl7_gateway_map_file: Path | None = Field(None, description="TOML map from device ids and beds to site and chair "
                                              "(hl7-gateway; required)")
    hl7_publish_timeout_s: float = Field(5.0, gt=0, description="the gateway answers AE when the broker has not "
                                         "accepted a publish within this time")
    # FHIR export (``export fhir``; docs/interoperability.md)
    fhir_url: str | None = Field(None, description="base URL of the FHIR R4 server `export fhir` POSTs a session's "
                                 "transaction Bundle to")
    fhir_token: SecretStr | None = Field(None, description="bearer token sent to the FHIR server (environment or file "
                                         "only, never a flag)")
    fhir_patient_system: str = Field("urn:infusion-monitor:patient-ref", description="identifier system under which "
                                     "the record system knows the pseudonymous patient_ref")
    fhir_identifier_system: str = Field("urn:infusion-monitor", description="prefix of the identifier systems of "
                                        "exported sessions, devices and observations (`:session`, `:device`, "
                                        "`:observation`)")
    fhir_timeout_s: float = Field(30.0, gt=0, description="timeout of the POST to the FHIR server")

    @field_validator("dashboard_port", "http_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError(f"a port is 0-65535, not {value}")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_prefix(value)

    @field_validator("site")
    @classmethod
    def _site(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "site id")

    @field_validator("sites")
    @classmethod
    def _sites(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [check_id(name.strip(), "site id") for name in value.split(",")]
        if len(set(names)) != len(names):
            raise ValueError(f"sites lists a site twice: {value!r}")
        return ",".join(names)

    @model_validator(mode="after")
    def _one_site_filter(self) -> Settings:
        if self.site and self.sites:
            raise ValueError("set site or sites, not both")
        if self.workers > 1 and not self.sites:
            raise ValueError("workers > 1 needs the sites to split between them (sites = 'a,b,c')")
        if self.workers > 1 and self.shared_group:
            raise ValueError("workers split the sites; a shared_group would split each chair's readings instead")
        return self

    def site_list(self) -> list[str] | None:
        """Return the sites this process takes (``site`` or ``sites``), or None for every site."""
        if self.sites:
            return self.sites.split(",")
        return [self.site] if self.site else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: flags, then environment (INFUSION_*, then INFLUX_TOKEN), then the TOML file."""
        return init_settings, env_settings, InfluxTokenFallback(settings_cls), TomlConfigSettingsSource(settings_cls)

    def fhir_bearer(self) -> str | None:
        """Return the FHIR server's bearer token, if any."""
        return None if self.fhir_token is None else self.fhir_token.get_secret_value()

    def token(self) -> str | None:
        """Return the InfluxDB token (or 1.x ``user:password``), if any."""
        return None if self.influx_token is None else self.influx_token.get_secret_value()


class InfluxTokenFallback(PydanticBaseSettingsSource):
    """The token from ``INFLUX_TOKEN``, the variable InfluxDB's own tools read, below ``INFUSION_INFLUX_TOKEN``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        """Return nothing per field (``__call__`` answers for the one field it knows)."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Return ``{"influx_token": ...}`` when INFLUX_TOKEN is set."""
        token = os.environ.get("INFLUX_TOKEN")
        return {"influx_token": token} if token else {}


class FixedSettings(Settings):
    """Settings from the defaults and the given values only: no environment, no file (the demo, tests).

    Example: ``FixedSettings(store_url="sqlite:///demo.db")`` is the same whatever INFUSION_* the shell sets.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Use the given values only."""
        return (init_settings,)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Return settings from defaults, a TOML file, the environment and explicit overrides (None = unset)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    if config_file is None:
        return Settings(**given)
    path = Path(config_file)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {path} does not exist")
    scoped = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
    return scoped(**given)


# -- which role reads which setting, and the flags made from them ------------------------------------------

_MQTT = ("mqtt_url", "mqtt_protocol", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file")
_STORE = ("store_url", "influx_token", "influx_retention", "store_timeout_s")
_HL7_OUT = ("hl7_numerics_interval_s", "hl7_ack_timeout_s", "hl7_sending_facility", "hl7_receiving_application",
            "hl7_receiving_facility", "hl7_patient_lookup_file")
_DASHBOARD = tuple(name for name in Settings.model_fields if name.startswith("dashboard_"))

# The settings each role reads (from the file, the environment and, where it has one, its flag). The demo is not
# here: it fixes its own settings (FixedSettings) and reads no INFUSION_* variable, so it never pages real staff.
ROLE_SETTINGS: dict[str, tuple[str, ...]] = {
    "ingest": tuple(name for name in Settings.model_fields if not name.startswith(("dashboard_", "hl7_", "fhir_"))),
    "dashboard": (*_MQTT, "topic_prefix", "site", *_STORE, "data_dir", *_DASHBOARD, "no_data_s", "cuff_interval_min",
                  "audio_pause_s", "care_plan_file"),
    "simulate": (*_MQTT, "topic_prefix"),  # its --site is the site it publishes as, a role option
    "record": (*_MQTT, "topic_prefix", "site"),
    "replay": (*_MQTT, "topic_prefix", *_STORE),  # its --site names the recorded or stored site, a role option
    "user": ("dashboard_users_file",),
    "alarms": ("site", *_STORE, "alarm_rules_file", "no_data_s", "cuff_interval_min", "audio_pause_s"),  # report, what-if
    "report": _STORE,  # its --site and --chair name the session's chair, role options
    "benchmarks": _STORE[1:],  # environment only: the suite starts its own servers and names their URLs
    "hl7-export": (*_MQTT, "mqtt_client_id", "topic_prefix", "site", "data_dir", "session_expiry_s", *_HL7_OUT,
                   "hl7_mllp", "hl7_outbox_file", "hl7_close_grace_s", "hl7_retry_backoff_s", "hl7_retry_max_s",
                   "hl7_fail_after"),
    "export-hl7": (*_STORE, *_HL7_OUT, "hl7_mllp"),  # `export hl7`: a stored session, sent at once (its --mllp is hl7_mllp)
    "hl7-gateway": (*_MQTT, "topic_prefix", "hl7_listen", "hl7_gateway_map_file", "hl7_publish_timeout_s"),
    # its --site and --chair name the exported session, role options
    "export-fhir": (*_STORE, "fhir_url", "fhir_token", "fhir_patient_system", "fhir_identifier_system", "fhir_timeout_s"),
}
# Roles whose settings come only from the environment and file (no settings flags of their own).
ENVIRONMENT_ONLY_ROLES = ("benchmarks",)
# Never a flag: a secret (command lines are visible to every local user) or a nested table.
NO_FLAG = ("influx_token", "fhir_token", "notify")
# Flag spellings other than --field-name (kept from before the settings model made the flags).
FLAG_NAMES = {"mqtt_client_id": "--client-id", "hl7_mllp": "--mllp", "hl7_listen": "--listen",
              "hl7_gateway_map_file": "--map-file", **{name: "--" + name.removeprefix("dashboard_").replace("_", "-")
                                                    for name in _DASHBOARD}}


def env_name(name: str) -> str:
    """Return the environment variable of a setting (``notify.urls`` -> ``INFUSION_NOTIFY__URLS``)."""
    return "INFUSION_" + name.upper().replace(".", "__")


def flag_name(name: str) -> str | None:
    """Return a setting's command-line flag, or None when it has none."""
    if name in NO_FLAG or "." in name:
        return None
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def _plain_type(annotation: Any) -> Any:
    """Return a field's type without ``| None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else str
    return annotation


def add_settings_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    """Add ``--config`` and a flag for every setting ``role`` reads; unset flags leave the file and environment be."""
    parser.add_argument("--config", help="TOML configuration file (see docs/configuration.md)")
    for name in ROLE_SETTINGS[role]:
        flag = flag_name(name)
        if flag is None:
            continue
        info = Settings.model_fields[name]
        kind = _plain_type(info.annotation)
        default = info.get_default(call_default_factory=True)
        help_text = f"{info.description} ({env_name(name)}; default {default})"
        if kind is bool:
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=help_text)
        elif typing.get_origin(kind) is Literal:
            parser.add_argument(flag, dest=name, choices=typing.get_args(kind), default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, type=kind if kind in (int, float) else str, default=None,
                                metavar=flag[2:].upper().replace("-", "_"), help=help_text)


class SettingsError(ValueError):
    """The settings a command was given are invalid; the message names the setting and where it came from."""


def settings_from_args(args: argparse.Namespace, role: str, **fixed: Any) -> Settings:
    """Return the settings of ``role``: defaults < --config file < environment < the role's flags < ``fixed``.

    Raise SettingsError naming every bad value (and the variable or flag that sets it).
    """
    flags = {name: getattr(args, name, None) for name in ROLE_SETTINGS[role] if flag_name(name)}
    try:
        return load_settings(getattr(args, "config", None), **{**flags, **fixed})
    except FileNotFoundError as exc:
        raise SettingsError(str(exc)) from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            where = " or ".join(w for w in (flag_name(name), env_name(name)) if w)
            problems.append(f"{name} ({where}): {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


# -- the reference (docs/configuration.md) ------------------------------------------------------------------

def settings_table() -> list[tuple[str, str, str]]:
    """Return (name, default, description) of every setting, nested ones as ``section.name``."""
    rows: list[tuple[str, str, str]] = []
    for name, info in Settings.model_fields.items():
        if name == "notify":
            for sub, subinfo in NotifySettings.model_fields.items():
                default = subinfo.get_default(call_default_factory=True)
                rows.append((f"notify.{sub}", repr(default), subinfo.description or ""))
            continue
        default = info.get_default(call_default_factory=True)
        rows.append((name, repr(default), info.description or ""))
    return rows


def roles_of(name: str) -> list[str]:
    """Return the roles that read a setting (``notify.urls`` counts as ``notify``)."""
    top = name.split(".", 1)[0]
    return [role for role, names in ROLE_SETTINGS.items() if top in names]


def settings_markdown() -> str:
    """Return the settings reference table in Markdown (docs/configuration.md embeds it)."""
    lines = ["| setting | environment variable | flag | default | roles | meaning |", "|---|---|---|---|---|---|"]
    for name, default, description in settings_table():
        roles = roles_of(name)
        flag = flag_name(name)
        flagged = [r for r in roles if r not in ENVIRONMENT_ONLY_ROLES]
        flag_text = f"`{flag}`" if flag and flagged else "-"
        shown = default.replace("PosixPath(", "Path(")
        meaning = description.replace("|", "\\|")
        lines.append(f"| `{name}` | `{env_name(name)}` | {flag_text} | `{shown}` | {', '.join(roles)} | {meaning} |")
    return "\n".join(lines) + "\n"


DOC_BEGIN = "<!-- BEGIN generated by `python -m vitals.settings --write-docs`; tests/vitals fail when it is stale -->"
DOC_END = "<!-- END generated -->"


def documented_table(doc: str) -> str:
    """Return the generated block of docs/configuration.md (between DOC_BEGIN and DOC_END)."""
    if DOC_BEGIN not in doc or DOC_END not in doc:
        raise ValueError("docs/configuration.md has lost its generated-table markers")
    return doc.split(DOC_BEGIN, 1)[1].split(DOC_END, 1)[0].lstrip("\n")


def write_docs(path: Path) -> None:
    """Replace the generated table in ``path`` with the current one."""
    doc = path.read_text(encoding="utf-8")
    old = documented_table(doc)
    path.write_text(doc.replace(DOC_BEGIN + "\n" + old, DOC_BEGIN + "\n" + settings_markdown(), 1), encoding="utf-8")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write-docs"]:
        write_docs(Path(__file__).resolve().parents[1] / "docs" / "configuration.md")
    else:
        print(settings_markdown(), end="")
