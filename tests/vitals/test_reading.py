"""The reading contract: every acceptance and refusal rule of docs/mqtt-contract.md."""

from __future__ import annotations

import json

import pytest

from vitals.reading import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    MIN_TS_MS,
    REFUSAL_CODES,
    Reading,
    parse_ts,
    refusal_report,
    validate_payload,
)

NOW = 1_795_568_400_000  # 2026-11-25T01:00:00Z


def check(payload: object, raw: bytes | None = None):
    body = raw if raw is not None else json.dumps(payload).encode()
    return validate_payload("site-1", "chair-1", body, NOW)


def codes(result) -> list[str]:
    return [r.code for r in result.refusals]


def test_full_reading_is_accepted_with_every_field() -> None:
    result = check({"ts": NOW, "seq": 7, "hr": 72, "spo2": 98, "rr": 14, "sys": 120, "dia": 80, "map": 93, "x": "ignored"})
    assert result.refusals == []
    assert result.readings == [Reading("site-1", "chair-1", NOW, 7, 72.0, 98.0, 14.0, 120.0, 80.0, 93.0)]


@pytest.mark.parametrize(("ts", "expected"), [
    ("2026-11-25T01:00:00Z", NOW),
    ("2026-11-25T02:00:00+01:00", NOW),
    ("2026-11-25T01:00:00.250Z", NOW + 250),
    ("2026-11-25t01:00:00z", NOW),
    (NOW, NOW),
])
def test_ts_forms(ts: object, expected: int) -> None:
    assert check({"ts": ts, "hr": 70}).readings[0].ts_ms == expected


@pytest.mark.parametrize(("ts", "code", "words"), [
    (None, "ts_invalid", "not None"),
    ("2026-11-25T01:00:00", "ts_invalid", "no UTC offset"),
    ("yesterday", "ts_invalid", "RFC 3339"),
    (True, "ts_invalid", "boolean"),
    (1.5, "ts_invalid", "integer"),
    (NOW + 5 * 60 * 1000 + 1000, "ts_future", "future"),
    (MIN_TS_MS - 1, "ts_too_old", "2000-01-01"),
    (0, "ts_too_old", "never set"),
])
def test_bad_ts_refuses_the_reading(ts: object, code: str, words: str) -> None:
    result = check({"ts": ts, "hr": 70})
    assert result.readings == []
    assert codes(result) == [code]
    assert result.refusals[0].scope == "reading"
    assert words.lower() in result.refusals[0].reason.lower() or code == "ts_invalid"


def test_missing_ts() -> None:
    result = check({"hr": 70})
    assert codes(result) == ["ts_missing"] and result.readings == []


def test_ts_just_inside_future_bound_is_accepted() -> None:
    assert check({"ts": NOW + 5 * 60 * 1000, "hr": 70}).readings


@pytest.mark.parametrize(("vital", "value", "code"), [
    ("hr", "72", "vital_invalid"),
    ("hr", True, "vital_invalid"),
    ("hr", None, "vital_invalid"),
    ("hr", 19.9, "vital_range"),
    ("hr", 300.1, "vital_range"),
    ("spo2", 49, "vital_range"),
    ("spo2", 100.5, "vital_range"),
    ("rr", -1, "vital_range"),
    ("rr", 81, "vital_range"),
    ("sys", 39, "vital_range"),
    ("dia", 201, "vital_range"),
    ("map", 251, "vital_range"),
    ("map", [1], "vital_invalid"),
])
def test_bad_vital_is_dropped_and_the_rest_kept(vital: str, value: object, code: str) -> None:
    other = "rr" if vital != "rr" else "hr"
    result = check({"ts": NOW, vital: value, other: 20})
    assert codes(result) == [code]
    assert result.refusals[0].scope == "vital" and result.refusals[0].vital == vital
    assert getattr(result.readings[0], vital) is None
    assert getattr(result.readings[0], other) == 20


@pytest.mark.parametrize(("vital", "low", "high"), [("hr", 20, 300), ("spo2", 50, 100), ("rr", 0, 80),
                                                     ("sys", 40, 300), ("dia", 20, 200), ("map", 30, 250)])
def test_range_bounds_are_inclusive(vital: str, low: float, high: float) -> None:
    for value in (low, high):
        result = check({"ts": NOW, vital: value})
        assert result.refusals == [], (vital, value)
        assert getattr(result.readings[0], vital) == value


@pytest.mark.parametrize(("sys", "dia"), [(80, 90), (90, 90)])
def test_sys_not_above_dia_drops_both(sys: float, dia: float) -> None:
    result = check({"ts": NOW, "sys": sys, "dia": dia, "map": 85, "hr": 70})
    assert codes(result) == ["sys_not_above_dia"]
    reading = result.readings[0]
    assert (reading.sys, reading.dia, reading.map, reading.hr) == (None, None, 85, 70)


def test_reading_with_no_vital_left_is_refused() -> None:
    result = check({"ts": NOW, "hr": "fast", "spo2": 10})
    assert codes(result) == ["vital_invalid", "vital_range", "no_vitals"]
    assert result.readings == []


def test_reading_with_no_vital_at_all_is_refused() -> None:
    result = check({"ts": NOW, "temperature": 37})
    assert codes(result) == ["no_vitals"]


def test_bad_seq_is_ignored_not_fatal() -> None:
    result = check({"ts": NOW, "seq": -1, "hr": 70})
    assert codes(result) == ["seq_invalid"]
    assert result.readings[0].seq is None and result.readings[0].hr == 70


@pytest.mark.parametrize(("raw", "code"), [
    (b"\xff\xfe{}", "not_utf8"),
    (b"{not json", "not_json"),
    (b'{"ts": NaN, "hr": 70}', "not_json"),
    (b'{"ts": 1795568400000, "hr": Infinity}', "not_json"),
    (b'{"ts": 1795568400000, "hr": -Infinity}', "not_json"),
    (b"42", "not_reading"),
    (b'"text"', "not_reading"),
    (b"null", "not_reading"),
    (b"[]", "empty_array"),
    (b'[{"ts": 1795568400000, "hr": 70}, 5]', "not_reading"),
    (b"", "not_json"),
    (b"[" * 100_000, "not_json"),
])
def test_whole_message_refusals(raw: bytes, code: str) -> None:
    result = check(None, raw)
    assert codes(result) == [code]
    assert result.refused_whole and result.readings == []


def test_array_limit() -> None:
    ok = [{"ts": NOW - i, "hr": 70} for i in range(MAX_READINGS_PER_MESSAGE)]
    assert len(check(ok).readings) == MAX_READINGS_PER_MESSAGE
    result = check([*ok, {"ts": NOW, "hr": 70}])
    assert codes(result) == ["too_many_readings"] and result.readings == []


def test_size_limit() -> None:
    padding = "x" * (MAX_PAYLOAD_BYTES - 60)
    body = json.dumps({"ts": NOW, "hr": 70, "pad": padding}).encode()
    assert len(body) <= MAX_PAYLOAD_BYTES and check(None, body).readings
    too_big = json.dumps({"ts": NOW, "hr": 70, "pad": padding + "y" * 100}).encode()
    assert codes(check(None, too_big)) == ["too_large"]


def test_array_keeps_good_readings_and_names_bad_ones_by_index() -> None:
    result = check([{"ts": NOW, "hr": 70}, {"hr": 71}, {"ts": NOW + 1000, "spo2": 5, "rr": 12}])
    assert [r.ts_ms for r in result.readings] == [NOW, NOW + 1000]
    assert [(r.index, r.code) for r in result.refusals] == [(1, "ts_missing"), (2, "vital_range")]
    report = refusal_report("clinic/s/chair/c/vitals", result.refusals[0], b"x" * 2000, NOW)
    assert report["reason"].startswith("reading [1]: ts is missing")
    assert len(report["payload"]) == 512 and set(report) == {"topic", "reason", "payload", "ts"}


def test_every_code_is_declared() -> None:
    seen = set()
    for raw in (b"\xff", b"{", b"1", b"[]", json.dumps([{"ts": NOW, "hr": 70}] * 1001).encode(), b"x" * (300 * 1024)):
        seen.update(codes(check(None, raw)))
    for payload in ({"hr": 1}, {"ts": "x", "hr": 70}, {"ts": NOW * 2, "hr": 70}, {"ts": 1, "hr": 70},
                    {"ts": NOW, "hr": "a", "sys": 80, "dia": 90, "seq": -1}, {"ts": NOW, "spo2": 1}):
        seen.update(codes(check(payload)))
    assert seen <= set(REFUSAL_CODES)


def test_reading_json_round_trip() -> None:
    reading = Reading("s", "c", NOW, 3, hr=70.0, sys=120.0, dia=80.0)
    again = check(reading.to_json_obj()).readings[0]
    assert (again.ts_ms, again.seq, again.hr, again.sys, again.dia) == (NOW, 3, 70.0, 120.0, 80.0)


def test_parse_ts_rejects_overlong_strings() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_ts("2026-11-25T01:00:00Z" + " " * 100)
