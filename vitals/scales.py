"""Assessment scales: loaded from ``vitals/scales.toml`` (the one place their facts live) and scored here (pure).

``SCALES`` maps a scale id (``moaas``, ``rass``, ``cadss``, ``cadss6``, ``nrs``, ``aldrete``, ``padss``) to a
``Scale``; ``score(scale_id, items)`` checks item scores and returns the total (raising ``ScoreError`` with a
reason naming the item); ``aldrete_prefill`` proposes the circulation and SpO2 items from the cuff and the
device. docs/scales.md is generated from the data file: ``python -m vitals.scales --write-docs``.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "scales.md"
CIRCULATION_UNITS: tuple[str, ...] = ("mmhg", "percent")


class ScoreError(ValueError):
    """An assessment that breaks its scale: unknown scale or item, a missing item, a score out of range."""


@dataclass(frozen=True, slots=True)
class Item:
    """One item of a scale: its allowed scores (``low``..``high``, every integer, or only the listed options)."""

    id: str
    label: str
    options: tuple[tuple[int, str], ...]  # (score, wording), as the data file lists them
    low: int
    high: int
    every_integer: bool = False  # a range item (pain NRS): every integer low..high is a score; options are anchors

    def allowed(self, value: int) -> bool:
        """Return whether ``value`` is a score of this item."""
        if self.every_integer:
            return self.low <= value <= self.high
        return any(value == s for s, _ in self.options)


@dataclass(frozen=True, slots=True)
class Scale:
    """One assessment scale: items, total range and (for discharge scales) the discharge threshold."""

    id: str
    name: str
    title: str
    purpose: str  # sedation, dissociation, pain, discharge
    items: tuple[Item, ...]
    cite: tuple[str, ...]
    discharge_min: int | None = None
    items_of: str | None = None  # a short form: the parent scale's id

    @property
    def total_min(self) -> int:
        """Return the lowest possible total."""
        return sum(i.low for i in self.items)

    @property
    def total_max(self) -> int:
        """Return the highest possible total."""
        return sum(i.high for i in self.items)

    @property
    def single(self) -> bool:
        """Return whether the scale has one item (then a payload may give ``score`` instead of ``items``)."""
        return len(self.items) == 1

    def item(self, item_id: str) -> Item:
        """Return an item by id, raising ScoreError when the scale has none of that id."""
        for item in self.items:
            if item.id == item_id:
                return item
        raise ScoreError(f"{self.name} has no item {item_id!r}")


def _load(text: str) -> tuple[dict[str, Scale], dict[str, str], dict[str, Any]]:
    doc = tomllib.loads(text)
    citations = dict(doc["citations"])
    sets = {name: tuple((int(s), str(w)) for s, w in opts) for name, opts in doc.get("option_sets", {}).items()}
    scales: dict[str, Scale] = {}
    for sid, raw in doc["scales"].items():
        if "items_of" in raw:
            parent = scales[raw["items_of"]]
            items = tuple(parent.item(i) for i in raw["item_ids"])
        else:
            built = []
            for it in raw["items"]:
                opts = sets[it["options"]] if isinstance(it["options"], str) else tuple(
                    (int(s), str(w)) for s, w in it["options"])
                if "range" in it:
                    low, high = int(it["range"][0]), int(it["range"][1])
                    built.append(Item(str(it["id"]), it["label"], opts, low, high, every_integer=True))
                else:
                    scores = [s for s, _ in opts]
                    built.append(Item(str(it["id"]), it["label"], opts, min(scores), max(scores)))
            items = tuple(built)
        for key in raw.get("cite", []):
            if key not in citations:
                raise ValueError(f"scale {sid} cites unknown source {key!r}")
        scales[sid] = Scale(sid, raw["name"], raw["title"], raw["purpose"], items, tuple(raw.get("cite", [])),
                            raw.get("discharge_min"), raw.get("items_of"))
    return scales, citations, doc


_TEXT = resources.files("vitals").joinpath("scales.toml").read_text(encoding="utf-8")
_SCALES, _CITATIONS, _DOC = _load(_TEXT)
SCALES: Mapping[str, Scale] = MappingProxyType(_SCALES)
CITATIONS: Mapping[str, str] = MappingProxyType(_CITATIONS)
# Circulation bands of the modified Aldrete: unit -> (limit of score 2, limit of score 1).
_circ = next(i for i in _DOC["scales"]["aldrete"]["items"] if i["id"] == "circulation")["bands"]
CIRCULATION_BANDS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {unit: (float(b[0]), float(b[1])) for unit, b in _circ.items()})
_spo2 = next(i for i in _DOC["scales"]["aldrete"]["items"] if i["id"] == "spo2")["prefill"]
SPO2_ROOM_AIR_ABOVE: float = float(_spo2["room_air_above"])
SPO2_WITH_O2_ABOVE: float = float(_spo2["with_o2_above"])
DISCHARGE_SCALES: tuple[str, ...] = tuple(s.id for s in SCALES.values() if s.discharge_min is not None)


def get_scale(scale_id: object) -> Scale:
    """Return a scale by id, raising ScoreError naming the known ones."""
    if not isinstance(scale_id, str) or scale_id not in SCALES:
        raise ScoreError(f"unknown scale {scale_id!r}: one of {', '.join(SCALES)}")
    return SCALES[scale_id]


def score(scale_id: str, items: Mapping[str, object]) -> int:
    """Check every item score of an assessment and return its total; raise ScoreError with the reason.

    Every item of the scale must be present, each an integer the item allows; no unknown item.
    """
    scale = get_scale(scale_id)
    unknown = sorted(set(items) - {i.id for i in scale.items})
    if unknown:
        raise ScoreError(f"{scale.name} has no item {unknown[0]!r}")
    total = 0
    for item in scale.items:
        if item.id not in items:
            raise ScoreError(f"{scale.name} item {item.id!r} ({item.label}) is missing")
        value = items[item.id]
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise ScoreError(f"{scale.name} item {item.id!r} must be an integer score, got {value!r}")
        if not item.allowed(int(value)):
            allowed = (f"{item.low}..{item.high}" if item.every_integer
                       else ", ".join(str(s) for s, _ in sorted(item.options)))
            raise ScoreError(f"{scale.name} item {item.id!r} score {int(value)} is out of range ({allowed})")
        total += int(value)
    return total


def meets_discharge(scale_id: str, total: int, minimum: int | None = None) -> bool:
    """Return whether a discharge-scale total reaches its threshold (the scale's own, or a site's ``minimum``)."""
    scale = get_scale(scale_id)
    threshold = minimum if minimum is not None else scale.discharge_min
    if threshold is None:
        raise ScoreError(f"{scale.name} is not a discharge scale")
    return total >= threshold


def circulation_score(sys: float, baseline_sys: float, unit: str = "mmhg") -> int:
    """Return the modified Aldrete circulation item: 2 within the first band of baseline, 1 within the second, else 0.

    ``unit`` ``mmhg``: the bands are ±20 and ±50 mmHg; ``percent``: ±20 % and ±50 % of the baseline (scales.toml).
    A difference exactly on a band's edge scores the better item (Aldrete: "± 20 mmHg" = 2).
    """
    if unit not in CIRCULATION_BANDS:
        raise ScoreError(f"circulation unit must be one of {', '.join(CIRCULATION_BANDS)}, not {unit!r}")
    two, one = CIRCULATION_BANDS[unit]
    diff = abs(sys - baseline_sys)
    if unit == "percent":
        diff = diff / baseline_sys * 100
    if diff <= two:
        return 2
    if diff <= one:
        return 1
    return 0


def spo2_score(spo2: float) -> int:
    """Return the SpO2 item proposed from the device: > 92 % -> 2 (room air, the nurse confirms), > 90 % -> 1, else 0."""
    if spo2 > SPO2_ROOM_AIR_ABOVE:
        return 2
    if spo2 > SPO2_WITH_O2_ABOVE:
        return 1
    return 0


def aldrete_prefill(sys: float | None, baseline_sys: float | None, spo2: float | None,
                    unit: str = "mmhg") -> dict[str, int]:
    """Return the modified Aldrete items the monitor can propose: ``circulation`` and ``spo2``, where known.

    The nurse confirms or corrects them; the other three items are the nurse's alone.
    """
    out: dict[str, int] = {}
    if sys is not None and baseline_sys is not None and baseline_sys > 0:
        out["circulation"] = circulation_score(sys, baseline_sys, unit)
    if spo2 is not None:
        out["spo2"] = spo2_score(spo2)
    return out


# -- docs/scales.md, generated -------------------------------------------------------------------------------------

def scales_markdown() -> str:
    """Return docs/scales.md: every scale's items, wording, scores, totals and thresholds, with citations."""
    out = [
        "# Assessment scales",
        "",
        "<!-- Generated from vitals/scales.toml by `python -m vitals.scales --write-docs`; do not edit by hand. -->",
        "",
        "The scales a nurse records on the `.../record` topic (docs/mqtt-contract.md). Each is defined once, in",
        "`vitals/scales.toml`; the ingest scores and checks assessments with `vitals/scales.py`, and this page is",
        "generated from the same file (`tests/vitals/test_scales.py` keeps it fresh). Wording is abridged for a bedside",
        "form: administer each instrument as its source publishes it. A total is the sum of the item scores.",
        "",
        "| id | scale | items | total | discharge at | sources |",
        "|---|---|---|---|---|---|",
    ]
    for s in SCALES.values():
        thr = f"≥ {s.discharge_min}" if s.discharge_min is not None else "–"
        out.append(f"| `{s.id}` | {s.name} | {len(s.items)} | {s.total_min} to {s.total_max} | {thr} | "
                   f"{', '.join(f'[{c}](#{c})' for c in s.cite)} |")
    for s in SCALES.values():
        out += ["", f"## {s.name} (`{s.id}`)", "", f"{s.title}. Purpose: {s.purpose}. Total {s.total_min} to "
                f"{s.total_max}" + (f"; discharge allowed at {s.discharge_min} or more." if s.discharge_min else ".")]
        if s.items_of:
            out += ["", f"Items {', '.join(i.id for i in s.items)} of `{s.items_of}`, scored as there."]
            continue
        if s.single:
            item = s.items[0]
            out += ["", "| score | meaning |", "|---|---|"]
            if item.every_integer:
                out.append(f"| {item.low} to {item.high} | every integer; anchors: "
                           + "; ".join(f"{v} = {w}" for v, w in item.options) + " |")
            else:
                out += [f"| {v:+d} | {w} |" if s.id == "rass" else f"| {v} | {w} |" for v, w in item.options]
            continue
        shared = len({i.options for i in s.items}) == 1 and len(s.items) > 5
        if shared:
            out += ["", "Every item: " + ", ".join(f"{v} {w.lower()}" for v, w in s.items[0].options) + ".",
                    "", "| item | wording |", "|---|---|"]
            out += [f"| {i.id} | {i.label} |" for i in s.items]
        else:
            out += ["", "| item | " + " | ".join(f"{v}" for v, _ in s.items[0].options) + " |",
                    "|---|" + "---|" * len(s.items[0].options)]
            out += [f"| `{i.id}` {i.label} | " + " | ".join(w for _, w in i.options) + " |" for i in s.items]
        if s.id == "aldrete":
            two, one = CIRCULATION_BANDS["mmhg"]
            ptwo, pone = CIRCULATION_BANDS["percent"]
            out += ["", "**Pre-fill** (`vitals.scales.aldrete_prefill`; the nurse confirms or corrects): circulation "
                    f"from the newest cuff systolic against the session's baseline: within ±{two:g} mmHg = 2, "
                    f"±{two:g} to {one:g} = 1, beyond = 0; or, when the care plan says `circulation = \"percent\"`, "
                    f"±{ptwo:g} % / ±{pone:g} % of the baseline (a difference on a band's edge scores the better "
                    f"item). SpO2 from the device: above {SPO2_ROOM_AIR_ABOVE:g} % = 2 (room air assumed: the nurse "
                    f"corrects it when the patient is on O2), above {SPO2_WITH_O2_ABOVE:g} % = 1, else 0."]
    out += ["", "## Sources", ""]
    out += [f"- <a id=\"{key}\"></a>`{key}`: {text}" for key, text in CITATIONS.items()]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print or write docs/scales.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-docs", action="store_true", help=f"write {DOC_PATH}")
    args = parser.parse_args(argv)
    if args.write_docs:
        DOC_PATH.write_text(scales_markdown(), encoding="utf-8")
    else:
        print(scales_markdown(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
