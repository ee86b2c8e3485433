"""Configuration: one typed settings object for every role (reference: docs/configuration.md).

Precedence, lowest first: defaults < TOML file given with ``--config`` < environment (``INFUSION_*``,
nested sections with ``__``, e.g. ``INFUSION_NOTIFY__URLS='["json://..."]'``) < command-line flags.
Secrets (passwords in URLs, the InfluxDB token) are never logged: use ``redact_url`` before printing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
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
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="broker URL: mqtt[s]://[user:password@]host:port")
    mqtt_protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version ('3.1.1' for brokers without v5)")
    mqtt_ca_file: Path | None = Field(None, description="CA certificate for mqtts:// (default: system CAs)")
    mqtt_cert_file: Path | None = Field(None, description="client certificate for mqtts:// mutual TLS")
    mqtt_key_file: Path | None = Field(None, description="client key for mqtts:// mutual TLS")
    mqtt_client_id: str | None = Field(None, description="MQTT client id (ingest default: infusion-ingest-<group>)")
    topic_prefix: str = Field(DEFAULT_PREFIX, description="first topic level of every topic")
    site: str | None = Field(None, description="only this site (default: every site)")

    # Store
    store_url: str = Field("sqlite:///data/vitals.db", description="sqlite:///path, influxdb://host:port/db, influxdb2://host:port/bucket?org=ORG")
    influx_token: SecretStr | None = Field(None, description="InfluxDB 2.x/3.x API token (also read from INFLUX_TOKEN)")
    influx_retention: str = Field("90d", description="retention of an InfluxDB database the store creates, e.g. 90d; 0 = forever")
    store_timeout_s: float = Field(5.0, description="timeout of one store request")

    # Ingest
    data_dir: Path = Field(Path("data"), description="directory for the spool and alarm state")
    shared_group: str | None = Field(None, description="MQTT shared-subscription group for ingest replicas (docs/operations.md)")
    session_expiry_s: int = Field(7 * 24 * 3600, description="MQTT session expiry of the ingest's persistent session")
    batch_max_readings: int = Field(5000, description="write a batch when it holds this many readings")
    batch_max_delay_ms: int = Field(50, description="write a batch at most this long after its first reading")
    spool_max_mb: float = Field(512.0, description="bound of the local spool used while the store is down")
    chair_rate_kib_s: float = Field(16.0, description="per-chair sustained readings payload budget, KiB/s (0 = off)")
    chair_burst_kib: float = Field(1024.0, description="per-chair burst budget, KiB (a reconnect backlog fits)")
    http_host: str = Field("127.0.0.1", description="address of the health and metrics HTTP server")
    http_port: int = Field(9108, description="port of the health and metrics HTTP server (0 = disabled)")

    # Alarms
    alarm_rules_file: Path | None = Field(None, description="TOML alarm rules overriding the shipped defaults")
    cuff_interval_min: float = Field(10.0, description="expected interval between cuff readings (nibp_overdue at 1.5x)")
    no_data_s: float = Field(15.0, description="wall-clock seconds without readings before no_data")
    audio_pause_s: float = Field(120.0, description="length of an audio pause")
    notify: NotifySettings = Field(default_factory=NotifySettings, description="staff notifications ([notify] section)")

    # Dashboard (security helper)
    dashboard_max_request_kb: int = Field(1024, gt=0, description="largest request body the dashboard takes, KiB "
                                          "(callbacks, forms); larger ones get 413")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_prefix(value)

    @field_validator("site")
    @classmethod
    def _site(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "site id")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: flags, then environment, then the TOML file."""
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    def token(self) -> str | None:
        """Return the InfluxDB token from the settings or INFLUX_TOKEN."""
        import os

        if self.influx_token is not None:
            return self.influx_token.get_secret_value()
        return os.environ.get("INFLUX_TOKEN")


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


def settings_markdown() -> str:
    """Return the settings reference table in Markdown (docs/configuration.md embeds it)."""
    lines = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, default, description in settings_table():
        env = "INFUSION_" + name.upper().replace(".", "__")
        lines.append(f"| `{name}` | `{env}` | `{default}` | {description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
