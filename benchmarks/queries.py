"""Read-side timings: a chair's 4-hour trend per backend, and the dashboard overview refresh at 48 chairs."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import time
from typing import Any

from benchmarks.harness import Context, open_bench_store, percentiles
from vitals.reading import Reading

TREND_CHAIRS = 8  # chairs of history written beside the queried one, so the query must select
BATCH = 5000


def history(site: str, chair: str, start_ms: int, seconds: int) -> list[Reading]:
    """Return ``seconds`` of 1 Hz readings for a chair, with a cuff reading every 10 minutes."""
    out = []
    for s in range(seconds):
        cuff = {"sys": 120.0 + s % 7, "dia": 80.0, "map": 93.0} if s % 600 == 0 else {}
        out.append(Reading(site, chair, start_ms + s * 1000, s, hr=60.0 + s % 25, spo2=97.0, rr=14.0, **cuff))
    return out


def trend(ctx: Context, backend: str) -> dict[str, Any]:
    """Time ``store.series`` over 4 hours of 1 Hz data (max_points 2000), cold first call excluded."""
    site = ctx.unique("trend")
    url = ctx.store_url(backend, f"bench_{site}")
    seconds = int(ctx.sizes.trend_hours * 3600)
    end = (time.time_ns() // 1_000_000) // 1000 * 1000
    start = end - seconds * 1000
    store = open_bench_store(url)
    try:
        written = time.monotonic()
        for c in range(TREND_CHAIRS):
            rows = history(site, f"c{c:02d}", start, seconds)
            for i in range(0, len(rows), BATCH):
                store.write_readings(rows[i : i + BATCH])
        write_s = time.monotonic() - written
        cold_started = time.perf_counter()
        series = store.series(site, "c00", start, end, max_points=2000)
        cold = (time.perf_counter() - cold_started) * 1000
        times = []
        for _ in range(ctx.sizes.trend_repeats):
            t0 = time.perf_counter()
            series = store.series(site, "c00", start, end, max_points=2000)
            times.append((time.perf_counter() - t0) * 1000)
        points = len(series.times)
    finally:
        store.close()
    rows_written = TREND_CHAIRS * seconds
    return {
        "hours": ctx.sizes.trend_hours, "chairs_in_store": TREND_CHAIRS, "points_returned": points,
        "step_ms": series.step_ms, "cold_ms": round(cold, 1), "ms": percentiles(times),
        "write_rate": round(rows_written / write_s) if write_s else None,
    }


def latest(ctx: Context, backend: str) -> dict[str, Any]:
    """Time ``store.latest(site)`` for a clinic of 48 chairs (the overview's history read)."""
    site = ctx.unique("latest")
    url = ctx.store_url(backend, f"bench_{site}")
    now = time.time_ns() // 1_000_000
    store = open_bench_store(url)
    try:
        for c in range(ctx.sizes.clinic_chairs):
            store.write_readings(history(site, f"c{c:02d}", now - 600_000, 600))
        found = store.latest(site)
        times = []
        for _ in range(ctx.sizes.trend_repeats):
            t0 = time.perf_counter()
            found = store.latest(site)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        store.close()
    return {"chairs": ctx.sizes.clinic_chairs, "chairs_found": len(found), "ms": percentiles(times)}


def overview(ctx: Context) -> dict[str, Any]:
    """Time the dashboard's overview callback at 48 chairs, if the dashboard offers a timing hook."""
    try:
        module = importlib.import_module("dashboard.bench")
    except ImportError:
        landed = importlib.util.find_spec("dashboard.app") is not None or importlib.util.find_spec("dashboard.cli") is not None
        why = ("the dashboard offers no timing hook: dashboard/bench.py with overview_refresh(store_url, site, chairs) "
               "returning a callable that runs one overview refresh") if landed else "the dashboard has not landed"
        return {"skipped": why}
    hook = module.overview_refresh  # (store_url, site, chairs) -> callable doing one refresh
    site = ctx.unique("ovw")
    url = ctx.store_url("influxdb", f"bench_{site}")
    store = open_bench_store(url)
    now = time.time_ns() // 1_000_000
    try:
        for c in range(ctx.sizes.clinic_chairs):
            store.write_readings(history(site, f"c{c:02d}", now - 600_000, 600))
    finally:
        store.close()
    refresh = hook(url, site, ctx.sizes.clinic_chairs) if len(inspect.signature(hook).parameters) == 3 else hook(url, site)
    refresh()
    times = []
    for _ in range(ctx.sizes.trend_repeats):
        t0 = time.perf_counter()
        refresh()
        times.append((time.perf_counter() - t0) * 1000)
    return {"chairs": ctx.sizes.clinic_chairs, "ms": percentiles(times)}


def run(ctx: Context) -> dict[str, Any]:
    """Run the trend query per backend and the overview refresh."""
    out: dict[str, Any] = {}
    for backend in ("influxdb", "sqlite"):
        try:
            out[f"trend_{backend}"] = trend(ctx, backend)
        except Exception as exc:
            out[f"trend_{backend}"] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
        try:
            out[f"latest_{backend}"] = latest(ctx, backend)
        except Exception as exc:
            out[f"latest_{backend}"] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
    try:
        out["overview"] = overview(ctx)
    except Exception as exc:
        out["overview"] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
    return out
