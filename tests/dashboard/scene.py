"""A representative clinic for browser tests and screenshots: live chairs, alarms, no data, offline."""

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
    return alarms


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
