"""Helpers for the simulator tests: generate streams and look at them per chair."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from simulator.scenario import load_scenario
from simulator.stream import Message, generate
from tests.servers import Server, free_port, wait_port

START_MS = 1_767_600_000_000  # 2026-01-05T08:00:00Z


def stream(scenario: str, *, chairs: int = 3, seed: int = 1, duration_s: float | None = None,
           site: str = "s", start_ms: int = START_MS) -> list[Message]:
    """Return a whole generated stream as a list."""
    sc = load_scenario(scenario)
    return list(generate(sc, site=site, chairs=chairs, seed=seed, start_ms=start_ms, duration_s=duration_s))


def readings_by_chair(messages: list[Message]) -> dict[str, list[dict[str, Any]]]:
    """Return every chair's readings sorted by ts (arrays flattened)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for msg in messages:
        if msg.topic.endswith("/vitals"):
            chair = msg.topic.split("/")[-2]
            doc = json.loads(msg.payload)
            out[chair].extend(doc if isinstance(doc, list) else [doc])
    for rows in out.values():
        rows.sort(key=lambda r: r["ts"])
    return dict(out)


def condition_runs(rows: list[dict[str, Any]], vital: str, cond: Any, max_gap_ms: int = 5000) -> list[tuple[int, int]]:
    """Return (first_ts, last_ts) of each run of readings meeting ``cond`` (a gap > max_gap_ms breaks a run)."""
    runs: list[tuple[int, int]] = []
    first = last = None
    for row in rows:
        if vital not in row:
            continue
        ok = cond(row[vital])
        if ok and first is not None and row["ts"] - last <= max_gap_ms:
            last = row["ts"]
        elif ok:
            if first is not None:
                runs.append((first, last))
            first = last = row["ts"]
        else:
            if first is not None:
                runs.append((first, last))
            first = last = None
    if first is not None:
        runs.append((first, last))
    return runs


class Amqtt(Server):
    """The pure-Python amqtt broker (MQTT 3.1.1 only), as the demo runs it, on a free loopback port."""

    name = "amqtt"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(workdir)
        self.port = port or free_port()

    @property
    def url(self) -> str:
        """Return the broker's mqtt:// URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]

    def wait_ready(self) -> None:
        wait_port(self.port, proc=self.proc)
