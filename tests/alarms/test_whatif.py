"""What-if replay against the live path: a real Mosquitto, the real ingest process and its SQLite store.

- Two SpO2 dips to 88 % (20 s and 40 s), published with explicit event times: the rules in force raise both;
  ``alarms whatif`` with ``delay_s = 30`` for ``spo2-low-medium`` keeps one, lists the removed one, and, the
  removed one having been acknowledged as actionable, lists it in ``actionable_suppressed``.
- Each shipped recording, published through the broker into the ingest, gives the same physiological alarms
  as the replay of what the ingest stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infusion_monitor.cli import main
from ingest.alarms.rules import load_rules
from ingest.alarms.whatif import replay
from simulator.replay_cli import load_recording, prepare
from simulator.replay_cli import replay as publish_recording
from tests.servers import IngestProcess, Mosquitto, MqttCollector, mosquitto_pub_lines, wait_until
from vitals.reading import format_ts
from vitals.settings import FixedSettings
from vitals.store.sqlite import SQLiteStore
from vitals.topics import Topics

pytestmark = pytest.mark.integration
TOPICS = Topics()
RECORDINGS = sorted((Path(__file__).resolve().parents[2] / "simulator" / "recordings").glob("*.jsonl"))


@pytest.fixture(scope="module")
def live(mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IngestProcess, Path]]:
    """One ingest for every site of this module, with its SQLite store."""
    work = tmp_path_factory.mktemp("whatif")
    db = work / "vitals.db"
    ingest = IngestProcess(work / "ingest", mosquitto.url, f"sqlite:///{db}")
    ingest.start()
    time.sleep(0.5)  # the ingest subscribes right after connecting
    yield ingest, db
    ingest.stop()


def _events(collector: MqttCollector, site: str) -> list[dict]:
    return [json.loads(p) for p in collector.payloads(TOPICS.alarm_events(site))]


_last: dict[str, tuple[int, int, float]] = {}


def _settled(store: SQLiteStore, site: str) -> bool:
    """Return whether the site's readings and alarm events have stopped changing for a second (all stored)."""
    now = (store.count_readings(site), len(store.alarm_events(site)))
    seen = _last.get(site)
    if seen is None or seen[:2] != now:
        _last[site] = (*now, time.monotonic())
        return False
    return now[0] > 0 and time.monotonic() - seen[2] >= 1.0


def _spo2(t0: int, seconds: range, value: float) -> list[str]:
    return [json.dumps({"ts": t0 + s * 1000, "seq": s, "spo2": value, "hr": 80}) for s in seconds]


def test_longer_delay_removes_the_short_dip_and_names_it_actionable(
        live: tuple[IngestProcess, Path], mosquitto: Mosquitto, site: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ingest, db = live
    collector = MqttCollector(mosquitto.url, TOPICS.alarm_events_filter(site))
    t0 = (int(time.time()) - 600) * 1000  # event time: ten minutes ago, judged on the readings' own times
    topic = TOPICS.vitals(site, "c-01")
    # Dip 1: 88 % for 20 s (s 10..29): raised at s 25 under delay 15 s; still standing after s 27.
    mosquitto_pub_lines(mosquitto.port, topic, _spo2(t0, range(0, 10), 97) + _spo2(t0, range(10, 28), 88))
    assert collector.wait_for(lambda c: any(e["event"] == "raised" for e in _events(c, site)), 20), ingest.log()[-3000:]
    [first] = [e for e in _events(collector, site) if e["event"] == "raised"]
    assert first["ts"] == t0 + 25_000 and first["rule"] == "spo2-low-medium"
    ack = {"alarm_id": first["alarm_id"], "user": "nurse.kim", "action": "acknowledge", "actionable": "actionable",
           "reason": "repositioned the probe"}
    mosquitto_pub_lines(mosquitto.port, TOPICS.ack(site, "c-01"), [json.dumps(ack)])
    assert collector.wait_for(lambda c: any(e["event"] == "acknowledged" for e in _events(c, site)), 20)
    # The rest of dip 1, recovery, dip 2: 88 % for 40 s (s 50..89), recovery.
    mosquitto_pub_lines(mosquitto.port, topic, _spo2(t0, range(28, 30), 88) + _spo2(t0, range(30, 50), 97)
                        + _spo2(t0, range(50, 90), 88) + _spo2(t0, range(90, 110), 97))
    assert collector.wait_for(lambda c: sum(e["event"] == "cleared" for e in _events(c, site)) == 2, 20)
    store = SQLiteStore(db)
    try:
        assert wait_until(lambda: sum(e.event == "cleared" for e in store.alarm_events(site)) == 2
                          and store.count_readings(site) == 110, 20)
        [acked] = [e for e in store.alarm_events(site) if e.event == "acknowledged"]
        assert (acked.actionable, acked.reason, acked.user) == ("actionable", "repositioned the probe", "nurse.kim")
        [audit] = [a for a in store.audit(site) if a.action == "acknowledge"]
        assert audit.detail == "acknowledged; actionable; reason: repositioned the probe"
    finally:
        store.close()

    alt = tmp_path / "alt.toml"
    alt.write_text('[rules.spo2-low-medium]\ndelay_s = 30\n')
    since, until = format_ts(t0 - 1000), format_ts(int(time.time() * 1000) + 60_000)
    args = ["alarms", "whatif", "--store-url", f"sqlite:///{db}", "--site", site, "--since", since, "--until", until]
    assert main([*args, "--rules", str(alt), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["current"]["alarms"] == 2 and doc["alternative"]["alarms"] == 1
    assert doc["current"]["by_rule"] == {"spo2-low-medium": 2} and doc["alternative"]["by_rule"] == {"spo2-low-medium": 1}
    assert [r["alarm_id"] for r in doc["removed"]] == [first["alarm_id"]] and doc["added"] == []
    [delayed] = doc["delayed"]
    assert delayed["delay_s"] == 15.0 and delayed["since"] == format_ts(t0 + 65_000)
    [suppressed] = doc["actionable_suppressed"]
    assert (suppressed["alarm_id"], suppressed["change"], suppressed["reason"]) == (
        first["alarm_id"], "removed", "repositioned the probe")

    # The grid: the rule's delay swept over 15 and 30 s gives the same counts, one row per combination.
    assert main([*args, "--grid", "spo2-low-medium", "--delays", "15,30", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["delay_s"], r["alarms"], r["removed"], r["actionable_suppressed"]) for r in rows] == [
        (15.0, 2, 0, 0), (15.0, 2, 0, 0), (30.0, 1, 1, 1)]
    assert main([*args, "--rules", str(alt)]) == 0
    assert "## Removed: 1" in capsys.readouterr().out


@pytest.mark.parametrize("recording", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_replaying_a_recording_gives_the_alarms_the_live_ingest_raised(
        live: tuple[IngestProcess, Path], mosquitto: Mosquitto, site: str, recording: Path) -> None:
    ingest, db = live
    site = f"{site}-{recording.stem[:12]}"  # the fixture's id is cut before the parameter
    messages = prepare(load_recording(str(recording)), TOPICS, site=site)
    publish_recording(FixedSettings(mqtt_url=mosquitto.url), messages, speed=1e6)
    store = SQLiteStore(db)
    try:
        assert wait_until(lambda: _settled(store, site), 30), ingest.log()[-3000:]
        live_alarms = sorted((e.alarm_id, e.event, e.rule, e.priority, e.ts) for e in store.alarm_events(site)
                             if e.kind == "physiological" and e.event in ("raised", "upgraded", "cleared"))
        result = replay(store, [load_rules()], since_ms=0, until_ms=int(time.time() * 1000) + 86_400_000, site=site)
    finally:
        store.close()
    replayed = sorted((ep.alarm_id, "raised", ep.rules[0], None, ep.since) for ep in result.runs[0].episodes)
    assert [a[0] for a in live_alarms if a[1] == "raised"] == [a[0] for a in replayed]
    if recording.stem == "desaturation":
        assert live_alarms, "the desaturation recording raises alarms; none stored proves nothing"
    live_raised = [(a[0], a[2], a[4]) for a in live_alarms if a[1] == "raised"]
    assert live_raised == [(a[0], a[2], a[4]) for a in replayed]
    live_cleared = sorted((a[0], a[4]) for a in live_alarms if a[1] == "cleared")
    assert live_cleared == sorted((ep.alarm_id, ep.until) for ep in result.runs[0].episodes if ep.until is not None)


def test_an_admin_sees_the_whatif_of_a_limits_edit_before_it_is_applied(
        live: tuple[IngestProcess, Path], mosquitto: Mosquitto, site: str, tmp_path: Path) -> None:
    """The dashboard asks the ingest (MQTT request/response); nothing is published until the second click."""
    from dashboard.app import create_app
    from dashboard.auth import UsersFile
    from dashboard.services import Services
    from tests.dashboard.test_limits import PASSWORD, save_request, signed_in

    _ingest, db = live
    t0 = (int(time.time()) - 300) * 1000
    mosquitto_pub_lines(mosquitto.port, TOPICS.vitals(site, "c-02"),
                        _spo2(t0, range(0, 10), 97) + _spo2(t0, range(10, 30), 88) + _spo2(t0, range(30, 50), 97)
                        + _spo2(t0, range(50, 90), 88) + _spo2(t0, range(90, 100), 97))
    users = tmp_path / "users.json"
    UsersFile(users).add("admin.lee", "admin", PASSWORD)
    services = Services(FixedSettings(mqtt_url=mosquitto.url, store_url=f"sqlite:///{db}", dashboard_users_file=users,
                                      site=site, data_dir=tmp_path))
    app = create_app(services)
    services.start()
    limits = MqttCollector(mosquitto.url, TOPICS.limits(site, "c-02"))
    store = SQLiteStore(db)
    try:
        assert wait_until(lambda: sum(e.event == "cleared" for e in store.alarm_events(site)) == 2, 20)
        assert wait_until(lambda: getattr(services.state.chair_state(site, "c-02"), "effective_limits", None) is not None)
        admin, headers = signed_in(app, "admin.lee")
        values = {("spo2", "low_high"): 85, ("spo2", "low_medium"): 87}  # 88 % no longer below the medium limit
        first = admin.post("/_dash-update-component", json=save_request(site, "c-02", values), headers=headers)
        answer = json.dumps(first.get_json()["response"]["limits-feedback"])
        assert '"whatif-current"' in answer and "What-if before applying" in answer, answer[:2000]
        current = answer.split('"id": "whatif-current"')[0].rsplit('"children": "', 1)[1].split('"')[0]
        alternative = answer.split('"id": "whatif-alternative"')[0].rsplit('"children": "', 1)[1].split('"')[0]
        assert (current, alternative) == ("2", "0") and "Removed 2, added 0" in answer
        assert not limits.wait_for(lambda c: c.messages, timeout=0.5)  # shown, not applied
        seen = first.get_json()["response"]["limits-whatif-for"]["data"]
        second = admin.post("/_dash-update-component", json=save_request(site, "c-02", values, seen), headers=headers)
        assert "Saved" in second.get_data(as_text=True)
        assert limits.wait_for(lambda c: c.messages, timeout=10)
    finally:
        store.close()
        limits.close()
        services.feed.client.publish(TOPICS.limits(site, "c-02"), "", qos=1, retain=True).wait_for_publish(5)  # type: ignore[union-attr]
        services.stop()
