"""Publish -> value on the dashboard, in a real headless Chromium (Playwright, system chromium).

A probe chair publishes heart rates 201..249 (values no load chair ever shows), each under the steady 1 Hz
load; the page records, with the browser's own clock (the same system clock), the moment its text first
contains the value. Each size is measured twice in the same run: the tiles by push (the default) and by the
one-second poll alone (``--no-push``, what the page falls back to). Over the probe window the browser's own
counters (Chrome DevTools Protocol ``Performance.getMetrics``: ScriptDuration, TaskDuration) give its script and
main-thread time per second of wall time. Skipped, with the reason, when the dashboard cannot be started or
shows no live values.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import REPO, Context, percentiles
from benchmarks.load import start_paced
from tests.servers import free_port, wait_port
from vitals.mqtt import connect, make_client, wait_connected
from vitals.topics import Topics

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
PROBE = "probe-dash"


def dashboard_flags() -> dict[str, str]:
    """Return the dashboard's flag for each of port, mqtt url, store url and site, read from its parser."""
    module = importlib.import_module("dashboard.cli")
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    flags: dict[str, str] = {}
    for action in parser._actions:
        for opt in action.option_strings:
            for key in ("port", "mqtt-url", "store-url", "site"):
                if opt == f"--{key}" or (key == "port" and opt.endswith("-port") and "http" in opt):
                    flags.setdefault(key, opt)
    return flags


def measure(ctx: Context, chairs: int, probes: int = 40, push: bool = True) -> dict[str, Any]:
    """Start the dashboard and a steady load, publish probe values, time them onto the page."""
    assert ctx.mosquitto is not None
    try:
        flags = dashboard_flags()
    except Exception as exc:
        return {"skipped": f"dashboard not available: {type(exc).__name__}: {exc}"[:300]}
    if "port" not in flags:
        return {"skipped": f"dashboard CLI has no port flag ({sorted(flags)})"}
    site = ctx.unique("dash")
    port = free_port()
    # Bound to loopback, so --no-login is allowed: the benchmark times the screen, not the sign-in.
    cmd = [sys.executable, "-m", "infusion_monitor", "dashboard", flags["port"], str(port), "--no-login"]
    if "mqtt-url" in flags:
        cmd += [flags["mqtt-url"], ctx.mosquitto.url]
    if "store-url" in flags:
        cmd += [flags["store-url"], ctx.store_url("influxdb", f"bench_{site}")]
    if "site" in flags:
        cmd += [flags["site"], site]
    if not push:
        cmd.append("--no-push")
    log = open(ctx.workdir / "dashboard.log", "ab")  # noqa: SIM115 - owned by the process
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ctx.workdir, env=env)
    log.close()
    publisher = None
    try:
        wait_port(port, timeout=30, proc=proc)
        publisher = start_paced(ctx.mosquitto.url, site, chairs, 60)
        return {"chairs": chairs, "mode": "push" if push else "poll", **_drive(ctx, site, port, probes)}
    except Exception as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"[:400]}
    finally:
        if publisher is not None:
            publisher.kill()
            publisher.wait()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _drive(ctx: Context, site: str, port: int, probes: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    assert ctx.mosquitto is not None
    topics = Topics()
    client, target = make_client(ctx.mosquitto.url)
    connect(client, target)
    client.loop_start()
    wait_connected(client, 10)
    latencies: list[float] = []
    missed = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load", timeout=60000)
            # Make the probe chair known to the page first, then time fresh values.
            client.publish(topics.vitals(site, PROBE), json.dumps({"ts": time.time_ns() // 1_000_000, "hr": 200}), qos=1)
            # Read the probe tile's HR numeral itself: at 2,000 chairs "201" is somewhere else on the page too.
            cell = f"document.querySelector('#tile-{site}--{PROBE} .num-hr .num-value')"
            # Scrolled into view, as the chair a nurse watches is: off-screen tiles are not rendered (content-visibility).
            page.wait_for_function(f"() => {{ const c = {cell}; if (c) {{ c.scrollIntoView({{block: 'center'}}); }} "
                                   "return c !== null && c.innerText.trim() === '200'; }", timeout=15000)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            before, wall0 = _metrics(cdp), time.time()
            for k in range(probes):
                value = 201 + k % 49
                script = (f"v => {{ const c = {cell}; if (c !== null && c.innerText.trim() === String(v)) "
                          "{ window.__seen = Date.now(); return true; } return false; }")
                published = time.time()
                client.publish(topics.vitals(site, PROBE), json.dumps({"ts": time.time_ns() // 1_000_000, "hr": value}), qos=1)
                try:
                    page.wait_for_function(script, arg=value, polling="raf", timeout=5000)
                    latencies.append(page.evaluate("() => window.__seen") - published * 1000)
                except Exception:
                    missed += 1
                time.sleep(0.3)
            after, wall = _metrics(cdp), time.time() - wall0
        finally:
            browser.close()
            client.disconnect()
            client.loop_stop()
    return {"probes": probes, "missed": missed, "ms": percentiles(latencies),
            "script_ms_per_s": round((after["ScriptDuration"] - before["ScriptDuration"]) * 1000 / wall, 1),
            "main_thread_ms_per_s": round((after["TaskDuration"] - before["TaskDuration"]) * 1000 / wall, 1),
            "style_layout_ms_per_s": round((after["RecalcStyleDuration"] + after["LayoutDuration"]
                                            - before["RecalcStyleDuration"] - before["LayoutDuration"]) * 1000 / wall, 1),
            "window_s": round(wall, 1)}


def _metrics(cdp: Any) -> dict[str, float]:
    """Return the page's cumulative DevTools performance counters (durations in seconds)."""
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def run(ctx: Context) -> dict[str, Any]:
    """Measure at clinic load and at 2,000 chairs, each by push and by the poll alone (before/after, one run)."""
    probes = 5 if ctx.quick else 40
    first = measure(ctx, ctx.sizes.clinic_chairs, probes)
    if "skipped" in first:
        return first
    out: dict[str, Any] = {"clinic": {"push": first, "poll": measure(ctx, ctx.sizes.clinic_chairs, probes, push=False)}}
    out["big"] = {"push": measure(ctx, ctx.sizes.big_chairs, probes),
                  "poll": measure(ctx, ctx.sizes.big_chairs, probes, push=False)}
    return out
