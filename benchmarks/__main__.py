"""``python -m benchmarks [--quick] [--only NAME ...] [--profile] [--no-doc]``: run the suite against real servers."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import browser, latency, queries, replay, report, scaleout, throughput
from benchmarks.harness import Context, Sizes, machine

NAMES = ("throughput", "latency", "queries", "scaleout", "dashboard_browser", "replay")


def run(quick: bool = False, only: list[str] | None = None, results_path: Path | None = None,
        doc: bool = True, profile: bool = False) -> dict[str, Any]:
    """Run the selected benchmarks; write the JSON (and docs/benchmarks.md) and return the data."""
    selected = [n for n in NAMES if not only or n in only]
    workdir = Path(tempfile.mkdtemp(prefix="infusion-bench-"))
    ctx = Context(workdir, Sizes.quick() if quick else Sizes(), quick, profile)
    started = time.monotonic()
    results: dict[str, Any] = {}
    try:
        ctx.start_servers()
        for name in selected:
            t0 = time.monotonic()
            print(f"-- {name} ...", file=sys.stderr, flush=True)
            try:
                if name == "throughput":
                    results[name] = throughput.run(ctx)
                elif name == "latency":
                    results[name] = latency.run(ctx)
                elif name == "queries":
                    results[name] = queries.run(ctx)
                elif name == "scaleout":
                    thr = results.get("throughput") or {}
                    results[name] = scaleout.run(ctx, thr.get("influxdb", {}).get("ours"),
                                                 (thr.get("broker_limit") or {}).get("rate"))
                elif name == "dashboard_browser":
                    results[name] = browser.run(ctx)
                elif name == "replay":
                    results[name] = replay.run(ctx)
            except Exception as exc:  # one broken benchmark must not lose the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[-800:]}
            print(f"   {name} took {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        ctx.stop_servers()
        shutil.rmtree(workdir, ignore_errors=True)
    data = {
        "machine": machine(), "quick": quick, "profile": profile, "only": only or [],
        "duration_s": round(time.monotonic() - started, 1),
        "sizes": dataclasses.asdict(ctx.sizes),
        "results": results,
    }
    path = results_path or report.RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    if doc:
        report.write(data)
    return data


def print_table(data: dict) -> None:
    """Print the headline figures."""
    rows = report.summary(data["results"])
    width = max(len(r["what"]) for r in rows)
    for r in rows:
        print(f"{r['what']:<{width}}  {r['value']}  {r['target']}  {report.mark(r['met'])}".rstrip())


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (about 30 s): checks the suite runs")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only this benchmark (repeatable)")
    parser.add_argument("--output", type=Path, help=f"results JSON (default {report.RESULTS})")
    parser.add_argument("--profile", action="store_true", help="also drain once more under py-spy and keep the profile")
    parser.add_argument("--no-doc", action="store_true", help="do not regenerate docs/benchmarks.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = run(args.quick, args.only, args.output, doc=not args.no_doc, profile=args.profile)
    print_table(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
