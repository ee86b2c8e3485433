"""The alarm engine: a pure, deterministic core (no I/O, no clock inside; state per chair).

Inputs: readings (event time: their own ``ts_ms``), sessions, device status, acknowledgement commands
and ``tick(now_ms)``, the only source of wall-clock time. Every call returns the alarm events it caused;
``take_changed()`` names the chairs whose active-alarm list changed, and ``active()`` returns that list;
``take_limits_changed()`` names those whose limits may have changed, and ``effective_limits()`` returns them.

Semantics (docs/alarm-rules.md says the same for people):
- A rule is met when its condition held on every reading of its vital for its delay, measured on the
  readings' timestamps; a gap of more than ``gap_s`` between two readings of the vital restarts it.
  Readings not newer than the newest seen for their chair are ignored (replays, redeliveries).
- One alarm per chair, vital and direction (``spo2.low``). It is ``raised`` when a rule of its key is met,
  ``upgraded`` when a rule of higher priority is met later; its priority never falls within an episode.
  It clears when the value is back past every rule's limit of its key by the vital's hysteresis margin.
- A latching (high) alarm whose condition cleared stays shown (``condition_active`` false) until
  acknowledged; ``acknowledged`` then ``cleared``. An acknowledged alarm stays shown while its condition
  holds; an upgrade re-raises it (acknowledgement reset). Audio pause is per chair; a raise or upgrade
  ends it. ``escalated``: an unacknowledged alarm stood for its priority's escalation time (wall clock,
  counted from the first tick after it was raised or upgraded).
- Technical alarms: ``no_data`` and ``offline`` (wall clock, via ticks; only for a chair with an active
  session or one that sent readings within ``recent_s``), ``nibp_overdue`` (event time), ``notify_failed``
  (reported by the notifier through ``notify_failed``/``notify_ok``), ``export_failed`` (the HL7 exporter's
  retained ``.../export`` status, through ``export_status``), ``assessment_overdue`` (wall clock: the
  ingest's session-record service says when a care-plan item is overdue, through ``assessment_overdue``).
Alarm ids are ``{site}.{chair}.{vital}[.{direction}].{raise ts}``: the same input raises the same id, so a
replay or a restart without saved state repeats an event rather than inventing a second alarm.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import msgspec

from vitals.reading import LABELS, UNITS, Reading
from vitals.records import PRIORITY_RANK, AckCommand, ActiveAlarm, AlarmEvent, Session

from .rules import CUFF_RULE_VITALS, Rule, RuleBook, effective_limits, holds

STATE_VERSION = 1
TECH_TEXT: Mapping[str, str] = {
    "no_data": "No data from the chair",
    "offline": "Monitor offline",
    "nibp_overdue": "Cuff (NIBP) reading overdue",
    "notify_failed": "Staff notification could not be delivered",
    "export_failed": "HL7 export failing",
    "assessment_overdue": "Assessment overdue",
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Timing settings the engine takes from the service settings (rule facts are in the RuleBook)."""

    no_data_s: float = 15.0
    cuff_interval_min: float = 10.0
    audio_pause_s: float = 120.0
    escalate_s: Mapping[str, float] = field(default_factory=lambda: {"high": 60.0, "medium": 180.0})

    @classmethod
    def from_settings(cls, settings: Any) -> EngineConfig:
        """Build the config from vitals.settings.Settings."""
        return cls(
            no_data_s=settings.no_data_s,
            cuff_interval_min=settings.cuff_interval_min,
            audio_pause_s=settings.audio_pause_s,
            escalate_s={"high": settings.notify.escalate_high_s, "medium": settings.notify.escalate_medium_s},
        )


@dataclass(slots=True)
class _Alarm:
    alarm_id: str
    key: str  # "spo2.low" or a technical name
    vital: str
    kind: str
    priority: str
    since: int
    value: float | None
    limit: float | None
    text: str
    condition_active: bool = True
    acknowledged: bool = False
    acknowledged_by: str | None = None
    escalated: bool = False
    escalate_from: int | None = None  # wall ms of the first tick after raise/upgrade
    rule: str | None = None  # physiological: the rule that raised or last upgraded it

    def event(self, site: str, chair: str, event: str, ts: int, user: str | None = None,
              actionable: str | None = None, reason: str | None = None) -> AlarmEvent:
        return AlarmEvent(alarm_id=self.alarm_id, site=site, chair=chair, vital=self.vital, kind=self.kind,
                          priority=self.priority, event=event, value=self.value, limit=self.limit, ts=ts,
                          user=user, text=self.text, rule=self.rule, actionable=actionable, reason=reason)


@dataclass(slots=True)
class _Chair:
    site: str
    chair: str
    newest_ts: int | None = None
    vital_ts: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)  # rule id -> ts its condition started holding
    alarms: dict[str, _Alarm] = field(default_factory=dict)
    session: Session | None = None
    baseline_sys: float | None = None
    last_cuff_ts: int | None = None
    seen: bool = False  # readings arrived since the last tick
    last_seen_ms: int | None = None  # wall ms of the last tick that saw readings
    watch_from_ms: int | None = None  # wall ms since when the chair is watched for no_data
    status: str | None = None
    pause_until: int | None = None
    last_raise: dict[str, int] = field(default_factory=dict)  # key -> ts in its newest alarm id (ids never repeat)

    @property
    def session_active(self) -> bool:
        return self.session is not None and self.session.state == "active"

    @property
    def session_id(self) -> str | None:
        return self.session.session_id if self.session_active and self.session is not None else None


_CHAIR_FIELDS = tuple(_Chair.__dataclass_fields__)
_ALARM_FIELDS = tuple(_Alarm.__dataclass_fields__)
_SESSION_FIELDS = tuple(Session.__dataclass_fields__)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _phys_text(rule: Rule, value: float, limit: float, baseline: float | None) -> str:
    unit = UNITS[rule.vital]
    text = f"{LABELS[rule.vital]} {_fmt(value)} {unit} {rule.op} {_fmt(limit)} {unit}"
    if rule.baseline_pct is not None and baseline is not None:
        text += f" (baseline {_fmt(baseline)} + {rule.baseline_pct:g} %)"
    return text.replace(">=", "≥").replace("<=", "≤")


class AlarmEngine:
    """Alarm state of every chair; feed it inputs, collect the events it returns."""

    def __init__(self, book: RuleBook, config: EngineConfig | None = None) -> None:
        self.book = book
        self.config = config or EngineConfig()
        self._file_chairs = dict(book.chair_overrides)  # chair overrides of the rules file, under the dashboard's
        self._admin: dict[tuple[str, str], Mapping[str, Mapping[str, Any]]] = {}  # the dashboard's, per chair
        # Chairs whose effective limits may have changed (new chair, session, baseline, admin edit) since the
        # service last asked (take_limits_changed): it republishes those whose limits did change.
        self._limits_changed: set[tuple[str, str]] = set()
        self._chairs: dict[tuple[str, str], _Chair] = {}
        # Chairs changed since their JSON was last made, and that JSON: the ingest saves the state before each
        # acknowledgement round (5 a second), so only changed chairs are serialised again (to_state_text).
        self._touched: set[tuple[str, str]] = set()
        self._json: dict[tuple[str, str], str] = {}
        self._changed: set[tuple[str, str]] = set()
        self.ignored_readings = 0  # not newer than the newest of their chair

    # -- inputs ---------------------------------------------------------------------------------------------

    def on_readings(self, readings: Iterable[Reading]) -> list[AlarmEvent]:
        """Evaluate readings (in the order given); return the events they caused."""
        events: list[AlarmEvent] = []
        for reading in readings:
            self._reading(reading, events)
        return events

    def on_session(self, session: Session, now_ms: int) -> list[AlarmEvent]:
        """Take a session start, update or end; return the events it caused."""
        chair = self._chair(session.site, session.chair)
        events: list[AlarmEvent] = []
        old = chair.session
        new_session = old is None or old.session_id != session.session_id or old.started_at != session.started_at
        chair.session = session
        self._limits_changed.add((session.site, session.chair))  # the session layer and the baseline may change
        if session.state == "active":
            if new_session:
                chair.baseline_sys = session.baseline_sys
                for rule in self.book.rules:
                    if rule.baseline_pct is not None:
                        chair.pending.pop(rule.id, None)
            elif session.baseline_sys is not None:
                chair.baseline_sys = session.baseline_sys
        else:
            chair.baseline_sys = None
            self._set_condition(chair, "nibp_overdue", False, now_ms, events)
        return events

    def on_status(self, site: str, chair_id: str, status: str, now_ms: int) -> list[AlarmEvent]:
        """Take a device status (``online``/``offline``); return the events it caused."""
        chair = self._chair(site, chair_id)
        chair.status = status
        events: list[AlarmEvent] = []
        self._technical(chair, now_ms, events, offline_only=True)
        return events

    def on_command(self, command: AckCommand, now_ms: int) -> list[AlarmEvent]:
        """Apply an acknowledge or audio-pause command; return the events it caused."""
        chair = self._chair(command.site, command.chair)
        events: list[AlarmEvent] = []
        if command.action == "pause_audio":
            chair.pause_until = now_ms + round(self.config.audio_pause_s * 1000)
            self._changed.add((chair.site, chair.chair))
            return events
        for key, alarm in list(chair.alarms.items()):
            if alarm.alarm_id != command.alarm_id or alarm.acknowledged:
                continue
            alarm.acknowledged = True
            alarm.acknowledged_by = command.user
            events.append(alarm.event(chair.site, chair.chair, "acknowledged", now_ms, user=command.user,
                                      actionable=command.actionable, reason=command.reason))
            if not alarm.condition_active:
                del chair.alarms[key]
                events.append(alarm.event(chair.site, chair.chair, "cleared", now_ms))
            self._changed.add((chair.site, chair.chair))
        return events

    def notify_failed(self, site: str, chair_id: str, now_ms: int) -> list[AlarmEvent]:
        """Raise ``notify_failed`` for a chair whose notification could not be delivered."""
        events: list[AlarmEvent] = []
        self._set_condition(self._chair(site, chair_id), "notify_failed", True, now_ms, events)
        return events

    def notify_ok(self, site: str, chair_id: str, now_ms: int) -> list[AlarmEvent]:
        """Note a delivered notification for a chair: ``notify_failed``'s condition clears (it may stay latched)."""
        events: list[AlarmEvent] = []
        chair = self._chairs.get((site, chair_id))
        if chair is not None:
            self._touched.add((site, chair_id))
            self._set_condition(chair, "notify_failed", False, now_ms, events)
        return events

    def export_status(self, site: str, chair_id: str, failing: bool, now_ms: int) -> list[AlarmEvent]:
        """Take a chair's export health: ``failing`` raises ``export_failed``, ok clears its condition."""
        events: list[AlarmEvent] = []
        if not failing and (site, chair_id) not in self._chairs:
            return events
        chair = self._chair(site, chair_id)
        self._touched.add((site, chair_id))
        self._set_condition(chair, "export_failed", failing, now_ms, events)
        return events

    def assessment_overdue(self, site: str, chair_id: str, overdue: list[str], now_ms: int) -> list[AlarmEvent]:
        """Raise ``assessment_overdue`` for a chair while ``overdue`` (labels of overdue items) is not empty; clear it
        when it is. The text names the items overdue when it was raised."""
        events: list[AlarmEvent] = []
        chair = self._chairs.get((site, chair_id))
        if chair is None and not overdue:
            return events
        chair = self._chair(site, chair_id)
        text = f"{TECH_TEXT['assessment_overdue']}: {', '.join(overdue)}" if overdue else None
        self._set_condition(chair, "assessment_overdue", bool(overdue), now_ms, events, text=text)
        return events

    def tick(self, now_ms: int) -> list[AlarmEvent]:
        """Advance the wall clock: no_data, offline, audio-pause expiry and escalation."""
        events: list[AlarmEvent] = []
        self._touched.update(self._chairs)  # a tick may change any chair (last seen, pauses, escalation)
        for chair in self._chairs.values():
            if chair.seen:
                chair.last_seen_ms = now_ms
                chair.seen = False
            self._technical(chair, now_ms, events)
            if chair.pause_until is not None and now_ms >= chair.pause_until:
                chair.pause_until = None
                self._changed.add((chair.site, chair.chair))
            for alarm in chair.alarms.values():
                limit_s = self.config.escalate_s.get(alarm.priority)
                if alarm.acknowledged or alarm.escalated or limit_s is None:
                    continue
                if alarm.escalate_from is None:
                    alarm.escalate_from = now_ms
                elif now_ms - alarm.escalate_from >= limit_s * 1000:
                    alarm.escalated = True
                    events.append(alarm.event(chair.site, chair.chair, "escalated", now_ms))
        return events

    # -- outputs --------------------------------------------------------------------------------------------

    def active(self, site: str, chair_id: str) -> list[ActiveAlarm]:
        """Return the chair's standing alarms, highest priority first, then oldest first."""
        chair = self._chairs.get((site, chair_id))
        if chair is None:
            return []
        alarms = sorted(chair.alarms.values(), key=lambda a: (-PRIORITY_RANK[a.priority], a.since, a.alarm_id))
        return [
            ActiveAlarm(alarm_id=a.alarm_id, vital=a.vital, kind=a.kind, priority=a.priority, since=a.since,
                        text=a.text, value=a.value, limit=a.limit, condition_active=a.condition_active,
                        acknowledged=a.acknowledged, acknowledged_by=a.acknowledged_by,
                        audio_paused_until=chair.pause_until)
            for a in alarms
        ]

    def take_changed(self) -> list[tuple[str, str]]:
        """Return (site, chair) of every chair whose active list changed since the last call, and forget them."""
        changed = sorted(self._changed)
        self._changed.clear()
        return changed

    def take_limits_changed(self) -> list[tuple[str, str]]:
        """Return (site, chair) of every chair whose effective limits may have changed since the last call."""
        changed = sorted(self._limits_changed)
        self._limits_changed.clear()
        return changed

    def effective_limits(self, site: str, chair_id: str) -> dict[str, Any]:
        """Return the limits the engine enforces for a chair now (rules.effective_limits)."""
        chair = self._chairs.get((site, chair_id))
        return effective_limits(self.book, site, chair_id, chair.session_id if chair else None,
                                chair.baseline_sys if chair else None, self._admin.get((site, chair_id)))

    def chairs(self) -> list[tuple[str, str]]:
        """Return every (site, chair) the engine knows."""
        return sorted(self._chairs)

    def session(self, site: str, chair_id: str) -> Session | None:
        """Return the chair's current session (active or ended), if any."""
        chair = self._chairs.get((site, chair_id))
        return chair.session if chair is not None else None

    def restarted(self, now_ms: int) -> None:
        """Treat ``now_ms`` as the last time every watched chair was seen (after a restart from saved state)."""
        for chair in self._chairs.values():
            if chair.last_seen_ms is not None:
                chair.last_seen_ms = max(chair.last_seen_ms, now_ms)
            if chair.watch_from_ms is not None:
                chair.watch_from_ms = max(chair.watch_from_ms, now_ms)

    # -- persistence ----------------------------------------------------------------------------------------

    def set_chair_overrides(self, site: str, chair_id: str, overrides: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace a chair's rule overrides ({rule id: {field: value}}, already validated); empty removes them."""
        chairs = dict(self.book.chair_overrides)
        # Layer on the rules file's own chair level (kept from the book the engine started with), field by field,
        # so an empty payload returns the chair to the file's rules rather than dropping them.
        merged = {rid: dict(fields) for rid, fields in self._file_chairs.get((site, chair_id), {}).items()}
        for rid, fields in overrides.items():
            merged.setdefault(rid, {}).update(fields)
        if merged:
            chairs[(site, chair_id)] = MappingProxyType({k: MappingProxyType(v) for k, v in merged.items()})
        else:
            chairs.pop((site, chair_id), None)
        self.book = replace(self.book, chair_overrides=MappingProxyType(chairs), _cache={})
        if overrides:
            self._admin[(site, chair_id)] = {rid: dict(fields) for rid, fields in overrides.items()}
        else:
            self._admin.pop((site, chair_id), None)
        self._touched.add((site, chair_id))
        self._limits_changed.add((site, chair_id))

    def admin_overrides(self) -> dict[tuple[str, str], dict[str, dict[str, Any]]]:
        """Return a copy of every chair's admin overrides (the dashboard's edits the engine applies)."""
        return {key: {rid: dict(fields) for rid, fields in rules.items()} for key, rules in self._admin.items()}

    def to_state(self) -> dict[str, Any]:
        """Return the whole state as JSON-able data (see load_state); a snapshot sharing nothing mutable."""
        return {"version": STATE_VERSION, "chairs": [_chair_state(chair) for chair in self._chairs.values()]}

    def to_state_text(self) -> str:
        """Return the state as JSON text (what to_state gives), serialising only chairs changed since last time."""
        for key in self._touched:
            chair = self._chairs.get(key)
            if chair is not None:
                self._json[key] = _chair_json(chair)
        self._touched.clear()
        parts = [self._json[key] for key in self._chairs]
        return f'{{"version":{STATE_VERSION},"chairs":[{",".join(parts)}]}}'

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Replace the state with one saved by to_state; raise ValueError if it is not one."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"alarm state version {state.get('version')!r} is not {STATE_VERSION}")
        chairs: dict[tuple[str, str], _Chair] = {}
        for obj in state["chairs"]:
            obj = dict(obj)
            alarms = [_Alarm(**a) for a in obj.pop("alarms")]
            session = obj.pop("session")
            chair = _Chair(**obj)
            chair.session = None if session is None else Session(**session)
            chair.alarms = {a.key: a for a in alarms}
            chairs[(chair.site, chair.chair)] = chair
        self._chairs = chairs
        self._changed = set(chairs)
        self._touched = set(chairs)
        self._limits_changed = set(chairs)
        self._json = {}

    # -- internals ------------------------------------------------------------------------------------------

    def _chair(self, site: str, chair_id: str) -> _Chair:
        self._touched.add((site, chair_id))
        chair = self._chairs.get((site, chair_id))
        if chair is None:
            chair = self._chairs[(site, chair_id)] = _Chair(site, chair_id)
            self._limits_changed.add((site, chair_id))
        return chair

    def _reading(self, reading: Reading, events: list[AlarmEvent]) -> None:
        chair = self._chair(reading.site, reading.chair)
        ts = reading.ts_ms
        if chair.newest_ts is not None and ts <= chair.newest_ts:
            self.ignored_readings += 1
            return
        chair.newest_ts = ts
        chair.seen = True
        values = reading.values()
        session = chair.session
        if (reading.sys is not None and chair.session_active and chair.baseline_sys is None
                and session is not None and ts >= session.started_at):
            chair.baseline_sys = reading.sys
            self._limits_changed.add((chair.site, chair.chair))  # the baseline rule now has a limit
        gap_ms = self.book.gap_ms
        for key, group in self.book.groups_for(chair.site, chair.chair, chair.session_id):
            vital = group[0].vital
            value = values.get(vital)
            if value is None:
                continue
            last = chair.vital_ts.get(vital)
            restart = last is None or ts - last > gap_ms
            met: list[tuple[Rule, float]] = []
            for rule in group:
                limit = rule.limit_for(chair.baseline_sys)
                if limit is None or not holds(value, rule.op, limit):
                    chair.pending.pop(rule.id, None)
                    continue
                start = chair.pending.get(rule.id)
                if start is None or restart:
                    start = chair.pending[rule.id] = ts
                if ts - start >= rule.delay_ms:
                    met.append((rule, limit))
            alarm = chair.alarms.get(key)
            if met:
                rule, limit = max(met, key=lambda m: PRIORITY_RANK[m[0].priority])
                text = _phys_text(rule, value, limit, chair.baseline_sys)
                if alarm is None:
                    alarm = _Alarm(
                        alarm_id=self._new_id(chair, key, ts), key=key, vital=vital, kind="physiological",
                        priority=rule.priority, since=ts, value=value, limit=limit, text=text, rule=rule.id,
                    )
                    chair.alarms[key] = alarm
                    self._raised(chair, alarm, "raised", ts, events)
                elif PRIORITY_RANK[rule.priority] > PRIORITY_RANK[alarm.priority]:
                    alarm.priority, alarm.value, alarm.limit, alarm.text = rule.priority, value, limit, text
                    alarm.rule = rule.id
                    alarm.condition_active = True
                    alarm.acknowledged, alarm.acknowledged_by = False, None
                    alarm.escalated, alarm.escalate_from = False, None
                    self._raised(chair, alarm, "upgraded", ts, events)
                elif not alarm.condition_active:
                    alarm.condition_active = True
                    self._changed.add((chair.site, chair.chair))
            elif alarm is not None and alarm.condition_active and self._clears(chair, group, value):
                self._condition_cleared(chair, alarm, ts, events)
        for vital in values:
            chair.vital_ts[vital] = ts
        if reading.sys is not None or reading.dia is not None:
            chair.last_cuff_ts = ts
        self._nibp(chair, ts, reading, events)

    @staticmethod
    def _new_id(chair: _Chair, key: str, ts: int) -> str:
        """Return ``{site}.{chair}.{key}.{ts}``, the ts moved past the key's previous alarm so no id repeats."""
        stamp = max(ts, chair.last_raise.get(key, ts - 1) + 1)
        chair.last_raise[key] = stamp
        return f"{chair.site}.{chair.chair}.{key}.{stamp}"

    def _clears(self, chair: _Chair, group: tuple[Rule, ...], value: float) -> bool:
        margin = self.book.hysteresis.get(group[0].vital, 0.0)
        for rule in group:
            limit = rule.limit_for(chair.baseline_sys)
            if limit is None:
                continue
            if rule.direction == "low" and value < limit + margin:
                return False
            if rule.direction == "high" and value > limit - margin:
                return False
        return True

    def _raised(self, chair: _Chair, alarm: _Alarm, event: str, ts: int, events: list[AlarmEvent]) -> None:
        chair.pause_until = None  # a new or higher alarm breaks through an audio pause
        events.append(alarm.event(chair.site, chair.chair, event, ts))
        self._changed.add((chair.site, chair.chair))

    def _condition_cleared(self, chair: _Chair, alarm: _Alarm, ts: int, events: list[AlarmEvent]) -> None:
        if alarm.priority in self.book.latching and not alarm.acknowledged:
            alarm.condition_active = False
        else:
            del chair.alarms[alarm.key]
            events.append(alarm.event(chair.site, chair.chair, "cleared", ts))
        self._changed.add((chair.site, chair.chair))

    def _set_condition(self, chair: _Chair, name: str, active: bool, ts: int, events: list[AlarmEvent],
                       text: str | None = None) -> None:
        """Raise or clear the technical alarm ``name`` of a chair (``text`` replaces its standard text)."""
        alarm = chair.alarms.get(name)
        if active:
            if alarm is None:
                alarm = _Alarm(alarm_id=self._new_id(chair, name, ts), key=name, vital=name, kind="technical",
                               priority=self.book.technical[name], since=ts, value=None, limit=None,
                               text=(text or TECH_TEXT[name])[:256])
                chair.alarms[name] = alarm
                self._raised(chair, alarm, "raised", ts, events)
            elif not alarm.condition_active:
                alarm.condition_active = True
                self._changed.add((chair.site, chair.chair))
        elif alarm is not None and alarm.condition_active:
            self._condition_cleared(chair, alarm, ts, events)

    def _technical(self, chair: _Chair, now_ms: int, events: list[AlarmEvent], offline_only: bool = False) -> None:
        recent = chair.last_seen_ms is not None and now_ms - chair.last_seen_ms <= self.book.recent_s * 1000
        watched = chair.session_active or recent or chair.seen
        offline = watched and chair.status == "offline"
        self._set_condition(chair, "offline", offline, now_ms, events)
        if offline_only:
            return
        if not watched:
            chair.watch_from_ms = None
        elif chair.watch_from_ms is None:
            chair.watch_from_ms = now_ms
        quiet_since = chair.last_seen_ms if chair.last_seen_ms is not None else chair.watch_from_ms
        no_data = (watched and not offline and not chair.seen and quiet_since is not None
                   and now_ms - quiet_since >= self.config.no_data_s * 1000)
        self._set_condition(chair, "no_data", no_data, now_ms, events)

    def _nibp(self, chair: _Chair, ts: int, reading: Reading, events: list[AlarmEvent]) -> None:
        session = chair.session
        if not chair.session_active or session is None:
            return
        since = max(chair.last_cuff_ts or session.started_at, session.started_at)
        overdue_ms = self.book.nibp_overdue_factor * self.config.cuff_interval_min * 60_000
        is_cuff = any(getattr(reading, v) is not None for v in CUFF_RULE_VITALS)
        self._set_condition(chair, "nibp_overdue", not is_cuff and ts - since >= overdue_ms, ts, events)


_encode = msgspec.json.Encoder().encode


def _chair_json(chair: _Chair) -> str:
    """Return ``json.dumps(_chair_state(chair))`` (compact), made without copying: msgspec encodes the dataclasses.

    The checkpoint before each round of acknowledgements serialises every chair that changed: at 2,000 chairs
    this was the largest item of the ingest's own code per reading (docs/benchmarks.md).
    """
    obj = {name: getattr(chair, name) for name in _CHAIR_FIELDS}
    obj["alarms"] = list(chair.alarms.values())
    obj["seen"] = False
    return _encode(obj).decode()


def _chair_state(chair: _Chair) -> dict[str, Any]:
    """Return one chair's state as JSON-able data sharing nothing mutable."""
    obj = {name: getattr(chair, name) for name in _CHAIR_FIELDS}
    for name in ("vital_ts", "pending", "last_raise"):
        obj[name] = dict(obj[name])
    obj["session"] = None if chair.session is None else {n: getattr(chair.session, n) for n in _SESSION_FIELDS}
    obj["alarms"] = [{n: getattr(a, n) for n in _ALARM_FIELDS} for a in chair.alarms.values()]
    obj["seen"] = False
    return obj
