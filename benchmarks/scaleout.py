"""Scale-out: two ingest replicas sharing the load, by MQTT shared subscription or by site partition.

- Shared subscription (``--shared-group G``): the broker deals messages round-robin, so a chair's readings
  are split between replicas. Storage stays exactly-once (the store's keys), but no replica sees all of a
  chair's readings, so the ingest refuses to run the alarm engine there: these are storage-only replicas.
- Partition by site (``--site S`` per replica): each replica sees every reading of its chairs, so per-chair
  alarm state (delays, escalation, acknowledgement) stays correct.

Both drain the same backlog as the one-replica throughput round; correctness is checked by counting stored
readings (the store) and written readings (each replica's counter: their sum equal to the total means nothing
was written twice), and, for the site partition, by raising one alarm per probe chair and counting raises.
"""

from __future__ import annotations

import json
import time
from typing import Any

from benchmarks.harness import Context, open_bench_store
from benchmarks.latency import PROBE_SYS, TimedCollector
from benchmarks.load import precreate_session, publish_backlog
from benchmarks.throughput import _stored, alarms_available, drain_with_ingest
from tests.servers import MqttCollector
from vitals.topics import Topics

ALARM_PROBES = 10


def shared(ctx: Context, backend: str) -> dict:
    """Two storage-only replicas in one shared-subscription group."""
    assert ctx.mosquitto is not None
    site, group = ctx.unique("share"), ctx.unique("grp")
    n = ctx.sizes.chairs * ctx.sizes.backlog_per_chair
    ids = [ctx.unique("bench-shared-a-"), ctx.unique("bench-shared-b-")]
    for cid in ids:
        precreate_session(ctx.mosquitto.url, cid, [f"$share/{group}/clinic/{site}/chair/+/vitals"])
    publish_backlog(ctx.mosquitto.url, site, ctx.sizes.chairs, ctx.sizes.backlog_per_chair,
                    int(time.time() * 1000) - 7_200_000, procs=ctx.sizes.publisher_procs)
    url = ctx.store_url(backend, f"bench_{site}")
    result = drain_with_ingest(ctx, backend, site, n, store_url=url,
                               replicas=[("--site", site, "--shared-group", group, "--client-id", cid) for cid in ids])
    store = open_bench_store(url)
    try:
        result["counted_in_store"] = store.count_readings(site)
    finally:
        store.close()
    result["written_once"] = sum(result["stored_per_replica"]) == n and result["counted_in_store"] == n
    result["alarm_engine"] = "refused by the ingest (a replica sees only part of each chair's readings)"
    return result


def partitioned(ctx: Context, backend: str) -> dict:
    """Two replicas, one per site, each with its alarm engine; then one alarm raised per probe chair."""
    assert ctx.mosquitto is not None
    sites = [ctx.unique("part"), ctx.unique("part")]
    half = ctx.sizes.chairs // 2
    n = 2 * half * ctx.sizes.backlog_per_chair
    ids = [ctx.unique("bench-part-a-"), ctx.unique("bench-part-b-")]
    for cid, site in zip(ids, sites, strict=True):
        precreate_session(ctx.mosquitto.url, cid, [f"clinic/{site}/chair/+/vitals"])
    for site in sites:
        publish_backlog(ctx.mosquitto.url, site, half, ctx.sizes.backlog_per_chair,
                        int(time.time() * 1000) - 7_200_000, procs=ctx.sizes.publisher_procs)
    url = ctx.store_url(backend, f"bench_{sites[0]}")
    result = drain_with_ingest(ctx, backend, sites[0], n, store_url=url,
                               replicas=[("--site", site, "--client-id", cid) for cid, site in zip(ids, sites, strict=True)],
                               keep=True)
    procs = result.pop("procs")
    try:
        _check_stored_once(ctx, url, sites, n, result)
    finally:
        for p in procs:
            p.stop()
            ctx.started.remove(p)
    return result


def workers(ctx: Context, backend: str) -> dict:
    """One ``ingest --workers 2 --sites a,b`` (each worker its site, alarm engine on), then one alarm per probe chair."""
    assert ctx.mosquitto is not None
    sites = [ctx.unique("wrk"), ctx.unique("wrk")]
    half = ctx.sizes.chairs // 2
    n = 2 * half * ctx.sizes.backlog_per_chair
    cid = ctx.unique("bench-workers-")
    for i, site in enumerate(sites):  # site i goes to worker i (ingest/workers.py), client id <id>-w<i>of2
        precreate_session(ctx.mosquitto.url, f"{cid}-w{i}of2", [f"clinic/{site}/chair/+/vitals"])
        publish_backlog(ctx.mosquitto.url, site, half, ctx.sizes.backlog_per_chair,
                        int(time.time() * 1000) - 7_200_000, procs=ctx.sizes.publisher_procs)
    url = ctx.store_url(backend, f"bench_{sites[0]}")
    result = drain_with_ingest(ctx, backend, sites[0], n, store_url=url, keep=True, workers=2,
                               replicas=[("--sites", ",".join(sites), "--workers", "2", "--client-id", cid)])
    procs = result.pop("procs")
    try:
        result["stored_per_worker"] = [_stored(procs[0], 1, offset=i) for i in range(2)]
        _check_stored_once(ctx, url, sites, n, result)
    finally:
        for p in procs:
            p.stop()
            ctx.started.remove(p)
    return result



def _check_stored_once(ctx: Context, url: str, sites: list[str], n: int, result: dict[str, Any]) -> None:
    """Add to ``result`` the store's count of the sites' readings, whether all ``n`` were written exactly once, and
    (with the alarm engine available) whether each site's alarm probes were raised once."""
    store = open_bench_store(url)
    try:
        result["counted_in_store"] = sum(store.count_readings(site) for site in sites)
    finally:
        store.close()
    result["written_once"] = sum(result["stored_per_replica"]) == n and result["counted_in_store"] == n
    if alarms_available():
        result.update(_alarm_check(ctx, sites, Topics()))

def _alarm_check(ctx: Context, sites: list[str], topics: Topics) -> dict[str, Any]:
    """Raise one sys-high alarm on each of ALARM_PROBES chairs per site; count raise events per chair."""
    assert ctx.mosquitto is not None
    events = TimedCollector(ctx.mosquitto.url, *(topics.alarm_events_filter(s) for s in sites))
    pub = MqttCollector(ctx.mosquitto.url, "bench/unused")
    try:
        now = time.time_ns() // 1_000_000
        expected = []
        for site in sites:
            for k in range(ALARM_PROBES):
                chair = f"alarm{k:03d}x"
                expected.append((site, chair))
                for j in range(3):  # three high readings in a row: still one alarm, raised once
                    body = {"ts": now + j * 1000, "hr": 80, "sys": PROBE_SYS, "dia": 100, "map": 128}
                    pub.client.publish(topics.vitals(site, chair), json.dumps(body), qos=1)
        time.sleep(3.0)
        raises: dict[tuple[str, str], int] = {}
        for _, text in events.times:
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            key = (str(obj.get("site")), str(obj.get("chair")))
            if key in expected and obj.get("event") == "raised" and obj.get("vital") == "sys":
                raises[key] = raises.get(key, 0) + 1
        return {
            "alarm_probes": len(expected),
            "alarms_raised_once": sum(1 for key in expected if raises.get(key) == 1),
            "alarm_event_messages": len(events.times),
        }
    finally:
        events.close()
        pub.close()


def run(ctx: Context, one_replica: dict | None = None, limit: float | None = None) -> dict:
    """Compare one replica (from the throughput round) with two, three ways, on InfluxDB."""
    out: dict[str, Any] = {"backend": "influxdb"}
    if one_replica and "rate" in one_replica:
        out["one_replica_rate"] = one_replica["rate"]
    if limit:
        out["broker_limit"] = limit
    for name, fn in (("workers_2", workers), ("shared_subscription", shared), ("site_partition", partitioned)):
        try:
            out[name] = fn(ctx, "influxdb")
            if out.get("one_replica_rate") and out[name].get("rate"):
                out[name]["speedup_vs_one"] = round(out[name]["rate"] / out["one_replica_rate"], 2)
            if limit and out[name].get("rate"):
                out[name]["fraction_of_limit"] = round(out[name]["rate"] / limit, 3)
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
    return out
