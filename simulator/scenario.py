"""Scenarios: TOML files of parameters and events, named, composable, validated (pure: no clock, no network).

A scenario starts from ``scenarios/defaults.toml``; ``include = ["a", "b"]`` merges other scenarios first
(tables merged key by key, later wins; ``events`` lists concatenated); ``[[mix]]`` tables take another
scenario's events and pin them to some chairs and sessions. See docs/simulator.md.
"""

from __future__ import annotations

import copy
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

EVENT_KINDS: dict[str, dict[str, Any]] = {
    # kind -> its parameters and their defaults (chairs/sessions/probability/at_min are common to all)
    # edge: the ramps into and out of an episode stay on the normal side of it (the alarm limit's neighbour)
    "desaturation": {"duration_s": [30, 90], "nadir": [85, 88], "ramp_s": 10, "edge": 89},
    "bradycardia": {"duration_s": [60, 120], "hr": [40, 48], "ramp_s": 10, "edge": 50},
    "tachycardia": {"duration_s": [60, 180], "hr": [125, 135], "ramp_s": 10, "edge": 120},
    "hypertensive": {"sys_peak": [190, 200], "dia_peak": [106, 114]},
    "manual_cuff": {"sys": [184, 190], "dia": [104, 108]},
    "probe_off": {"duration_s": [3, 10], "count": 1, "spacing_s": [60, 300]},
    "motion": {"count": 5, "spacing_s": [20, 120], "spo2": [72, 84], "spo2_spike_s": [1, 3],
               "hr": [145, 175], "hr_spike_s": [1, 5]},
    "disconnect": {"duration_s": [30, 120], "buffer": True},
}
COMMON_EVENT_KEYS: dict[str, Any] = {"kind": None, "chairs": "all", "sessions": [1], "probability": 1.0, "at_min": [10, 30]}
TOP_KEYS = {"description", "duration", "include", "events", "mix", "chairs", "name"}
MIX_KEYS = {"scenario", "chairs", "sessions", "probability"}
MAX_INCLUDE_DEPTH = 8
# Value rules beyond "same type as the default" (every number is otherwise >= 0):
SIGNED = {"rr_change", "spo2_change"}                   # may be negative
POSITIVE = {"vitals_interval_s", "peak_min", "shape", "drift_tau_min", "hr_tau_s", "spo2_tau_s", "rr_tau_s"}
WHOLE = {"count", "sessions_per_chair"}                 # whole numbers
PAIRS = {("baseline", "dia_range"), ("bounds", "hr"), ("bounds", "spo2"), ("bounds", "rr")}  # [lo, hi] only


class ScenarioError(ValueError):
    """A scenario that cannot be found or breaks the scenario format."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A resolved scenario: every parameter table merged over the defaults, and the event list."""

    name: str
    description: str
    params: dict[str, dict[str, Any]]
    events: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    duration_s: float | None = None
    chairs: int | None = None

    def param(self, table: str, key: str) -> Any:
        """Return one parameter (``table.key``)."""
        return self.params[table][key]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_value(where: str, name: str, default: Any, value: Any, *, pair_only: bool = False) -> Any:
    """Return ``value`` if it fits the parameter whose default is ``default``, else raise ScenarioError."""
    key = name.rsplit(".", 1)[-1]
    if isinstance(default, bool | str):
        if type(value) is not type(default):
            raise ScenarioError(f"{where}: {name} must be {'true or false' if isinstance(default, bool) else 'a string'}"
                                f", not {value!r}")
        return value
    if isinstance(default, list) and isinstance(value, list):
        if len(value) != 2 or not all(_is_number(v) for v in value) or value[0] > value[1]:
            raise ScenarioError(f"{where}: {name} must be a number or a range [lo, hi] with lo <= hi, not {value!r}")
        for v in value:
            _check_number(where, name, key, v)
        return value
    if isinstance(default, list) and pair_only:
        raise ScenarioError(f"{where}: {name} must be a range [lo, hi], not {value!r}")
    if not _is_number(value):
        kind = "a number or a range [lo, hi]" if isinstance(default, list) else "a number"
        raise ScenarioError(f"{where}: {name} must be {kind}, not {value!r}")
    _check_number(where, name, key, value)
    return value


def _check_number(where: str, name: str, key: str, value: float) -> None:
    if key in WHOLE and value != int(value):
        raise ScenarioError(f"{where}: {name} must be a whole number, not {value!r}")
    if key in POSITIVE and value <= 0:
        raise ScenarioError(f"{where}: {name} must be above 0, not {value!r}")
    if key not in SIGNED and value < 0:
        raise ScenarioError(f"{where}: {name} cannot be negative ({value!r})")
    if (key.endswith("_fraction") or key == "probability") and value > 1:
        raise ScenarioError(f"{where}: {name} is a fraction from 0 to 1, not {value!r}")


def parse_duration(text: str | float | int) -> float:
    """Return seconds from '90s', '45m', '2h', '1h30m' or a plain number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 45m, 2h or 1h30m")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0}
    return sum(float(n) * scale[u] for n, u in parts)


def builtin_names() -> list[str]:
    """Return the names of the scenarios shipped in the package."""
    folder = resources.files("simulator") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml") and p.name != "defaults.toml")


def _load(text: str, label: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{label} is not valid TOML: {exc}") from None


def _read(ref: str, base_dir: Path | None) -> tuple[str, str, dict[str, Any], Path | None]:
    """Return (name, label for messages, document, directory) of a scenario given by name or path."""
    if not isinstance(ref, str) or not ref:
        raise ScenarioError(f"a scenario is named by a non-empty string, not {ref!r}")
    path = Path(ref)
    candidates = []
    if ref.endswith(".toml") or "/" in ref or path.is_file():
        candidates.append(path if path.is_absolute() or base_dir is None else base_dir / path)
        candidates.append(path)
    for candidate in candidates:
        if candidate.is_file():
            label = f"scenario file {candidate}"
            return candidate.stem, label, _load(candidate.read_text(encoding="utf-8"), label), candidate.parent
    if re.fullmatch(r"[A-Za-z0-9_-]+", ref):
        if base_dir is not None and (base_dir / f"{ref}.toml").is_file():
            label = f"scenario file {base_dir / f'{ref}.toml'}"
            return ref, label, _load((base_dir / f"{ref}.toml").read_text(encoding="utf-8"), label), base_dir
        item = resources.files("simulator") / "scenarios" / f"{ref}.toml"
        if item.is_file() and ref != "defaults":
            label = f"scenario {ref}"
            return ref, label, _load(item.read_text(encoding="utf-8"), label), None
    if candidates:
        raise ScenarioError(f"scenario file {ref} not found")
    raise ScenarioError(f"unknown scenario {ref!r}: use a file path or one of {', '.join(builtin_names())}")


def _defaults() -> dict[str, Any]:
    text = (resources.files("simulator") / "scenarios" / "defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _merge_params(into: dict[str, Any], doc: dict[str, Any], where: str) -> None:
    """Merge a scenario's parameter tables into ``into``, refusing keys the defaults do not know."""
    for table, values in doc.items():
        if table in TOP_KEYS:
            continue
        if table not in into or not isinstance(into[table], dict) or table.startswith("_"):
            known = ", ".join(sorted(TOP_KEYS | {t for t, v in into.items() if isinstance(v, dict) and t[0] != "_"}))
            raise ScenarioError(f"{where}: unknown key {table!r} (known: {known})")
        if not isinstance(values, dict):
            raise ScenarioError(f"{where}: [{table}] must be a table")
        for key, value in values.items():
            if key not in into[table]:
                raise ScenarioError(f"{where}: unknown parameter {table}.{key}")
            into[table][key] = check_value(where, f"{table}.{key}", into[table][key], value,
                                           pair_only=(table, key) in PAIRS)


def _check_ids(where: str, name: str, value: Any) -> None:
    if value != "all" and not (isinstance(value, list) and value
                               and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ScenarioError(f"{where}: {name} must be \"all\" or a list of numbers from 1, not {value!r}")


def _check_event(event: Any, where: str) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise ScenarioError(f"{where}: every entry of events must be a table ([[events]]), not {event!r}")
    kind = event.get("kind")
    if kind not in EVENT_KINDS:
        raise ScenarioError(f"{where}: event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    full = {**COMMON_EVENT_KEYS, **copy.deepcopy(EVENT_KINDS[kind])}
    for key, value in event.items():
        if key not in full:
            raise ScenarioError(f"{where}: unknown parameter {key!r} of a {kind} event "
                                f"(known: {', '.join(k for k in full if k != 'kind')})")
        if key in ("chairs", "sessions"):
            _check_ids(where, f"{kind}.{key}", value)
        elif key != "kind":
            value = check_value(where, f"{kind}.{key}", full[key], value)
        full[key] = value
    return full


def _check_top(doc: dict[str, Any], where: str) -> None:
    """Check the top-level keys of a scenario document."""
    for key in ("description", "name"):
        if key in doc and not isinstance(doc[key], str):
            raise ScenarioError(f"{where}: {key} must be a string")
    if "duration" in doc:
        if doc["duration"] == "":
            pass
        elif isinstance(doc["duration"], bool) or not isinstance(doc["duration"], str | int | float):
            raise ScenarioError(f"{where}: duration must be like \"95m\" or \"9h\", not {doc['duration']!r}")
        else:
            try:
                parse_duration(doc["duration"])
            except ValueError as exc:
                raise ScenarioError(f"{where}: {exc}") from None
    if "chairs" in doc and not (isinstance(doc["chairs"], int) and not isinstance(doc["chairs"], bool)
                                and doc["chairs"] >= 1):
        raise ScenarioError(f"{where}: chairs must be a whole number from 1, not {doc['chairs']!r}")
    if not isinstance(doc.get("include", []), list) or not all(isinstance(v, str) for v in doc.get("include", [])):
        raise ScenarioError(f"{where}: include must be a list of scenario names or files")
    for key in ("events", "mix"):
        if not isinstance(doc.get(key, []), list):
            raise ScenarioError(f"{where}: {key} must be written as [[{key}]] tables")


def _resolve(ref: str, base_dir: Path | None, depth: int, params: dict[str, Any],
             seen: tuple[str, ...] = ()) -> tuple[str, dict[str, Any], list]:
    """Merge a scenario (and what it includes) into ``params``; return its name, document and events."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ScenarioError(f"scenario {ref!r}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
    name, where, doc, folder = _read(ref, base_dir)
    if where in seen:
        raise ScenarioError(f"{where} includes itself ({' -> '.join((*seen, where))})")
    seen = (*seen, where)
    _check_top(doc, where)
    unknown = [k for k, v in doc.items() if k not in TOP_KEYS and not isinstance(v, dict)]
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}")
    events: list[dict[str, Any]] = []
    for included in doc.get("include", []):
        _, _, inc_events = _resolve(included, folder, depth + 1, params, seen)
        events.extend(inc_events)
    _merge_params(params, doc, where)
    for key in ("duration", "chairs"):
        if key in doc:
            params["_top"][key] = doc[key]
    events.extend(_check_event(e, where) for e in doc.get("events", []))
    for mix in doc.get("mix", []):
        if not isinstance(mix, dict) or "scenario" not in mix:
            raise ScenarioError(f"{where}: a [[mix]] needs scenario = \"name\"")
        extra = set(mix) - MIX_KEYS
        if extra:
            raise ScenarioError(f"{where}: unknown key {sorted(extra)[0]!r} in a [[mix]] (known: {', '.join(sorted(MIX_KEYS))})")
        for key in ("chairs", "sessions"):
            if key in mix:
                _check_ids(where, f"mix {mix['scenario']}.{key}", mix[key])
        check_value(where, f"mix {mix['scenario']}.probability", 1.0, mix.get("probability", 1.0))
        scratch = _defaults()
        scratch["_top"] = {}
        _, _, mixed = _resolve(mix["scenario"], folder, depth + 1, scratch, seen)
        for event in mixed:
            pinned = dict(event)
            for key in ("chairs", "sessions"):
                if key in mix:
                    pinned[key] = mix[key]
            pinned["probability"] = float(event["probability"]) * float(mix.get("probability", 1.0))
            events.append(_check_event(pinned, f"{where} mix {mix['scenario']}"))
    return name, doc, events


def parse_override(text: str) -> tuple[str, Any]:
    """Return (``table.key``, value) from ``table.key=VALUE`` (VALUE in TOML: 5, 2.5, [1, 3], true, "x")."""
    name, sep, raw = str(text).partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not re.fullmatch(r"[a-z_]+\.[a-z_0-9]+", name):
        raise ValueError(f"invalid setting {text!r}: use table.key=value, e.g. timing.cuff_interval_min=5")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a string
    return name, value


def load_scenario(ref: str = "normal", overrides: dict[str, Any] | None = None) -> Scenario:
    """Return the scenario named ``ref`` (shipped) or stored in the TOML file ``ref``, fully resolved.

    ``overrides`` maps ``table.key`` to a value applied last, e.g. ``{"timing.cuff_interval_min": 5}``.
    """
    params = _defaults()
    params["_top"] = {}
    for key in ("description", "duration"):
        params.pop(key, None)
    name, doc, events = _resolve(ref, None, 0, params)
    for dotted, value in (overrides or {}).items():
        table, _, key = dotted.partition(".")
        _merge_params(params, {table: {key: value}}, "override")
    top = params.pop("_top")
    duration = top.get("duration") or None
    duration_s = parse_duration(duration) if duration else None
    chairs = top.get("chairs")
    return Scenario(
        name=name,
        description=str(doc.get("description", "")),
        params=params,
        events=tuple(events),
        duration_s=duration_s,
        chairs=int(chairs) if chairs is not None else None,
    )
