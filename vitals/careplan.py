"""The care plan: the schedule that reminds and the discharge criteria (``vitals/careplan.toml``, the one place).

``load_care_plan(path, site)`` returns the ``CarePlan`` for a site: the shipped file, then a site's file (setting
``care_plan_file``) key by key, then that file's ``[sites.<site>]`` tables. A value of the wrong type or range
raises ``CarePlanError`` naming the file and the key. docs/care-plan.md embeds the shipped file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from vitals.scales import CIRCULATION_UNITS, DISCHARGE_SCALES, SCALES

SHIPPED_TEXT = resources.files("vitals").joinpath("careplan.toml").read_text(encoding="utf-8")


class CarePlanError(ValueError):
    """A care plan file that is not valid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """What is due when (minutes)."""

    bp_infusion_min: float = 10.0
    bp_recovery_min: float = 15.0
    cadss_at_min: tuple[float, ...] = (0.0, 40.0, 120.0)
    cadss_scales: tuple[str, ...] = ("cadss6", "cadss")
    cadss_early_min: float = 5.0
    grace_min: float = 2.0


@dataclass(frozen=True, slots=True)
class DischargeCriteria:
    """What must hold before a patient may leave (0 disables a numeric criterion)."""

    scales: tuple[str, ...] = ("aldrete", "padss")
    min_score: int = 0
    min_observation_min: float = 60.0
    vitals_band_pct: float = 20.0
    min_spo2: float = 92.0
    spo2_max_age_s: float = 60.0

    def threshold(self, scale_id: str) -> int:
        """Return the minimum total of a discharge scale (the site's, else the scale's own)."""
        return self.min_score or int(SCALES[scale_id].discharge_min or 0)


@dataclass(frozen=True, slots=True)
class CarePlan:
    """A site's schedule, discharge criteria and Aldrete circulation unit."""

    schedule: Schedule = Schedule()
    discharge: DischargeCriteria = DischargeCriteria()
    circulation: str = "mmhg"


_MINUTES = {"bp_infusion_min", "bp_recovery_min", "cadss_early_min", "grace_min", "min_observation_min"}


def _check(table: str, key: str, value: Any, where: str) -> Any:
    name = f"{where}{table}.{key}"
    if table == "aldrete":
        if key != "circulation" or value not in CIRCULATION_UNITS:
            raise CarePlanError(f"{name}: must be circulation = one of {', '.join(CIRCULATION_UNITS)}")
        return value
    fields = Schedule.__dataclass_fields__ if table == "schedule" else DischargeCriteria.__dataclass_fields__
    if key not in fields:
        raise CarePlanError(f"{name}: unknown key (one of {', '.join(fields)})")
    if key in ("cadss_scales", "scales"):
        allowed = ("cadss6", "cadss") if key == "cadss_scales" else DISCHARGE_SCALES
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            raise CarePlanError(f"{name}: a non-empty list of {', '.join(allowed)}")
        return tuple(value)
    if key == "cadss_at_min":
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0
                                              for v in value):
            raise CarePlanError(f"{name}: a list of minutes (numbers >= 0)")
        return tuple(sorted(float(v) for v in value))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise CarePlanError(f"{name}: must be a number >= 0, not {value!r}")
    if key in _MINUTES and key.startswith("bp_") and value <= 0:
        raise CarePlanError(f"{name}: must be more than 0")
    if key == "min_score":
        if value != int(value) or value > 10:
            raise CarePlanError(f"{name}: an integer 0-10")
        return int(value)
    if key == "min_spo2" and value > 100:
        raise CarePlanError(f"{name}: at most 100")
    return float(value)


def _merge(into: dict[str, dict[str, Any]], doc: dict[str, Any], where: str) -> None:
    for table, values in doc.items():
        if table == "sites":
            continue
        if table not in ("schedule", "discharge", "aldrete") or not isinstance(values, dict):
            raise CarePlanError(f"{where}{table}: unknown table (schedule, discharge, aldrete, sites)")
        for key, value in values.items():
            into.setdefault(table, {})[key] = _check(table, key, value, where)


def load_care_plan(path: str | Path | None = None, site: str | None = None) -> CarePlan:
    """Return the care plan: shipped values, a site file's (``path``), then its ``[sites.<site>]`` tables."""
    merged: dict[str, dict[str, Any]] = {}
    _merge(merged, tomllib.loads(SHIPPED_TEXT), "careplan.toml: ")
    if path is not None:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise CarePlanError(f"{path}: {exc}") from None
        _merge(merged, doc, f"{path}: ")
        sites = doc.get("sites", {})
        if site is not None and isinstance(sites, dict) and isinstance(sites.get(site), dict):
            _merge(merged, sites[site], f"{path}: sites.{site}.")
    return CarePlan(Schedule(**merged.get("schedule", {})), DischargeCriteria(**merged.get("discharge", {})),
                    merged.get("aldrete", {}).get("circulation", "mmhg"))
