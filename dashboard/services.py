"""What the pages' callbacks reach: the live cache, history, the MQTT feed, the login gate and the settings."""

from __future__ import annotations

import ipaddress
import logging
import threading
from pathlib import Path

from dashboard.auth import Gate, LoginSession
from dashboard.history import History
from dashboard.live import LiveFeed, LiveState, Scope, in_scope, now_ms
from dashboard.sessions import sessions_path
from vitals.records import AuditRecord
from vitals.settings import Settings
from vitals.topics import Topics

log = logging.getLogger("dashboard")


def check_settings(settings: Settings) -> None:
    """Raise ValueError when the dashboard must not start so: login off on a non-loopback address, no users file."""
    if settings.dashboard_no_login:
        if not is_loopback(settings.dashboard_host):
            raise ValueError(f"--no-login is only allowed on a loopback address, not {settings.dashboard_host!r}")
        return
    users = settings.dashboard_users_file
    if users is None:
        raise ValueError("a users file is needed (--users-file), or --no-login on a loopback address")
    if not Path(users).exists():
        raise ValueError(f"users file {users} does not exist; add a user with "
                         f"'infusion-monitor user add NAME --role admin --users-file {users}'")


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

    def __init__(self, config: Settings, *, state: LiveState | None = None, history: History | None = None,
                 feed: LiveFeed | None = None, gate: Gate | None = None) -> None:
        from dashboard.auth import UsersFile

        self.config = config
        self.topics = Topics(config.topic_prefix)
        self.state = state or LiveState(no_data_ms=int(config.no_data_s * 1000),
                                        cuff_interval_ms=int(config.cuff_interval_min * 60_000),
                                        audio_pause_ms=int(config.audio_pause_s * 1000))
        self.history = history or History(config, self.state)
        if feed is None and config.mqtt_url:
            feed = LiveFeed(self.state, config.mqtt_url, topics=self.topics, site=config.site,
                            protocol=config.mqtt_protocol, ca_file=config.mqtt_ca_file,
                            cert_file=config.mqtt_cert_file, key_file=config.mqtt_key_file)
        self.feed = feed
        no_login = config.dashboard_no_login
        users = UsersFile(config.dashboard_users_file) if config.dashboard_users_file and not no_login else None
        sessions_file = None if no_login else sessions_path(config.dashboard_sessions_file, config.data_dir)
        self.gate = gate or Gate(users, no_login=no_login, session_hours=config.dashboard_session_hours,
                                 secure_cookies=config.dashboard_secure_cookies, audit=self.audit_async,
                                 sessions_file=sessions_file)

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
        if who is None or self.config.dashboard_no_login or self.gate.users is None:
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
