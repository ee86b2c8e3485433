"""The side experiments behind experiments.json (benchmarks/findings.md, "paho's receive path"); run from the root.

    python benchmarks/results/paho-2026-12-02/experiments.py window TREE 20,1000,10000 [sqlite|influxdb] [5|3.1.1] [PER_CHAIR]
    python benchmarks/results/paho-2026-12-02/experiments.py ablation TREE,TREE,... [sqlite|influxdb] [ROUNDS]
    python benchmarks/results/paho-2026-12-02/experiments.py bare
    python benchmarks/results/paho-2026-12-02/experiments.py gil-profile TREE sqlite OUT.txt

TREE: a checkout (``git worktree add --detach``) whose ingest is measured: the ingest subprocess runs with that
tree on PYTHONPATH; brokers, stores and references come from this one. Rates: readings/s of one ingest draining
60,000 one-reading QoS 1 messages from 2,000 chairs (``benchmarks.throughput.ours``), with its CPU s per 1,000.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from benchmarks import harness, profile, throughput  # noqa: E402
from benchmarks.harness import Context, Sizes  # noqa: E402
from tests.servers import Influxd, Mosquitto  # noqa: E402


def _context(max_inflight: int = 1000, profiled: bool = False, per_chair: int = 30) -> Context:
    workdir = Path(tempfile.mkdtemp(prefix="paho-exp-"))
    ctx = Context(workdir, Sizes(backlog_per_chair=per_chair), False, profiled)
    ctx.mosquitto = Mosquitto(workdir / "mosquitto", max_inflight=max_inflight)
    ctx.mosquitto.start()
    ctx.influxd = Influxd(workdir / "influxd")
    ctx.influxd.start()
    return ctx


def _ours_v311(ctx: Context, backend: str) -> dict:
    """As ``throughput.ours``, with the ingest on MQTT 3.1.1, whose in-flight window is the broker's setting."""
    import paho.mqtt.client as paho

    from benchmarks.load import publish_backlog

    assert ctx.mosquitto is not None
    site, cid = ctx.unique("v311"), ctx.unique("bench-ingest-")
    n = ctx.sizes.chairs * ctx.sizes.backlog_per_chair
    # The session is created by a 3.1.1 client too: mosquitto 2.0.11 keeps a taken-over session's in-flight
    # maximum, so a session made by a v5 client (Receive Maximum 65,535 by default) would keep that window.
    subscribed = threading.Event()
    maker = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cid, protocol=paho.MQTTv311, clean_session=False)
    maker.on_subscribe = lambda *_a, **_k: subscribed.set()
    maker.connect("127.0.0.1", ctx.mosquitto.port)
    maker.loop_start()
    time.sleep(0.3)
    maker.subscribe(f"clinic/{site}/chair/+/vitals", qos=1)
    if not subscribed.wait(10):
        raise TimeoutError("no SUBACK")
    maker.disconnect()
    maker.loop_stop()
    publish_backlog(ctx.mosquitto.url, site, ctx.sizes.chairs, ctx.sizes.backlog_per_chair,
                    int(time.time() * 1000) - 7_200_000, procs=ctx.sizes.publisher_procs)
    return throughput.drain_with_ingest(ctx, backend, site, n, replicas=[
        ("--site", site, "--client-id", cid, "--mqtt-protocol", "3.1.1")])


def window(tree: str, windows: str, backend: str = "sqlite", protocol: str = "5", per_chair: str = "30") -> None:
    """Our ingest and the broker-only limit under each broker ``max_inflight_messages``.

    mosquitto applies that setting to MQTT 3.1.1 clients; to a v5 client it sends up to the client's own
    Receive Maximum (the ingest asks for 65,535), so with protocol 5 the setting changes nothing.
    """
    harness.REPO = Path(tree)
    for size in (int(w) for w in windows.split(",")):
        ctx = _context(size, per_chair=int(per_chair))
        try:
            measure = _ours_v311 if protocol == "3.1.1" else throughput.ours
            ours = [measure(ctx, backend) for _ in range(2)]
            limit = throughput.broker_limit(ctx)["rate"]
            print(size, protocol, [(r["rate"], r["cpu_s_per_1000"]) for r in ours], "limit", limit, flush=True)
        finally:
            ctx.stop_servers()


def ablation(trees: str, backend: str = "sqlite", rounds: str = "2") -> None:
    """Each tree's ingest in turn on one broker and store server, alternated, then the limit, per round."""
    ctx = _context()
    try:
        for rnd in range(int(rounds)):
            for tree in trees.split(","):
                harness.REPO = Path(tree)
                result = throughput.ours(ctx, backend)
                print(rnd, tree, result["rate"], result["cpu_s_per_1000"], flush=True)
            harness.REPO = ROOT
            print(rnd, "limit", throughput.broker_limit(ctx)["rate"], flush=True)
    finally:
        ctx.stop_servers()


def bare() -> None:
    """A counting subscriber in this process: stock paho first, then FastClient (its change is process-wide)."""
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from benchmarks.load import precreate_session, publish_backlog
    from vitals.mqtt import FastClient

    ctx = _context()
    assert ctx.mosquitto is not None
    n = 2000 * 30
    try:
        for cls in (paho.Client, FastClient):
            site = f"bare{cls.__name__}"
            precreate_session(ctx.mosquitto.url, site, [f"clinic/{site}/chair/+/vitals"])
            publish_backlog(ctx.mosquitto.url, site, 2000, 30, int(time.time() * 1000) - 7_200_000, procs=2)
            seen = {"n": 0, "first": 0.0, "last": 0.0}
            done = threading.Event()

            def on_message(client, userdata, msg, seen=seen, done=done):  # type: ignore[no-untyped-def]
                seen["n"] += 1
                if seen["n"] == 1:
                    seen["first"] = time.monotonic()
                if seen["n"] >= n:
                    seen["last"] = time.monotonic()
                    done.set()

            client = cls(paho.CallbackAPIVersion.VERSION2, client_id=site, protocol=paho.MQTTv5)
            client.on_message = on_message
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
            props.ReceiveMaximum = 65535
            cpu = time.process_time()
            client.connect("127.0.0.1", ctx.mosquitto.port, clean_start=False, properties=props)
            client.loop_start()
            done.wait(120)
            client.disconnect()
            client.loop_stop()
            cpu = time.process_time() - cpu
            rate = (n - 1) / (seen["last"] - seen["first"])
            print(cls.__name__, round(rate), "messages/s", round(cpu / n * 1e6, 1), "CPU us per message", flush=True)
    finally:
        ctx.stop_servers()


def gil_profile(tree: str, backend: str, out: str) -> None:
    """py-spy --gil on the ingest while it drains (benchmarks.profile samples only the GIL holder)."""
    harness.REPO = Path(tree)
    ctx = _context(profiled=True)
    try:
        result = throughput.ours(ctx, backend, profile_out=Path(out))
        print(result["rate"], result["cpu_s_per_1000"])
        for key, rows in profile.summarize(Path(out), 40).items():
            print("==", key)
            for name, share in rows:
                print(f"  {share:6}  {name}")
    finally:
        ctx.stop_servers()


if __name__ == "__main__":
    commands = {"window": window, "ablation": ablation, "bare": bare, "gil-profile": gil_profile}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        sys.exit(2)
    commands[sys.argv[1]](*sys.argv[2:])
