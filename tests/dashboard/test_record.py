"""The session record's pure parts on the dashboard side: total dose, form numbers, the tile line, refusals."""

from __future__ import annotations

import json

from dashboard.record import RecordCache, number_or_none, tile_line, total_mg

NOW = 1_800_000_000_000


def state(phase: str, **extra: object) -> dict:
    return {"version": 1, "session_id": "S-1", "ts": NOW - 60_000, "phase": phase,
            "infusion": {"started_at": NOW - 20 * 60_000, "elapsed_ms": 15 * 60_000, "planned_ms": 40 * 60_000},
            "recovery": None, "due": [], "readiness": None, **extra}


def test_total_dose_is_weight_times_dose_and_nothing_until_both_are_given() -> None:
    assert total_mg(72.4, 0.5) == 36.2
    assert total_mg("70", "0.75") == 52.5
    assert total_mg(None, 0.5) is None and total_mg(70, "") is None and total_mg(-70, 0.5) is None
    assert number_or_none("") is None and number_or_none("nan") is None and number_or_none("12.5") == 12.5


def test_the_tile_line_follows_pauses_recovery_readiness_and_what_is_due() -> None:
    # Infusing: elapsed grows with the clock since the publication; paused: it stands still.
    assert tile_line("S-1", state("infusing"), NOW) == ("infusing 16:00 · 24:00 left", "rec-tile-infusing")
    assert tile_line("S-1", state("paused"), NOW) == ("PAUSED at 15:00 · 25:00 left", "rec-tile-paused")
    recovery = state("recovery", recovery={"since": NOW - 65 * 60_000}, readiness={"ready": True, "criteria": []})
    assert tile_line("S-1", recovery, NOW) == ("recovery 1:05:00 · READY", "rec-tile-recovery rec-tile-ready")
    due = state("infusing", due=[{"id": "bp", "label": "Cuff BP", "due": True, "overdue": True},
                                 {"id": "cadss@40", "label": "CADSS at 40 min", "due": False, "overdue": False}])
    text, cls = tile_line("S-1", due, NOW)  # type: ignore[misc]
    assert text.endswith("OVERDUE: Cuff BP") and "rec-tile-overdue" in cls and "CADSS" not in text
    # A state about another session (the previous patient's) is never shown.
    assert tile_line("S-2", state("infusing"), NOW) is None
    assert tile_line(None, state("infusing"), NOW) is None


def test_refusals_are_kept_per_chair_with_the_record_type() -> None:
    cache = RecordCache()
    cache.apply_refusal("north", "c-1", {"topic": "clinic/north/chair/c-1/record", "ts": NOW,
                                         "reason": "discharge refused: score: Modified Aldrete 8 < 9",
                                         "payload": json.dumps({"type": "discharge"})})
    found = cache.refusal("north", "c-1", NOW + 1000)
    assert found is not None and found.type == "discharge" and "8 < 9" in found.reason
    assert cache.refusal("north", "c-2", NOW) is None
    assert cache.refusal("north", "c-1", NOW + 11 * 60_000) is None  # shown for ten minutes
    cache.apply_state("north", "c-1", b"not json")
    assert cache.state("north", "c-1") is None


def test_the_clocks_follow_the_chair_a_replayed_past_never_runs_on_wall_time() -> None:
    from dashboard.record import chair_clock

    assert chair_clock(None, NOW) == NOW
    assert chair_clock((NOW - 800, 72.0, NOW - 200), NOW) == NOW  # a live device: the wall clock
    replayed = NOW - 6 * 3600_000
    assert chair_clock((replayed, 72.0, NOW - 500), NOW) == replayed  # a fast demo: the replayed time
    doc = state("recovery", ts=replayed - 60_000, recovery={"since": replayed - 10 * 60_000})
    assert tile_line("S-1", doc, chair_clock((replayed, 72.0, NOW), NOW))[0].startswith("recovery 10:00")  # type: ignore[index]


def test_recorded_events_are_drawn_on_the_chair_trends(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dashboard.figures import trend_figure
    from dashboard.pages.session import record_markers
    from dashboard.services import Services
    from vitals.care import CareRecord
    from vitals.records import Session
    from vitals.settings import FixedSettings
    from vitals.store import Series, open_store

    url = f"sqlite:///{tmp_path / 'vitals.db'}"
    session = Session("north", "c-1", "S-1", "active", NOW - 3600_000, drug="ketamine", patient_ref="P-1")
    store = open_store(url)
    store.write_sessions([session])
    store.write_care_records([
        CareRecord("north", "c-1", "S-1", NOW - 3000_000, "infusion_start", "nurse.kim", {}),
        CareRecord("north", "c-1", "S-1", NOW - 2000_000, "rate_change", "nurse.kim", {"rate": 40.0, "rate_unit": "mg/h"}),
        CareRecord("north", "c-1", "S-1", NOW - 1000_000, "assessment", "nurse.kim",
                   {"scale": "moaas", "items": {"responsiveness": 4}, "total": 4}),
    ])
    store.close()
    services = Services(FixedSettings(mqtt_url=None, store_url=url, dashboard_no_login=True, data_dir=tmp_path))
    assert services.history.check()
    figure = record_markers(services, trend_figure(Series(0), None, (), [session], NOW - 4000_000, NOW), "north", "c-1",
                            [session])
    services.history.stop()
    assert [a.text for a in figure.layout.annotations if a.textangle == -90] == ["start", "rate 40", "MOAA/S 4"]
    lines = [s for s in figure.layout.shapes if s.yref == "paper" and s.line.dash == "dot" and s.line.color == "#ffb347"]
    assert len(lines) == 3
