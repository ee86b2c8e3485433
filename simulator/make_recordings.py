"""Regenerate the small recordings shipped in simulator/recordings/ (``python -m simulator.make_recordings``).

Each is written straight from the pure stream (no broker), so it is byte-identical on every machine.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from simulator.recording import write_stream
from simulator.scenario import Scenario, load_scenario
from simulator.stream import generate

FOLDER = Path(__file__).resolve().parent / "recordings"
START_MS = 1_767_600_000_000  # 2026-01-05T08:00:00Z
SEED = 2026


def _early(scenario: str, **changes: Any) -> Scenario:
    """Return a shipped scenario with its events moved to the first minutes (recordings are short)."""
    sc = load_scenario(scenario)
    return dataclasses.replace(sc, events=tuple({**e, **changes} for e in sc.events))


# name -> (scenario, chairs, simulated seconds)
RECORDINGS: dict[str, tuple[Any, int, int]] = {
    "desaturation": (lambda: _early("desaturation", at_min=1.0, duration_s=45), 1, 240),
    "artefacts": (lambda: _early("artefacts", at_min=0.5, count=3, spacing_s=[20, 40]), 1, 180),
    "clinic-day-start": (lambda: load_scenario("clinic-day"), 2, 240),
}


def regenerate(folder: Path = FOLDER) -> list[Path]:
    """Write every shipped recording into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (make, chairs, seconds) in RECORDINGS.items():
        path = folder / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            write_stream(generate(make(), site="demo", chairs=chairs, seed=SEED, start_ms=START_MS,
                                  duration_s=seconds), out)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else FOLDER):
        print(written, written.stat().st_size, "bytes")
