"""The replay core without servers: a SQLite store of generated history."""

from __future__ import annotations

from pathlib import Path

from benchmarks.replay import ALTERNATIVE, history
from ingest.alarms.rules import apply_overrides, default_rules_text, load_rules, parse_defaults
from ingest.alarms.whatif import layered, replay, whatif
from vitals.records import Session
from vitals.store import open_store

T0 = 1_790_000_000_000


def test_chairs_replayed_in_parallel_give_exactly_the_one_pass_result(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    store = open_store(url)
    try:
        for c in range(5):
            store.write_sessions([Session("s", f"c{c}", f"S{c}", "ended", T0 + c * 1000, T0 + 1_800_000)])
            store.write_readings(history("s", f"c{c}", T0, 1800, c))
        store.write_readings(history("other", "c0", T0, 600, 9))  # another site: never replayed for "s"
        books = [load_rules(), apply_overrides(load_rules(), ALTERNATIVE, "alt.toml")]
        one = replay(store, books, since_ms=T0, until_ms=T0 + 1_800_000, site="s")
        four = replay(store, books, since_ms=T0, until_ms=T0 + 1_800_000, site="s", workers=4,
                      opener=lambda: open_store(url))
        assert one.readings == four.readings == 5 * 1800
        for a, b in zip(one.runs, four.runs, strict=True):
            assert a.episodes == b.episodes and len(a.episodes) > 10
        doc = whatif(store, *books, since_ms=T0, until_ms=T0 + 1_800_000, site="s")
        assert doc["current"]["alarms"] == len(one.runs[0].episodes) > doc["alternative"]["alarms"]
        assert len(doc["removed"]) == doc["current"]["alarms"] - doc["alternative"]["alarms"] + len(doc["added"])
        assert doc["chair_hours"] == round(sum(1_800_000 - c * 1000 for c in range(5)) / 3_600_000, 3)
    finally:
        store.close()


def test_an_alternative_is_layered_on_the_rules_in_force_field_by_field() -> None:
    book = apply_overrides(parse_defaults(default_rules_text()),
                           "[sites.north.rules.hr-high-medium]\nlimit = 130\n", "in-force.toml")
    alt = layered(book, "[sites.north.rules.hr-high-medium]\ndelay_s = 30\n[rules.spo2-low-medium]\nlimit = 88\n", "alt")
    [hr] = [r for r in alt.rules_for("north", "c1") if r.id == "hr-high-medium"]
    assert (hr.limit, hr.delay_s) == (130.0, 30.0)  # the site's limit kept, its delay changed
    assert [r.limit for r in alt.rules_for("south", "c1") if r.id == "spo2-low-medium"] == [88.0]
