"""What-if replay: the stored readings and sessions of a period through the live engine, under two rule books.

The engine (engine.py) is the one the ingest runs and judges on event time, so history replays exactly and far
faster than real time. ``replay`` streams readings from the store in time order (``Store.iter_readings``) and
feeds each batch to one engine per rule book, with the sessions' starts and ends and the stored
acknowledgements interleaved at their times. An acknowledgement is applied, in each engine, to the alarm of
the same chair and key standing then (the alternative's alarm may have another id).

Counted: physiological alarms (the rules govern those). Wall-clock technical alarms (no_data, offline,
escalation) need the live clock and are not replayed. ``compare`` pairs each run's episodes (same chair and key,
overlapping in time) and lists what the alternative removes, adds or delays; the JSON keys are documented in
docs/alarm-rules.md ("What-if replay").
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from vitals.alarm_report import SESSION_LOOKBACK_MS, session_chair_hours
from vitals.reading import Reading, format_ts
from vitals.records import AckCommand, AlarmEvent, Session

from .engine import AlarmEngine, EngineConfig
from .rules import RuleBook, apply_overrides

# Readings fed to the engines per call between two session or acknowledgement inputs.
BATCH = 2000
WHATIF_KEYS: tuple[str, ...] = ("site", "since", "until", "chair_hours", "replayed", "current", "alternative",
                                "removed", "added", "delayed", "actionable_suppressed")
RUN_KEYS: tuple[str, ...] = ("alarms", "per_chair_hour", "by_rule")


@dataclass(slots=True)
class Episode:
    """One physiological alarm of a replay, from raise to clear (``until`` None: still standing at the end)."""

    alarm_id: str
    site: str
    chair: str
    key: str
    rule: str | None
    priority: str
    since: int
    until: int | None = None
    rules: list[str] = field(default_factory=list)  # the rule that raised it, then each that upgraded it

    def to_json_obj(self) -> dict[str, Any]:
        """Return the episode as JSON (times RFC 3339)."""
        return {"alarm_id": self.alarm_id, "chair": self.chair, "key": self.key, "rule": self.rule,
                "priority": self.priority, "since": format_ts(self.since),
                "until": format_ts(self.until) if self.until is not None else None,
                "duration_s": (self.until - self.since) / 1000 if self.until is not None else None}


def alarm_key(alarm_id: str, site: str, chair: str) -> str:
    """Return the key inside an alarm id ``{site}.{chair}.{key}.{ts}`` (``spo2.low``, ``no_data``)."""
    return alarm_id[len(site) + len(chair) + 2:].rsplit(".", 1)[0]


@dataclass(slots=True)
class Run:
    """One engine and the episodes it raised."""

    engine: AlarmEngine
    episodes: list[Episode] = field(default_factory=list)
    _open: dict[str, Episode] = field(default_factory=dict)

    def take(self, events: Iterable[AlarmEvent]) -> None:
        for e in events:
            if e.kind != "physiological":
                continue
            if e.event == "raised":
                ep = Episode(e.alarm_id, e.site, e.chair, alarm_key(e.alarm_id, e.site, e.chair), e.rule, e.priority,
                             e.ts, rules=[e.rule or e.vital])
                self.episodes.append(ep)
                self._open[e.alarm_id] = ep
            elif e.event == "upgraded" and e.alarm_id in self._open:
                ep = self._open[e.alarm_id]
                ep.priority, ep.rule = e.priority, e.rule
                ep.rules.append(e.rule or e.vital)
            elif e.event == "cleared" and e.alarm_id in self._open:
                self._open.pop(e.alarm_id).until = e.ts

    def summary(self, chair_hours: float) -> dict[str, Any]:
        by_rule: dict[str, int] = {}
        for ep in self.episodes:
            for rule in dict.fromkeys(ep.rules):
                by_rule[rule] = by_rule.get(rule, 0) + 1
        n = len(self.episodes)
        return {"alarms": n, "per_chair_hour": round(n / chair_hours, 4) if chair_hours else None,
                "by_rule": dict(sorted(by_rule.items(), key=lambda kv: (-kv[1], kv[0])))}


@dataclass(slots=True)
class Replay:
    """The outcome of replaying a period under several rule books."""

    runs: list[Run]
    readings: int
    chair_hours: float  # monitored session time within the period
    span_chair_hours: float  # time covered by readings, per chair, summed (what the benchmark counts)
    seconds: float
    first_ms: int | None = None  # the oldest reading replayed


def _session_inputs(sessions: Sequence[Session], since_ms: int, until_ms: int) -> list[tuple[int, int, Session]]:
    """Return (ts, order, session) inputs: each session's start (as active) and, when within the period, its end."""
    out: list[tuple[int, int, Session]] = []
    for s in sessions:
        end = s.ended_at
        if end is not None and end < since_ms:
            continue
        start = Session(s.site, s.chair, s.session_id, "active", s.started_at, None, s.drug, s.dose_mg_per_kg,
                        s.duration_min, s.patient_ref, s.baseline_sys)
        out.append((max(s.started_at, since_ms), 0, start))
        if s.state == "ended" or end is not None:
            ended = Session(s.site, s.chair, s.session_id, "ended", s.started_at, end, s.drug, s.dose_mg_per_kg,
                            s.duration_min, s.patient_ref, s.baseline_sys)
            if end is None or end < until_ms:
                out.append((end if end is not None else s.started_at, 1, ended))
    return sorted(out, key=lambda x: (x[0], x[1]))


def replay(store: Any, books: Sequence[RuleBook], *, since_ms: int, until_ms: int, site: str | None = None,
           chair: str | None = None, config: EngineConfig | None = None,
           chair_overrides: Mapping[int, Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]] | None = None,
           workers: int = 1, opener: Callable[[], Any] | None = None) -> Replay:
    """Replay the stored readings, sessions and acknowledgements of [since_ms, until_ms) under each book.

    ``chair_overrides`` gives, per book index, admin-style chair overrides set on that engine before the replay
    (the dashboard's what-if of a chair edit). With ``workers`` > 1 and an ``opener`` (a function opening the
    same store again), the chairs are shared among that many forked processes: the engine's state is per chair,
    so replaying chair by chair gives exactly what one pass in time order gives. Only from a process without
    other threads (the command line, the benchmark); the ingest replays in its own process (one chair).
    """
    started = time.perf_counter()
    sessions = list(store.sessions(site=site, chair=chair, start_ms=since_ms - SESSION_LOOKBACK_MS, end_ms=until_ms))
    chair_hours, _ = session_chair_hours(sessions, since_ms, until_ms)
    acks = [e for e in store.alarm_events(site=site, chair=chair, start_ms=since_ms, end_ms=until_ms)
            if e.event == "acknowledged"]
    job = _Job(list(books), since_ms, until_ms, site, config or EngineConfig(), dict(chair_overrides or {}),
               sessions, acks)
    if workers > 1 and opener is not None and chair is None:
        chairs = sorted({(x.site, x.chair) for x in store.latest(site)} | {(x.site, x.chair) for x in sessions})
        parts = [chairs[i::workers] for i in range(workers) if chairs[i::workers]]
        results = _fork_all(job, parts, opener) if len(parts) > 1 else [job.run(store, parts[0] if parts else [])]
    else:
        results = [job.run(store, None, chair)]
    runs = [Run(AlarmEngine(book, job.config)) for book in books]
    count, first, span = 0, [], 0.0
    for part in results:
        for run, episodes in zip(runs, part["episodes"], strict=True):
            run.episodes.extend(episodes)
        count += part["count"]
        first += part["first"]
        span += part["span"]
    for run in runs:
        run.episodes.sort(key=lambda ep: (ep.since, ep.site, ep.chair, ep.key))
    return Replay(runs, count, chair_hours, span, time.perf_counter() - started, min(first, default=None))


@dataclass
class _Job:
    """One replay's inputs, run over all chairs in time order or over a list of chairs one by one."""

    books: list[RuleBook]
    since_ms: int
    until_ms: int
    site: str | None
    config: EngineConfig
    chair_overrides: dict[int, Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]]
    sessions: list[Session]
    acks: list[AlarmEvent]

    def run(self, store: Any, chairs: Sequence[tuple[str, str]] | None, chair: str | None = None) -> dict[str, Any]:
        runs = [Run(AlarmEngine(book, self.config)) for book in self.books]
        for index, overrides in self.chair_overrides.items():
            for (o_site, o_chair), rules in overrides.items():
                runs[index].engine.set_chair_overrides(o_site, o_chair, rules)
        inputs: list[tuple[int, int, Any]] = list(_session_inputs(self.sessions, self.since_ms, self.until_ms))
        inputs += [(e.ts, 2, e) for e in self.acks]
        first: dict[tuple[str, str], int] = {}
        last: dict[tuple[str, str], int] = {}
        count = 0
        if chairs is None:
            count = _feed(runs, store.iter_readings(self.site, self.since_ms, self.until_ms, chair=chair), inputs,
                          first, last)
        else:
            by_chair: dict[tuple[str, str], list[tuple[int, int, Any]]] = {}
            for item in inputs:
                by_chair.setdefault((item[2].site, item[2].chair), []).append(item)
            for c_site, c_chair in chairs:
                count += _feed(runs, store.iter_readings(c_site, self.since_ms, self.until_ms, chair=c_chair),
                               by_chair.get((c_site, c_chair), []), first, last)
        return {"episodes": [run.episodes for run in runs], "count": count, "first": list(first.values()),
                "span": sum(last[k] - first[k] for k in first) / 3_600_000}


def _feed(runs: Sequence[Run], readings: Iterable[Reading], inputs: list[tuple[int, int, Any]],
          first: dict[tuple[str, str], int], last: dict[tuple[str, str], int]) -> int:
    """Feed readings (in time order) to every run, with the session and acknowledgement inputs at their times."""
    pending = iter(sorted(inputs, key=lambda x: (x[0], x[1])))
    nxt = next(pending, None)
    batch: list[Reading] = []
    count = 0

    def flush() -> None:
        if batch:
            for run in runs:
                run.take(run.engine.on_readings(batch))
            batch.clear()

    def feed_until(ts: int | None) -> None:
        nonlocal nxt
        while nxt is not None and (ts is None or nxt[0] <= ts):
            at, kind, item = nxt
            for run in runs:
                run.take(_ack(run.engine, item) if kind == 2 else run.engine.on_session(item, at))
            nxt = next(pending, None)

    for reading in readings:
        if nxt is not None and nxt[0] <= reading.ts_ms:
            flush()
            feed_until(reading.ts_ms)
        batch.append(reading)
        if len(batch) >= BATCH:
            flush()
        key = (reading.site, reading.chair)
        if key not in first:
            first[key] = reading.ts_ms
        last[key] = reading.ts_ms
        count += 1
    flush()
    feed_until(None)
    return count


def _fork_all(job: _Job, parts: list[list[tuple[str, str]]], opener: Callable[[], Any]) -> list[dict[str, Any]]:
    """Run the job's chair lists in forked processes (each opening the store again); return their results."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    pipes = []
    for part in parts:
        here, there = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(job, part, opener, there), daemon=True)
        proc.start()
        there.close()
        pipes.append((proc, here))
    results = []
    for proc, pipe in pipes:
        try:
            outcome = pipe.recv()
        except EOFError:
            outcome = {"error": f"replay worker exited with {proc.exitcode}"}
        proc.join()
        if "error" in outcome:
            raise RuntimeError(outcome["error"])
        results.append(outcome)
    return results


def _child(job: _Job, part: list[tuple[str, str]], opener: Callable[[], Any], pipe: Any) -> None:
    try:
        store = opener()
        try:
            pipe.send(job.run(store, part))
        finally:
            store.close()
    except BaseException as exc:  # the parent must hear of it, not wait forever
        pipe.send({"error": f"{type(exc).__name__}: {exc}"[:500]})
    finally:
        pipe.close()


def _ack(engine: AlarmEngine, event: AlarmEvent) -> list[AlarmEvent]:
    """Apply a stored acknowledgement to the alarm of the same chair and key standing in this engine now."""
    key = alarm_key(event.alarm_id, event.site, event.chair)
    for active in engine.active(event.site, event.chair):
        if alarm_key(active.alarm_id, event.site, event.chair) == key and not active.acknowledged:
            return engine.on_command(AckCommand(event.site, event.chair, active.alarm_id, event.user or "replay",
                                                "acknowledge", event.actionable, event.reason), event.ts)
    return []


def _index(episodes: Sequence[Episode]) -> dict[tuple[str, str, str], tuple[list[int], list[Episode]]]:
    """Return episodes by (site, chair, key), sorted by start (one key's episodes never overlap each other)."""
    groups: dict[tuple[str, str, str], list[Episode]] = {}
    for ep in episodes:
        groups.setdefault((ep.site, ep.chair, ep.key), []).append(ep)
    out = {}
    for key, items in groups.items():
        items.sort(key=lambda e: e.since)
        out[key] = ([e.since for e in items], items)
    return out


def _matches(ep: Episode, index: Mapping[tuple[str, str, str], tuple[list[int], list[Episode]]],
             end_ms: int) -> list[Episode]:
    """Return the indexed episodes of the same chair and key that overlap ``ep`` in time."""
    found = index.get((ep.site, ep.chair, ep.key))
    if found is None:
        return []
    starts, items = found
    i = bisect_right(starts, ep.until if ep.until is not None else end_ms)
    out = []
    while i > 0 and (items[i - 1].until if items[i - 1].until is not None else end_ms) >= ep.since:
        out.append(items[i - 1])
        i -= 1
    return out


def compare(current: Sequence[Episode], alternative: Sequence[Episode], tags: Mapping[str, AlarmEvent],
            until_ms: int) -> dict[str, list[dict[str, Any]]]:
    """Return ``removed``, ``added``, ``delayed`` and ``actionable_suppressed`` between two runs' episodes.

    Episodes pair when they are of the same chair and key and overlap in time. ``tags`` maps alarm ids to their
    stored ``acknowledged`` events (with the actionability tag).
    """
    removed, delayed, suppressed = [], [], []
    alt_index, cur_index = _index(alternative), _index(current)
    for ep in current:
        matches = _matches(ep, alt_index, until_ms)
        tag = tags.get(ep.alarm_id)
        actionable = tag is not None and tag.actionable == "actionable"
        if not matches:
            removed.append(ep.to_json_obj())
            if actionable and tag is not None:
                suppressed.append({**ep.to_json_obj(), "change": "removed", "delay_s": None, "reason": tag.reason,
                                   "acknowledged_by": tag.user})
            continue
        later = min(m.since for m in matches) - ep.since
        if later > 0:
            delayed.append({**ep.to_json_obj(), "delay_s": later / 1000})
            if actionable and tag is not None:
                suppressed.append({**ep.to_json_obj(), "change": "delayed", "delay_s": later / 1000,
                                   "reason": tag.reason, "acknowledged_by": tag.user})
    added = [alt.to_json_obj() for alt in alternative if not _matches(alt, cur_index, until_ms)]
    return {"removed": removed, "added": added, "delayed": delayed, "actionable_suppressed": suppressed}


def layered(current: RuleBook, text: str, source: str) -> RuleBook:
    """Return ``current`` changed by an override file's text, keeping its own site, chair and session layers.

    (``rules.apply_overrides`` replaces those layers; an alternative changes the rules in force, field by field.)
    """
    new = apply_overrides(current, text, source)

    def merge(old: Mapping[Any, Mapping[str, Mapping[str, Any]]], add: Mapping[Any, Mapping[str, Mapping[str, Any]]],
              ) -> MappingProxyType[Any, Any]:
        out: dict[Any, dict[str, dict[str, Any]]] = {k: {r: dict(f) for r, f in v.items()} for k, v in old.items()}
        for key, rules in add.items():
            for rid, fields in rules.items():
                out.setdefault(key, {}).setdefault(rid, {}).update(fields)
        return MappingProxyType(out)

    return replace(new, site_overrides=merge(current.site_overrides, new.site_overrides),
                   chair_overrides=merge(current.chair_overrides, new.chair_overrides),
                   session_overrides=merge(current.session_overrides, new.session_overrides),
                   file_overrides=MappingProxyType({**current.file_overrides, **new.file_overrides}), _cache={})


def whatif(store: Any, current: RuleBook, alternative: RuleBook, *, since_ms: int, until_ms: int,
           site: str | None = None, chair: str | None = None, config: EngineConfig | None = None,
           alternative_chair: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]] | None = None,
           current_chair: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]] | None = None,
           workers: int = 1, opener: Callable[[], Any] | None = None) -> dict[str, Any]:
    """Return the what-if of a period (keys: WHATIF_KEYS): the rules in force against an alternative.

    ``workers`` and ``opener``: see ``replay``.
    """
    overrides = {}
    if current_chair:
        overrides[0] = current_chair
    if alternative_chair:
        overrides[1] = {**(current_chair or {}), **alternative_chair}
    result = replay(store, [current, alternative], since_ms=since_ms, until_ms=until_ms, site=site, chair=chair,
                    config=config, chair_overrides=overrides, workers=workers, opener=opener)
    tags = {e.alarm_id: e for e in store.alarm_events(site=site, chair=chair, start_ms=since_ms, end_ms=until_ms)
            if e.event == "acknowledged"}
    cur, alt = result.runs
    return {
        "site": site, "since": format_ts(since_ms), "until": format_ts(until_ms),
        "chair_hours": round(result.chair_hours, 3),
        "replayed": {"readings": result.readings, "chair_hours": round(result.span_chair_hours, 3),
                     "seconds": round(result.seconds, 3),
                     "from": format_ts(result.first_ms) if result.first_ms is not None else None},
        "current": cur.summary(result.chair_hours),
        "alternative": alt.summary(result.chair_hours),
        **compare(cur.episodes, alt.episodes, tags, until_ms),
    }


def whatif_markdown(doc: Mapping[str, Any]) -> str:
    """Return a what-if result for people."""
    cur, alt = doc["current"], doc["alternative"]
    rules = sorted(set(cur["by_rule"]) | set(alt["by_rule"]))
    lines = [f"# What-if{' — site ' + doc['site'] if doc['site'] else ''}", "",
             f"{doc['since']} to {doc['until']}: {doc['chair_hours']:g} monitored chair-hours; replayed "
             f"{doc['replayed']['readings']} readings in {doc['replayed']['seconds']:g} s.", "",
             "| | current | alternative |", "|---|---|---|",
             f"| alarms | {cur['alarms']} | {alt['alarms']} |",
             f"| per chair-hour | {cur['per_chair_hour']} | {alt['per_chair_hour']} |"]
    lines += [f"| {rule} | {cur['by_rule'].get(rule, 0)} | {alt['by_rule'].get(rule, 0)} |" for rule in rules]
    for key, title in (("removed", "Removed"), ("added", "Added"), ("delayed", "Delayed"),
                       ("actionable_suppressed", "Tagged actionable, suppressed or delayed")):
        lines += ["", f"## {title}: {len(doc[key])}"]
        for ep in doc[key]:
            extra = f", by {ep['delay_s']:g} s" if ep.get("delay_s") else ""
            lines.append(f"- {ep['chair']} {ep['key']} ({ep['rule']}, {ep['priority']}) at {ep['since']}{extra}")
    return "\n".join(lines) + "\n"


def grid(store: Any, current: RuleBook, rule_id: str, limits: Sequence[float], delays: Sequence[float], *,
         since_ms: int, until_ms: int, site: str | None = None, config: EngineConfig | None = None,
         tags: Mapping[str, AlarmEvent] | None = None, workers: int = 1,
         opener: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """Sweep one rule's limit and delay: one replay pass with an engine per combination; return table rows."""
    base = next((r for r in current.rules if r.id == rule_id), None)
    if base is None:
        raise ValueError(f"no rule {rule_id!r} (known: {', '.join(r.id for r in current.rules)})")
    combos = [(lim, d) for lim in (limits or [base.limit]) for d in (delays or [base.delay_s])]
    books = [current]
    for lim, d in combos:
        changes: dict[str, Any] = {"delay_s": float(d)}
        if lim is not None:
            changes["limit"] = float(lim)
        books.append(replace(current, rules=tuple(replace(r, **changes) if r.id == rule_id else r
                                                  for r in current.rules), _cache={}))
    result = replay(store, books, since_ms=since_ms, until_ms=until_ms, site=site, config=config, workers=workers,
                    opener=opener)
    if tags is None:
        tags = {e.alarm_id: e for e in store.alarm_events(site=site, start_ms=since_ms, end_ms=until_ms)
                if e.event == "acknowledged"}
    cur = result.runs[0]
    rows = []
    for (lim, d), run in zip(combos, result.runs[1:], strict=True):
        diff = compare(cur.episodes, run.episodes, tags, until_ms)
        summary = run.summary(result.chair_hours)
        rows.append({"rule": rule_id, "limit": lim, "delay_s": d, "alarms": summary["alarms"],
                     "per_chair_hour": summary["per_chair_hour"], "removed": len(diff["removed"]),
                     "added": len(diff["added"]), "actionable_suppressed": len(diff["actionable_suppressed"])})
    return [{"rule": rule_id, "limit": base.limit, "delay_s": base.delay_s, "alarms": len(cur.episodes),
             "per_chair_hour": cur.summary(result.chair_hours)["per_chair_hour"], "removed": 0, "added": 0,
             "actionable_suppressed": 0, "current": True}, *rows]


def grid_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Return grid rows as a Markdown table (the rules in force first)."""
    lines = ["| rule | limit | delay_s | alarms | per chair-hour | removed | added | actionable suppressed |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = " (in force)" if r.get("current") else ""
        lines.append(f"| {r['rule']}{mark} | {r['limit']} | {r['delay_s']:g} | {r['alarms']} | {r['per_chair_hour']} | "
                     f"{r['removed']} | {r['added']} | {r['actionable_suppressed']} |")
    return "\n".join(lines) + "\n"
