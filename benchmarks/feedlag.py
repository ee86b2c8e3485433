"""``python -m benchmarks.feedlag [--chairs 2000] [--seconds 10]``: how far behind the dashboard's live feed runs.

No browser: a dashboard served in this process takes the paced 1 Hz load of ``--chairs`` chairs (ts = the
publish time) from a real mosquitto; for every reading its feed applies, the lag is the wall clock minus the
reading's ts. Also printed: the feed's messages per second and this process's CPU share. When the lag is seconds,
no way of getting tiles to the browser can show a value sooner: the value has not reached the dashboard yet
(benchmarks/findings.md, publish -> visible at 2,000 chairs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Context, Sizes, percentiles, proc_cpu_rss
from benchmarks.load import start_paced
from tests.servers import free_port


def measure(ctx: Context, chairs: int, seconds: float) -> dict[str, Any]:
    """Serve a dashboard under the paced load and return its feed's lag percentiles, rate and CPU share."""
    from dashboard.server import serve
    from vitals.settings import FixedSettings

    assert ctx.mosquitto is not None
    site = ctx.unique("lag")
    running = serve(FixedSettings(mqtt_url=ctx.mosquitto.url, store_url=None, dashboard_port=free_port(), site=site,
                                  dashboard_no_login=True, data_dir=ctx.workdir))
    lags: list[float] = []
    state = running.services.state
    apply = state.apply_payload

    def timed(site: str, chair: str, payload: bytes, arrived_ms: int | None = None) -> int:
        taken = apply(site, chair, payload, arrived_ms)
        lags.append(time.time() * 1000 - json.loads(payload)["ts"])
        return taken

    assert running.services.feed is not None
    running.services.feed._handlers["vitals"] = timed
    publisher = start_paced(ctx.mosquitto.url, site, chairs, seconds + 8)
    try:
        time.sleep(5)  # the load reaches its steady state
        cpu0, m0, t0 = proc_cpu_rss(os.getpid())[0], state.messages, time.time()
        lags.clear()
        time.sleep(seconds)
        cpu1, m1, t1 = proc_cpu_rss(os.getpid())[0], state.messages, time.time()
        seen = list(lags)
    finally:
        publisher.kill()
        publisher.wait()
        running.stop()
    return {"chairs": chairs, "messages_per_s": round((m1 - m0) / (t1 - t0)),
            "cpu_percent": round((cpu1 - cpu0) / (t1 - t0) * 100), "lag_ms": percentiles(seen),
            "load_average": os.getloadavg()[0]}


def main(argv: list[str] | None = None) -> int:
    """Parse flags, measure, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feedlag", description=__doc__)
    parser.add_argument("--chairs", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    ctx = Context(Path(tempfile.mkdtemp(prefix="infusion-feedlag-")), Sizes(), False)
    ctx.start_servers()
    try:
        print(json.dumps(measure(ctx, args.chairs, args.seconds)))
    finally:
        ctx.stop_servers()
    return 0


if __name__ == "__main__":
    sys.exit(main())
