"""The session record end to end: mosquitto_pub -> real mosquitto -> the real ingest process -> its SQLite store.

Issue 13: each event kind published with mosquitto_pub is stored with its author and time and audited; every
malformed record is refused with a reason on the rejected topic; a missed cuff BP raises `assessment_overdue`
within a second of overdue + grace, and it is acknowledged and audited like any alarm; a discharge is refused
below the threshold and before the minimum observation, accepted at 9 after it, and an override is recorded.

One ingest serves the module (its care plan has second-scale intervals); each test uses its own chair.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from tests.servers import IngestProcess, Mosquitto, MqttCollector, mosquitto_pub_lines, wait_until
from vitals.store.sqlite import SQLiteStore
from vitals.topics import Topics

pytestmark = pytest.mark.integration
TOPICS = Topics()
SITE = f"t-care-{os.getpid() % 10000}"
# Seconds, as minutes: cuff BP every 3 s while infusing, grace 1 s, 3 s of observation; CADSS far away.
PLAN = """
[schedule]
bp_infusion_min = 0.05
bp_recovery_min = 0.05
cadss_at_min = [30.0]
grace_min = 0.016666666666666666
[discharge]
min_observation_min = 0.05
"""


class Env:
    def __init__(self, mosquitto: Mosquitto, ingest: IngestProcess, store: SQLiteStore, collector: MqttCollector) -> None:
        self.mosquitto, self.ingest, self.store, self.collector = mosquitto, ingest, store, collector
        self.retained: set[str] = set()

    def session(self, chair: str, started_at: int, **extra: object) -> str:
        sid = f"S-{chair}"
        doc = {"session_id": sid, "state": "active", "started_at": started_at, "drug": "ketamine",
               "dose_mg_per_kg": 0.5, "duration_min": 40, "patient_ref": "P-7F3A2C", "weight_kg": 70,
               "baseline_sys": 120, "baseline_dia": 80, "baseline_source": "entered", "started_by": "nurse.kim", **extra}
        # Retained, as the contract says: a restarted ingest gets it again when it subscribes.
        self.retained.add(TOPICS.session(SITE, chair))
        self.collector.client.publish(TOPICS.session(SITE, chair), json.dumps(doc), qos=1, retain=True).wait_for_publish(5)
        assert self.collector.wait_for(lambda c: self.state(chair) is not None and self.state(chair)["session_id"] == sid)
        return sid

    def publish(self, chair: str, *records: dict) -> None:
        mosquitto_pub_lines(self.mosquitto.port, TOPICS.record(SITE, chair), [json.dumps(r) for r in records])

    def vitals(self, chair: str, *readings: dict) -> None:
        mosquitto_pub_lines(self.mosquitto.port, TOPICS.vitals(SITE, chair), [json.dumps(r) for r in readings])

    def state(self, chair: str) -> dict | None:
        found = self.collector.payloads(TOPICS.record_state(SITE, chair))
        return json.loads(found[-1]) if found else None

    def rejected(self, chair: str) -> list[dict]:
        return [r for r in map(json.loads, self.collector.payloads(TOPICS.rejected)) if f"/chair/{chair}/" in r["topic"]]

    def alarm_events(self, chair: str) -> list[dict]:
        return [e for e in map(json.loads, self.collector.payloads(TOPICS.alarm_events(SITE))) if e["chair"] == chair]


@pytest.fixture(scope="module")
def env(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("care")
    (work / "plan.toml").write_text(PLAN)
    db = work / "vitals.db"
    ingest = IngestProcess(work / "ingest", mosquitto.url, f"sqlite:///{db}", "--site", SITE,
                           "--care-plan-file", str(work / "plan.toml"))
    collector = MqttCollector(mosquitto.url, TOPICS.chair_filter("record_state", SITE), TOPICS.rejected,
                              TOPICS.alarm_events_filter(SITE))
    ingest.start()
    store = SQLiteStore(db)
    env = Env(mosquitto, ingest, store, collector)
    try:
        yield env
    finally:
        for topic in env.retained:  # leave the shared broker without this module's retained sessions
            collector.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        store.close()
        collector.close()
        ingest.stop()


def now_ms() -> int:
    return int(time.time() * 1000)


def rec(sid: str, type_: str, ts: int, **extra: object) -> dict:
    return {"type": type_, "ts": ts, "session_id": sid, "author": "nurse.kim", **extra}


def test_every_event_kind_is_stored_with_author_and_time_and_audited(env: Env) -> None:
    chair = "c-events"
    t = now_ms() - 120_000
    sid = env.session(chair, t)
    records = [
        rec(sid, "infusion_start", t + 1000, rate=52.5, rate_unit="mg/h"),
        rec(sid, "rate_change", t + 2000, rate=40, rate_unit="mg/h", reason="nausea"),
        rec(sid, "adverse_event", t + 3000, kind="nausea", treatment="ondansetron", dose="4 mg IV"),
        rec(sid, "pause", t + 4000, reason="nausea"),
        rec(sid, "resume", t + 5000),
        rec(sid, "note", t + 6000, text="settled after ondansetron"),
        rec(sid, "assessment", t + 7000, scale="moaas", score=5),
        rec(sid, "assessment", t + 8000, scale="rass", score=-1),
        rec(sid, "assessment", t + 9000, scale="nrs", score=3),
        rec(sid, "assessment", t + 10_000, scale="cadss6", items={i: 1 for i in ("1", "2", "6", "7", "15", "22")}),
        rec(sid, "infusion_stop", t + 11_000, delivered_mg=35),
    ]
    env.publish(chair, *records, records[1])  # the rate change re-sent: stored once, applied once
    assert wait_until(lambda: len(env.store.care_records(SITE, chair, sid)) == len(records), 15), \
        env.ingest.log()[-2000:]
    stored = env.store.care_records(SITE, chair, sid)
    assert [(r.type, r.ts, r.author) for r in stored] == [(r["type"], r["ts"], "nurse.kim") for r in records]
    assert stored[2].data == {"kind": "nausea", "treatment": "ondansetron", "dose": "4 mg IV"}
    assert [r.data["total"] for r in env.store.assessments(SITE, chair, sid)] == [5, -1, 3, 6]
    assert len(env.store.infusion_events(SITE, chair, sid)) == 7
    assert wait_until(lambda: len([a for a in env.store.audit(SITE) if a.chair == chair]) == len(records), 10)
    audit = [a for a in env.store.audit(SITE) if a.chair == chair]
    assert sorted(a.action for a in audit) == sorted(f"record.{r['type']}" for r in records)
    assert all(a.user == "nurse.kim" and f"session {sid}" in (a.detail or "") for a in audit)
    assert env.collector.wait_for(lambda c: env.state(chair)["phase"] == "recovery")
    state = env.state(chair)
    assert state["infusion"]["paused_ms"] == 1000 and state["infusion"]["elapsed_ms"] == 9000
    assert state["assessments"]["cadss6"]["total"] == 6 and state["events"] == len(records)
    [session] = env.store.sessions(SITE, chair)
    assert (session.total_mg, session.started_by, session.baseline_dia) == (35.0, "nurse.kim", 80)
    assert env.rejected(chair) == []


def test_every_malformed_record_is_refused_with_a_reason(env: Env) -> None:
    chair = "c-bad"
    t = now_ms() - 60_000
    sid = env.session(chair, t)
    bad = [
        ("not json", "not valid JSON"),
        (json.dumps(rec(sid, "bolus", t + 1000)), "record type 'bolus'"),
        (json.dumps({"type": "note", "ts": t + 1000, "session_id": sid, "text": "x"}), "author is missing"),
        (json.dumps(rec(sid, "note", t + 1000)), "text is missing"),
        (json.dumps(rec(sid, "rate_change", t + 1000, rate=40, rate_unit="drops")), "rate_unit must be"),
        (json.dumps(rec(sid, "adverse_event", t + 1000, kind="sneezing")), "adverse event kind 'sneezing'"),
        (json.dumps(rec(sid, "assessment", t + 1000, scale="moaas", score=6)), "out of range"),
        (json.dumps(rec(sid, "assessment", t + 1000, scale="aldrete", items={"activity": 2})), "missing"),
        (json.dumps(rec("S-other", "note", t + 1000, text="x")), "not the chair's current session"),
        (json.dumps(rec(sid, "pause", t + 1000)), "not possible while the infusion is not started"),
        (json.dumps(rec(sid, "note", now_ms() + 3_600_000, text="x")), "in the future"),
    ]
    mosquitto_pub_lines(env.mosquitto.port, TOPICS.record(SITE, chair), [payload for payload, _ in bad])
    assert env.collector.wait_for(lambda c: len(env.rejected(chair)) >= len(bad), 15), env.rejected(chair)
    reports = env.rejected(chair)
    assert len(reports) == len(bad)
    for report, (payload, reason) in zip(reports, bad, strict=True):
        assert reason in report["reason"] and report["payload"] == payload[:512], (report, reason)
    metrics = env.ingest.metrics()
    for code in ("bad_record", "score_invalid", "no_session", "bad_sequence"):
        assert metrics.get(f'ingest_refusals_total{{code="{code}",scope="message"}}', 0) >= 1, code
    assert env.store.care_records(SITE, chair) == []


def test_a_missed_bp_check_raises_assessment_overdue_within_a_second(env: Env) -> None:
    chair = "c-overdue"
    t = now_ms()
    sid = env.session(chair, t - 10_000)
    start = now_ms()
    env.publish(chair, rec(sid, "infusion_start", start))
    overdue_at = start + 3000 + 1000  # bp_infusion 3 s + grace 1 s
    assert env.collector.wait_for(
        lambda c: any(e["vital"] == "assessment_overdue" and e["event"] == "raised" for e in env.alarm_events(chair)),
        timeout=15), env.ingest.log()[-2000:]
    seen = now_ms()
    [raised] = [e for e in env.alarm_events(chair) if e["event"] == "raised"]
    assert (raised["kind"], raised["priority"], raised["text"]) == ("technical", "low", "Assessment overdue: Cuff BP")
    assert overdue_at <= raised["ts"] < overdue_at + 1000, raised["ts"] - overdue_at
    assert seen - overdue_at < 2000  # and it reached a subscriber promptly (shared CPU: generous)
    state = env.state(chair)
    assert next(i for i in state["due"] if i["id"] == "bp")["overdue"] is True

    ack = {"alarm_id": raised["alarm_id"], "user": "nurse.lee", "action": "acknowledge"}
    mosquitto_pub_lines(env.mosquitto.port, TOPICS.ack(SITE, chair), [json.dumps(ack)])
    env.vitals(chair, {"ts": now_ms(), "sys": 126, "dia": 80, "map": 95})
    assert env.collector.wait_for(lambda c: [e["event"] for e in env.alarm_events(chair)][:3] ==
                                  ["raised", "acknowledged", "cleared"], timeout=10), env.alarm_events(chair)
    assert wait_until(lambda: any(a.action == "acknowledge" and a.alarm_id == raised["alarm_id"] and a.user == "nurse.lee"
                                  for a in env.store.audit(SITE)), 10)
    assert wait_until(lambda: {e.event for e in env.store.alarm_events(SITE, chair)} >= {"raised", "acknowledged"}, 10)


def test_discharge_refused_below_nine_and_before_observation_accepted_after_and_override_recorded(env: Env) -> None:
    chair = "c-discharge"
    t = now_ms()
    sid = env.session(chair, t - 60_000)
    env.publish(chair, rec(sid, "infusion_start", t - 50_000))
    stop = now_ms()
    env.publish(chair, rec(sid, "infusion_stop", stop))
    env.vitals(chair, {"ts": stop + 100, "sys": 126, "dia": 82, "map": 97}, {"ts": stop + 200, "spo2": 97, "hr": 72})
    eight = {"activity": 2, "respiration": 2, "circulation": 2, "consciousness": 1, "spo2": 1}
    env.publish(chair, rec(sid, "assessment", stop + 300, scale="aldrete", items=eight),
                rec(sid, "discharge", stop + 400))
    assert env.collector.wait_for(lambda c: len(env.rejected(chair)) == 1, 10), env.ingest.log()[-2000:]
    reason = env.rejected(chair)[0]["reason"]
    assert reason.startswith("discharge refused: ") and "score: Modified Aldrete 8 < 9" in reason
    assert "observation: observed 0 of 0.05 min" in reason

    nine = {**eight, "spo2": 2}
    env.publish(chair, rec(sid, "assessment", stop + 500, scale="aldrete", items=nine), rec(sid, "discharge", stop + 600))
    assert env.collector.wait_for(lambda c: len(env.rejected(chair)) == 2, 10)
    second = env.rejected(chair)[1]["reason"]
    assert "score" not in second and "observation" in second  # 9 is enough; the 3 s of observation are not over
    state = env.state(chair)
    assert state["phase"] == "recovery" and state["readiness"]["ready"] is False

    while now_ms() < stop + 3100:
        time.sleep(0.1)
    env.vitals(chair, {"ts": now_ms(), "spo2": 97, "hr": 70})
    assert env.collector.wait_for(lambda c: env.state(chair)["readiness"]["ready"] is True, 10), env.state(chair)
    env.publish(chair, rec(sid, "discharge", now_ms()))
    assert env.collector.wait_for(lambda c: env.state(chair)["phase"] == "discharged", 10), env.rejected(chair)
    assert wait_until(lambda: env.store.discharges(SITE, chair, sid), 10)
    [discharge] = env.store.discharges(SITE, chair, sid)
    assert discharge.data["accepted"] == "criteria" and discharge.author == "nurse.kim"
    assert {c["id"]: c["met"] for c in discharge.data["criteria"]} == {
        "infusion_stopped": True, "score": True, "observation": True, "vitals": True}
    assert env.state(chair)["discharge"]["criteria"] == discharge.data["criteria"]
    assert wait_until(lambda: [a.action for a in env.store.audit(SITE) if a.chair == chair].count("discharge_refused") == 2, 10)

    # Another chair: discharged before the criteria hold, with a reason, which is recorded.
    chair2 = "c-override"
    sid2 = env.session(chair2, t - 60_000)
    env.publish(chair2, rec(sid2, "infusion_start", t - 50_000),
                rec(sid2, "discharge", now_ms(), override_reason="transferred to the emergency department"))
    assert wait_until(lambda: env.store.discharges(SITE, chair2, sid2), 10), env.rejected(chair2)
    [forced] = env.store.discharges(SITE, chair2, sid2)
    assert forced.data["accepted"] == "override"
    assert forced.data["override_reason"] == "transferred to the emergency department"
    assert {c["id"] for c in forced.data["criteria"] if not c["met"]} >= {"infusion_stopped", "score"}
    assert wait_until(lambda: any(a.action == "discharge_override" and a.chair == chair2 for a in env.store.audit(SITE)), 10)
    assert env.rejected(chair2) == []


def test_a_restarted_ingest_rebuilds_each_record_from_the_store_and_republishes_its_state(env: Env) -> None:
    chair = "c-restart"
    t = now_ms() - 60_000
    sid = env.session(chair, t)
    env.publish(chair, rec(sid, "infusion_start", t + 1000), rec(sid, "pause", t + 2000),
                rec(sid, "assessment", t + 3000, scale="moaas", score=4))
    assert env.collector.wait_for(lambda c: env.state(chair)["events"] == 3, 10)
    assert wait_until(lambda: len(env.store.care_records(SITE, chair, sid)) == 3, 10)
    before = len(env.collector.payloads(TOPICS.record_state(SITE, chair)))
    env.ingest.restart()
    # The retained session comes back on subscribe; the record is rebuilt from the store and published again.
    assert env.collector.wait_for(lambda c: len(c.payloads(TOPICS.record_state(SITE, chair))) > before, 15)
    state = env.state(chair)
    assert (state["phase"], state["events"], state["assessments"]["moaas"]["total"]) == ("paused", 3, 4)
    env.publish(chair, rec(sid, "pause", t + 4000))  # still paused after the restart: refused as before
    assert env.collector.wait_for(lambda c: any("paused" in r["reason"] for r in env.rejected(chair)), 10)
