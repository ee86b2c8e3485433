"""Scenarios: TOML files of parameters and events, named, composable, validated (pure: no clock, no network).

A scenario starts from ``scenarios/defaults.toml``; ``include = ["a", "b"]`` merges other scenarios first
(tables merged key by key, later wins; ``events`` lists concatenated); ``[[mix]]`` tables take another
scenario's events and pin them to some chairs and sessions. See docs/simulator.md.
"""

from __future__ import annotations

import copy
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
MAX_INCLUDE_DEPTH = 8


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


def _read(ref: str, base_dir: Path | None) -> tuple[str, dict[str, Any], Path | None]:
    """Return (name, document, directory) of a scenario given by name or path."""
    path = Path(ref)
    candidates = []
    if ref.endswith(".toml") or "/" in ref or path.is_file():
        candidates.append(path if path.is_absolute() or base_dir is None else base_dir / path)
        candidates.append(path)
    for candidate in candidates:
        if candidate.is_file():
            with candidate.open("rb") as fh:
                return candidate.stem, tomllib.load(fh), candidate.parent
    if re.fullmatch(r"[A-Za-z0-9_-]+", ref):
        if base_dir is not None and (base_dir / f"{ref}.toml").is_file():
            with (base_dir / f"{ref}.toml").open("rb") as fh:
                return ref, tomllib.load(fh), base_dir
        item = resources.files("simulator") / "scenarios" / f"{ref}.toml"
        if item.is_file():
            return ref, tomllib.loads(item.read_text(encoding="utf-8")), None
    raise ScenarioError(f"unknown scenario {ref!r}: use a file path or one of {', '.join(builtin_names())}")


def _defaults() -> dict[str, Any]:
    text = (resources.files("simulator") / "scenarios" / "defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def _merge_params(into: dict[str, Any], doc: dict[str, Any], where: str) -> None:
    """Merge a scenario's parameter tables into ``into``, refusing keys the defaults do not know."""
    for table, values in doc.items():
        if table in TOP_KEYS:
            continue
        if table not in into or not isinstance(into[table], dict):
            raise ScenarioError(f"{where}: unknown key {table!r}")
        if not isinstance(values, dict):
            raise ScenarioError(f"{where}: [{table}] must be a table")
        for key, value in values.items():
            if key not in into[table]:
                raise ScenarioError(f"{where}: unknown parameter {table}.{key}")
            into[table][key] = value


def _check_event(event: dict[str, Any], where: str) -> dict[str, Any]:
    kind = event.get("kind")
    if kind not in EVENT_KINDS:
        raise ScenarioError(f"{where}: event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    full = {**COMMON_EVENT_KEYS, **copy.deepcopy(EVENT_KINDS[kind])}
    for key, value in event.items():
        if key not in full:
            raise ScenarioError(f"{where}: unknown parameter {key!r} of a {kind} event")
        full[key] = value
    for key in ("chairs", "sessions"):
        value = full[key]
        if value != "all" and not (isinstance(value, list) and all(isinstance(v, int) and v >= 1 for v in value)):
            raise ScenarioError(f"{where}: {kind}.{key} must be \"all\" or a list of numbers from 1")
    return full


def _resolve(ref: str, base_dir: Path | None, depth: int, params: dict[str, Any]) -> tuple[str, dict[str, Any], list]:
    """Merge a scenario (and what it includes) into ``params``; return its name, document and events."""
    if depth > MAX_INCLUDE_DEPTH:
        raise ScenarioError(f"scenario {ref!r}: includes nested deeper than {MAX_INCLUDE_DEPTH} (a cycle?)")
    name, doc, folder = _read(ref, base_dir)
    unknown = [k for k, v in doc.items() if k not in TOP_KEYS and not isinstance(v, dict)]
    if unknown:
        raise ScenarioError(f"scenario {name}: unknown key {unknown[0]!r}")
    events: list[dict[str, Any]] = []
    for included in doc.get("include", []):
        _, _, inc_events = _resolve(included, folder, depth + 1, params)
        events.extend(inc_events)
    _merge_params(params, doc, f"scenario {name}")
    for key in ("duration", "chairs"):
        if key in doc:
            params["_top"][key] = doc[key]
    events.extend(_check_event(e, f"scenario {name}") for e in doc.get("events", []))
    for mix in doc.get("mix", []):
        if "scenario" not in mix:
            raise ScenarioError(f"scenario {name}: a [[mix]] needs scenario = \"name\"")
        scratch = _defaults()
        scratch["_top"] = {}
        _, _, mixed = _resolve(mix["scenario"], folder, depth + 1, scratch)
        for event in mixed:
            pinned = dict(event)
            for key in ("chairs", "sessions"):
                if key in mix:
                    pinned[key] = mix[key]
            pinned["probability"] = float(event["probability"]) * float(mix.get("probability", 1.0))
            events.append(_check_event(pinned, f"scenario {name} mix {mix['scenario']}"))
    return name, doc, events


def load_scenario(ref: str = "normal") -> Scenario:
    """Return the scenario named ``ref`` (shipped) or stored in the TOML file ``ref``, fully resolved."""
    params = _defaults()
    params["_top"] = {}
    for key in ("description", "duration"):
        params.pop(key, None)
    try:
        name, doc, events = _resolve(ref, None, 0, params)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {ref!r} is not valid TOML: {exc}") from None
    top = params.pop("_top")
    duration = top.get("duration") or None
    try:
        duration_s = parse_duration(duration) if duration else None
    except ValueError as exc:
        raise ScenarioError(f"scenario {name}: {exc}") from None
    chairs = top.get("chairs")
    return Scenario(
        name=name,
        description=str(doc.get("description", "")),
        params=params,
        events=tuple(events),
        duration_s=duration_s,
        chairs=int(chairs) if chairs is not None else None,
    )
