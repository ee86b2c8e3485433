"""The alarm engine, driven directly: delays on event time, tiers, hysteresis, latching, technical alarms."""

from __future__ import annotations

import json

import pytest

from ingest.alarms.engine import AlarmEngine, EngineConfig
from ingest.alarms.rules import load_rules
from tests.alarms.helpers import CHAIR, SITE, T0, engine, kinds, reading, series, session
from vitals.records import AckCommand, AlarmEvent


def feed(eng: AlarmEngine, readings: list) -> list[AlarmEvent]:
    """Feed readings one by one (as the wire does) and return every event."""
    out: list[AlarmEvent] = []
    for r in readings:
        out += eng.on_readings([r])
    return out


def ack(eng: AlarmEngine, alarm_id: str | None, now_ms: int, action: str = "acknowledge", user: str = "nurse.kim"):
    """Send one command."""
    return eng.on_command(AckCommand(SITE, CHAIR, alarm_id, user, action), now_ms)


def test_spo2_below_90_raises_medium_after_15_s_of_readings_and_not_before() -> None:
    eng = engine()
    assert feed(eng, series("spo2", [88.0] * 15)) == []  # 0..14 s: held for 14 s only
    events = eng.on_readings([reading(15, spo2=88.0)])
    assert kinds(events) == [("raised", "spo2", "medium")]
    assert events[0].ts == T0 + 15_000 and events[0].limit == 90.0 and events[0].value == 88.0
    assert events[0].alarm_id == f"{SITE}.{CHAIR}.spo2.low.{T0 + 15_000}"
    assert events[0].text == "SpO2 88 % < 90 %"


def test_condition_must_hold_on_every_reading_across_the_delay() -> None:
    eng = engine()
    values = [88.0] * 10 + [91.0] + [88.0] * 15  # one reading back above 90 restarts the delay
    assert feed(eng, series("spo2", values)) == []
    assert kinds(eng.on_readings([reading(26, spo2=88.0)])) == [("raised", "spo2", "medium")]  # 11 + 15


def test_a_gap_over_5_s_restarts_the_delay_and_5_s_exactly_does_not() -> None:
    eng = engine()
    readings = series("spo2", [88.0] * 9) + series("spo2", [88.0] * 15, start_s=14)  # 8 -> 14: a 6 s gap
    assert feed(eng, readings) == []
    assert kinds(eng.on_readings([reading(29, spo2=88.0)])) == [("raised", "spo2", "medium")]

    eng = engine()
    readings = series("spo2", [88.0] * 9) + series("spo2", [88.0] * 3, start_s=13)  # 8 -> 13: exactly 5 s
    events = feed(eng, readings)
    assert kinds(events) == [("raised", "spo2", "medium")] and events[0].ts == T0 + 15_000


def test_readings_of_other_vitals_do_not_bridge_a_gap() -> None:
    eng = engine()
    readings = series("spo2", [88.0] * 9) + series("hr", [80.0] * 6, start_s=8.5) + series("spo2", [88.0] * 10, start_s=15)
    readings.sort(key=lambda r: r.ts_ms)
    assert feed(eng, readings) == []


def test_deep_desaturation_raises_high_after_5_s_without_a_medium_first() -> None:
    eng = engine()
    events = feed(eng, series("spo2", [83.0] * 6))
    assert kinds(events) == [("raised", "spo2", "high")] and events[0].ts == T0 + 5_000


def test_deeper_rule_upgrades_the_same_alarm() -> None:
    eng = engine()
    events = feed(eng, series("spo2", [88.0] * 16) + series("spo2", [84.0] * 6, start_s=16))
    assert kinds(events) == [("raised", "spo2", "medium"), ("upgraded", "spo2", "high")]
    assert events[0].alarm_id == events[1].alarm_id
    assert events[1].ts == T0 + 21_000 and events[1].limit == 85.0
    assert [a.priority for a in eng.active(SITE, CHAIR)] == ["high"]


def test_priority_does_not_fall_within_an_episode() -> None:
    eng = engine()
    feed(eng, series("spo2", [83.0] * 6))
    assert feed(eng, series("spo2", [88.0] * 30, start_s=6)) == []
    assert [(a.priority, a.condition_active) for a in eng.active(SITE, CHAIR)] == [("high", True)]


def test_medium_alarm_clears_only_past_the_hysteresis_margin() -> None:
    eng = engine()
    feed(eng, series("spo2", [88.0] * 16))
    assert feed(eng, series("spo2", [90.0, 91.0, 91.9], start_s=16)) == []
    events = eng.on_readings([reading(19, spo2=92.0)])
    assert kinds(events) == [("cleared", "spo2", "medium")]
    assert eng.active(SITE, CHAIR) == []


def test_high_alarm_latches_until_acknowledged() -> None:
    eng = engine()
    raised = feed(eng, series("hr", [145.0] * 11))
    assert kinds(raised) == [("raised", "hr", "high")]
    assert feed(eng, series("hr", [80.0] * 5, start_s=11)) == []  # no cleared: latched
    [latched] = eng.active(SITE, CHAIR)
    assert latched.condition_active is False and latched.acknowledged is False
    events = ack(eng, raised[0].alarm_id, T0 + 60_000)
    assert kinds(events) == [("acknowledged", "hr", "high"), ("cleared", "hr", "high")]
    assert events[0].user == "nurse.kim" and events[1].ts == T0 + 60_000
    assert eng.active(SITE, CHAIR) == []


def test_acknowledged_alarm_stays_shown_while_its_condition_holds_then_clears() -> None:
    eng = engine()
    raised = feed(eng, series("hr", [145.0] * 11))
    assert kinds(ack(eng, raised[0].alarm_id, T0 + 12_000)) == [("acknowledged", "hr", "high")]
    assert ack(eng, raised[0].alarm_id, T0 + 13_000) == []  # twice is once
    [shown] = eng.active(SITE, CHAIR)
    assert shown.acknowledged and shown.acknowledged_by == "nurse.kim" and shown.condition_active
    assert feed(eng, series("hr", [130.0], start_s=11)) == []  # 130 > 120 - 5: not cleared yet
    assert kinds(feed(eng, series("hr", [115.0], start_s=12))) == [("cleared", "hr", "high")]


def test_upgrade_after_acknowledge_re_raises() -> None:
    eng = engine()
    raised = feed(eng, series("hr", [125.0] * 16))
    ack(eng, raised[0].alarm_id, T0 + 16_000)
    events = feed(eng, series("hr", [150.0] * 11, start_s=16))
    assert kinds(events) == [("upgraded", "hr", "high")]
    [shown] = eng.active(SITE, CHAIR)
    assert not shown.acknowledged and shown.acknowledged_by is None


def test_acknowledging_an_unknown_alarm_does_nothing() -> None:
    eng = engine()
    assert ack(eng, "north.c-07.spo2.low.1", T0) == []


def test_cuff_rules_judge_each_cuff_reading_at_once() -> None:
    eng = engine()
    events = eng.on_readings([reading(0, sys=185.0, dia=95.0)])
    assert kinds(events) == [("raised", "sys", "high")]
    assert events[0].text == "NIBP sys 185 mmHg ≥ 180 mmHg"
    events = eng.on_readings([reading(600, sys=150.0, dia=112.0)])
    assert kinds(events) == [("raised", "dia", "high")]  # sys latched (high), dia raised
    assert {a.vital: a.condition_active for a in eng.active(SITE, CHAIR)} == {"sys": False, "dia": True}


def test_cuff_medium_alarm_needs_the_margin_to_clear() -> None:
    eng = engine()
    assert kinds(eng.on_readings([reading(0, sys=165.0, dia=80.0)])) == [("raised", "sys", "medium")]
    assert eng.on_readings([reading(600, sys=158.0, dia=80.0)]) == []
    assert kinds(eng.on_readings([reading(1200, sys=155.0, dia=80.0)])) == [("cleared", "sys", "medium")]


def test_low_systolic_is_a_separate_alarm_from_high() -> None:
    eng = engine()
    assert kinds(eng.on_readings([reading(0, sys=85.0, dia=50.0)])) == [("raised", "sys", "medium")]
    [alarm] = eng.active(SITE, CHAIR)
    assert ".sys.low." in alarm.alarm_id


def test_baseline_rule_uses_the_session_first_cuff_reading() -> None:
    eng = engine()
    eng.on_session(session(), T0)
    assert eng.on_readings([reading(10, sys=120.0, dia=80.0)]) == []  # the baseline itself
    assert eng.on_readings([reading(610, sys=155.0, dia=85.0)]) == []  # 155 < 156
    events = eng.on_readings([reading(1210, sys=157.0, dia=85.0)])
    assert kinds(events) == [("raised", "sys", "medium")]
    assert events[0].limit == 156.0 and "baseline 120 + 30 %" in (events[0].text or "")


def test_baseline_from_the_session_wins_and_a_new_session_resets_it() -> None:
    eng = engine()
    eng.on_session(session(baseline_sys=100.0), T0)
    assert kinds(eng.on_readings([reading(10, sys=131.0, dia=80.0)])) == [("raised", "sys", "medium")]
    eng = engine()
    eng.on_session(session("S-1"), T0)
    eng.on_readings([reading(10, sys=100.0, dia=70.0)])
    eng.on_session(session("S-2", started_s=3600), T0 + 3_600_000)
    assert eng.on_readings([reading(3610, sys=135.0, dia=70.0)]) == []  # new baseline 135
    assert kinds(eng.on_readings([reading(4210, sys=176.0, dia=70.0)])) == [("raised", "sys", "medium")]


def test_no_baseline_rule_without_a_session() -> None:
    eng = engine()
    eng.on_readings([reading(0, sys=100.0, dia=70.0)])
    assert eng.on_readings([reading(600, sys=150.0, dia=70.0)]) == []


def test_readings_not_newer_than_the_newest_are_ignored() -> None:
    eng = engine()
    feed(eng, series("spo2", [97.0] * 20, start_s=100))
    assert feed(eng, series("spo2", [80.0] * 20)) == []  # all older
    assert eng.ignored_readings == 20


def test_no_data_after_15_s_of_wall_clock_silence_for_a_chair_in_session() -> None:
    eng = engine()
    eng.on_session(session(), T0)
    now = 5_000_000
    assert eng.tick(now) == []
    assert eng.tick(now + 14_000) == []
    events = eng.tick(now + 15_000)
    assert kinds(events) == [("raised", "no_data", "medium")] and events[0].kind == "technical"
    assert events[0].value is None and events[0].limit is None
    eng.on_readings([reading(0, hr=80.0)])
    assert kinds(eng.tick(now + 16_000)) == [("cleared", "no_data", "medium")]


def test_no_data_for_a_chair_that_sent_recently_but_not_for_one_long_silent() -> None:
    eng = engine()
    eng.on_readings([reading(0, hr=80.0)])
    now = 5_000_000
    eng.tick(now)
    assert kinds(eng.tick(now + 15_000)) == [("raised", "no_data", "medium")]
    assert kinds(eng.tick(now + 601_000)) == [("cleared", "no_data", "medium")]  # not in use any more
    assert eng.tick(now + 700_000) == []


def test_offline_status_raises_and_online_clears_for_a_watched_chair() -> None:
    eng = engine()
    assert eng.on_status(SITE, "c-99", "offline", 1000) == []  # never seen, no session: not watched
    eng.on_session(session(), T0)
    events = eng.on_status(SITE, CHAIR, "offline", 2000)
    assert kinds(events) == [("raised", "offline", "medium")]
    assert eng.tick(30_000) == []  # offline explains the silence: no no_data on top
    assert kinds(eng.on_status(SITE, CHAIR, "online", 40_000)) == [("cleared", "offline", "medium")]


def test_nibp_overdue_after_one_and_a_half_cuff_intervals() -> None:
    eng = engine(cuff_interval_min=10.0)
    eng.on_session(session(), T0)
    eng.on_readings([reading(1, sys=120.0, dia=80.0)])
    assert feed(eng, series("hr", [80.0] * 899, start_s=2, step_s=1)) == []  # up to 900 s: under 900 s after the cuff
    events = eng.on_readings([reading(901, hr=80.0)])
    assert kinds(events) == [("raised", "nibp_overdue", "low")]
    assert kinds(eng.on_readings([reading(902, sys=120.0, dia=80.0)])) == [("cleared", "nibp_overdue", "low")]


def escalations(events: list[AlarmEvent]) -> list[tuple[str, str, str]]:
    """Return the escalated events of physiological alarms."""
    return kinds([e for e in events if e.event == "escalated" and e.kind == "physiological"])


def test_escalation_after_60_s_for_high_unless_acknowledged() -> None:
    eng = engine()
    raised = feed(eng, series("spo2", [83.0] * 6))
    now = 9_000_000
    assert escalations(eng.tick(now)) == []
    assert escalations(eng.tick(now + 59_000)) == []
    events = [e for e in eng.tick(now + 60_000) if e.event == "escalated"]
    assert kinds(events) == [("escalated", "spo2", "high")] and events[0].alarm_id == raised[0].alarm_id
    assert escalations(eng.tick(now + 200_000)) == []  # once

    eng = engine()
    raised = feed(eng, series("spo2", [83.0] * 6))
    eng.tick(now)
    ack(eng, raised[0].alarm_id, now + 30_000)
    assert escalations(eng.tick(now + 61_000)) == []


def test_medium_escalates_after_180_s_and_low_never() -> None:
    eng = engine()
    eng.on_session(session(), T0)
    feed(eng, series("spo2", [88.0] * 16))
    feed(eng, series("hr", [80.0] * 901, start_s=16))  # nibp_overdue (low) is raised meanwhile
    assert ("raised", "nibp_overdue", "low") in kinds(eng.on_readings([reading(917, hr=80.0)])) or any(
        a.vital == "nibp_overdue" for a in eng.active(SITE, CHAIR))
    eng.tick(1_000_000)
    assert escalations(eng.tick(1_179_000)) == []
    assert escalations(eng.tick(1_180_000)) == [("escalated", "spo2", "medium")]
    later = eng.tick(5_000_000)
    assert escalations(later) == [] and "nibp_overdue" not in {e.vital for e in later if e.event == "escalated"}


def test_audio_pause_is_per_chair_and_a_new_alarm_breaks_through() -> None:
    eng = engine(audio_pause_s=120.0)
    feed(eng, series("spo2", [88.0] * 16))
    eng.take_changed()
    assert ack(eng, None, T0 + 20_000, action="pause_audio") == []
    assert eng.take_changed() == [(SITE, CHAIR)]
    assert [a.audio_paused_until for a in eng.active(SITE, CHAIR)] == [T0 + 140_000]
    feed(eng, series("hr", [150.0] * 11, start_s=20))
    assert all(a.audio_paused_until is None for a in eng.active(SITE, CHAIR))


def test_audio_pause_expires_on_the_wall_clock() -> None:
    eng = engine(audio_pause_s=120.0)
    feed(eng, series("spo2", [88.0] * 16))
    ack(eng, None, 1_000_000, action="pause_audio")
    eng.tick(1_119_000)
    assert eng.active(SITE, CHAIR)[0].audio_paused_until == 1_120_000
    eng.tick(1_120_000)
    assert eng.active(SITE, CHAIR)[0].audio_paused_until is None


def test_notify_failed_is_high_and_latches() -> None:
    eng = engine()
    events = eng.notify_failed(SITE, CHAIR, 1000)
    assert kinds(events) == [("raised", "notify_failed", "high")]
    assert eng.notify_ok(SITE, CHAIR, 2000) == []  # latched
    assert kinds(ack(eng, events[0].alarm_id, 3000)) == [("acknowledged", "notify_failed", "high"),
                                                         ("cleared", "notify_failed", "high")]


def test_state_round_trip_neither_re_raises_nor_loses_alarms() -> None:
    eng = engine()
    eng.on_session(session(), T0)
    raised = feed(eng, series("spo2", [88.0] * 16))
    state = json.loads(json.dumps(eng.to_state()))
    again = AlarmEngine(load_rules(), EngineConfig())
    again.load_state(state)
    assert again.active(SITE, CHAIR) == eng.active(SITE, CHAIR)
    assert set(again.take_changed()) == {(SITE, CHAIR)}
    assert feed(again, series("spo2", [88.0] * 16)) == []  # redelivered old readings: ignored
    assert feed(again, series("spo2", [87.0] * 5, start_s=16)) == []  # same episode continues
    assert kinds(ack(again, raised[0].alarm_id, T0 + 30_000)) == [("acknowledged", "spo2", "medium")]
    assert again.session(SITE, CHAIR) == session()


def test_same_input_gives_the_same_alarm_ids() -> None:
    readings = series("spo2", [88.0] * 16) + series("hr", [150.0] * 12, start_s=16)
    assert feed(engine(), readings) == feed(engine(), readings)


@pytest.mark.parametrize("speed", [10.0, 20.0])
def test_replay_at_10x_and_20x_gives_identical_physiological_events(speed: float) -> None:
    """Same readings, ticks from a wall clock running at 1x vs 10x/20x: identical raise/upgrade/clear events."""
    values = [97.0] * 20 + [88.0] * 20 + [83.0] * 10 + [93.0] * 10 + [88.0] * 3 + [96.0] * 30
    readings = series("spo2", values) + series("hr", [150.0] * 12 + [90.0] * 5, start_s=200)
    readings += series("rr", [33.0] * 62 + [27.0] * 3, start_s=600)  # a medium episode that clears
    readings += [reading(300 + i * 60, sys=s, dia=80.0) for i, s in enumerate([150.0, 185.0, 150.0, 170.0, 120.0])]
    readings.sort(key=lambda r: r.ts_ms)

    def run(speed: float) -> list[AlarmEvent]:
        eng = engine()
        eng.on_session(session(), T0)
        out: list[AlarmEvent] = []
        wall0 = 7_000_000
        next_tick = wall0
        for r in readings:
            wall = wall0 + (r.ts_ms - T0) / speed
            while next_tick <= wall:
                out += eng.tick(int(next_tick))
                next_tick += 1000
            out += eng.on_readings([r])
        return [e for e in out if e.kind == "physiological" and e.event in ("raised", "upgraded", "cleared")]

    live, fast = run(1.0), run(speed)
    assert kinds(live) == [("raised", "spo2", "medium"), ("upgraded", "spo2", "high"), ("raised", "hr", "high"),
                           ("raised", "sys", "high"), ("raised", "rr", "medium"), ("cleared", "rr", "medium")]
    assert live == fast


def test_assessment_overdue_is_a_low_technical_alarm_raised_cleared_and_acknowledged_like_any_other() -> None:
    eng = engine()
    assert eng.assessment_overdue(SITE, CHAIR, [], T0) == []  # an unknown chair with nothing overdue stays unknown
    assert eng.chairs() == []
    [raised] = eng.assessment_overdue(SITE, CHAIR, ["Cuff BP"], T0)
    assert (raised.event, raised.kind, raised.priority, raised.vital) == ("raised", "technical", "low",
                                                                          "assessment_overdue")
    assert raised.text == "Assessment overdue: Cuff BP"
    assert eng.assessment_overdue(SITE, CHAIR, ["Cuff BP", "CADSS at 40 min"], T0 + 500) == []  # one alarm
    [active] = eng.active(SITE, CHAIR)
    assert active.alarm_id == raised.alarm_id and active.text == "Assessment overdue: Cuff BP"
    events = ack(eng, raised.alarm_id, T0 + 1000, user="nurse.lee")
    assert [(e.event, e.user) for e in events] == [("acknowledged", "nurse.lee")]
    [cleared] = eng.assessment_overdue(SITE, CHAIR, [], T0 + 2000)
    assert cleared.event == "cleared" and eng.active(SITE, CHAIR) == []
