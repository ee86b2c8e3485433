"""A chair's session record as state: infusion times, what is due, recovery, discharge readiness (pure, no I/O).

The ingest is the single authority: it keeps one ``SessionRecord`` per chair, feeds it the chair's session, its
readings and every accepted ``CareRecord``, and publishes ``snapshot(now_ms)`` retained on
``{prefix}/{site}/chair/{chair}/record_state`` whenever it changes (and when an item falls due or overdue).
A screen draws that payload; between publications it advances the clocks with ``progress(doc, now_ms)`` (the
same arithmetic), never recomputing criteria itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vitals.care import INFUSION_EVENTS, CareRecord, CareRefusal
from vitals.careplan import CarePlan
from vitals.reading import Reading
from vitals.records import Session
from vitals.scales import SCALES

PHASES: tuple[str, ...] = ("none", "pre", "infusing", "paused", "recovery", "discharged")
STATE_VERSION = 1
_MIN = 60_000

# Which infusion event may follow which phase.
_ALLOWED: dict[str, tuple[str, ...]] = {
    "infusion_start": ("pre",),
    "rate_change": ("infusing", "paused"),
    "pause": ("infusing",),
    "resume": ("paused",),
    "infusion_stop": ("infusing", "paused"),
}


@dataclass(frozen=True, slots=True)
class DueItem:
    """One scheduled item: ``bp`` (a cuff reading) or ``cadss@40`` (a CADSS at 40 min), when due and overdue."""

    id: str
    label: str
    due_at: int
    overdue_at: int

    def to_json_obj(self, now_ms: int) -> dict[str, Any]:
        """Return the item as its state JSON object, with ``overdue`` judged at ``now_ms``."""
        return {"id": self.id, "label": self.label, "due_at": self.due_at, "overdue_at": self.overdue_at,
                "due": now_ms >= self.due_at, "overdue": now_ms >= self.overdue_at}


@dataclass(frozen=True, slots=True)
class Criterion:
    """One discharge criterion and whether it holds."""

    id: str  # infusion_stopped, score, observation, vitals
    met: bool
    detail: str

    def to_json_obj(self) -> dict[str, Any]:
        """Return the criterion as a JSON object."""
        return {"id": self.id, "met": self.met, "detail": self.detail}


@dataclass(slots=True)
class Infusion:
    """The infusion's times (epoch ms); ``elapsed_ms`` counts running time only (pauses excluded)."""

    started_at: int | None = None
    stopped_at: int | None = None
    paused_ms: int = 0
    paused_since: int | None = None
    rate: float | None = None
    rate_unit: str | None = None

    def elapsed_ms(self, now_ms: int) -> int:
        """Return the running time of the infusion at ``now_ms`` (pauses excluded)."""
        if self.started_at is None:
            return 0
        end = self.stopped_at if self.stopped_at is not None else now_ms
        if self.paused_since is not None:
            end = min(end, self.paused_since)
        return max(0, end - self.started_at - self.paused_ms)


@dataclass(slots=True)
class SessionRecord:
    """The record state of one chair's current session; feed it, then ask it."""

    site: str
    chair: str
    plan: CarePlan
    session: Session | None = None
    records: list[CareRecord] = field(default_factory=list)
    infusion: Infusion = field(default_factory=Infusion)
    phase: str = "none"
    last_cuff: tuple[int, float | None, float | None] | None = None  # (ts, sys, dia)
    last_spo2: tuple[int, float] | None = None
    discharge: CareRecord | None = None

    # -- inputs -----------------------------------------------------------------------------------------------

    def set_session(self, session: Session) -> bool:
        """Take the chair's session; return True when it is a new one (the record starts empty)."""
        new = self.session is None or self.session.session_id != session.session_id
        self.session = session
        if new:
            self.records, self.infusion, self.discharge = [], Infusion(), None
            self.phase = "pre"
        return new

    def note_readings(self, readings: list[Reading]) -> bool:
        """Take readings of the chair (newest cuff and SpO2); return whether anything the state shows changed."""
        changed = False
        for r in readings:
            if r.sys is not None and (self.last_cuff is None or r.ts_ms > self.last_cuff[0]):
                self.last_cuff = (r.ts_ms, r.sys, r.dia)
                changed = True
            if r.spo2 is not None and (self.last_spo2 is None or r.ts_ms > self.last_spo2[0]):
                self.last_spo2 = (r.ts_ms, r.spo2)
        return changed

    def check(self, record: CareRecord) -> bool:
        """Raise CareRefusal when the record does not fit this session now; return True when it is a repeat
        of a record already taken (same ts and type: store it again, change nothing)."""
        if self.session is None or record.session_id != self.session.session_id:
            current = self.session.session_id if self.session is not None else None
            raise CareRefusal("no_session", f"session_id {record.session_id!r} is not the chair's current session "
                                            f"({current!r})")
        if record.ts < self.session.started_at:
            raise CareRefusal("bad_sequence", "ts is before the session started")
        if any(r.ts == record.ts and r.type == record.type for r in self.records):
            return True
        if self.phase == "discharged" and record.type != "note":
            raise CareRefusal("bad_sequence", f"{record.type} after the patient was discharged")
        if record.type in INFUSION_EVENTS:
            if self.phase not in _ALLOWED[record.type]:
                raise CareRefusal("bad_sequence", f"{record.type} is not possible while the infusion is "
                                                  f"{_PHASE_WORDS[self.phase]}")
            last = max((r.ts for r in self.records if r.type in INFUSION_EVENTS), default=None)
            if last is not None and record.ts < last:
                raise CareRefusal("bad_sequence", f"{record.type} is older than the infusion's previous event")
        return False

    def apply(self, record: CareRecord) -> None:
        """Take an accepted record (checked with ``check``; a discharge carries its judged ``criteria``)."""
        if any(r.ts == record.ts and r.type == record.type for r in self.records):
            return
        self.records.append(record)
        self.records.sort(key=lambda r: (r.ts, r.type))
        inf, kind = self.infusion, record.type
        if kind == "infusion_start":
            inf.started_at, self.phase = record.ts, "infusing"
        elif kind == "pause":
            inf.paused_since, self.phase = record.ts, "paused"
        elif kind == "resume" and inf.paused_since is not None:
            inf.paused_ms += record.ts - inf.paused_since
            inf.paused_since, self.phase = None, "infusing"
        elif kind == "infusion_stop":
            if inf.paused_since is not None:
                inf.paused_ms += record.ts - inf.paused_since
                inf.paused_since = None
            inf.stopped_at, self.phase = record.ts, "recovery"
        elif kind == "discharge":
            self.discharge, self.phase = record, "discharged"
        if kind in ("infusion_start", "rate_change") and record.data.get("rate") is not None:
            inf.rate, inf.rate_unit = record.data["rate"], record.data.get("rate_unit")

    # -- judgements -------------------------------------------------------------------------------------------

    def last_assessment(self, scales: tuple[str, ...], since: int | None = None) -> CareRecord | None:
        """Return the newest assessment of any of ``scales`` (taken at or after ``since``)."""
        found = [r for r in self.records if r.type == "assessment" and r.data["scale"] in scales
                 and (since is None or r.ts >= since)]
        return found[-1] if found else None

    def criteria(self, now_ms: int) -> list[Criterion]:
        """Return every enabled discharge criterion, judged at ``now_ms``."""
        plan, inf, out = self.plan.discharge, self.infusion, []
        stopped = inf.stopped_at
        out.append(Criterion("infusion_stopped", stopped is not None,
                             "infusion stopped" if stopped is not None else "the infusion has not stopped"))
        last = self.last_assessment(plan.scales, since=stopped) if stopped is not None else None
        if last is None:
            names = " or ".join(SCALES[s].name for s in plan.scales)
            out.append(Criterion("score", False, f"no {names} since the infusion stopped"))
        else:
            scale, total = last.data["scale"], int(last.data["total"])
            need = plan.threshold(scale)
            out.append(Criterion("score", total >= need, f"{SCALES[scale].name} {total} "
                                                         f"{'≥' if total >= need else '<'} {need}"))
        if plan.min_observation_min > 0:
            need_ms = round(plan.min_observation_min * _MIN)
            if stopped is None:
                out.append(Criterion("observation", False, f"observation of {plan.min_observation_min:g} min "
                                                           "starts when the infusion stops"))
            else:
                done = max(0, now_ms - stopped)
                out.append(Criterion("observation", done >= need_ms, f"observed {done // _MIN} of "
                                                                     f"{plan.min_observation_min:g} min"))
        if plan.vitals_band_pct > 0 or plan.min_spo2 > 0:
            out.append(self._vitals(now_ms))
        return out

    def _vitals(self, now_ms: int) -> Criterion:
        plan, session, stopped = self.plan.discharge, self.session, self.infusion.stopped_at
        problems: list[str] = []
        shown: list[str] = []
        if plan.vitals_band_pct > 0:
            base_sys = session.baseline_sys if session is not None else None
            base_dia = session.baseline_dia if session is not None else None
            cuff = self.last_cuff
            if base_sys is None:
                problems.append("no baseline BP")
            elif cuff is None or stopped is None or cuff[0] < stopped:
                problems.append("no cuff BP since the infusion stopped")
            else:
                band = plan.vitals_band_pct
                for name, value, base in (("sys", cuff[1], base_sys), ("dia", cuff[2], base_dia)):
                    if value is None or base is None:
                        continue
                    pct = abs(value - base) / base * 100
                    shown.append(f"{name} {value:g} vs {base:g}")
                    if pct > band:
                        problems.append(f"{name} {value:g} is {pct:.0f} % from baseline {base:g} (band {band:g} %)")
        if plan.min_spo2 > 0:
            spo2 = self.last_spo2
            if spo2 is None or now_ms - spo2[0] > plan.spo2_max_age_s * 1000:
                problems.append("no current SpO2")
            elif spo2[1] < plan.min_spo2:
                problems.append(f"SpO2 {spo2[1]:g} % < {plan.min_spo2:g} %")
            else:
                shown.append(f"SpO2 {spo2[1]:g} %")
        if problems:
            return Criterion("vitals", False, "; ".join(problems))
        return Criterion("vitals", True, "within band of baseline: " + ", ".join(shown))

    def due(self, now_ms: int) -> list[DueItem]:
        """Return what the schedule asks for next (nothing before the infusion starts or after discharge)."""
        inf, sched = self.infusion, self.plan.schedule
        if inf.started_at is None or self.phase in ("discharged", "none", "pre"):
            return []
        grace = round(sched.grace_min * _MIN)
        items: list[DueItem] = []
        recovering = self.phase == "recovery"
        interval = sched.bp_recovery_min if recovering else sched.bp_infusion_min
        anchor = inf.started_at
        if self.last_cuff is not None and self.last_cuff[0] >= inf.started_at:
            anchor = self.last_cuff[0]
        due = anchor + round(interval * _MIN)
        items.append(DueItem("bp", "Cuff BP", due, due + grace))
        taken = sorted(r.ts for r in self.records if r.type == "assessment" and r.data["scale"] in sched.cadss_scales)
        early = round(sched.cadss_early_min * _MIN)
        for minute in sched.cadss_at_min:
            slot = inf.started_at + round(minute * _MIN)
            hit = next((t for t in taken if t >= slot - early), None)
            if hit is not None:
                taken.remove(hit)
                continue
            items.append(DueItem(f"cadss@{minute:g}", f"CADSS at {minute:g} min", slot, slot + grace))
        return sorted(items, key=lambda i: (i.due_at, i.id))

    def overdue(self, now_ms: int) -> list[DueItem]:
        """Return the items overdue at ``now_ms`` (the ingest raises ``assessment_overdue`` while any is)."""
        return [i for i in self.due(now_ms) if now_ms >= i.overdue_at]

    def next_change_ms(self, now_ms: int) -> int | None:
        """Return the next wall time at which an item falls due or overdue (to republish and alarm on time)."""
        times = [t for i in self.due(now_ms) for t in (i.due_at, i.overdue_at) if t > now_ms]
        return min(times) if times else None

    # -- output -----------------------------------------------------------------------------------------------

    def snapshot(self, now_ms: int) -> dict[str, Any]:
        """Return the retained ``record_state`` payload (docs/mqtt-contract.md, "Session record state")."""
        inf, session = self.infusion, self.session
        planned = session.duration_min if session is not None else None
        elapsed = inf.elapsed_ms(now_ms)
        last_by_scale: dict[str, dict[str, Any]] = {}
        for r in self.records:
            if r.type == "assessment":
                last_by_scale[r.data["scale"]] = {"total": r.data["total"], "ts": r.ts, "author": r.author}
        criteria = self.criteria(now_ms) if self.phase in ("recovery", "discharged") else []
        if self.discharge is not None:
            criteria = [Criterion(**c) for c in self.discharge.data.get("criteria", [])]
        return {
            "version": STATE_VERSION,
            "site": self.site, "chair": self.chair, "ts": now_ms,
            "session_id": session.session_id if session is not None else None,
            "phase": self.phase,
            "infusion": {
                "started_at": inf.started_at, "stopped_at": inf.stopped_at, "paused_since": inf.paused_since,
                "paused_ms": inf.paused_ms, "elapsed_ms": elapsed,
                "planned_ms": round(planned * _MIN) if planned else None,
                "remaining_ms": max(0, round(planned * _MIN) - elapsed) if planned and inf.started_at else None,
                "rate": inf.rate, "rate_unit": inf.rate_unit,
            },
            "recovery": None if inf.stopped_at is None else {
                "since": inf.stopped_at, "elapsed_ms": max(0, now_ms - inf.stopped_at),
                "min_observation_ms": round(self.plan.discharge.min_observation_min * _MIN),
            },
            "due": [i.to_json_obj(now_ms) for i in self.due(now_ms)],
            "assessments": last_by_scale,
            "readiness": {"ready": bool(criteria) and all(c.met for c in criteria),
                          "criteria": [c.to_json_obj() for c in criteria]} if criteria else None,
            "discharge": None if self.discharge is None else self.discharge.to_json_obj(),
            "events": len(self.records),
        }


_PHASE_WORDS = {"none": "without a session", "pre": "not started", "infusing": "running", "paused": "paused",
                "recovery": "stopped", "discharged": "over (patient discharged)"}


def progress(doc: dict[str, Any], now_ms: int) -> dict[str, int | None]:
    """Return a published state's clocks advanced to ``now_ms``: infusion elapsed/remaining and recovery elapsed.

    For a screen between two publications: running time grows only while ``phase`` is ``infusing``.
    """
    inf = doc.get("infusion") or {}
    elapsed = int(inf.get("elapsed_ms") or 0)
    if doc.get("phase") == "infusing":
        elapsed += max(0, now_ms - int(doc["ts"]))
    planned = inf.get("planned_ms")
    remaining = max(0, int(planned) - elapsed) if planned and inf.get("started_at") else None
    rec = doc.get("recovery")
    recovery = max(0, now_ms - int(rec["since"])) if rec else None
    return {"elapsed_ms": elapsed, "remaining_ms": remaining, "recovery_ms": recovery}
