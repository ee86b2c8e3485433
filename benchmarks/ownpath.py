"""Own code per message: the ingest's handling of one-reading messages, in process, without paho or a broker.

``python -m benchmarks.ownpath [--messages N] [--rounds R] [TREE ...]`` runs the measurement in a subprocess
for each source tree given (default: this one), alternating R rounds, and prints CPU microseconds per
message: what the ingest's own code costs (topic, budget, validation, alarm engine, batching, acknowledgement
bookkeeping, the checkpoint's serialisation) with the store's write time subtracted. CPU time of this process
rather than wall time, so other work on a shared machine disturbs it less; alternating trees in one session
makes old against new a fair comparison (``git worktree add /tmp/old <commit>`` gives an old tree).

The messages are 20 per chair of 2,000 chairs (the same payloads as the throughput backlog), after one
untimed message per chair (creating a chair's alarm state is a one-off, not a per-message cost).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHAIRS = 2000


def measure(n: int) -> dict[str, Any]:
    """Run ``n`` messages through the ingest of the tree on sys.path; return CPU microseconds per message."""
    import paho.mqtt.client as paho

    from benchmarks.load import payload
    from ingest.service import IngestService
    from vitals.settings import FixedSettings

    tmp = Path(tempfile.mkdtemp(prefix="ownpath-"))
    settings = FixedSettings(store_url=f"sqlite:///{tmp}/v.db", data_dir=tmp / "data", http_port=0, site="s1")
    svc = IngestService(settings)
    svc.client.ack = lambda mid, qos: None  # type: ignore[method-assign]  # not connected: nothing to send
    start = int(time.time() * 1000) - 3_600_000

    def message(k: int, seq: int) -> paho.MQTTMessage:
        msg = paho.MQTTMessage(mid=k % 65535 + 1, topic=f"clinic/s1/chair/c{k % CHAIRS:04d}/vitals".encode())
        msg.payload, msg.qos = payload(start + seq * 1000, seq, k % CHAIRS), 1
        return msg

    def feed(batch: list[paho.MQTTMessage]) -> None:
        for m in batch:  # paho's callback (now it only queues)
            svc._on_message(svc.client, None, m)
        if hasattr(svc, "_process"):  # then the processing thread's turns, in chunks as it takes them
            inbox = svc._inbox
            while not inbox.empty():
                svc._process([inbox.get_nowait() for _ in range(min(500, inbox.qsize()))])

    def drain() -> list[Any]:
        items = []
        while not svc.writer._queue.empty():
            items.append(svc.writer._queue.get_nowait())
        return items

    feed([message(k, 0) for k in range(CHAIRS)])
    svc.writer._persist(drain())
    svc.writer._flush_awaiting(force=True)
    msgs = [message(k, 1 + k // CHAIRS) for k in range(n)]
    store_s = 0.0
    write = svc.store.write_readings

    def timed(readings: list[Any]) -> None:
        nonlocal store_s
        t = time.process_time()
        write(readings)
        store_s += time.process_time() - t

    svc.store.write_readings = timed  # type: ignore[method-assign]
    t0 = time.process_time()
    feed(msgs)
    t1 = time.process_time()
    items = drain()
    per_write = max(1, len(items) * svc.settings.batch_max_readings // max(1, n))  # batches as the writer makes them
    for i in range(0, len(items), per_write):
        svc.writer._persist(items[i:i + per_write])
        svc.writer._flush_awaiting(force=True)
    t2 = time.process_time()
    svc.spool.close()
    svc.store.close()
    return {"messages": n, "receive_us": round((t1 - t0) / n * 1e6, 2), "writer_us": round((t2 - t1) / n * 1e6, 2),
            "store_us": round(store_s / n * 1e6, 2), "own_us": round((t2 - t0 - store_s) / n * 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    """Alternate the measurement over the given trees; print each round and the median per tree."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ownpath", description=__doc__)
    parser.add_argument("trees", nargs="*", type=Path, help="source trees to compare (default: this one)")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.messages)), flush=True)
        return 0
    trees = args.trees or [REPO]
    seen: dict[str, list[float]] = {str(t): [] for t in trees}
    for _ in range(args.rounds):
        for tree in trees:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            # This file runs against the other tree's packages (an old tree need not have it).
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "--messages",
                                   str(args.messages)], cwd=tree, env=env, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            seen[str(tree)].append(result["own_us"])
            print(json.dumps({"tree": str(tree), **result}), flush=True)
    for tree, values in seen.items():
        print(json.dumps({"tree": tree, "own_us_median": sorted(values)[len(values) // 2]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
