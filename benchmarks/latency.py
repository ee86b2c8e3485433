"""End-to-end latency under a steady 1 Hz load: publish -> stored and queryable, -> alarm event, -> notification.

A paced publisher process sends every load chair once a second (ts = now). Meanwhile probes are published
from this process, each for a fresh probe chair, carrying a cuff reading of sys 185 mmHg: the shipped rule
``sys >= 180`` (high, no delay) raises at once, so publish -> alarm event is the latency beyond the configured
delay. For each probe we time: until a store query returns it; until its alarm event arrives on MQTT; until
apprise's ``json://`` notification reaches a local HTTP endpoint. The ingest's CPU and RSS are sampled from
/proc/PID/stat over the steady window (all threads of the subprocess).
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from benchmarks.harness import Context, open_bench_store, percentiles, proc_cpu_rss
from benchmarks.load import start_paced
from benchmarks.throughput import alarms_available
from tests.servers import MqttCollector, ThreadedHTTP
from vitals.mqtt import connect, make_client, wait_connected
from vitals.topics import Topics

PROBE_SYS = 185.0  # above the shipped high limit sys >= 180 (no delay)
VISIBLE_TIMEOUT_S = 5.0
POLL_S = 0.005


class NotificationSink:
    """A local HTTP endpoint for apprise ``json://`` that records when each notification arrives."""

    def __init__(self) -> None:
        received: list[tuple[float, str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                received.append((time.time(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.http = ThreadedHTTP(Handler)
        self.port = self.http.port

    def close(self) -> None:
        """Stop serving."""
        self.http.close()


class TimedCollector(MqttCollector):
    """An MQTT subscriber that also records when each message arrived."""

    def __init__(self, url: str, *filters: str) -> None:
        self.times: list[tuple[float, str]] = []
        super().__init__(url, *filters)

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        self.times.append((time.time(), msg.payload.decode(errors="replace")))
        super()._on_message(client, userdata, msg)


def probe_chair(k: int) -> str:
    """Return the id of probe ``k`` (a token no other id contains)."""
    return f"probe{k:04d}x"


def measure(ctx: Context, backend: str, chairs: int) -> dict:
    """Run one latency round at ``chairs`` chairs at 1 Hz against ``backend``; return percentiles in ms."""
    assert ctx.mosquitto is not None
    site = ctx.unique("lat")
    topics = Topics()
    url = ctx.store_url(backend, f"bench_{site}")
    alarms = alarms_available()
    sink = NotificationSink() if alarms else None
    env = {"INFUSION_NOTIFY__URLS": json.dumps([f"json://127.0.0.1:{sink.port}/notify"])} if sink else {}
    ingest = ctx.ingest(url, "--site", site, "--client-id", ctx.unique("bench-lat-"), *([] if alarms else ["--no-alarms"]),
                        env=env)
    events = TimedCollector(ctx.mosquitto.url, topics.alarm_events_filter(site))
    publisher = start_paced(ctx.mosquitto.url, site, chairs, ctx.sizes.latency_s + 2)
    client, target = make_client(ctx.mosquitto.url)
    connect(client, target)
    client.loop_start()
    wait_connected(client, 10)
    store = open_bench_store(url)
    probes: list[tuple[str, int, float, float | None]] = []  # chair, ts, published (wall s), visible (wall s)
    try:
        time.sleep(2.0)  # let the paced load reach its steady state
        assert ingest.proc is not None
        cpu0, _ = proc_cpu_rss(ingest.proc.pid)
        window0 = time.monotonic()
        k = 0
        while time.monotonic() - window0 < ctx.sizes.latency_s:
            chair = probe_chair(k)
            k += 1
            ts = time.time_ns() // 1_000_000
            body = {"ts": ts, "seq": 0, "hr": 80, "spo2": 98, "rr": 14, "sys": PROBE_SYS, "dia": 100, "map": 128}
            published = time.time()
            client.publish(topics.vitals(site, chair), json.dumps(body), qos=1)
            visible = None
            while time.time() - published < VISIBLE_TIMEOUT_S:
                if store.readings(site, chair, ts, ts + 1):
                    visible = time.time()
                    break
                time.sleep(POLL_S)
            probes.append((chair, ts, published, visible))
            rest = ctx.sizes.probe_every_s - (time.time() - published)
            if rest > 0:
                time.sleep(rest)
        window = time.monotonic() - window0
        cpu1, rss = proc_cpu_rss(ingest.proc.pid)
        received = _metric_received(ingest)
        time.sleep(2.0 if alarms else 0.2)  # late alarm events and notifications
    finally:
        publisher.wait(timeout=ctx.sizes.latency_s + 30)
        client.disconnect()
        client.loop_stop()
        events.close()
        store.close()
        ingest.stop()
        ctx.started.remove(ingest)
        if sink is not None:
            sink.close()
    stored = [(v - p) * 1000 for _, _, p, v in probes if v is not None]
    out: dict[str, Any] = {
        "chairs": chairs, "backend": backend, "probes": len(probes),
        "stored_visible_ms": percentiles(stored), "not_visible": sum(1 for *_, v in probes if v is None),
        "ingest_cpu_s_per_1000": round((cpu1 - cpu0) / max(1.0, chairs * window) * 1000, 3),
        "ingest_cpu_percent": round((cpu1 - cpu0) / window * 100, 1),
        "ingest_rss_mib": round(rss, 1), "readings_received_total": received, "alarms": alarms,
    }
    if alarms:
        first_event = _first_times([(w, t) for w, t in events.times if _is_sys_raise(t)], [c for c, *_ in probes])
        out["alarm_event_ms"] = percentiles([(first_event[c] - p) * 1000 for c, _, p, _ in probes if c in first_event])
        out["alarm_events_missing"] = sum(1 for c, *_ in probes if c not in first_event)
        out["alarm_event_messages"] = len(events.times)
        assert sink is not None
        first_note = _first_times(sink.received, [c for c, *_ in probes])
        out["notification_ms"] = percentiles([(first_note[c] - p) * 1000 for c, _, p, _ in probes if c in first_note])
        out["notifications_missing"] = sum(1 for c, *_ in probes if c not in first_note)
    return out


def _is_sys_raise(text: str) -> bool:
    """Return whether an alarm event message is the raise of a systolic alarm."""
    try:
        obj = json.loads(text)
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("event") == "raised" and obj.get("vital") == "sys"


def _first_times(arrivals: list[tuple[float, str]], chairs: list[str]) -> dict[str, float]:
    """Return, for each probe chair, when the first arrival mentioning it came."""
    wanted = set(chairs)
    first: dict[str, float] = {}
    for when, text in arrivals:
        for chair in wanted - first.keys():
            if chair in text:
                first[chair] = when
    return first


def _metric_received(ingest: Any) -> float:
    from benchmarks.harness import metric

    try:
        return metric(ingest, "ingest_readings_received")
    except OSError:
        return -1.0


def run(ctx: Context) -> dict:
    """Run the latency rounds: clinic load and 2,000 chairs, per backend."""
    out: dict[str, Any] = {}
    for chairs in (ctx.sizes.clinic_chairs, ctx.sizes.big_chairs):
        for backend in ("influxdb", "sqlite"):
            key = f"{backend}_{chairs}"
            try:
                out[key] = measure(ctx, backend, chairs)
            except Exception as exc:
                out[key] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
    return out
