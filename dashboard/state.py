"""Per-chair live state and what a tile shows (pure: no broker, no store, the clock is passed in).

The rules that keep a stale value from looking current live here, so they can be tested by calling them:

- A value's age is ``now - min(device time, arrival time)``: a reading delivered late (from a broker queue)
  is as old as its own timestamp says, and a device clock running ahead cannot make a value look fresher
  than its arrival.
- A continuous vital (HR, SpO2, RR) older than ``no_data_s`` (15 s) is not shown as a number; a chair with
  no fresh continuous vital shows NO DATA with the age of its last values; a device whose status topic
  says ``offline`` shows OFFLINE.
- A cuff (NIBP) reading is periodic: it is always shown with its age, and marked overdue after 1.5 cuff
  intervals.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from vitals.limits import AdminEdit, EffectiveLimits
from vitals.reading import Reading
from vitals.records import PRIORITY_RANK, ActiveAlarm, Session

CONTINUOUS: tuple[str, ...] = ("hr", "spo2", "rr")
# A chair with no continuous vital newer than this shows NO DATA (the alarm engine's no_data uses the same 15 s).
NO_DATA_MS = 15_000
# The overview's sparkline window and bucket: 15 minutes in 5 s buckets is 180 points, cheap to draw each second.
SPARK_WINDOW_MS = 15 * 60_000
SPARK_BUCKET_MS = 5_000
# Clinics take a cuff reading every 10 minutes during an infusion; overdue at 1.5 intervals, as the alarm rule.
CUFF_INTERVAL_MS = 10 * 60_000


@dataclass(slots=True)
class SparkBuffer:
    """HR and SpO2 of the last 15 minutes in fixed buckets (bucket start -> [hr sum, hr n, spo2 sum, spo2 n])."""

    bucket_ms: int = SPARK_BUCKET_MS
    window_ms: int = SPARK_WINDOW_MS
    buckets: dict[int, list[float]] = field(default_factory=dict)

    def add(self, ts_ms: int, hr: float | None, spo2: float | None, now_ms: int) -> None:
        """Add one reading's HR and SpO2 to its bucket, dropping buckets older than the window."""
        if ts_ms < now_ms - self.window_ms or (hr is None and spo2 is None):
            return
        key = ts_ms - ts_ms % self.bucket_ms
        slot = self.buckets.get(key)
        if slot is None:
            slot = self.buckets[key] = [0.0, 0, 0.0, 0]
            if len(self.buckets) > 2 * self.window_ms // self.bucket_ms:
                self.prune(now_ms)
        if hr is not None:
            slot[0] += hr
            slot[1] += 1
        if spo2 is not None:
            slot[2] += spo2
            slot[3] += 1

    def prune(self, now_ms: int) -> None:
        """Drop buckets that left the window."""
        oldest = now_ms - self.window_ms - self.bucket_ms
        for key in [k for k in self.buckets if k < oldest]:
            del self.buckets[key]

    def points(self, now_ms: int) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
        """Return the HR and SpO2 bucket means in the window, oldest first, as (bucket middle, mean)."""
        start = now_ms - self.window_ms
        hr: list[tuple[int, float]] = []
        spo2: list[tuple[int, float]] = []
        half = self.bucket_ms // 2
        for key in sorted(k for k in self.buckets if k + self.bucket_ms > start):
            s_hr, n_hr, s_sp, n_sp = self.buckets[key]
            if n_hr:
                hr.append((key + half, s_hr / n_hr))
            if n_sp:
                spo2.append((key + half, s_sp / n_sp))
        return hr, spo2


@dataclass(slots=True)
class ChairState:
    """What the dashboard knows about one chair right now."""

    site: str
    chair: str
    values: dict[str, tuple[int, float, int]] = field(default_factory=dict)  # vital -> (ts_ms, value, arrived_ms)
    cuff: tuple[int, float | None, float | None, float | None, int] | None = None  # ts, sys, dia, map, arrived
    session: Session | None = None
    status: str | None = None  # online / offline, from the retained status topic
    status_ms: int | None = None
    alarms: tuple[ActiveAlarm, ...] = ()
    alarms_error: str | None = None  # the retained alarms payload could not be read: said on the tile, never hidden
    limits_edit: AdminEdit | None = None  # an admin's edit from the retained .../limits: requested, not enforced
    effective_limits: EffectiveLimits | None = None  # what the alarm engine enforces: the only limits drawn
    limits_error: str | None = None  # the engine's published limits could not be read: said, never guessed
    spark: SparkBuffer = field(default_factory=SparkBuffer)
    backfilled: bool = False

    def apply_reading(self, reading: Reading, arrived_ms: int) -> None:
        """Take a reading's vitals; an older reading never replaces a newer value of the same vital."""
        values = reading.values()
        for name in CONTINUOUS:
            if name in values:
                current = self.values.get(name)
                if current is None or reading.ts_ms >= current[0]:
                    self.values[name] = (reading.ts_ms, values[name], arrived_ms)
        if reading.has_cuff and (self.cuff is None or reading.ts_ms >= self.cuff[0]):
            self.cuff = (reading.ts_ms, reading.sys, reading.dia, reading.map, arrived_ms)
        self.spark.add(reading.ts_ms, reading.hr, reading.spo2, arrived_ms)

    def seed(self, values: dict[str, tuple[int, float]]) -> None:
        """Take stored latest values (arrival = their own time) where nothing newer is known."""
        for name in CONTINUOUS:
            if name in values:
                ts, value = values[name]
                current = self.values.get(name)
                if current is None or ts > current[0]:
                    self.values[name] = (ts, value, ts)
        cuff_ts = [values[n][0] for n in ("sys", "dia", "map") if n in values]
        if cuff_ts and (self.cuff is None or max(cuff_ts) > self.cuff[0]):
            ts = max(cuff_ts)

            def pick(name: str) -> float | None:
                return values[name][1] if name in values and values[name][0] == ts else None

            self.cuff = (ts, pick("sys"), pick("dia"), pick("map"), ts)


def value_age_ms(ts_ms: int, arrived_ms: int, now_ms: int) -> int:
    """Return how old a value is: measured from the earlier of its device time and its arrival."""
    return max(0, now_ms - min(ts_ms, arrived_ms))


def format_age(age_ms: int | None) -> str:
    """Return an age as a nurse reads it: '4 s ago', '12 min ago', '2 h 5 min ago', 'never'."""
    if age_ms is None:
        return "never"
    s = age_ms // 1000
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        return f"{s // 60} min ago"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h} h {m} min ago" if m else f"{h} h ago"
    return f"{s // 86400} d ago"


def format_elapsed(ms: int) -> str:
    """Return an elapsed time as H:MM:SS or M:SS."""
    s = max(0, ms) // 1000
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_number(value: float | None) -> str:
    """Return a vital as shown on a monitor: whole numbers, '--' when missing."""
    if value is None:
        return "--"
    return f"{value:.0f}"


def alarm_sort_key(alarm: ActiveAlarm) -> tuple[int, int, int]:
    """Order alarms: priority (high first), then unacknowledged first, then oldest first."""
    return (-PRIORITY_RANK.get(alarm.priority, 0), 1 if alarm.acknowledged else 0, alarm.since)


def sort_alarms(items: Iterable[tuple[str, str, ActiveAlarm]]) -> list[tuple[str, str, ActiveAlarm]]:
    """Order (site, chair, alarm) triples for the alarm panel: priority, unacknowledged first, then age."""
    return sorted(items, key=lambda item: (*alarm_sort_key(item[2]), item[0], item[1]))


def sounding(alarm: ActiveAlarm, now_ms: int, audio_pause_ms: int) -> bool:
    """Return whether a high alarm should sound: unacknowledged, and not under an audio pause it came before."""
    if alarm.priority != "high" or alarm.acknowledged:
        return False
    until = alarm.audio_paused_until
    if until is None or now_ms >= until:
        return True
    # A new alarm breaks through an audio pause: one raised after the pause began sounds anyway.
    return alarm.since > until - audio_pause_ms


@dataclass(frozen=True, slots=True)
class Numeric:
    """One vital as a tile shows it."""

    vital: str
    label: str
    text: str
    unit: str
    stale: bool
    age: str
    stale_at: int | None = None  # epoch ms (server clock) when this value turns stale; None when it has no value


@dataclass(frozen=True, slots=True)
class TileView:
    """Everything one overview tile shows, as display values."""

    site: str
    chair: str
    mode: str  # live | nodata | offline
    age: str  # age of the newest continuous value ("never" when none)
    numerics: tuple[Numeric, ...]
    cuff_text: str
    cuff_age: str
    cuff_overdue: bool
    session_state: str  # active | ended | none
    session_text: str
    elapsed: str
    alarm_priority: str | None  # the highest standing alarm's priority, None when none
    alarm_text: str
    alarm_acknowledged: bool
    alarm_more: int
    audio_paused: bool
    alarms_error: str | None
    sounding: bool
    hr_points: tuple[tuple[int, float], ...]
    spo2_points: tuple[tuple[int, float], ...]
    live_until: int | None = None  # epoch ms (server clock) when a live tile turns NO DATA unless a value comes


LABELS = {"hr": ("HR", "/min"), "spo2": ("SpO\u2082", "%"), "rr": ("RR", "/min")}


def tile_view(state: ChairState, now_ms: int, *, no_data_ms: int = NO_DATA_MS, cuff_interval_ms: int = CUFF_INTERVAL_MS,
              audio_pause_ms: int = 120_000, with_spark: bool = True) -> TileView:
    """Return what a chair's tile shows at ``now_ms``."""
    numerics = []
    newest_age: int | None = None
    for name in CONTINUOUS:
        label, unit = LABELS[name]
        item = state.values.get(name)
        if item is None:
            numerics.append(Numeric(name, label, "--", unit, True, "never"))
            continue
        age = value_age_ms(item[0], item[2], now_ms)
        newest_age = age if newest_age is None else min(newest_age, age)
        stale = age > no_data_ms
        numerics.append(Numeric(name, label, format_number(item[1]), unit, stale, format_age(age),
                                min(item[0], item[2]) + no_data_ms))
    offline = state.status == "offline"
    if offline:
        mode = "offline"
    elif newest_age is None or newest_age > no_data_ms:
        mode = "nodata"
    else:
        mode = "live"
    if mode != "live":
        # Never a current-looking number on a silent chair: every numeric is marked stale.
        numerics = [Numeric(n.vital, n.label, n.text, n.unit, True, n.age, n.stale_at) for n in numerics]

    cuff_text, cuff_age, overdue = "--/--", "no cuff reading", False
    if state.cuff is not None:
        ts, sys_, dia, map_, arrived = state.cuff
        cuff_text = f"{format_number(sys_)}/{format_number(dia)}"
        if map_ is not None:
            cuff_text += f" ({format_number(map_)})"
        age = value_age_ms(ts, arrived, now_ms)
        cuff_age = format_age(age)
        overdue = age > cuff_interval_ms * 1.5

    session = state.session
    if session is None:
        session_state, session_text, elapsed = "none", "no session", ""
    else:
        session_state = session.state
        parts = [session.drug or "infusion"]
        if session.dose_mg_per_kg is not None:
            parts.append(f"{session.dose_mg_per_kg:g} mg/kg")
        session_text = " · ".join(parts)
        if session.state == "active":
            elapsed = format_elapsed(now_ms - session.started_at)
            if session.duration_min is not None:
                elapsed += f" of {session.duration_min:g} min"
        else:
            end = session.ended_at or session.started_at
            elapsed = f"ended {format_age(now_ms - end)}"

    alarms = sorted(state.alarms, key=alarm_sort_key)
    top = alarms[0] if alarms else None
    paused = any(a.audio_paused_until is not None and a.audio_paused_until > now_ms for a in alarms)
    hr_points: tuple[tuple[int, float], ...] = ()
    spo2_points: tuple[tuple[int, float], ...] = ()
    if with_spark:
        hr, spo2 = state.spark.points(now_ms)
        hr_points, spo2_points = tuple(hr), tuple(spo2)
    return TileView(
        site=state.site,
        chair=state.chair,
        mode=mode,
        age=format_age(newest_age),
        numerics=tuple(numerics),
        cuff_text=cuff_text,
        cuff_age=cuff_age,
        cuff_overdue=overdue and session_state == "active",
        session_state=session_state,
        session_text=session_text,
        elapsed=elapsed,
        alarm_priority=top.priority if top else None,
        alarm_text=top.text if top else "",
        alarm_acknowledged=bool(top and top.acknowledged),
        alarm_more=max(0, len(alarms) - 1),
        audio_paused=paused,
        alarms_error=state.alarms_error,
        sounding=any(sounding(a, now_ms, audio_pause_ms) for a in alarms),
        hr_points=hr_points,
        spo2_points=spo2_points,
        live_until=now_ms - newest_age + no_data_ms if mode == "live" and newest_age is not None else None,
    )


def pending_edit(edit: AdminEdit | None, effective: EffectiveLimits | None) -> AdminEdit | None:
    """Return an admin's edit the alarm engine has not yet published as taken (applied or refused), else None."""
    if edit is None or effective is None or effective.admin is None:
        return edit
    if edit.ts is None:  # an edit that says not when (a third party's): taken once the engine names any edit
        return None
    return None if effective.admin_ts == edit.ts else edit
