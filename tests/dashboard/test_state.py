"""Live state rules: stale values never look current, older readings never replace newer ones, alarm order."""

from __future__ import annotations

import json

from dashboard.live import LiveState
from dashboard.state import (
    ChairState,
    SparkBuffer,
    format_age,
    format_elapsed,
    sort_alarms,
    sounding,
    tile_view,
    value_age_ms,
)
from vitals.reading import Reading
from vitals.records import ActiveAlarm, Session

T0 = 1_795_568_400_000


def reading(ts: int, **vitals: float) -> Reading:
    return Reading("north", "c-01", ts, **vitals)


def alarm(priority: str, since: int, acknowledged: bool = False, paused_until: int | None = None) -> ActiveAlarm:
    return ActiveAlarm(f"a-{priority}-{since}", "hr", "physiological", priority, since, f"{priority} alarm",
                       acknowledged=acknowledged, audio_paused_until=paused_until)


def test_fresh_reading_is_live() -> None:
    state = ChairState("north", "c-01")
    state.apply_reading(reading(T0, hr=78, spo2=97, rr=14), T0 + 200)
    view = tile_view(state, T0 + 1000)
    assert view.mode == "live"
    assert [(n.vital, n.text, n.stale) for n in view.numerics] == [("hr", "78", False), ("spo2", "97", False),
                                                                    ("rr", "14", False)]


def test_no_reading_for_15_s_is_no_data_with_age() -> None:
    state = ChairState("north", "c-01")
    state.apply_reading(reading(T0, hr=78, spo2=97), T0)
    assert tile_view(state, T0 + 15_000).mode == "live"
    view = tile_view(state, T0 + 15_001)
    assert view.mode == "nodata"
    assert view.age == "15 s ago"
    assert all(n.stale for n in view.numerics)


def test_late_delivered_reading_is_as_old_as_its_timestamp() -> None:
    state = ChairState("north", "c-01")
    state.apply_reading(reading(T0 - 60_000, hr=78), T0)  # arrived now, measured a minute ago
    view = tile_view(state, T0 + 100)
    assert view.mode == "nodata"
    assert view.age == "1 min ago"


def test_device_clock_ahead_cannot_make_a_value_fresher_than_its_arrival() -> None:
    state = ChairState("north", "c-01")
    state.apply_reading(reading(T0 + 120_000, hr=78), T0)  # clock two minutes ahead
    assert tile_view(state, T0 + 16_000).mode == "nodata"
    assert value_age_ms(T0 + 120_000, T0, T0 + 16_000) == 16_000


def test_older_reading_never_replaces_a_newer_value() -> None:
    state = ChairState("north", "c-01")
    state.apply_reading(reading(T0, hr=80), T0)
    state.apply_reading(reading(T0 - 5_000, hr=60), T0 + 10)
    assert state.values["hr"][1] == 80


def test_one_stale_vital_is_marked_while_others_are_live() -> None:
    state = ChairState("north", "c-01")
    state.apply_reading(reading(T0, hr=80, spo2=97), T0)
    state.apply_reading(reading(T0 + 20_000, hr=81), T0 + 20_000)
    view = tile_view(state, T0 + 20_500)
    assert view.mode == "live"
    by = {n.vital: n for n in view.numerics}
    assert not by["hr"].stale and by["spo2"].stale and by["spo2"].age == "20 s ago"
    assert by["rr"].stale and by["rr"].age == "never"


def test_offline_status_wins_over_fresh_values() -> None:
    state = ChairState("north", "c-01", status="offline")
    state.apply_reading(reading(T0, hr=80), T0)
    view = tile_view(state, T0 + 100)
    assert view.mode == "offline"
    assert all(n.stale for n in view.numerics)


def test_chair_never_heard_is_no_data_never() -> None:
    view = tile_view(ChairState("north", "c-01"), T0)
    assert view.mode == "nodata" and view.age == "never"


def test_cuff_reading_shows_with_its_age_and_overdue_in_a_session() -> None:
    state = ChairState("north", "c-01")
    state.session = Session("north", "c-01", "S1", "active", T0 - 3600_000, drug="ketamine", dose_mg_per_kg=0.5)
    state.apply_reading(reading(T0, sys=128, dia=82, map=97), T0)
    view = tile_view(state, T0 + 12 * 60_000)
    assert view.cuff_text == "128/82 (97)" and view.cuff_age == "12 min ago" and not view.cuff_overdue
    assert tile_view(state, T0 + 16 * 60_000).cuff_overdue
    assert view.session_text == "ketamine · 0.5 mg/kg" and view.elapsed == "1:12:00"


def test_highest_alarm_is_shown_first() -> None:
    state = ChairState("north", "c-01")
    state.alarms = (alarm("low", T0), alarm("high", T0 + 5), alarm("medium", T0 + 1))
    view = tile_view(state, T0 + 10)
    assert view.alarm_priority == "high" and view.alarm_text == "high alarm" and view.alarm_more == 2


def test_alarm_panel_order_priority_then_unacknowledged_then_age() -> None:
    items = [("s", "c1", alarm("medium", T0)), ("s", "c2", alarm("high", T0 + 50, acknowledged=True)),
             ("s", "c3", alarm("high", T0 + 100)), ("s", "c4", alarm("high", T0 + 10)), ("s", "c5", alarm("low", T0 - 9))]
    assert [c for _, c, _ in sort_alarms(items)] == ["c4", "c3", "c2", "c1", "c5"]


def test_sounding_respects_ack_and_audio_pause_but_a_new_alarm_breaks_through() -> None:
    pause = 120_000
    assert sounding(alarm("high", T0), T0, pause)
    assert not sounding(alarm("medium", T0), T0, pause)
    assert not sounding(alarm("high", T0, acknowledged=True), T0, pause)
    paused_until = T0 + 60_000  # the pause began at T0 - 60 s
    assert not sounding(alarm("high", T0 - 70_000, paused_until=paused_until), T0, pause)
    assert sounding(alarm("high", T0 - 30_000, paused_until=paused_until), T0, pause)
    assert sounding(alarm("high", T0 - 70_000, paused_until=T0 - 1), T0, pause)


def test_spark_buffer_buckets_and_window() -> None:
    buf = SparkBuffer()
    for k in range(0, 20 * 60):  # 20 minutes at 1 Hz
        buf.add(T0 + k * 1000, 70 + (k % 2), 97, T0 + k * 1000)
    hr, spo2 = buf.points(T0 + 20 * 60_000)
    assert 175 <= len(hr) <= 181 and len(spo2) == len(hr)
    assert all(70 <= v <= 71 for _, v in hr)
    assert hr[0][0] >= T0 + 5 * 60_000 - 5000


def test_formats() -> None:
    assert format_age(None) == "never"
    assert format_age(4_999) == "4 s ago"
    assert format_age(12 * 60_000) == "12 min ago"
    assert format_age(3600_000 * 2 + 5 * 60_000) == "2 h 5 min ago"
    assert format_age(3 * 86400_000) == "3 d ago"
    assert format_elapsed(65_000) == "1:05" and format_elapsed(3_725_000) == "1:02:05"


def test_live_state_takes_mqtt_payloads() -> None:
    clock = [T0]
    live = LiveState(clock=lambda: clock[0])
    assert live.apply_payload("north", "c-01", json.dumps([{"ts": T0, "hr": 77}, {"ts": T0 - 1, "hr": "bad"}]).encode()) == 1
    live.apply_session("north", "c-01", json.dumps({"session_id": "S", "state": "active", "started_at": T0}).encode())
    live.apply_status("north", "c-01", b"online")
    live.apply_alarms("north", "c-01", json.dumps([alarm("high", T0).to_json_obj()]).encode())
    (view,) = live.tiles()
    assert view.mode == "live" and view.numerics[0].text == "77" and view.alarm_priority == "high"
    assert view.session_state == "active"
    clock[0] += 16_000
    assert live.tiles()[0].mode == "nodata"
    assert live.sounding_count() == 1


def test_unreadable_alarm_state_is_flagged_not_dropped() -> None:
    live = LiveState(clock=lambda: T0)
    live.apply_alarms("north", "c-01", json.dumps([alarm("high", T0).to_json_obj()]).encode())
    live.apply_alarms("north", "c-01", b"{not json")
    (view,) = live.tiles()
    assert view.alarms_error and view.alarm_priority == "high"  # the last known alarm stays shown
    assert live.alarm_errors() == [("north", "c-01", view.alarms_error)]
    live.apply_alarms("north", "c-01", b"[]")
    (view,) = live.tiles()
    assert view.alarms_error is None and view.alarm_priority is None


def test_seed_from_store_then_backfill_once() -> None:
    live = LiveState(clock=lambda: T0)
    live.seed("north", "c-02", {"hr": (T0 - 60_000, 70.0), "sys": (T0 - 300_000, 120.0), "dia": (T0 - 300_000, 80.0)})
    (view,) = live.tiles()
    assert view.mode == "nodata" and view.age == "1 min ago" and view.cuff_text == "120/80"
    live.backfill("north", "c-02", [(T0 - 100_000, 70.0, 97.0)])
    live.backfill("north", "c-02", [(T0 - 50_000, 90.0, 97.0)])
    hr, _ = live.chair_state("north", "c-02").spark.points(T0)  # type: ignore[union-attr]
    assert [v for _, v in hr] == [70.0]
