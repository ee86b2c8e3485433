"""The storage contract, run against both backends: a real SQLite file and a real InfluxDB 1.6 server."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import Influxd, free_port
from vitals.care import CareRecord
from vitals.reading import Reading
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.store import Store, StoreError, open_store
from vitals.store.influx import duration_s, line, quote_literal

T0 = 1_764_036_000_000  # 2025-11-25T02:00:00Z, a whole hour
_db_names = itertools.count()


# InfluxDB 2.x cannot be installed on the CI machines (Debian ships 1.6.7). Name a 2.x server to run the same
# suite against it too: INFUSION_TEST_INFLUXDB2_URL=influxdb2://host:8086/ignored?org=ORG and
# INFUSION_TEST_INFLUXDB2_TOKEN=<an all-access token>. Each test then creates (and leaves) a bucket of its own.
INFLUXDB2_URL = os.environ.get("INFUSION_TEST_INFLUXDB2_URL")
BACKENDS = ["sqlite", pytest.param("influxdb", marks=pytest.mark.integration)]
if INFLUXDB2_URL:
    BACKENDS.append(pytest.param("influxdb2", marks=pytest.mark.integration))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Yield an empty store of each backend."""
    if request.param == "sqlite":
        opened = open_store(f"sqlite:///{tmp_path}/vitals.db")
    elif request.param == "influxdb2":
        parts = urlsplit(INFLUXDB2_URL)
        opened = open_store(parts._replace(path=f"/contract_{os.getpid()}_{next(_db_names)}").geturl(),
                            token=os.environ["INFUSION_TEST_INFLUXDB2_TOKEN"], retention="1d")
    else:
        influxd: Influxd = request.getfixturevalue("influxd")
        opened = open_store(influxd.store_url(f"contract_{next(_db_names)}"))
    yield opened
    opened.close()


def session_rows(site: str, chair: str, start: int, seconds: int, **every: float) -> list[Reading]:
    """Return 1 Hz readings with hr rising 60, 61, ... and spo2 98, plus any constant vitals given."""
    return [Reading(site, chair, start + i * 1000, seq=i, hr=60.0 + i, spo2=98.0, **every) for i in range(seconds)]


def test_readings_round_trip_in_time_order_with_half_open_range(store: Store) -> None:
    rows = session_rows("s1", "c1", T0, 10)
    store.write_readings(list(reversed(rows)))
    assert store.readings("s1", "c1", T0, T0 + 10_000) == rows
    assert store.readings("s1", "c1", T0 + 2000, T0 + 5000) == rows[2:5]
    assert store.readings("s1", "c2", T0, T0 + 10_000) == []
    assert store.count_readings() == 10
    assert store.count_readings(site="s1", chair="c1") == 10
    assert store.count_readings(site="other") == 0


def test_a_reading_written_twice_is_stored_once(store: Store) -> None:
    rows = session_rows("s1", "c1", T0, 5)
    store.write_readings(rows)
    store.write_readings(rows[1:3])
    assert store.count_readings(site="s1") == 5
    assert store.readings("s1", "c1", T0, T0 + 5000) == rows


def test_a_cuff_reading_at_the_same_instant_merges_into_the_reading(store: Store) -> None:
    store.write_readings([Reading("s1", "c1", T0, seq=1, hr=70.0, spo2=97.0)])
    store.write_readings([Reading("s1", "c1", T0, sys=128.0, dia=82.0, map=97.0)])
    assert store.readings("s1", "c1", T0, T0 + 1) == [
        Reading("s1", "c1", T0, seq=1, hr=70.0, spo2=97.0, sys=128.0, dia=82.0, map=97.0)]
    assert store.count_readings(site="s1") == 1


def test_latest_gives_each_vital_its_own_time(store: Store) -> None:
    store.write_readings([Reading("s1", "c1", T0, sys=120.0, dia=80.0, map=93.0)])
    store.write_readings(session_rows("s1", "c1", T0 + 1000, 30))
    store.write_readings(session_rows("s1", "c2", T0, 3))
    store.write_readings(session_rows("s2", "c9", T0, 3))
    latest = {(x.site, x.chair): x.values for x in store.latest(site="s1")}
    assert set(latest) == {("s1", "c1"), ("s1", "c2")}
    assert latest["s1", "c1"]["hr"] == (T0 + 30_000, 89.0)
    assert latest["s1", "c1"]["sys"] == (T0, 120.0)
    assert "rr" not in latest["s1", "c1"]
    assert latest["s1", "c2"]["hr"] == (T0 + 2000, 62.0)
    recent = {(x.site, x.chair): x.values for x in store.latest(site="s1", since_ms=T0 + 10_000)}
    assert set(recent) == {("s1", "c1")} and "sys" not in recent["s1", "c1"]
    assert {(x.site, x.chair) for x in store.latest()} == {("s1", "c1"), ("s1", "c2"), ("s2", "c9")}


def test_series_is_raw_when_it_fits_and_bucketed_on_whole_seconds_when_not(store: Store) -> None:
    rows = session_rows("s1", "c1", T0, 600)
    store.write_readings(rows)
    raw = store.series("s1", "c1", T0, T0 + 600_000, max_points=1000)
    assert raw.step_ms == 0 and raw.times == [r.ts_ms for r in rows]
    assert raw.mean["hr"] == [r.hr for r in rows] and raw.mean["rr"] == [None] * 600
    coarse = store.series("s1", "c1", T0, T0 + 600_000, max_points=60)
    assert coarse.step_ms == 10_000
    assert coarse.times == [T0 + 10_000 * k for k in range(60)]
    assert coarse.mean["hr"][0] == pytest.approx(64.5)
    assert (coarse.low["hr"][1], coarse.high["hr"][1]) == (70.0, 79.0)
    assert coarse.mean["spo2"] == [98.0] * 60
    assert coarse.mean["rr"] == [None] * 60


def test_sessions_are_keyed_by_chair_and_start_so_an_update_replaces(store: Store) -> None:
    active = Session("s1", "c1", "sess-1", "active", T0, drug="ketamine", dose_mg_per_kg=0.5, duration_min=40.0,
                     patient_ref="P-0042")
    ended = Session("s1", "c1", "sess-1", "ended", T0, ended_at=T0 + 2_400_000, drug="ketamine",
                    dose_mg_per_kg=0.5, duration_min=40.0, patient_ref="P-0042", baseline_sys=118.0)
    other = Session("s1", "c2", "sess-2", "active", T0 + 60_000)
    store.write_sessions([active, other])
    assert store.sessions(site="s1") == [active, other]
    store.write_sessions([ended])
    assert store.sessions(site="s1", chair="c1") == [ended]
    assert store.sessions(site="s1", start_ms=T0 + 1, end_ms=T0 + 120_000) == [other]


def test_alarm_events_are_idempotent_and_ordered(store: Store) -> None:
    raised = AlarmEvent("a-1", "s1", "c1", "spo2", "physiological", "medium", "raised", 88.0, 90.0, T0 + 15_000,
                        text="SpO2 low 88 %")
    upgraded = AlarmEvent("a-1", "s1", "c1", "spo2", "physiological", "high", "upgraded", 84.0, 85.0, T0 + 20_000)
    acked = AlarmEvent("a-1", "s1", "c1", "spo2", "physiological", "high", "acknowledged", None, None, T0 + 25_000,
                       user="nurse o'brien")
    same_instant = AlarmEvent("a-2", "s1", "c1", "hr", "physiological", "medium", "raised", 125.0, 120.0, T0 + 15_000)
    store.write_alarm_events([upgraded, raised, same_instant])
    store.write_alarm_events([raised, acked])
    got = store.alarm_events(site="s1")
    assert got == [raised, same_instant, upgraded, acked]
    assert store.alarm_events(site="s1", start_ms=T0 + 16_000) == [upgraded, acked]
    assert store.alarm_events(chair="c2") == []


def test_audit_is_queryable_by_user_and_time(store: Store) -> None:
    records = [AuditRecord(T0, "login", "alice"), AuditRecord(T0, "login", "bob"),
               AuditRecord(T0 + 5, "acknowledge", "alice", "s1", "c1", "a-1"),
               AuditRecord(T0 + 9, "limits", "admin", "s1", "c1", None, '{"hr_high": 130}')]
    store.write_audit(records)
    store.write_audit(records[:1])
    assert store.audit() == sorted(records, key=lambda r: (r.ts, r.action, r.user))
    assert store.audit(user="alice") == [records[0], records[2]]
    assert store.audit(site="s1", start_ms=T0 + 6) == [records[3]]


def test_nurse_session_fields_round_trip(store: Store) -> None:
    nurse = Session("s1", "c3", "sess-3", "active", T0, drug="ketamine", dose_mg_per_kg=0.5, duration_min=40.0,
                    patient_ref="P-0043", baseline_sys=124.0, weight_kg=70.0, total_mg=35.0, baseline_dia=78.0,
                    baseline_source="cuff", started_by="nurse o'brien")
    store.write_sessions([nurse])
    assert store.sessions(site="s1", chair="c3") == [nurse]


def test_care_records_round_trip_per_session_and_type_and_are_idempotent(store: Store) -> None:
    start = CareRecord("s1", "c1", "sess-1", T0, "infusion_start", "nurse.kim", {"rate": 52.5, "rate_unit": "mg/h"})
    adverse = CareRecord("s1", "c1", "sess-1", T0 + 60_000, "adverse_event", "nurse o'brien",
                         {"kind": "nausea", "treatment": "ondansetron", "dose": "4 mg IV", "text": 'said "better"'})
    score = CareRecord("s1", "c1", "sess-1", T0 + 60_000, "assessment", "nurse.kim",
                       {"scale": "moaas", "items": {"responsiveness": 5}, "total": 5})
    discharge = CareRecord("s1", "c1", "sess-1", T0 + 7_200_000, "discharge", "nurse.kim",
                           {"criteria": [{"id": "score", "met": True, "detail": "Modified Aldrete 9 ≥ 9"}],
                            "accepted": "criteria"})
    other = CareRecord("s1", "c2", "sess-2", T0 + 1, "note", "nurse.lee", {"text": "comfortable"})
    store.write_care_records([discharge, score, adverse, start, other])
    store.write_care_records([score])  # re-sent: stored once
    got = store.care_records("s1", "c1", "sess-1")
    assert got == [start, adverse, score, discharge]  # oldest first; the same instant by type
    assert store.infusion_events("s1", "c1", "sess-1") == [start, adverse]
    assert store.assessments("s1", "c1", "sess-1") == [score]
    assert store.discharges("s1", "c1", "sess-1") == [discharge]
    assert store.care_records("s1", types=("note",)) == [other]
    assert store.care_records("s1", start_ms=T0 + 2, end_ms=T0 + 7_200_000) == [
        r for r in got if T0 + 2 <= r.ts < T0 + 7_200_000]


def test_an_empty_store_answers_every_query(store: Store) -> None:
    assert store.ping()
    assert store.latest() == [] and store.readings("s", "c", 0, T0) == [] and store.count_readings() == 0
    assert store.series("s", "c", T0, T0 + 3_600_000).times == []
    assert store.sessions() == [] and store.alarm_events() == [] and store.audit() == []
    assert store.care_records("s") == [] and store.discharges("s", "c", "x") == []


@pytest.mark.integration
def test_both_backends_bucket_identically(influxd: Influxd, tmp_path: Path) -> None:
    rows = [Reading("s1", "c1", T0 + 137 + i * 997, hr=50.0 + (i * 7) % 40, sys=110.0 + i % 30 if i % 600 == 0 else None)
            for i in range(4 * 3600)]
    answers = []
    for url in (f"sqlite:///{tmp_path}/b.db", influxd.store_url("buckets")):
        backend = open_store(url)
        backend.write_readings(rows)
        answers.append(backend.series("s1", "c1", T0, T0 + 4 * 3_600_000, max_points=500))
        backend.close()
    sqlite, influx = answers
    assert sqlite.step_ms == influx.step_ms == 29_000
    assert sqlite.times == influx.times
    for vital in ("hr", "sys"):
        assert sqlite.low[vital] == influx.low[vital] and sqlite.high[vital] == influx.high[vital]
        assert sqlite.mean[vital] == pytest.approx(influx.mean[vital])


def test_an_unreachable_influxdb_raises_store_error_and_pings_false() -> None:
    store = open_store(f"influxdb://127.0.0.1:{free_port()}/vitals", timeout_s=1.0)
    assert not store.ping()
    with pytest.raises(StoreError, match="did not answer"):
        store.write_readings(session_rows("s1", "c1", T0, 1))
    with pytest.raises(StoreError):
        store.latest()


def test_store_urls_are_checked_with_the_accepted_forms_named() -> None:
    with pytest.raises(ValueError, match="sqlite:///path"):
        open_store("postgres://x/y")
    with pytest.raises(ValueError, match="org="):
        open_store("influxdb2://127.0.0.1:8086/vitals", token="t")
    with pytest.raises(ValueError, match="token"):
        open_store("influxdb2://127.0.0.1:8086/vitals?org=clinic")
    with pytest.raises(ValueError, match="database"):
        open_store("influxdb://127.0.0.1:8086/")


def test_influx_durations_and_escaping() -> None:
    assert [duration_s(d) for d in ("90d", "12h", "2w1d", "0")] == [90 * 86400, 12 * 3600, 15 * 86400, 0]
    with pytest.raises(ValueError, match="duration"):
        duration_s("90 days; DROP DATABASE vitals")
    with pytest.raises(ValueError, match="duration"):
        open_store("influxdb://127.0.0.1:8086/vitals", retention="1d; DROP DATABASE x")
    assert quote_literal("it's \\ ok") == "'it\\'s \\\\ ok'"
    assert line("m", {"site": "a b", "chair": "c,d=e"}, {"text": 'say "hi"\\', "n": 1, "x": None}, 5) == (
        'm,chair=c\\,d\\=e,site=a\\ b text="say \\"hi\\"\\\\",n=1i 5')
    assert line("m", {"site": "s"}, {"x": None}, 5) is None


def test_an_unreachable_influxdb2_raises_store_error_through_influxdb_client() -> None:
    store = open_store(f"influxdb2://127.0.0.1:{free_port()}/vitals?org=clinic", token="t", timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(StoreError, match="did not answer"):
        store.write_readings(session_rows("s1", "c1", T0, 1))
    assert time.monotonic() - started < 30  # refused at once, not retried for minutes
    store.close()


def test_a_version_1_sqlite_file_is_migrated_in_place_keeping_its_sessions(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE sessions (site TEXT NOT NULL, chair TEXT NOT NULL, started_at INTEGER NOT NULL,
        session_id TEXT NOT NULL, state TEXT NOT NULL, ended_at INTEGER, drug TEXT, dose_mg_per_kg REAL,
        duration_min REAL, patient_ref TEXT, baseline_sys REAL, PRIMARY KEY (site, chair, started_at)) WITHOUT ROWID;
        INSERT INTO sessions VALUES ('s1', 'c1', 1764036000000, 'old', 'ended', NULL, 'ketamine', 0.5, 40, 'P-1', NULL);
        PRAGMA user_version = 1;""")
    db.close()
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.sessions() == [Session("s1", "c1", "old", "ended", T0, drug="ketamine", dose_mg_per_kg=0.5,
                                            duration_min=40.0, patient_ref="P-1")]
        nurse = Session("s1", "c1", "new", "active", T0 + 1, weight_kg=80.0, total_mg=40.0, started_by="nurse.kim")
        store.write_sessions([nurse])
        assert store.sessions(start_ms=T0 + 1) == [nurse]
    finally:
        store.close()
