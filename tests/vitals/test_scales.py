"""Every scale's items, totals and thresholds against the published tables (cited in docs/scales.md), the Aldrete
pre-fill, and docs/scales.md kept equal to what vitals/scales.toml generates.

The expected facts below are typed from the sources, not read from scales.toml: a wrong data file fails here.
"""

from __future__ import annotations

import itertools

import pytest

from vitals.scales import (
    CITATIONS,
    DOC_PATH,
    SCALES,
    ScoreError,
    aldrete_prefill,
    circulation_score,
    meets_discharge,
    scales_markdown,
    score,
    spo2_score,
)

# id -> (item count, each item's scores, total range, discharge threshold, source keys)
PUBLISHED = {
    "moaas": (1, set(range(0, 6)), (0, 5), None, {"chernik1990"}),  # Chernik 1990: 5 responds readily .. 0 none
    "rass": (1, set(range(-5, 5)), (-5, 4), None, {"sessler2002"}),  # Sessler 2002: +4 combative .. -5 unarousable
    "cadss": (23, set(range(0, 5)), (0, 92), None, {"bremner1998"}),  # Bremner 1998: 23 items 0-4
    "cadss6": (6, set(range(0, 5)), (0, 24), None, {"rodrigues2021"}),  # Rodrigues 2021: items 1,2,6,7,15,22
    "nrs": (1, set(range(0, 11)), (0, 10), None, {"hawker2011"}),
    "aldrete": (5, {0, 1, 2}, (0, 10), 9, {"aldrete1995"}),  # Aldrete 1995: 5 items 0-2, >= 9 discharge
    "padss": (5, {0, 1, 2}, (0, 10), 9, {"chung1995"}),  # Chung 1995: 5 items 0-2, >= 9 discharge
}


def test_every_published_scale_is_defined_with_its_items_totals_and_threshold() -> None:
    assert set(SCALES) == set(PUBLISHED)
    for sid, (count, scores, (low, high), threshold, sources) in PUBLISHED.items():
        scale = SCALES[sid]
        assert len(scale.items) == count, sid
        for item in scale.items:
            assert {v for v in range(-10, 11) if item.allowed(v)} == scores, (sid, item.id)
        assert (scale.total_min, scale.total_max) == (low, high), sid
        assert scale.discharge_min == threshold, sid
        assert sources <= set(scale.cite) and all(key in CITATIONS for key in scale.cite), sid


def test_cadss6_is_items_1_2_6_7_15_22_of_the_cadss() -> None:
    assert [i.id for i in SCALES["cadss6"].items] == ["1", "2", "6", "7", "15", "22"]
    parent = {i.id: i for i in SCALES["cadss"].items}
    assert all(parent[i.id] == i for i in SCALES["cadss6"].items)
    assert [i.id for i in SCALES["cadss"].items] == [str(n) for n in range(1, 24)]


def test_anchor_wording_matches_the_sources() -> None:
    moaas = dict(SCALES["moaas"].items[0].options)
    assert moaas[5].startswith("Responds readily to name") and "painful trapezius squeeze" in moaas[0]
    rass = dict(SCALES["rass"].items[0].options)
    assert rass[4].startswith("Combative") and rass[0] == "Alert and calm" and rass[-5].startswith("Unarousable")
    aldrete = {i.id: dict(i.options) for i in SCALES["aldrete"].items}
    assert list(aldrete) == ["activity", "respiration", "circulation", "consciousness", "spo2"]
    assert "> 92 %" in aldrete["spo2"][2] and "> 90 %" in aldrete["spo2"][1] and "< 90 %" in aldrete["spo2"][0]


@pytest.mark.parametrize("sid", list(PUBLISHED))
def test_totals_are_item_sums_at_every_extreme_and_out_of_range_is_refused(sid: str) -> None:
    scale = SCALES[sid]
    lows = {i.id: i.low for i in scale.items}
    highs = {i.id: i.high for i in scale.items}
    assert score(sid, lows) == scale.total_min and score(sid, highs) == scale.total_max
    first = scale.items[0]
    with pytest.raises(ScoreError, match="out of range"):
        score(sid, {**highs, first.id: first.high + 1})
    with pytest.raises(ScoreError, match="out of range"):
        score(sid, {**lows, first.id: first.low - 1})
    with pytest.raises(ScoreError, match="missing"):
        score(sid, {k: v for k, v in highs.items() if k != scale.items[-1].id})
    with pytest.raises(ScoreError, match="no item"):
        score(sid, {**highs, "bogus": 1})
    with pytest.raises(ScoreError, match="integer"):
        score(sid, {**highs, first.id: 1.5})
    with pytest.raises(ScoreError, match="integer"):
        score(sid, {**highs, first.id: True})


@pytest.mark.parametrize("sid", ["aldrete", "padss"])
def test_discharge_threshold_is_nine_of_ten_for_every_combination(sid: str) -> None:
    ids = [i.id for i in SCALES[sid].items]
    for combo in itertools.product((0, 1, 2), repeat=5):
        total = score(sid, dict(zip(ids, combo, strict=True)))
        assert total == sum(combo)
        assert meets_discharge(sid, total) is (sum(combo) >= 9)
    assert meets_discharge(sid, 9, minimum=10) is False
    with pytest.raises(ScoreError, match="not a discharge scale"):
        meets_discharge("moaas", 5)


def test_aldrete_circulation_bands_in_mmhg_and_percent() -> None:
    # Aldrete 1995: within ±20 mmHg of the pre-anaesthetic level = 2, ±20-50 = 1, beyond ±50 = 0.
    assert [circulation_score(s, 120) for s in (120, 140, 100, 141, 170, 70, 171, 69)] == [2, 2, 2, 1, 1, 1, 0, 0]
    # The ±20 % / ±50 % variant some clinics use: of a 150 baseline, 30 and 75 mmHg.
    assert [circulation_score(s, 150, "percent") for s in (180, 181, 225, 226, 74)] == [2, 1, 1, 0, 0]
    with pytest.raises(ScoreError):
        circulation_score(120, 120, "kpa")


def test_aldrete_spo2_item_and_prefill() -> None:
    assert [spo2_score(v) for v in (100, 93, 92.5, 92, 91, 90.1, 90, 85)] == [2, 2, 2, 1, 1, 1, 0, 0]
    assert aldrete_prefill(128, 120, 97) == {"circulation": 2, "spo2": 2}
    assert aldrete_prefill(175, 120, 91, "mmhg") == {"circulation": 0, "spo2": 1}
    assert aldrete_prefill(None, 120, 89) == {"spo2": 0}
    assert aldrete_prefill(130, None, None) == {}


def test_docs_scales_md_is_generated_from_the_data_file() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == scales_markdown(), \
        "docs/scales.md is stale: run python -m vitals.scales --write-docs"
    text = DOC_PATH.read_text(encoding="utf-8")
    for source in ("Aldrete JA", "Chung F", "Bremner JD", "Rodrigues NB", "Chernik DA", "Sessler CN"):
        assert source in text
