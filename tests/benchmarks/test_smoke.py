"""The benchmark suite runs end to end in its tiny configuration (no timing is asserted, only that it ran)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def errors(node: object, path: str = "") -> list[str]:
    """Return every 'error' entry anywhere in the results, with where it is."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("error", "naive_error", "ours_error", "arrays_error"):
                found.append(f"{path}/{key}: {value}")
            else:
                found += errors(value, f"{path}/{key}")
    return found


def test_quick_run_measures_every_benchmark_and_writes_json_and_doc(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFUSION_")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--output", str(out), "--no-doc"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())

    for key in ("cpu", "cores", "ram_gib", "os", "python", "mosquitto", "influxd", "git_commit"):
        assert data["machine"][key], key
    assert "mosquitto version" in data["machine"]["mosquitto"]
    results = data["results"]
    assert set(results) >= {"throughput", "latency", "queries", "scaleout", "replay"}
    assert errors(results) == []

    thr = results["throughput"]
    assert thr["broker_limit"]["rate"] > 0
    for backend in ("influxdb", "sqlite"):
        ours = thr[backend]["ours"]
        assert ours["counted_in_store"] == ours["readings"]  # every reading stored once, confirmed by a query
        assert thr[backend]["naive"]["rate"] > 0
        arrays = thr[backend]["arrays"]  # a gateway's arrays of 50 readings per message
        assert arrays["readings_per_message"] == 50 and arrays["counted_in_store"] == arrays["readings"]
    for entry in results["latency"].values():
        assert entry["not_visible"] == 0 and entry["stored_visible_ms"]["n"] == entry["probes"] > 0
    assert results["scaleout"]["shared_subscription"]["written_once"]
    assert results["scaleout"]["site_partition"]["written_once"]
    for backend, readings in (("sqlite", 2 * 1800), ("influxdb", 2 * 900)):  # every generated reading replayed
        rep = results["replay"][backend]
        assert rep["readings"] == rep["readings_read"] == readings
        assert rep["alarms_current"] >= rep["alarms_alternative"] and rep["alarms_current"] > 0
    workers = results["scaleout"]["workers_2"]  # ingest --workers 2: each site stored once, its alarms raised once
    assert workers["written_once"] and workers["alarms_raised_once"] == workers["alarm_probes"] > 0
    assert sum(workers["stored_per_worker"]) == workers["readings"] and min(workers["stored_per_worker"]) > 0

    doc = report.render(data)
    assert "## Machine" in doc and data["machine"]["cpu"] in doc
    assert "| ingest throughput, influxdb |" in doc
    # The table printed by the command names every headline row.
    assert "broker-only limit" in done.stdout


def test_report_marks_a_missed_target() -> None:
    rows = report.summary({"throughput": {"broker_limit": {"rate": 1000},
                                          "influxdb": {"ours": {"rate": 400}, "naive": {"rate": 100},
                                                       "fraction_of_limit": 0.4, "multiple_of_naive": 4.0}}})
    by_name = {r["what"]: r for r in rows}
    assert by_name["influxdb: fraction of the broker-only limit"]["met"] is False
    assert by_name["influxdb: multiple of the naive ingest"]["met"] is False
    assert report.mark(False) == "**missed**"
