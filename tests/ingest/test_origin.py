"""State bound to its origin, in-process: identities, the decision, the refusal, the spool and alarm state files."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from ingest.alarms.service import AlarmService
from ingest.origin import Decision, Origin, OriginMismatch, broker_identity, decide, refusal, set_aside, store_identity
from ingest.spool import Batch, Spool
from tests.alarms.helpers import series
from vitals.reading import Reading
from vitals.settings import Settings
from vitals.topics import Topics

A = Origin("mqtt://broker-a:1883", "influxdb://db-a:8086/vitals", "clinic", None)
ALARM_BINDS: dict[str, Any] = {"always": ("broker", "topic_prefix", "site"), "while_pending": ("store",)}
SPOOL_BINDS: dict[str, Any] = {"always": (), "while_pending": ("store",)}


# -- identities ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("left", "right"), [
    ("mqtt://ingest:old-secret@Broker.Example.org", "mqtt://ingest:new-secret@broker.example.org:1883"),
    ("tcp://broker.example.org", "mqtt://broker.example.org:1883"),
    ("mqtts://broker.example.org", "ssl://BROKER.example.org:8883"),
    ("mqtt://other-user:pw@broker.example.org:1883", "mqtt://broker.example.org"),
])
def test_broker_identity_ignores_credentials_case_and_default_ports(left: str, right: str) -> None:
    assert broker_identity(left) == broker_identity(right)
    assert "secret" not in broker_identity(left) and "@" not in broker_identity(left)


@pytest.mark.parametrize(("left", "right"), [
    ("mqtt://broker:1883", "mqtt://broker:1884"),
    ("mqtt://broker", "mqtts://broker"),
    ("mqtt://broker-a", "mqtt://broker-b"),
])
def test_broker_identity_tells_brokers_apart(left: str, right: str) -> None:
    assert broker_identity(left) != broker_identity(right)


def test_broker_identity_spells_ipv6_hosts_in_brackets() -> None:
    assert broker_identity("mqtt://[::1]:1883") == "mqtt://[::1]:1883"


def test_sqlite_identity_is_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    expected = f"sqlite:///{tmp_path.resolve() / 'data' / 'vitals.db'}"
    assert store_identity("sqlite:///data/vitals.db") == expected
    assert store_identity("sqlite:///./data/../data/vitals.db") == expected
    assert store_identity(f"sqlite:///{tmp_path / 'data' / 'vitals.db'}") == expected
    assert store_identity("sqlite:///other/vitals.db") != expected


@pytest.mark.parametrize(("left", "right"), [
    ("influxdb://writer:old@Influx.local/vitals", "influxdb://writer:new@influx.local:8086/vitals"),
    ("influxdb://influx.local:8086/vitals?tls=true", "influxdb://influx.local/vitals"),
    ("influxdb2://influx.local/vitals?org=clinic", "influxdb2://INFLUX.local:8086/vitals?org=clinic"),
])
def test_influx_identity_ignores_credentials_and_transport(left: str, right: str) -> None:
    assert store_identity(left) == store_identity(right)
    assert "old" not in store_identity(left) and "@" not in store_identity(left)


@pytest.mark.parametrize(("left", "right"), [
    ("influxdb://influx.local/vitals", "influxdb://influx.local/vitals2"),
    ("influxdb://influx.local/vitals", "influxdb://influx.local:8087/vitals"),
    ("influxdb2://influx.local/vitals?org=a", "influxdb2://influx.local/vitals?org=b"),
    ("influxdb://influx.local/vitals", "influxdb://influx.local/vitals?rp=week"),
    ("influxdb://influx.local/vitals", "influxdb2://influx.local/vitals?org=a"),
])
def test_influx_identity_tells_stores_apart(left: str, right: str) -> None:
    assert store_identity(left) != store_identity(right)


def test_an_unknown_store_url_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot tell which store"):
        store_identity("postgres://db/vitals")


def test_a_password_or_token_change_is_the_same_origin() -> None:
    before = Settings(mqtt_url="mqtt://ingest:one@broker", store_url="influxdb2://db/vitals?org=o", influx_token="t1")
    after = Settings(mqtt_url="mqtt://ingest:two@broker", store_url="influxdb2://db/vitals?org=o", influx_token="t2")
    assert Origin.from_settings(before) == Origin.from_settings(after)


def test_explicit_identities_win_over_the_urls() -> None:
    renamed = Settings(mqtt_url="mqtt://new-name.clinic", store_url="influxdb://new-db/vitals",
                       broker_id="mqtt://old-name.clinic:1883", store_id="influxdb://old-db:8086/vitals")
    origin = Origin.from_settings(renamed)
    assert (origin.broker, origin.store) == ("mqtt://old-name.clinic:1883", "influxdb://old-db:8086/vitals")


def test_the_origin_round_trips_and_a_bad_record_is_refused() -> None:
    assert Origin.from_json_obj(json.loads(json.dumps(A.to_json_obj()))) == A
    for bad in ([], {"broker": 1, "store": "s", "topic_prefix": "p"}, {"broker": "b", "store": "s",
                                                                      "topic_prefix": "p", "site": 3}):
        with pytest.raises(ValueError, match="not a recorded origin"):
            Origin.from_json_obj(bad)


# -- the decision -------------------------------------------------------------------------------------------

def other(**changes: Any) -> Origin:
    return Origin(**{**A.to_json_obj(), **changes})


def test_a_missing_file_is_new_and_one_without_origin_is_adopted() -> None:
    assert decide(False, None, A, **ALARM_BINDS).verdict == "new"
    assert decide(True, None, other(broker="mqtt://x:1"), **ALARM_BINDS).verdict == "adopt"


@pytest.mark.parametrize("change", [{"broker": "mqtt://broker-b:1883"}, {"topic_prefix": "other"},
                                    {"site": "north"}])
def test_alarm_state_of_another_broker_prefix_or_site_is_a_mismatch(change: dict[str, Any]) -> None:
    decision = decide(True, A, other(**change), **ALARM_BINDS, pending=False)
    assert decision.verdict == "mismatch" and decision.differs == tuple(change)


def test_alarm_state_follows_a_new_store_unless_its_outbox_holds_events() -> None:
    moved = other(store="influxdb://db-b:8086/vitals")
    assert decide(True, A, moved, **ALARM_BINDS, pending=False).verdict == "rebind"
    assert decide(True, A, moved, **ALARM_BINDS, pending=True) == Decision("mismatch", ("store",))


def test_a_spool_is_bound_to_its_store_only_while_it_holds_batches() -> None:
    moved = other(store="influxdb://db-b:8086/vitals", broker="mqtt://broker-b:1883")
    assert decide(True, A, moved, **SPOOL_BINDS, pending=True) == Decision("mismatch", ("store",))
    assert decide(True, A, moved, **SPOOL_BINDS, pending=False).verdict == "rebind"
    assert decide(True, A, other(broker="mqtt://broker-b:1883"), **SPOOL_BINDS, pending=True).verdict == "rebind"
    assert decide(True, A, A, **SPOOL_BINDS, pending=True).verdict == "same"


def test_the_refusal_says_what_it_found_what_it_was_given_and_what_to_do() -> None:
    given = other(broker="mqtt://broker-b:1883")
    text = refusal("alarm state", Path("data/alarm_state.json"), A, given, ("broker",), "")
    assert "belongs to broker mqtt://broker-a:1883" in text and "was given broker mqtt://broker-b:1883" in text
    assert "point the ingest back at broker mqtt://broker-a:1883" in text
    assert "broker_id = 'mqtt://broker-a:1883' (INFUSION_BROKER_ID)" in text and "--fresh-state" in text
    spool = refusal("spool", Path("data/spool.db"), A, other(store="sqlite:///b.db"), ("store",), "9 records not yet stored")
    assert "holds 9 records not yet stored" in spool and "against influxdb://db-a:8086/vitals again" in spool
    assert "spool_items 0" in spool and "store_id" in spool


def test_set_aside_keeps_the_file_under_a_timestamped_name(tmp_path: Path) -> None:
    state = tmp_path / "alarm_state.json"
    for _ in range(2):
        state.write_text("{}")
        aside = set_aside(state, now=0)
        assert not state.exists() and aside.read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alarm_state.aside-19700101T000000Z-2.json", "alarm_state.aside-19700101T000000Z.json"]


# -- the spool ------------------------------------------------------------------------------------------------

def spool_with_batch(path: Path, origin: Origin | None) -> None:
    spool = Spool(path, 10_000_000, origin=origin)
    spool.append(Batch(readings=[Reading("s", "c", 1000 + i, i, hr=70.0) for i in range(5)]))
    spool.close()


def test_a_spool_for_another_store_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool_with_batch(path, A)
    before = path.read_bytes()
    with pytest.raises(OriginMismatch, match=r"spool .* holds 5 records not yet stored"):
        Spool(path, 10_000_000, origin=other(store="sqlite:///elsewhere.db"))
    assert path.read_bytes() == before
    again = Spool(path, 10_000_000, origin=A)
    assert again.items == 5 and again.recorded_origin() == A


def test_a_fresh_start_moves_the_spool_aside_and_never_drains_it(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool_with_batch(path, A)
    b = other(store="sqlite:///elsewhere.db")
    fresh = Spool(path, 10_000_000, origin=b, fresh=True)
    assert (fresh.items, fresh.oldest(), fresh.recorded_origin()) == (0, None, b)
    assert fresh.aside is not None and fresh.aside.name.startswith("spool.aside-") and fresh.aside.suffix == ".db"
    kept = Spool(fresh.aside, 10_000_000)
    assert kept.items == 5 and kept.recorded_origin() == A


def test_a_spool_written_before_origins_is_adopted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "spool.db"
    spool_with_batch(path, None)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE origin")  # as an older release left it
    with caplog.at_level(logging.WARNING, "ingest.origin"):
        adopted = Spool(path, 10_000_000, origin=A)
    assert adopted.items == 5 and adopted.recorded_origin() == A
    assert "records no origin" in caplog.text and "adopted" in caplog.text


def test_an_empty_spool_follows_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool(path, 10_000_000, origin=A).close()
    b = other(store="sqlite:///elsewhere.db")
    assert Spool(path, 10_000_000, origin=b).recorded_origin() == b


# -- the alarm state ------------------------------------------------------------------------------------------

def alarm_service(tmp_path: Path, **settings: Any) -> AlarmService:
    return AlarmService(Settings(data_dir=tmp_path, **settings), Topics(), publish=lambda *a: None,
                        record=lambda events, audit, on_durable=None: on_durable and on_durable())


def saved_state(tmp_path: Path, **settings: Any) -> Path:
    """Save the state of one chair that has readings, as an ingest against ``settings`` would."""
    service = alarm_service(tmp_path, **settings)
    service.on_readings(series("hr", [72.0] * 5))
    service._save()
    return service.state_path


def test_alarm_state_records_its_origin_and_refuses_another_broker(tmp_path: Path) -> None:
    path = saved_state(tmp_path, mqtt_url="mqtt://broker-a")
    recorded = json.loads(path.read_text())["origin"]
    assert recorded["broker"] == "mqtt://broker-a:1883" and recorded["site"] is None
    with pytest.raises(OriginMismatch, match=r"alarm state .* belongs to broker mqtt://broker-a:1883"):
        alarm_service(tmp_path, mqtt_url="mqtt://broker-b")
    assert json.loads(path.read_text())["origin"] == recorded
    alarm_service(tmp_path, mqtt_url="mqtt://ingest:new-password@Broker-A:1883")  # the same broker


def test_alarm_state_of_all_sites_is_refused_for_one_site(tmp_path: Path) -> None:
    saved_state(tmp_path)
    with pytest.raises(OriginMismatch, match="belongs to every site; this ingest was given site 'north'"):
        alarm_service(tmp_path, site="north")


def test_a_fresh_start_moves_the_alarm_state_aside(tmp_path: Path) -> None:
    path = saved_state(tmp_path, mqtt_url="mqtt://broker-a")
    chairs = json.loads(path.read_text())["engine"]
    service = alarm_service(tmp_path, mqtt_url="mqtt://broker-b", state_mismatch="fresh")
    assert not path.exists() and service.state_aside is not None
    assert json.loads(service.state_aside.read_text())["engine"] == chairs
    service.start()
    try:
        assert service.engine.chairs() == []
    finally:
        service.stop()
    assert json.loads(path.read_text())["origin"]["broker"] == "mqtt://broker-b:1883"


def test_alarm_state_written_before_origins_is_adopted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = saved_state(tmp_path, mqtt_url="mqtt://broker-a")
    state = json.loads(path.read_text())
    del state["origin"]
    path.write_text(json.dumps(state))
    with caplog.at_level(logging.WARNING, "ingest.origin"):
        service = alarm_service(tmp_path, mqtt_url="mqtt://broker-b")
    assert "records no origin" in caplog.text
    service.start()
    try:
        assert len(service.engine.chairs()) == 1
    finally:
        service.stop()
    assert json.loads(path.read_text())["origin"]["broker"] == "mqtt://broker-b:1883"


def test_a_spool_with_an_unreadable_origin_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool_with_batch(path, A)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE origin SET body = '[1]'")
    with pytest.raises(OriginMismatch, match="unreadable origin record"):
        Spool(path, 10_000_000, origin=A)
