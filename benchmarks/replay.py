"""What-if replay speed: chair-hours of stored history replayed per second of wall time.

A generated history (1 Hz readings, one session per chair, SpO2 and HR excursions so the engine has alarms to
raise) is written to the store; then, in the same run:

- the reference: streaming every reading of the period from the store (``Store.iter_readings``) and nothing else;
- the replay: ``ingest.alarms.whatif.whatif``, the rules in force against an alternative (two engines, one pass).

The target (issue 14) is 1,000 chair-hours in at most 60 s on this machine's 2 cores, i.e. >= 16.7 chair-hours/s.
The replay's share of the reference time says how much the engine adds to merely reading the history.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.harness import Context, open_bench_store
from ingest.alarms.rules import apply_overrides, load_rules
from ingest.alarms.whatif import whatif
from vitals.reading import Reading
from vitals.records import Session

TARGET_CHAIR_HOURS = 1000
TARGET_S = 60.0
BATCH = 50_000
ALTERNATIVE = "[rules.spo2-low-medium]\ndelay_s = 30\n[rules.hr-high-medium]\nlimit = 125\n"


def history(site: str, chair: str, start_ms: int, seconds: int, seed: int) -> list[Reading]:
    """Return 1 Hz readings with a cuff reading every 10 minutes and an excursion every ~7 minutes."""
    out = []
    for s in range(seconds):
        phase = (s + seed * 97) % 420
        spo2 = 88.0 if 100 <= phase < 100 + 10 + (seed + s // 420) % 40 else 97.0
        hr = 128.0 if 300 <= phase < 330 else 70.0 + s % 9
        cuff = {"sys": 122.0 + s % 5, "dia": 78.0, "map": 93.0} if s % 600 == 0 else {}
        out.append(Reading(site, chair, start_ms + s * 1000, s, hr=hr, spo2=spo2, rr=14.0, **cuff))
    return out


def measure(ctx: Context, backend: str, chairs: int, hours: float, workers: int | None = None) -> dict[str, Any]:
    """Write ``chairs`` x ``hours`` of history to a fresh store, then time the reference read and the what-if."""
    workers = workers or os.cpu_count() or 1
    site = ctx.unique("replay")
    url = ctx.store_url(backend, f"bench_{site}")
    seconds = int(hours * 3600)
    end = (time.time_ns() // 1_000_000) // 1000 * 1000
    start = end - seconds * 1000
    store = open_bench_store(url)
    try:
        t0 = time.monotonic()
        for c in range(chairs):
            chair = f"c{c:03d}"
            store.write_sessions([Session(site, chair, f"S-{c}", "ended", start, end, patient_ref=f"P-{c}")])
            rows = history(site, chair, start, seconds, c)
            for i in range(0, len(rows), BATCH):
                store.write_readings(rows[i:i + BATCH])
        write_s = time.monotonic() - t0
        t1 = time.perf_counter()
        read = sum(1 for _ in store.iter_readings(site, start, end + 1))
        read_s = time.perf_counter() - t1
        current = load_rules()
        alternative = apply_overrides(current, ALTERNATIVE, "bench-alternative.toml")
        t2 = time.perf_counter()
        doc = whatif(store, current, alternative, since_ms=start, until_ms=end + 1, site=site, workers=workers,
                     opener=lambda: open_bench_store(url))
        replay_s = time.perf_counter() - t2
    finally:
        store.close()
    chair_hours = chairs * hours
    rate = chair_hours / replay_s if replay_s else None
    return {
        "backend": backend, "workers": workers, "chairs": chairs, "hours_per_chair": hours, "chair_hours": chair_hours,
        "readings": doc["replayed"]["readings"], "readings_read": read, "write_s": round(write_s, 1),
        "reference_read_s": round(read_s, 2), "replay_s": round(replay_s, 2),
        "chair_hours_per_s": round(rate, 1) if rate else None,
        "seconds_per_1000_chair_hours": round(TARGET_CHAIR_HOURS / rate, 1) if rate else None,
        "replay_over_read": round(replay_s / read_s, 2) if read_s else None,
        "alarms_current": doc["current"]["alarms"], "alarms_alternative": doc["alternative"]["alarms"],
        "removed": len(doc["removed"]), "added": len(doc["added"]),
        "met": bool(rate and TARGET_CHAIR_HOURS / rate <= TARGET_S),
    }


def run(ctx: Context) -> dict[str, Any]:
    """Replay on SQLite at the target size (1,000 chair-hours), and on InfluxDB at a tenth of it."""
    big = (2, 0.5) if ctx.quick else (50, 20.0)
    small = (2, 0.25) if ctx.quick else (10, 10.0)
    out: dict[str, Any] = {"measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for backend, (chairs, hours) in (("sqlite", big), ("influxdb", small)):
        try:
            out[backend] = measure(ctx, backend, chairs, hours)
        except Exception as exc:
            out[backend] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
    return out
