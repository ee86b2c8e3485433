"""Alarm rules: the shipped table (default_rules.toml), site/chair/session overrides, validation.

The rule facts live in ``default_rules.toml`` only; docs/alarm-rules.md embeds the table that
``rules_markdown()`` generates from it (``python -m ingest.alarms.rules``), and a test checks they match.

An override file (setting ``alarm_rules_file``) changes existing rules, never adds any::

    [hysteresis]                                  # optional, replaces margins by vital
    spo2 = 3
    [technical]                                   # optional, technical alarm priorities
    nibp_overdue = "medium"
    [rules.spo2-low-medium]                       # every site
    limit = 88
    [sites.north.rules.hr-high-medium]            # one site
    limit = 130
    [sites.north.chairs.c-07.rules.rr-high-medium]  # one chair of a site
    enabled = false
    [sessions."S-2026-11-25-c07-1".rules.sys-baseline-medium]  # one session
    baseline_pct = 25

Each level overrides the one before (defaults < file < site < chair < session), field by field.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from vitals.limits import LIMIT_NAMES, LIMIT_VITALS, limit_name
from vitals.reading import LABELS, PLAUSIBLE, UNITS
from vitals.records import PRIORITIES, PRIORITY_RANK
from vitals.topics import TopicError, check_id

# Vitals the engine judges, and which of them come from the cuff (one measurement minutes apart).
RULE_VITALS: tuple[str, ...] = ("spo2", "hr", "rr", "sys", "dia")
CUFF_RULE_VITALS: frozenset[str] = frozenset({"sys", "dia"})
OPS: Mapping[str, str] = MappingProxyType({"<": "low", "<=": "low", ">": "high", ">=": "high"})
TECHNICAL: tuple[str, ...] = ("no_data", "offline", "nibp_overdue", "notify_failed", "assessment_overdue")
RULE_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# The longest delay anyone could mean; more is a typo (minutes typed as seconds, say).
MAX_DELAY_S = 3600.0

_RULE_KEYS = frozenset({"id", "vital", "op", "limit", "baseline_pct", "priority", "delay_s", "enabled"})
_OVERRIDE_KEYS = frozenset({"limit", "baseline_pct", "priority", "delay_s", "enabled"})
_TOP_KEYS = frozenset({"gap_s", "recent_s", "nibp_overdue_factor", "latching", "hysteresis", "technical", "rule"})
_FILE_KEYS = frozenset({"gap_s", "recent_s", "nibp_overdue_factor", "latching", "hysteresis", "technical",
                        "rules", "sites", "sessions"})


class RulesError(ValueError):
    """An alarm rules file that is not valid; the message names the file, the place and the value."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One physiological rule: ``vital op limit`` (or ``op baseline * (1 + pct/100)``) held for ``delay_s``."""

    id: str
    vital: str
    op: str
    priority: str
    delay_s: float
    limit: float | None = None
    baseline_pct: float | None = None
    enabled: bool = True

    @property
    def direction(self) -> str:
        """Return ``low`` or ``high``: which side of normal this rule guards."""
        return OPS[self.op]

    @property
    def key(self) -> str:
        """Return the alarm key this rule feeds: one alarm per chair, vital and direction."""
        return f"{self.vital}.{self.direction}"

    @property
    def delay_ms(self) -> int:
        """Return the delay in milliseconds."""
        return round(self.delay_s * 1000)

    def limit_for(self, baseline: float | None) -> float | None:
        """Return the absolute limit, or None for a baseline rule without a baseline yet."""
        if self.baseline_pct is None:
            return self.limit
        if baseline is None:
            return None
        return round(baseline * (1 + self.baseline_pct / 100), 1)

    def condition_text(self) -> str:
        """Return the condition for people, e.g. ``< 90 %`` or ``>= baseline + 30 %``."""
        if self.baseline_pct is not None:
            return f"{self.op} baseline + {self.baseline_pct:g} %"
        return f"{self.op} {self.limit:g} {UNITS[self.vital]}"


def holds(value: float, op: str, limit: float) -> bool:
    """Return whether ``value op limit`` is true."""
    if op == "<":
        return value < limit
    if op == "<=":
        return value <= limit
    if op == ">":
        return value > limit
    return value >= limit


@dataclass(frozen=True)
class RuleBook:
    """The effective rules: defaults plus overrides, resolved per site, chair and session."""

    rules: tuple[Rule, ...]
    hysteresis: Mapping[str, float]
    technical: Mapping[str, str]
    gap_s: float = 5.0
    recent_s: float = 600.0
    nibp_overdue_factor: float = 1.5
    latching: frozenset[str] = frozenset({"high"})
    site_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    chair_overrides: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    session_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    file_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # the file's [rules], for sources
    source: str = "default_rules.toml"
    _cache: dict[tuple[str, str, str | None], tuple[tuple[str, tuple[Rule, ...]], ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def gap_ms(self) -> int:
        """Return the restart gap in milliseconds."""
        return round(self.gap_s * 1000)

    def groups_for(self, site: str, chair: str, session_id: str | None) -> tuple[tuple[str, tuple[Rule, ...]], ...]:
        """Return the enabled rules for a chair (and session) grouped by alarm key, in table order."""
        cache_key = (site, chair, session_id)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        layers = [self.site_overrides.get(site), self.chair_overrides.get((site, chair))]
        if session_id is not None:
            layers.append(self.session_overrides.get(session_id))
        rules = list(self.rules)
        for layer in layers:
            if layer:
                rules = [replace(r, **layer[r.id]) if r.id in layer else r for r in rules]
        groups: dict[str, list[Rule]] = {}
        for rule in rules:
            if rule.enabled:
                groups.setdefault(rule.key, []).append(rule)
        result = tuple((key, tuple(group)) for key, group in groups.items())
        if len(self._cache) > 100_000:  # bounded: sessions come and go
            self._cache.clear()
        self._cache[cache_key] = result
        return result

    def rules_for(self, site: str, chair: str, session_id: str | None = None) -> tuple[Rule, ...]:
        """Return the enabled rules for a chair (and session), in table order."""
        return tuple(rule for _, group in self.groups_for(site, chair, session_id) for rule in group)

    def priorities(self, key: str) -> frozenset[str]:
        """Return every priority any rule of an alarm key may have (before per-chair overrides)."""
        found = {r.priority for r in self.rules if r.key == key}
        for scope in (self.site_overrides, self.chair_overrides, self.session_overrides):
            for layer in scope.values():
                for rule in self.rules:
                    if rule.key == key and "priority" in layer.get(rule.id, {}):
                        found.add(layer[rule.id]["priority"])
        return frozenset(found)


def effective_limits(book: RuleBook, site: str, chair: str, session_id: str | None = None,
                     baseline_sys: float | None = None,
                     admin: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Return what the engine enforces for a chair: ``{"limits", "rules", "session_id"}`` (vitals.limits shapes).

    The values are the engine's own (``book.rules_for``, which the engine evaluates); the ``source`` of each
    limit is the strongest layer that set it. ``admin`` is the part of the book's chair level that came from an
    admin's edit (the rest of that level is the rules file's chair table).
    """
    admin = admin or {}
    file_chair = book.chair_overrides.get((site, chair), {})
    layers: list[tuple[str, Mapping[str, Mapping[str, Any]]]] = [
        ("file", book.file_overrides), ("site", book.site_overrides.get(site, {})),
        ("chair", {rid: {k: v for k, v in fields.items() if k not in admin.get(rid, {})}
                   for rid, fields in file_chair.items()}),
        ("admin", admin),
    ]
    if session_id is not None:
        layers.append(("session", book.session_overrides.get(session_id, {})))
    limits: dict[str, dict[str, float]] = {}
    rules: dict[str, dict[str, Any]] = {}
    for rule in book.rules_for(site, chair, session_id):
        field_name = "limit" if rule.baseline_pct is None else "baseline_pct"
        source = "default"
        for layer, overrides in layers:
            if field_name in overrides.get(rule.id, {}):
                source = layer
        limit = rule.limit_for(baseline_sys)
        entry: dict[str, Any] = {"vital": rule.vital, "limit": limit, "priority": rule.priority,
                                 "delay_s": rule.delay_s, "source": source}
        if rule.baseline_pct is not None:
            entry["baseline_pct"] = rule.baseline_pct
            entry["baseline_sys"] = baseline_sys
        rules[rule.id] = entry
        name = limit_name(rule.id, rule.vital)
        if name is not None and rule.baseline_pct is None and limit is not None:
            limits.setdefault(rule.vital, {})[name] = limit
    ordered = {v: {n: limits[v][n] for n in LIMIT_NAMES if n in limits[v]} for v in LIMIT_VITALS if v in limits}
    return {"limits": ordered, "rules": rules, "session_id": session_id}


# -- loading ---------------------------------------------------------------------------------------------


def _number(value: object, where: str, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RulesError(f"{where} must be a finite number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise RulesError(f"{where} = {value!r} is outside {low:g}..{high:g}")
    return float(value)


def _table(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RulesError(f"{where} must be a table, not {type(value).__name__}")
    return value


def _unknown(keys: Any, allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(keys) - allowed)
    if extra:
        raise RulesError(f"{where}: unknown key {extra[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _priority(value: object, where: str) -> str:
    if value not in PRIORITIES:
        raise RulesError(f"{where} = {value!r} is not one of {', '.join(PRIORITIES)}")
    return value  # type: ignore[return-value]


def _check_rule(rule: Rule, where: str) -> Rule:
    """Check the facts of one rule (after overrides), raising RulesError naming what is wrong."""
    if rule.vital not in RULE_VITALS:
        raise RulesError(f"{where}: vital {rule.vital!r} is not one of {', '.join(RULE_VITALS)}")
    if rule.op not in OPS:
        raise RulesError(f"{where}: op {rule.op!r} is not one of {', '.join(OPS)}")
    _priority(rule.priority, f"{where}.priority")
    _number(rule.delay_s, f"{where}.delay_s", low=0.0, high=MAX_DELAY_S)
    if rule.vital in CUFF_RULE_VITALS and rule.delay_s != 0:
        raise RulesError(f"{where}.delay_s must be 0 for the cuff vital {rule.vital!r}: cuff readings come minutes "
                         "apart, so each one is judged on its own")
    if (rule.limit is None) == (rule.baseline_pct is None):
        raise RulesError(f"{where}: give exactly one of limit and baseline_pct")
    if rule.limit is not None:
        low, high = PLAUSIBLE[rule.vital]
        _number(rule.limit, f"{where}.limit", low=low, high=high)
    if rule.baseline_pct is not None:
        if rule.vital != "sys" or rule.direction != "high":
            raise RulesError(f"{where}: baseline_pct is only for a sys rule with op > or >=")
        _number(rule.baseline_pct, f"{where}.baseline_pct", low=1.0, high=200.0)
    if not isinstance(rule.enabled, bool):
        raise RulesError(f"{where}.enabled must be true or false")
    return rule


def _parse_rule(obj: object, where: str) -> Rule:
    doc = _table(obj, where)
    _unknown(doc, _RULE_KEYS, where)
    rule_id = doc.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id):
        raise RulesError(f"{where}.id {rule_id!r} must be 1-64 characters of a-z 0-9 _ -")
    where = f"rule {rule_id!r}"
    for name in ("vital", "op", "priority", "delay_s"):
        if name not in doc:
            raise RulesError(f"{where}: {name} is missing")
    return _check_rule(
        Rule(
            id=rule_id, vital=doc["vital"], op=doc["op"], priority=doc["priority"],
            delay_s=_number(doc["delay_s"], f"{where}.delay_s"),
            limit=None if doc.get("limit") is None else _number(doc["limit"], f"{where}.limit"),
            baseline_pct=None if doc.get("baseline_pct") is None else _number(doc["baseline_pct"], f"{where}.baseline_pct"),
            enabled=doc.get("enabled", True),
        ),
        where,
    )


def _parse_overrides(obj: object, where: str, rules: Mapping[str, Rule]) -> dict[str, dict[str, Any]]:
    """Return {rule id: {field: value}} from a ``rules`` table, each field checked against its rule."""
    out: dict[str, dict[str, Any]] = {}
    for rule_id, fields in _table(obj, where).items():
        here = f"{where}.{rule_id}"
        if rule_id not in rules:
            raise RulesError(f"{here}: no rule with id {rule_id!r} (known: {', '.join(rules)})")
        fields = _table(fields, here)
        _unknown(fields, _OVERRIDE_KEYS, here)
        changes: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "enabled":
                if not isinstance(value, bool):
                    raise RulesError(f"{here}.enabled must be true or false")
                changes[name] = value
            elif name == "priority":
                changes[name] = _priority(value, f"{here}.priority")
            else:
                changes[name] = _number(value, f"{here}.{name}")
        base = rules[rule_id]
        if "limit" in changes and base.baseline_pct is not None:
            raise RulesError(f"{here}.limit: rule {rule_id!r} is relative to the baseline; set baseline_pct")
        if "baseline_pct" in changes and base.limit is not None:
            raise RulesError(f"{here}.baseline_pct: rule {rule_id!r} has an absolute limit; set limit")
        _check_rule(replace(base, **changes), here)
        out[rule_id] = changes
    return out


def _scalars(doc: dict[str, Any], where: str, into: dict[str, Any]) -> None:
    if "gap_s" in doc:
        into["gap_s"] = _number(doc["gap_s"], f"{where}gap_s", low=0.5, high=600.0)
    if "recent_s" in doc:
        into["recent_s"] = _number(doc["recent_s"], f"{where}recent_s", low=0.0, high=86400.0)
    if "nibp_overdue_factor" in doc:
        into["nibp_overdue_factor"] = _number(doc["nibp_overdue_factor"], f"{where}nibp_overdue_factor", low=1.0, high=10.0)
    if "latching" in doc:
        latching = doc["latching"]
        if not isinstance(latching, list):
            raise RulesError(f"{where}latching must be a list of priorities")
        into["latching"] = frozenset(_priority(p, f"{where}latching[{i}]") for i, p in enumerate(latching))
    if "hysteresis" in doc:
        margins = dict(into.get("hysteresis", {}))
        for vital, value in _table(doc["hysteresis"], f"{where}hysteresis").items():
            if vital not in RULE_VITALS:
                raise RulesError(f"{where}hysteresis.{vital}: not one of {', '.join(RULE_VITALS)}")
            margins[vital] = _number(value, f"{where}hysteresis.{vital}", low=0.0, high=50.0)
        into["hysteresis"] = margins
    if "technical" in doc:
        technical = dict(into.get("technical", {}))
        for name, value in _table(doc["technical"], f"{where}technical").items():
            if name not in TECHNICAL:
                raise RulesError(f"{where}technical.{name}: not one of {', '.join(TECHNICAL)}")
            technical[name] = _priority(value, f"{where}technical.{name}")
        into["technical"] = technical


def _read_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from None


def default_rules_text() -> str:
    """Return the text of the shipped default_rules.toml."""
    return resources.files("ingest.alarms").joinpath("default_rules.toml").read_text(encoding="utf-8")


def parse_defaults(text: str, source: str = "default_rules.toml") -> RuleBook:
    """Return a RuleBook from a complete rules table (the shipped defaults' format)."""
    doc = _read_toml(text, source)
    try:
        _unknown(doc, _TOP_KEYS, "top level")
        raw_rules = doc.get("rule")
        if not isinstance(raw_rules, list) or not raw_rules:
            raise RulesError("[[rule]] entries are missing")
        rules = [_parse_rule(obj, f"rule[{i}]") for i, obj in enumerate(raw_rules)]
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise RulesError(f"rule id {rule.id!r} appears twice")
            seen.add(rule.id)
        into: dict[str, Any] = {}
        _scalars(doc, "", into)
        margins = into.pop("hysteresis", {})
        missing = sorted({r.vital for r in rules} - set(margins))
        if missing:
            raise RulesError(f"hysteresis.{missing[0]} is missing")
        technical = into.pop("technical", {})
        missing = sorted(set(TECHNICAL) - set(technical))
        if missing:
            raise RulesError(f"technical.{missing[0]} is missing")
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None
    return RuleBook(rules=tuple(rules), hysteresis=MappingProxyType(margins), technical=MappingProxyType(technical),
                    source=source, **into)


def apply_overrides(book: RuleBook, text: str, source: str) -> RuleBook:
    """Return ``book`` changed by an override file's text (format in this module's docstring)."""
    doc = _read_toml(text, source)
    by_id = {r.id: r for r in book.rules}
    try:
        _unknown(doc, _FILE_KEYS, "top level")
        into: dict[str, Any] = {"hysteresis": dict(book.hysteresis), "technical": dict(book.technical)}
        _scalars(doc, "", into)
        rules = list(book.rules)
        changes: dict[str, dict[str, Any]] = {}
        if "rules" in doc:
            changes = _parse_overrides(doc["rules"], "rules", by_id)
            rules = [replace(r, **changes[r.id]) if r.id in changes else r for r in rules]
            by_id = {r.id: r for r in rules}
        sites: dict[str, dict[str, dict[str, Any]]] = {}
        chairs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for site, body in _table(doc.get("sites", {}), "sites").items():
            where = f"sites.{site}"
            _check_id(site, where)
            body = _table(body, where)
            _unknown(body, frozenset({"rules", "chairs"}), where)
            site_changes = _parse_overrides(body.get("rules", {}), f"{where}.rules", by_id)
            sites[site] = site_changes
            site_rules = {rid: replace(r, **site_changes.get(rid, {})) for rid, r in by_id.items()}
            for chair, chair_body in _table(body.get("chairs", {}), f"{where}.chairs").items():
                here = f"{where}.chairs.{chair}"
                _check_id(chair, here)
                chair_body = _table(chair_body, here)
                _unknown(chair_body, frozenset({"rules"}), here)
                chairs[(site, chair)] = _parse_overrides(chair_body.get("rules", {}), f"{here}.rules", site_rules)
        sessions: dict[str, dict[str, dict[str, Any]]] = {}
        for session_id, body in _table(doc.get("sessions", {}), "sessions").items():
            where = f"sessions.{session_id}"
            body = _table(body, where)
            _unknown(body, frozenset({"rules"}), where)
            sessions[session_id] = _parse_overrides(body.get("rules", {}), f"{where}.rules", by_id)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None
    margins = into.pop("hysteresis")
    technical = into.pop("technical")
    return replace(
        book, rules=tuple(rules), hysteresis=MappingProxyType(margins), technical=MappingProxyType(technical),
        site_overrides=MappingProxyType(sites), chair_overrides=MappingProxyType(chairs),
        session_overrides=MappingProxyType(sessions), file_overrides=MappingProxyType(changes),
        source=f"{book.source} + {source}", _cache={}, **into,
    )


def chair_overrides(book: RuleBook, site: str, obj: object, where: str) -> dict[str, dict[str, Any]]:
    """Return validated per-chair overrides ({rule id: {limit, priority, delay_s, enabled}}) for a site's rules."""
    site_rules = {r.id: replace(r, **book.site_overrides.get(site, {}).get(r.id, {})) for r in book.rules}
    return _parse_overrides(obj, where, site_rules)


def _check_id(value: str, where: str) -> None:
    try:
        check_id(value, where)
    except TopicError as exc:
        raise RulesError(str(exc)) from None


def load_rules(path: str | Path | None = None) -> RuleBook:
    """Return the shipped rules, changed by the override file at ``path`` when one is given."""
    book = parse_defaults(default_rules_text())
    if path is None:
        return book
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"alarm rules file {file}: cannot be read: {exc.strerror or exc}") from None
    return apply_overrides(book, text, str(file))


# -- documentation -----------------------------------------------------------------------------------------


def rules_markdown(book: RuleBook | None = None) -> str:
    """Return the rule table, margins and technical priorities in Markdown (docs/alarm-rules.md embeds it)."""
    book = book or parse_defaults(default_rules_text())
    lines = [
        "| id | vital | condition | priority | delay | clears at |",
        "|---|---|---|---|---|---|",
    ]
    for rule in book.rules:
        margin = book.hysteresis[rule.vital]
        sign = "+" if rule.direction == "low" else "−"
        if rule.baseline_pct is not None:
            clears = f"≤ limit − {margin:g} {UNITS[rule.vital]}"
        else:
            assert rule.limit is not None
            bound = rule.limit + margin if rule.direction == "low" else rule.limit - margin
            clears = f"{'≥' if rule.direction == 'low' else '≤'} {bound:g} {UNITS[rule.vital]} ({sign}{margin:g})"
        delay = f"{rule.delay_s:g} s" if rule.delay_s else "none (each cuff reading)"
        lines.append(f"| `{rule.id}` | {LABELS[rule.vital]} | {rule.condition_text()} | {rule.priority} | {delay} | {clears} |")
    lines += ["", "| technical alarm | priority |", "|---|---|"]
    lines += [f"| `{name}` | {book.technical[name]} |" for name in TECHNICAL]
    lines += [
        "",
        f"- A gap of more than {book.gap_s:g} s between two readings of a vital restarts every delay on that vital.",
        f"- `no_data` and `offline` apply to a chair with an active session or one that sent readings in the last "
        f"{book.recent_s:g} s.",
        f"- `nibp_overdue`: an active session had no cuff reading for {book.nibp_overdue_factor:g} × `cuff_interval_min`.",
        "- `assessment_overdue`: an item of the site's care plan (a cuff BP, a CADSS) is overdue by its grace "
        "(wall clock; docs/care-plan.md).",
        f"- Latching priorities: {', '.join(sorted(book.latching, key=lambda p: -PRIORITY_RANK[p]))}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(rules_markdown(), end="")
