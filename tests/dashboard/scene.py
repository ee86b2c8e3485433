"""A representative clinic for browser tests and screenshots: live chairs, alarms, no data, offline.

It publishes, retained, what the ingest would (alarm lists, effective limits under the shipped rules), so the
dashboard can be tested and pictured without an alarm engine running.
"""

from __future__ import annotations

import json
import time

from vitals.topics import Topics

TOPICS = Topics()


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def session(chair: str, started_ms: int, state: str = "active") -> str:
    """Return a session payload for a chair."""
    return json.dumps({"session_id": f"S-{chair}", "state": state, "started_at": started_ms,
                       "ended_at": None if state == "active" else started_ms + 40 * 60_000,
                       "drug": "ketamine", "dose_mg_per_kg": 0.5, "duration_min": 40, "patient_ref": f"P-{chair.upper()}"})


def alarm(site: str, chair: str, vital: str, priority: str, text: str, since: int, value: float, limit: float,
          acknowledged_by: str | None = None) -> dict:
    """Return one entry of a retained alarms array."""
    return {"alarm_id": f"{site}.{chair}.{vital}.{since}", "vital": vital, "kind": "physiological", "priority": priority,
            "since": since, "text": text, "value": value, "limit": limit, "condition_active": True,
            "acknowledged": acknowledged_by is not None, "acknowledged_by": acknowledged_by, "audio_paused_until": None}


def publish_scene(client, site: str, chairs: int = 12, history_s: int = 0) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Publish sessions, status, a few readings and alarms for ``chairs`` chairs; return the alarms by chair."""
    now = now_ms()
    alarms: dict[str, list] = {}
    for i in range(chairs):
        chair = f"c-{i + 1:02d}"
        client.publish(TOPICS.status(site, chair), "online", qos=1, retain=True)
        if i % 4 != 3:
            client.publish(TOPICS.session(site, chair), session(chair, now - (5 + 3 * i) * 60_000), qos=1, retain=True)
        for k in range(history_s, 0, -1):
            ts = now - k * 1000
            client.publish(TOPICS.vitals(site, chair), json.dumps(
                {"ts": ts, "hr": 70 + i + 6 * ((k // 30) % 3), "spo2": 97 - (k // 60) % 3, "rr": 14}), qos=0)
        client.publish(TOPICS.vitals(site, chair), json.dumps(
            {"ts": now - 3 * 60_000 - i * 20_000, "sys": 120 + 3 * i, "dia": 75 + i, "map": 90 + 2 * i}), qos=1)
        alarms[chair] = []
    if chairs >= 3:
        alarms["c-02"] = [alarm(site, "c-02", "spo2", "high", "SpO2 83 % < 85 %", now - 40_000, 83, 85)]
    if chairs >= 5:
        alarms["c-05"] = [alarm(site, "c-05", "sys", "medium", "NIBP sys 166 \u2265 160 mmHg", now - 200_000, 166, 160)]
    if chairs >= 7:
        alarms["c-07"] = [alarm(site, "c-07", "rr", "low", "NIBP overdue", now - 90_000, 0, 0)]
    if chairs >= 9:
        alarms["c-09"] = [alarm(site, "c-09", "hr", "medium", "HR 124 > 120 /min", now - 30_000, 124, 120,
                                acknowledged_by="nurse.kim")]
    for chair, items in alarms.items():
        client.publish(TOPICS.alarms(site, chair), json.dumps(items), qos=1, retain=True)
        client.publish(TOPICS.effective_limits(site, chair), shipped_limits(site, chair, now), qos=1, retain=True)
    return alarms


def shipped_limits(site: str, chair: str, ts: int) -> bytes:
    """Return the effective-limits payload the alarm engine publishes for a chair under the shipped rules."""
    from ingest.alarms.rules import effective_limits, load_rules
    from vitals.limits import EffectiveLimits

    return EffectiveLimits(site, chair, ts, **effective_limits(load_rules(), site, chair)).to_payload()


def publish_live(client, site: str, chairs: int, skip: tuple[str, ...] = ()) -> None:  # type: ignore[no-untyped-def]
    """Publish one current reading for each chair not in ``skip``."""
    now = now_ms()
    for i in range(chairs):
        chair = f"c-{i + 1:02d}"
        if chair in skip:
            continue
        hr = 124 if chair == "c-09" else 70 + i
        spo2 = 83 if chair == "c-02" else 97
        client.publish(TOPICS.vitals(site, chair), json.dumps({"ts": now, "hr": hr, "spo2": spo2, "rr": 12 + i % 5}), qos=0)


def seed_store(store_url: str, site: str, chairs: int = 12, minutes: int = 40, end_ago_s: int = 0) -> None:
    """Write ``minutes`` of 1 Hz history, cuff readings every 10 min, sessions and alarm events to a store."""
    import math

    from vitals.reading import Reading
    from vitals.records import AlarmEvent, Session
    from vitals.store import open_store

    now = now_ms() - end_ago_s * 1000
    store = open_store(store_url)
    try:
        for i in range(chairs):
            chair = f"c-{i + 1:02d}"
            start = now - minutes * 60_000
            readings = []
            for k in range(minutes * 60):
                ts = start + k * 1000
                t = k / 60
                hr = 72 + i + 8 * math.sin(t / 6) + (12 if chair == "c-02" and 20 < t < 28 else 0)
                spo2 = 97 - (12 if chair == "c-02" and t > minutes - 3 else 0) + math.sin(t) * 0.8
                readings.append(Reading(site, chair, ts, seq=k, hr=round(hr), spo2=round(spo2), rr=14 + round(math.sin(t / 3))))
            for c in range(0, minutes, 10):
                ts = start + c * 60_000 + 500
                sys_ = 124 + 3 * i + (28 if chair == "c-05" and c >= 30 else 0) + c // 5
                readings.append(Reading(site, chair, ts, sys=sys_, dia=78 + i, map=round((sys_ + 2 * (78 + i)) / 3)))
            store.write_readings(readings)
            if i % 4 != 3:
                store.write_sessions([Session(site, chair, f"S-{chair}", "active", start + 60_000, drug="ketamine",
                                              dose_mg_per_kg=0.5, duration_min=40, patient_ref=f"P-{chair.upper()}")])
        raised = now - 150_000
        alarm_id = f"{site}.c-02.spo2.{raised}"
        store.write_alarm_events([
            AlarmEvent(alarm_id, site, "c-02", "spo2", "physiological", "medium", "raised", 88.0, 90.0, raised,
                       text="SpO2 88 % < 90 %"),
            AlarmEvent(alarm_id, site, "c-02", "spo2", "physiological", "high", "upgraded", 84.0, 85.0, raised + 40_000,
                       text="SpO2 84 % < 85 %"),
            AlarmEvent(f"{site}.c-02.hr.{now - 1_500_000}", site, "c-02", "hr", "physiological", "medium", "raised",
                       121.0, 120.0, now - 1_500_000, text="HR 121 > 120 /min"),
            AlarmEvent(f"{site}.c-02.hr.{now - 1_500_000}", site, "c-02", "hr", "physiological", "medium",
                       "acknowledged", None, None, now - 1_440_000, user="nurse.kim", text="HR 121 > 120 /min"),
            AlarmEvent(f"{site}.c-02.hr.{now - 1_500_000}", site, "c-02", "hr", "physiological", "medium", "cleared",
                       112.0, 120.0, now - 1_200_000, text="HR 112"),
        ])
    finally:
        store.close()


# The chair view's trend callback as the page calls it (tests post this to /_dash-update-component).
CHAIR_TREND_OUTPUTS = (("chair-trend", "figure"), ("chair-session", "children"), ("chair-alarm-history", "children"),
                       ("chair-export", "href"), ("chair-history-note", "children"), ("chair-limits-note", "children"))


def chair_trend_request(site: str, chair: str, choice: str = "1h") -> dict:
    """Return the request body of the chair view's trend callback for a chair and a range."""
    return {"output": ".." + "...".join(f"{i}.{p}" for i, p in CHAIR_TREND_OUTPUTS) + "..",
            "outputs": [{"id": i, "property": p} for i, p in CHAIR_TREND_OUTPUTS],
            "inputs": [{"id": "chair-range", "property": "value", "value": choice},
                       {"id": "chair-trend-tick", "property": "n_intervals", "value": 0},
                       {"id": "chair-limits-version", "property": "data", "value": None}],
            "state": [{"id": "chair-key", "property": "data", "value": {"site": site, "chair": chair}}],
            "changedPropIds": ["chair-range.value"]}
