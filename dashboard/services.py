"""What the pages' callbacks reach: the live cache, history, the MQTT feed, the login gate and the settings."""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dashboard.auth import DEFAULT_SESSION_HOURS, Gate, LoginSession
from dashboard.history import History
from dashboard.live import LiveFeed, LiveState, Scope, in_scope, now_ms
from vitals.records import AuditRecord
from vitals.topics import Topics

log = logging.getLogger("dashboard")


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """How the dashboard runs. Example: ``DashboardConfig(mqtt_url="mqtt://127.0.0.1:1883", store_url="sqlite:///v.db")``."""

    mqtt_url: str | None = "mqtt://127.0.0.1:1883"
    store_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8050
    users_file: Path | None = None
    no_login: bool = False
    site: str | None = None
    topic_prefix: str = "clinic"
    mqtt_protocol: str = "5"
    mqtt_tls: dict[str, Path | None] = field(default_factory=dict)
    session_hours: float = DEFAULT_SESSION_HOURS
    secure_cookies: bool = False
    trust_proxy: bool = False
    no_data_s: float = 15.0
    cuff_interval_min: float = 10.0
    audio_pause_s: float = 120.0
    refresh_ms: int = 1000
    # security helper: the same name as the setting in vitals/settings.py, so the merge is mechanical
    dashboard_max_request_kb: int = 1024

    def check(self) -> None:
        """Raise ValueError when the combination is unsafe (login off on a non-loopback address)."""
        if self.no_login and not is_loopback(self.host):
            raise ValueError(f"--no-login is only allowed on a loopback address, not {self.host!r}")
        if not self.no_login and self.users_file is None:
            raise ValueError("a users file is needed (--users-file), or --no-login on a loopback address")


def is_loopback(host: str) -> bool:
    """Return whether a bind address is loopback-only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Services:
    """The dashboard's running parts, shared by every callback."""

    def __init__(self, config: DashboardConfig, *, state: LiveState | None = None, history: History | None = None,
                 feed: LiveFeed | None = None, gate: Gate | None = None) -> None:
        from dashboard.auth import UsersFile

        self.config = config
        self.topics = Topics(config.topic_prefix)
        self.state = state or LiveState(no_data_ms=int(config.no_data_s * 1000),
                                        cuff_interval_ms=int(config.cuff_interval_min * 60_000),
                                        audio_pause_ms=int(config.audio_pause_s * 1000))
        self.history = history or History(config.store_url, self.state, site=config.site)
        if feed is None and config.mqtt_url:
            feed = LiveFeed(self.state, config.mqtt_url, topics=self.topics, site=config.site,
                            protocol=config.mqtt_protocol, **config.mqtt_tls)
        self.feed = feed
        users = UsersFile(config.users_file) if config.users_file else None
        self.gate = gate or Gate(users, no_login=config.no_login, session_hours=config.session_hours,
                                 secure_cookies=config.secure_cookies, audit=self.audit_async)

    def user(self) -> LoginSession | None:
        """Return the logged-in user of the current request."""
        return self.gate.current()

    def scope(self) -> Scope:
        """Return the sites the current request may see: the dashboard's site, narrowed by the user's sites."""
        from flask import has_request_context

        scope: Scope = self.config.site
        if not has_request_context():
            return scope
        who = self.user()
        if who is None or self.config.no_login or self.gate.users is None:
            return scope
        user = self.gate.users.get(who.user)
        if user is not None and user.sites:
            allowed = frozenset(user.sites)
            scope = allowed if scope is None else allowed & frozenset({scope})
        return scope

    def may_see(self, site: str) -> bool:
        """Return whether the current request may see a site's chairs, pages and exports."""
        return in_scope(site, self.scope())

    def audit(self, action: str, user: str, detail: str | None = None, *, site: str | None = None,
              chair: str | None = None, alarm_id: str | None = None) -> bool:
        """Write one audit record; return whether the store took it (failures are logged, never raised)."""
        record = AuditRecord(ts=now_ms(), action=action, user=user, site=site, chair=chair, alarm_id=alarm_id,
                             detail=detail[:256] if detail else None)
        try:
            self.history.write_audit([record])
            return True
        except Exception as exc:
            log.warning("audit record %s by %s not stored: %s", action, user, exc)
            return False

    def audit_async(self, action: str, user: str, detail: str | None = None) -> None:
        """Write an audit record off the request thread (logins must not wait on a slow store)."""
        threading.Thread(target=self.audit, args=(action, user, detail), kwargs={"site": self.config.site},
                         daemon=True).start()

    def start(self) -> None:
        """Start the MQTT feed and the history thread."""
        if self.feed is not None:
            self.feed.start()
        self.history.start()

    def stop(self) -> None:
        """Stop the MQTT feed and the history thread."""
        if self.feed is not None:
            self.feed.stop()
        self.history.stop()
