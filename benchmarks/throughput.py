"""Ingest throughput against the broker-only limit and a naive ingest, per backend, in the same run.

Method (the same for all three consumers): a persistent QoS 1 session is created for the consumer, the
consumer goes away, publishers put a backlog of one-reading messages from many chairs into the broker, then
the consumer resumes its session and drains the backlog. The rate is counted from its first to its last
message (for our ingest: from the first to the last stored reading, sampled from its /metrics, then
confirmed by a count query on the store). Draining a backlog gives each consumer the whole machine,
undisturbed by publishers competing for the same two cores.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from benchmarks import profile
from benchmarks.harness import Context, metric, open_bench_store, proc_cpu_rss, run_consumer
from benchmarks.load import precreate_session, publish_backlog

BACKENDS = ("influxdb", "sqlite")


def alarms_available() -> bool:
    """Return whether the alarm service exists yet (the ingest then runs it, as in production)."""
    try:
        return importlib.util.find_spec("ingest.alarms.service") is not None
    except ModuleNotFoundError:  # not even the package yet
        return False


def _backlog(ctx: Context, site: str, per_chair: int) -> dict[str, float]:
    assert ctx.mosquitto is not None
    start_ts = int(time.time() * 1000) - 3_600_000 * 2
    return publish_backlog(ctx.mosquitto.url, site, ctx.sizes.chairs, per_chair, start_ts,
                           procs=ctx.sizes.publisher_procs)


def _rate(result: dict) -> float:
    span = result["last"] - result["first"]
    return (result["received"] - 1) / span if span > 0 else 0.0


def broker_limit(ctx: Context, mode: str = "count") -> dict:
    """Measure a bare QoS 1 counting subscriber: stock paho (``count``, the reference the targets are set
    against), or the product's FastClient (``count-fast``, the same subscriber with the ingest's receive path)."""
    assert ctx.mosquitto is not None
    site, cid = ctx.unique("limit"), ctx.unique("bench-count-")
    n = ctx.sizes.chairs * ctx.sizes.backlog_per_chair
    precreate_session(ctx.mosquitto.url, cid, [f"clinic/{site}/chair/+/vitals"])
    pub = _backlog(ctx, site, ctx.sizes.backlog_per_chair)
    result = run_consumer(mode, ctx.mosquitto.url, cid, n)
    if result["received"] != n:
        raise RuntimeError(f"broker-only subscriber got {result['received']} of {n}")
    return {"readings": n, "rate": round(_rate(result)), "publish_rate": round(pub["rate"])}


def naive(ctx: Context, backend: str) -> dict:
    """Measure the tutorial ingest: one HTTP write (or one SQLite commit) per reading."""
    assert ctx.mosquitto is not None and ctx.influxd is not None
    site, cid = ctx.unique("naive"), ctx.unique("bench-naive-")
    n = ctx.sizes.chairs * ctx.sizes.naive_per_chair
    if backend == "influxdb":
        mode, target = "naive-influx", ctx.influxd.store_url(f"naive_{site}")
    else:
        mode, target = "naive-sqlite", str(Path(ctx.store_url("sqlite", f"naive_{site}")[len("sqlite:///"):]))
    precreate_session(ctx.mosquitto.url, cid, [f"clinic/{site}/chair/+/vitals"])
    _backlog(ctx, site, ctx.sizes.naive_per_chair)
    result = run_consumer(mode, ctx.mosquitto.url, cid, n, target)
    if result["error_count"] or result["received"] != n:
        raise RuntimeError(f"naive {backend} ingest stored {result['received']} of {n}: {result['errors']}")
    return {"readings": n, "rate": round(_rate(result))}


def _pids(pid: int) -> list[int]:
    """Return a process and its children (``ingest --workers N`` runs its workers as children)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]


def _stored(proc: Any, workers: int, offset: int = 0) -> float:
    """Return the readings stored by an ingest process (summed over its workers' metrics ports)."""
    return sum(metric(SimpleNamespace(http_port=proc.http_port + offset + i, proc=proc.proc, log=proc.log),  # type: ignore[arg-type]
                      "ingest_readings_stored", 0.0) for i in range(workers))


def drain_with_ingest(ctx: Context, backend: str, site: str, n: int, extra: tuple[str, ...] = (),
                      replicas: list[tuple[str, ...]] | None = None, store_url: str | None = None,
                      keep: bool = False, profile_out: Path | None = None, workers: int = 1) -> dict:
    """Start ingest replica(s) on a queued backlog of ``n`` readings and time them until all are stored.

    ``workers``: each replica is an ``ingest --workers N`` whose workers serve metrics on http_port + i.
    """
    assert ctx.mosquitto is not None
    url = store_url or ctx.store_url(backend, f"bench_{site}")
    flags = [] if alarms_available() else ["--no-alarms"]
    procs = []
    started = time.monotonic()
    for args in replicas or [("--site", site, "--client-id", ctx.unique("bench-ingest-"))]:
        procs.append(ctx.ingest(url, *args, *extra, *flags, wait=False))
    spy = None
    samples: list[tuple[float, float, float]] = []  # (time, stored, cpu seconds of all replicas)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stored = sum(_stored(p, workers) for p in procs)
        cpu = sum(proc_cpu_rss(pid)[0] for p in procs if p.proc is not None for pid in _pids(p.proc.pid))
        samples.append((time.monotonic(), stored, cpu))
        if profile_out and spy is None and stored > 0 and procs[0].proc:  # sample the drain, not the start-up
            spy = profile.start(procs[0].proc.pid, profile_out)
        if stored >= n:
            break
        # Poll fast until the drain starts, then rarely (rendering /metrics costs the ingest CPU), fast near the end.
        rate = (stored - samples[0][1]) / max(1e-3, samples[-1][0] - samples[0][0])
        time.sleep(0.02 if stored == 0 or rate <= 0 else min(0.25, max(0.02, 0.3 * (n - stored) / rate)))
    rss = max(proc_cpu_rss(pid)[1] for p in procs if p.proc is not None for pid in _pids(p.proc.pid))
    per_replica = [_stored(p, workers) for p in procs]
    if spy is not None:
        profile.stop(spy)
    if not keep:
        for p in procs:
            p.stop()
            ctx.started.remove(p)
    last = samples[-1]
    if last[1] < n:
        raise RuntimeError(f"ingest stored only {last[1]:.0f} of {n} readings within 300 s")
    # From the last sample before anything was stored: the drain began within that 20 ms interval.
    first = next((samples[i - 1] for i, s in enumerate(samples) if s[1] > 0 and i > 0), samples[0])
    span = last[0] - first[0]
    readings = last[1] - first[1]
    return {
        "readings": n, "rate": round(readings / span) if span > 0 else None,
        "stored_per_replica": per_replica,
        "cpu_s_per_1000": round((last[2] - first[2]) / readings * 1000, 3) if readings else None,
        "rss_mib": round(rss, 1), "alarms": alarms_available(), "startup_to_done_s": round(time.monotonic() - started, 2),
        **({"procs": procs} if keep else {}),
    }


ARRAY = 50  # readings per message in the gateway round


def ours(ctx: Context, backend: str, profile_out: Path | None = None, per_message: int = 1) -> dict:
    """Measure our ingest (a real subprocess) draining the same backlog into ``backend``.

    ``per_message`` > 1: a gateway's backlog, arrays of that many readings, a tenth of the chairs each sending
    ten times as many readings in ``per_message``-reading messages (the same number of readings or more).
    """
    assert ctx.mosquitto is not None
    site = ctx.unique("ours" if per_message == 1 else "arrays")
    cid = ctx.unique("bench-ingest-")
    chairs, per_chair = ctx.sizes.chairs, ctx.sizes.backlog_per_chair
    if per_message > 1:
        chairs = max(1, chairs // 10)
        per_chair = -(-per_chair * 10 // per_message) * per_message
    n = chairs * per_chair
    precreate_session(ctx.mosquitto.url, cid, [f"clinic/{site}/chair/+/vitals"])
    publish_backlog(ctx.mosquitto.url, site, chairs, per_chair, int(time.time() * 1000) - 3_600_000 * 2,
                    procs=ctx.sizes.publisher_procs, per_message=per_message)
    result = drain_with_ingest(ctx, backend, site, n, replicas=[("--site", site, "--client-id", cid)],
                               profile_out=profile_out)
    result["readings_per_message"] = per_message
    result["messages_per_s"] = round(result["rate"] / per_message) if result["rate"] else None
    store = open_bench_store(ctx.store_url(backend, f"bench_{site}"))
    try:
        result["counted_in_store"] = store.count_readings(site)
    finally:
        store.close()
    if result["counted_in_store"] != n:
        raise RuntimeError(f"store holds {result['counted_in_store']} readings of site {site}, expected {n}")
    return result


def best_of(ctx: Context, measure, *args):  # type: ignore[no-untyped-def]
    """Run a throughput round ``ctx.sizes.repeats`` times; return the fastest, with every rate seen."""
    rounds = [measure(ctx, *args) for _ in range(ctx.sizes.repeats)]
    best = max(rounds, key=lambda r: r["rate"] or 0)
    return {**best, "rates_seen": [r["rate"] for r in rounds]}


def run(ctx: Context) -> dict:
    """Run the throughput comparison for every backend."""
    out: dict = {"method": "backlog drain of one-reading QoS 1 messages from many chairs; see benchmarks/throughput.py"}
    out["broker_limit"] = best_of(ctx, broker_limit)
    limit = out["broker_limit"]["rate"]
    out["broker_limit_fast_client"] = best_of(ctx, broker_limit, "count-fast")
    fast_limit = out["broker_limit_fast_client"]["rate"]
    for backend in BACKENDS:
        entry: dict = {}
        try:
            entry["naive"] = best_of(ctx, naive, backend)
        except Exception as exc:
            entry["naive_error"] = str(exc)[-800:]
        try:
            entry["ours"] = best_of(ctx, ours, backend)
        except Exception as exc:
            entry["ours_error"] = str(exc)[-800:]
        if "ours" in entry:
            rate = entry["ours"]["rate"] or 0
            entry["fraction_of_limit"] = round(rate / limit, 3) if limit else None
            entry["fraction_of_fast_client_limit"] = round(rate / fast_limit, 3) if fast_limit else None
            if "naive" in entry and entry["naive"]["rate"]:
                entry["multiple_of_naive"] = round(rate / entry["naive"]["rate"], 1)
        try:
            entry["arrays"] = best_of(ctx, ours, backend, None, ARRAY)
        except Exception as exc:
            entry["arrays_error"] = str(exc)[-800:]
        if ctx.profile:
            try:
                path = ctx.workdir / f"profile-{backend}.txt"
                profiled = ours(ctx, backend, profile_out=path)
                entry["profile"] = {"rate_while_sampled": profiled["rate"], **profile.summarize(path)}
            except Exception as exc:
                entry["profile"] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
        out[backend] = entry
    return out
