"""Property-based fuzzing of the reading contract's validation and the topic parser (pure, no servers)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitals.reading import (
    MAX_FUTURE_MS,
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_MESSAGE,
    MIN_TS_MS,
    PLAUSIBLE,
    REFUSAL_CODES,
    VITALS,
    Validated,
    fast_readings,
    validate_payload,
    validate_payload_fully,
)
from vitals.topics import CHAIR_KINDS, ID_PATTERN, TopicError, Topics, check_id

NOW_MS = 1_764_000_000_000  # 2025-11-24, a fixed clock so runs are reproducible


def fuzz(n: int) -> settings:
    """Return hypothesis settings for ``n`` examples (the five fuzz tests below draw 11,000 in all)."""
    return settings(max_examples=n, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

huge_numbers = st.one_of(
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 2**63, 2**63 - 1, -1, 2**64]),
)
unicode_text = st.text(max_size=40)
json_scalars = st.one_of(st.none(), st.booleans(), huge_numbers, unicode_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(unicode_text, inner, max_size=5)),
    max_leaves=30,
)


@st.composite
def valid_reading(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a reading object that satisfies every contract rule."""
    obj: dict[str, Any] = {"ts": draw(st.integers(MIN_TS_MS, NOW_MS + MAX_FUTURE_MS))}
    if draw(st.booleans()):
        obj["seq"] = draw(st.integers(0, 2**63 - 1))
    names = draw(st.lists(st.sampled_from(VITALS), min_size=1, unique=True))
    for name in names:
        low, high = PLAUSIBLE[name]
        obj[name] = draw(st.floats(low, high) | st.integers(math.ceil(low), math.floor(high)))
    if "sys" in obj and "dia" in obj and obj["sys"] <= obj["dia"]:
        obj["sys"], obj["dia"] = 150, 80
    return obj


@st.composite
def mutated_reading(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a valid reading with a few keys replaced by hostile values or removed."""
    obj = draw(valid_reading())
    for _ in range(draw(st.integers(1, 4))):
        key = draw(st.sampled_from([*VITALS, "ts", "seq", "extra", "\u202e", "__proto__"]))
        if draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = draw(json_values | st.sampled_from(
                ["2025-11-24T10:00:00Z", "2025-11-24 10:00:00", "1999-12-31T23:59:59Z", "2025-11-24T10:00:00",
                 "9999-12-31T23:59:59Z", "NaN", "Infinity", "x" * 100]))
    return obj


def deep(depth: int) -> bytes:
    """Return JSON nested ``depth`` levels deep."""
    return b"[" * depth + b"]" * depth


payloads = st.one_of(
    valid_reading().map(lambda o: json.dumps(o).encode()),
    mutated_reading().map(lambda o: json.dumps(o, allow_nan=True).encode()),
    st.lists(st.one_of(valid_reading(), mutated_reading()), min_size=0, max_size=8).map(
        lambda lst: json.dumps(lst, allow_nan=True).encode()),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.binary(max_size=300),
    unicode_text.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.integers(1, 100_000).map(deep),
    st.sampled_from([b"", b"{", b"NaN", b'{"ts": NaN, "hr": 70}', b'{"hr": Infinity, "ts": 1}', b"\xff\xfe",
                     b'{"ts": 1e400, "hr": 70}', b'{"ts": 17640000000000000000000000000, "hr": 70}']),
)


def check_outcome(out: Validated, now_ms: int = NOW_MS) -> None:
    """Assert the contract's invariants on a validation outcome."""
    for refusal in out.refusals:
        assert refusal.reason.strip(), refusal
        assert refusal.code in REFUSAL_CODES, refusal
        assert refusal.scope in ("message", "reading", "vital"), refusal
    if out.refused_whole:
        assert not out.readings
        assert len(out.refusals) == 1
    for r in out.readings:
        assert MIN_TS_MS <= r.ts_ms <= now_ms + MAX_FUTURE_MS
        assert r.seq is None or (type(r.seq) is int and 0 <= r.seq < 2**63)
        values = r.values()
        assert values, r
        for name, value in values.items():
            low, high = PLAUSIBLE[name]
            assert type(value) is float and math.isfinite(value) and low <= value <= high, (name, value)
        if r.sys is not None and r.dia is not None:
            assert r.sys > r.dia
        json.dumps(r.to_json_obj(), allow_nan=False)  # what is stored can be serialised strictly


@fuzz(4000)
@given(payloads)
def test_validate_payload_never_raises_and_keeps_the_contract(payload: bytes) -> None:
    check_outcome(validate_payload("site-1", "chair-1", payload, NOW_MS))


@fuzz(500)
@given(payloads | st.lists(valid_reading(), min_size=1, max_size=8).map(lambda lst: json.dumps(lst).encode()))
def test_the_fast_path_accepts_only_what_the_full_validation_accepts_unchanged(payload: bytes) -> None:
    fast = fast_readings("site-1", "chair-1", payload, NOW_MS)
    if fast is None:
        return  # declined: validate_payload words the refusals with the full validation
    full = validate_payload_fully("site-1", "chair-1", payload, NOW_MS)
    assert not full.refusals and full.readings == fast
    assert [tuple(map(type, r.values().values())) for r in fast] == [
        tuple(map(type, r.values().values())) for r in full.readings]


@fuzz(100)
@given(st.lists(valid_reading(), min_size=1, max_size=50))
def test_contract_readings_take_the_fast_path(items: list[dict[str, Any]]) -> None:
    body = json.dumps(items[0] if len(items) == 1 else items).encode()
    assert fast_readings("s", "c", body, NOW_MS) == validate_payload_fully("s", "c", body, NOW_MS).readings


@fuzz(1000)
@given(st.lists(mutated_reading(), min_size=1, max_size=6))
def test_every_reading_of_an_array_is_accounted_for(items: list[dict[str, Any]]) -> None:
    out = validate_payload("s", "c", json.dumps(items, allow_nan=True).encode(), NOW_MS)
    check_outcome(out)
    if not out.refused_whole:
        refused_whole = {r.index for r in out.refusals if r.scope == "reading"}
        assert len(out.readings) + len(refused_whole) == len(items)


@fuzz(1000)
@given(valid_reading())
def test_valid_readings_are_accepted_unchanged(obj: dict[str, Any]) -> None:
    out = validate_payload("s", "c", json.dumps(obj).encode(), NOW_MS)
    assert not out.refusals and len(out.readings) == 1
    reading = out.readings[0]
    assert reading.ts_ms == obj["ts"] and reading.seq == obj.get("seq")
    assert reading.values() == {k: float(v) for k, v in obj.items() if k in VITALS}


def test_oversized_and_overlong_payloads_are_refused_with_their_code() -> None:
    one = {"ts": NOW_MS, "seq": 1, "hr": 72.0, "spo2": 98.0, "rr": 14.0, "sys": 120.0, "dia": 80.0, "map": 93.0}
    full = json.dumps([one] * MAX_READINGS_PER_MESSAGE).encode()
    assert len(full) <= MAX_PAYLOAD_BYTES
    out = validate_payload("s", "c", full, NOW_MS)
    assert len(out.readings) == MAX_READINGS_PER_MESSAGE and not out.refusals
    over = validate_payload("s", "c", json.dumps([one] * (MAX_READINGS_PER_MESSAGE + 1)).encode(), NOW_MS)
    assert [r.code for r in over.refusals] == ["too_many_readings"]
    big = validate_payload("s", "c", b" " * MAX_PAYLOAD_BYTES + b"{}", NOW_MS)
    assert [r.code for r in big.refusals] == ["too_large"]
    nested = validate_payload("s", "c", deep(MAX_PAYLOAD_BYTES // 2), NOW_MS)
    assert [r.code for r in nested.refusals] == ["not_json"]


# -- topics ----------------------------------------------------------------------------------------------

TOPICS = Topics()
hostile_ids = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", "+", "#", "a/b", "a b", "a,b", "a=b", 'a"b', "a'b", "a\nb", "a\x00b", "<script>",
                     "x" * 65, "chair-1 ", "caf\u00e9", "\u0661", "a;DROP TABLE readings", "$SYS", "..", "a\\b"]),
)
id_text = st.from_regex(ID_PATTERN, fullmatch=True)


@fuzz(500)
@given(st.one_of(
    st.text(max_size=200),
    st.tuples(hostile_ids | id_text, hostile_ids | id_text, st.sampled_from([*CHAIR_KINDS, "x", ""]),
              st.sampled_from(["chair", "chairs", ""])).map(lambda t: f"clinic/{t[0]}/{t[3]}/{t[1]}/{t[2]}"),
    st.lists(st.text(max_size=10), max_size=8).map(lambda levels: "clinic/" + "/".join(levels)),
))
def test_parse_chair_accepts_only_contract_topics(topic: str) -> None:
    try:
        parsed = TOPICS.parse_chair(topic)
    except TopicError as exc:
        assert str(exc).strip()
        return
    assert ID_PATTERN.fullmatch(parsed.site) and ID_PATTERN.fullmatch(parsed.chair)
    assert parsed.kind in CHAIR_KINDS
    assert topic == TOPICS.chair(parsed.site, parsed.chair, parsed.kind)


@fuzz(2000)
@given(hostile_ids)
def test_check_id_refuses_every_id_unsafe_for_line_protocol_sql_or_html(value: str) -> None:
    try:
        check_id(value)
    except TopicError as exc:
        assert "invalid id" in str(exc)
        assert len(str(exc)) < 300  # a very long id is not echoed whole into logs
        return
    assert ID_PATTERN.fullmatch(value)
    assert not set(value) & set(" ,=\"'\n\r\t\\<>&/+#;$\x00")
