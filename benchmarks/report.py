"""Render docs/benchmarks.md from benchmarks/results/latest.json (``python -m benchmarks.report``).

The findings written by hand (profiles, causes, before/after) live in benchmarks/findings.md and are
included verbatim, so regenerating the figures never loses them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "latest.json"
DOC = REPO / "docs" / "benchmarks.md"
FINDINGS = REPO / "benchmarks" / "findings.md"


def _get(data: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def short(error: object) -> str:
    """Return the telling last line of an error text, shortened for a table cell."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:200].replace("|", "/")


def summary(results: dict) -> list[dict[str, Any]]:
    """Return the headline rows: what, measured value, target, and whether it is met (None = no target)."""
    rows: list[dict[str, Any]] = []
    thr = results.get("throughput") or {}
    limit = _get(thr, "broker_limit", "rate")
    if "error" in thr:
        rows.append({"what": "throughput", "value": f"error: {short(thr['error'])}", "target": "", "met": None})
    measured = bool(thr) and "error" not in thr
    if measured:
        rows.append({"what": "broker-only limit (bare paho QoS 1 subscriber)", "value": f"{limit} readings/s" if limit else "n/a",
                     "target": "", "met": None})
        fast = _get(thr, "broker_limit_fast_client", "rate")
        if fast:
            rows.append({"what": "broker-only limit on the product's client (bare FastClient subscriber)",
                         "value": f"{fast} readings/s", "target": "", "met": None})
    for backend in ("influxdb", "sqlite") if measured else ():
        entry = thr.get(backend) or {}
        ours, naive = _get(entry, "ours", "rate"), _get(entry, "naive", "rate")
        rows.append({"what": f"ingest throughput, {backend}", "value": f"{ours} readings/s" if ours else
                     f"error: {short(entry.get('ours_error', 'not run'))}", "target": "", "met": None})
        rows.append({"what": f"naive ingest, {backend}", "value": f"{naive} readings/s" if naive else
                     f"error: {short(entry.get('naive_error', 'not run'))}", "target": "", "met": None})
        frac, mult = entry.get("fraction_of_limit"), entry.get("multiple_of_naive")
        shown = f"{frac:.0%}" if frac is not None else "n/a"
        rows.append({"what": f"{backend}: fraction of the broker-only limit", "value": shown,
                     "target": ">= 50 %", "met": None if frac is None else frac >= 0.5})
        fast_frac = entry.get("fraction_of_fast_client_limit")
        if fast_frac is not None:
            rows.append({"what": f"{backend}: fraction of the limit on the product's client", "value": f"{fast_frac:.0%}",
                         "target": "", "met": None})
        rows.append({"what": f"{backend}: multiple of the naive ingest", "value": f"{mult}x" if mult is not None else "n/a",
                     "target": ">= 10x", "met": None if mult is None else mult >= 10})
        arrays = entry.get("arrays") or {}
        if arrays.get("rate"):
            rows.append({"what": f"{backend}: arrays of {arrays['readings_per_message']} readings per message",
                         "value": f"{arrays['rate']} readings/s ({arrays['messages_per_s']} messages/s)",
                         "target": "", "met": None})
        elif "arrays_error" in entry:
            rows.append({"what": f"{backend}: arrays of readings per message", "value":
                         f"error: {short(entry['arrays_error'])}", "target": "", "met": None})
    lat = results.get("latency") or {}
    for key, entry in sorted(lat.items(), key=lambda kv: (kv[1].get("chairs", 0) if isinstance(kv[1], dict) else 0, kv[0])):
        if not isinstance(entry, dict) or "error" in entry:
            why = entry.get("error") if isinstance(entry, dict) else entry
            rows.append({"what": f"latency {key}", "value": f"error: {short(why)}", "target": "", "met": None})
            continue
        chairs, backend = entry["chairs"], entry["backend"]
        st = entry["stored_visible_ms"]
        rows.append({"what": f"publish -> stored and queryable, {chairs} chairs, {backend} (p50/p95/p99)",
                     "value": f"{st['p50']} / {st['p95']} / {st['p99']} ms", "target": "", "met": None})
        if "alarm_event_ms" in entry:
            al = entry["alarm_event_ms"]
            met = None if al["p99"] is None else al["p99"] <= 250 and entry["alarm_events_missing"] == 0
            rows.append({"what": f"publish -> alarm event, {chairs} chairs, {backend} (p50/p95/p99)",
                         "value": f"{al['p50']} / {al['p95']} / {al['p99']} ms ({entry['alarm_events_missing']} missing)",
                         "target": "p99 <= 250 ms" if chairs >= 2000 else "", "met": met if chairs >= 2000 else None})
            no = entry["notification_ms"]
            rows.append({"what": f"publish -> notification dispatched, {chairs} chairs, {backend} (p50/p95/p99)",
                         "value": f"{no['p50']} / {no['p95']} / {no['p99']} ms ({entry['notifications_missing']} missing)",
                         "target": "", "met": None})
        if chairs >= 2000:
            rows.append({"what": f"ingest at {chairs} chairs x 1 Hz, {backend}: RSS, CPU",
                         "value": f"{entry['ingest_rss_mib']} MiB, {entry['ingest_cpu_s_per_1000']} CPU s per 1,000 readings "
                                  f"({entry['ingest_cpu_percent']} % of one core)", "target": "", "met": None})
    dash = _get(results, "dashboard_browser")
    if dash and ("skipped" in dash or "error" in dash):
        why = dash.get("skipped") or dash.get("error")
        rows.append({"what": "publish -> value on the dashboard (browser)", "value": f"not measured: {short(why)}",
                     "target": "<= 1.5 s", "met": None})
    elif dash:
        rows += _screen_rows(dash)
    q = results.get("queries") or {}
    for backend in ("influxdb", "sqlite") if q else ():
        entry = q.get(f"trend_{backend}") or {}
        ms = entry.get("ms") or {}
        hours = entry.get("hours", 4)
        rows.append({"what": f"{hours:g}-hour chair trend query, {backend} (p50/p95)",
                     "value": f"{ms.get('p50')} / {ms.get('p95')} ms, {entry.get('points_returned')} points" if ms else
                     f"error: {short(entry.get('error', 'not run'))}", "target": "<= 200 ms",
                     "met": None if not ms else ms["p95"] <= 200})
        entry = q.get(f"latest_{backend}") or {}
        ms = entry.get("ms") or {}
        rows.append({"what": f"latest values of a 48-chair clinic (store.latest), {backend} (p50/p95)",
                     "value": f"{ms.get('p50')} / {ms.get('p95')} ms, {entry.get('chairs_found')} chairs" if ms else
                     f"error: {short(entry.get('error', 'not run'))}", "target": "", "met": None})
    ov = q.get("overview") or {}
    why = ov.get("skipped") or ov.get("error", "not run")
    if q:
            rows.append({"what": "overview refresh, server time, 48 chairs (p50/p95)",
                     "value": f"{ov['ms']['p50']} / {ov['ms']['p95']} ms" if "ms" in ov else why,
                     "target": "<= 50 ms", "met": None if "ms" not in ov else ov["ms"]["p95"] <= 50})
    so = results.get("scaleout") or {}
    for name in ("workers_2", "shared_subscription", "site_partition"):
        entry = so.get(name)
        label = "ingest --workers 2" if name == "workers_2" else f"two replicas, {name.replace('_', ' ')}"
        if not entry:
            continue
        if "error" in entry:
            rows.append({"what": f"scale-out, {label}", "value": f"error: {short(entry['error'])}",
                         "target": "", "met": None})
            continue
        extra = ""
        if "alarms_raised_once" in entry:
            extra = f", alarms raised once: {entry['alarms_raised_once']}/{entry['alarm_probes']}"
        frac = f", {entry['fraction_of_limit']:.0%} of the limit" if entry.get("fraction_of_limit") else ""
        rows.append({"what": f"scale-out, {label}",
                     "value": f"{entry['rate']} readings/s ({entry.get('speedup_vs_one', 'n/a')}x one replica{frac}), "
                              f"stored exactly once: {entry['written_once']}{extra}", "target": "", "met": None})
    rows += replay_rows(results.get("replay") or {})
    return rows


def replay_rows(rep: dict) -> list[dict[str, Any]]:
    """Return the what-if replay's rows: chair-hours per second per backend, against 1,000 in 60 s."""
    rows: list[dict[str, Any]] = []
    when = f" (measured {rep['measured_at']})" if rep.get("measured_at") else ""
    for backend in ("sqlite", "influxdb"):
        entry = rep.get(backend)
        if not entry:
            continue
        if "error" in entry:
            rows.append({"what": f"what-if replay, {backend}", "value": f"error: {short(entry['error'])}", "target": "",
                         "met": None})
            continue
        rows.append({"what": f"what-if replay, {backend}, {entry['chair_hours']:g} chair-hours, {entry['workers']} "
                             f"processes{when}",
                     "value": f"{entry['chair_hours_per_s']} chair-hours/s ({entry['seconds_per_1000_chair_hours']} s per "
                              f"1,000; {entry['replay_over_read']}x the bare read of the history)",
                     "target": ">= 1,000 chair-hours in <= 60 s" if backend == "sqlite" else "",
                     "met": entry["met"] if backend == "sqlite" else None})
    return rows


def mark(met: bool | None) -> str:
    """Return the table mark for a target check."""
    return "" if met is None else ("met" if met else "**missed**")


# Publish -> visible p95 targets of the push channel (issue 15), per size.
SCREEN_P95_MS = {"clinic": 250, "big": 500}


def _screen_rows(dash: dict) -> list[dict[str, Any]]:
    """Return the publish -> screen rows: the push channel against its p95 target, the poll alone as reference."""
    rows: list[dict[str, Any]] = []
    for key, label in (("clinic", "clinic load"), ("big", "2,000 chairs")):
        size = dash.get(key) or {}
        modes = [("push", size.get("push")), ("poll", size.get("poll"))] if "push" in size or "poll" in size \
            else [("poll", size)]  # results from before the push channel: one poll figure per size
        for mode, entry in modes:
            entry = entry or {}
            ms = entry.get("ms") or {}
            what = f"publish -> value on the dashboard (browser), {label}, {mode}"
            target = f"p95 <= {SCREEN_P95_MS[key]} ms" if mode == "push" else "reference (fallback)"
            if "skipped" in entry or not ms.get("n"):
                rows.append({"what": what, "value": f"not measured: {entry.get('skipped', 'no probe seen')}",
                             "target": target, "met": None})
                continue
            script = (f"; browser script {entry['script_ms_per_s']} ms/s, main thread {entry['main_thread_ms_per_s']} ms/s"
                      if "script_ms_per_s" in entry else "")
            rows.append({"what": what + " (p50/p95/p99)",
                         "value": f"{ms['p50']} / {ms['p95']} / {ms['p99']} ms ({entry['missed']} missed){script}",
                         "target": target,
                         "met": (ms["p95"] <= SCREEN_P95_MS[key] and not entry["missed"]) if mode == "push" else None})
    return rows


def render(data: dict) -> str:
    """Return docs/benchmarks.md for one run's JSON."""
    m = data["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks` from `benchmarks/results/latest.json`; do not edit by hand (findings",
        "and profiles come from `benchmarks/findings.md`). Regenerate the page alone with `python -m benchmarks.report`.",
        "",
        f"Run: {m['date']}, {data['duration_s']:.0f} s"
        f"{' (--quick: tiny sizes, figures not meaningful)' if data.get('quick') else ''}"
        f"{', only ' + ', '.join(data['only']) if data.get('only') else ''}.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in m.items()]
    lines += ["", "## Results against the targets", "", "| measurement | value | target | |", "|---|---|---|---|"]
    for row in summary(data["results"]):
        lines.append(f"| {row['what']} | {row['value']} | {row['target']} | {mark(row['met'])} |")
    lines += ["", "## How each figure is measured", "", METHOD.strip(), ""]
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().strip(), ""]
    lines += profiles(data["results"])
    raw = json.loads(json.dumps(data["results"]))
    for backend in ("influxdb", "sqlite"):
        (raw.get("throughput") or {}).get(backend, {}).pop("profile", None)  # rendered above as tables
    lines += ["## Raw results", "", "```json", json.dumps(raw, indent=1), "```", ""]
    return "\n".join(lines)


METHOD = """
- **Servers.** One real `mosquitto` (max_inflight_messages 1000, large queue) and one real `influxd` 1.x, started
  by `tests/servers.py` for the run. The ingest always runs as a real subprocess (`python -m infusion_monitor
  ingest`), with its alarm engine when it is installed (the `alarms` field says so).
- **Throughput.** Each consumer first creates a persistent MQTT v5 session subscribed at QoS 1, goes away, and
  two publisher processes queue a backlog of one-reading messages from 2,000 chairs; the consumer then resumes
  and drains it. Rate = readings from first to last (the ingest: its `ingest_readings_stored` counter, sampled
  every 20 ms near the start and the end and sparingly between, since rendering /metrics costs the ingest CPU;
  then a `count_readings` query on the store must equal the backlog). The three consumers get the same machine,
  undisturbed by publishers. Each round runs twice and the faster counts (`rates_seen` lists both): the machine
  is shared, and noise only ever slows a round. References, same run: a bare paho-mqtt 2 subscriber (v5, QoS 1,
  automatic PUBACK) that only counts, on stock paho (the reference the targets name) and again on the product's
  `vitals.mqtt.FastClient` (the stricter one: the same receive path as the ingest); a naive ingest writing
  each reading with its own HTTP `/write` request on a kept-alive connection (InfluxDB), or its own INSERT +
  commit in WAL mode (SQLite). Arrays: the same drain with a gateway's messages of 50 readings each (a tenth
  of the chairs, ten times the readings each).
- **Latency.** A paced publisher sends every chair once a second (ts = now), spread evenly over the second. Every
  0.1 s a probe reading for a fresh chair carries sys 185 mmHg (the shipped rule `sys >= 180`, high priority, no
  delay). Publish -> stored: a `store.readings(...)` query polled every 5 ms until it returns the probe. Publish ->
  alarm event: arrival of the first event naming the probe chair on `clinic/{site}/alarms/events`. Publish ->
  notification: arrival of apprise's `json://` POST at a local HTTP endpoint. Clocks: one machine, wall time.
- **Publish -> screen.** The dashboard as a subprocess (`--no-login`, loopback) under the paced 1 Hz load of 48 or
  2,000 chairs, a real headless Chromium (Playwright) on its overview. A probe chair publishes 40 heart rates
  (201..249, values no load chair shows), 0.3 s apart after each is seen; the page records with its own clock
  (the same system clock) when the probe tile's HR numeral shows the value (`requestAnimationFrame` polling).
  Each size twice in the same run: push (default) and the poll alone (`--no-push`, the fallback). Browser cost:
  Chrome DevTools `Performance.getMetrics` ScriptDuration and TaskDuration over the probe window, per second.
- **CPU and memory.** From `/proc/PID/stat` of the ingest subprocess (utime + stime of all its threads, RSS)
  over the steady 2,000-chair window; `cpu_s_per_1000` in the throughput rounds is the same over the drain.
- **Trend query.** 4 hours of 1 Hz readings (with a cuff reading every 10 min) for 8 chairs written through the
  store; then `store.series(site, chair, now-4h, now, max_points=2000)` for one chair, 20 times, cold call apart.
- **Scale-out.** The same backlog drained by `ingest --workers 2 --sites a,b` (one command, two worker processes,
  alarms on), or by two replicas: a shared-subscription group (`--shared-group`, storage only) or a site
  partition (`--site` each, half the chairs per site, alarms on). Stored exactly once = store count equals the
  backlog and the replicas' written counters sum to it; then one alarm probe per chair must be raised once.
  Fraction of the limit: against the broker-only limit of the throughput round of the same run.
- **Own code per message** (`python -m benchmarks.ownpath [TREE ...]`, not part of the run): the ingest's handling
  of 20,000 one-reading messages in process, CPU time, store write subtracted; trees alternated for old vs new.
- **What-if replay** (`benchmarks/replay.py`). A generated history (1 Hz readings, one session per chair, SpO2 and
  HR excursions every few minutes, so the engine raises hundreds of alarms) is written to the store: 50 chairs x 20 h
  (1,000 chair-hours) in SQLite, 10 chairs x 10 h in InfluxDB. Then `ingest.alarms.whatif.whatif`: the shipped rules
  against an alternative (two engines, the live engine's code), streaming from the store, chairs shared among one
  forked process per core. Reference, same run: streaming the same readings with `iter_readings` and nothing else.
"""


def profiles(results: dict) -> list[str]:
    """Return Markdown for the py-spy profiles kept by ``--profile`` runs (empty when none)."""
    out: list[str] = []
    for backend in ("influxdb", "sqlite"):
        prof = _get(results, "throughput", backend, "profile")
        if not prof or "error" in prof:
            continue
        out += [f"### Profile of the ingest draining the backlog into {backend} (py-spy, this run)", "",
                f"Rate while sampled: {prof['rate_while_sampled']} readings/s; {prof['samples'][0][1]} samples, each of "
                "the thread holding the GIL (`py-spy --gil`): where the interpreter's time goes.", "",
                "| thread | share of samples |", "|---|---|"]
        out += [f"| {name} | {share} % |" for name, share in prof["threads"][:6]]
        out += ["", "| function (self time) | share |", "|---|---|"]
        out += [f"| `{name}` | {share} % |" for name, share in prof["self"][:15]]
        out += ["", "| function (inclusive) | share |", "|---|---|"]
        out += [f"| `{name}` | {share} % |" for name, share in prof["inclusive"][3:25]]
        out.append("")
    return out


def write(data: dict | None = None) -> Path:
    """Write docs/benchmarks.md from ``data`` (default: the latest results file) and return its path."""
    if data is None:
        data = json.loads(RESULTS.read_text())
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(data))
    return DOC


if __name__ == "__main__":
    print(write())
    sys.exit(0)
