"""``infusion-monitor ingest --workers N``: N ingest processes, each taking a fixed share of the sites.

One ingest process is bound by one Python interpreter (docs/benchmarks.md); a second one doubles what a
machine with two cores can take. The split is by site, never by chair reading, so every reading of a chair
reaches the one process that keeps that chair's alarm state (delays, escalation, acknowledgements).

How sites are known and split: they are configured (``sites = "a,b,c"``), and site number k of that list
(from 0) goes to worker ``k mod N``. Chosen over a hash of the site id because a clinic network has a few
sites, where a hash often puts two of them on one worker and none on the other; and over discovering sites
from the broker, because a site that appears later would have no worker. Append new sites at the end: no
other site moves. Each worker is an ordinary ingest with ``--sites`` (its share), its own persistent MQTT
session (client id ``<id>-w<i>of<N>``), its own data directory (``<data_dir>/workers-<N>/<i>``: spool and
alarm state) and its own health and metrics port (``http_port + i``). Its saved state records its site list
(ingest/origin.py), so a change that moves a site between workers makes that worker refuse to start on
state that is not its own, until started with ``--fresh-state`` (docs/operations.md, "Scale-out").

The parent only supervises: it restarts a worker that dies (its persistent session makes the broker keep
what it has not acknowledged), and passes SIGTERM / Ctrl-C on, so every worker flushes and acknowledges.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from vitals.settings import ROLE_SETTINGS, Settings, flag_name

log = logging.getLogger("ingest.workers")

RESTART_DELAY_S = 1.0


def split_sites(sites: list[str], workers: int) -> list[list[str]]:
    """Return each worker's sites: site k of the configured order goes to worker ``k mod workers``."""
    return [sites[i::workers] for i in range(workers)]


def worker_arguments(args: argparse.Namespace, settings: Settings, index: int, sites: list[str]) -> list[str]:
    """Return the ``ingest`` arguments of worker ``index``: the flags given to the parent, then its own."""
    out: list[str] = []
    if getattr(args, "config", None):
        out += ["--config", str(args.config)]
    for name in ROLE_SETTINGS["ingest"]:
        flag, value = flag_name(name), getattr(args, name, None)
        if flag is None or value is None or name in ("sites", "workers", "mqtt_client_id", "data_dir", "http_port"):
            continue
        out += [flag] if value is True else [flag, str(value)]
    if getattr(args, "no_alarms", False):
        out.append("--no-alarms")
    n = settings.workers
    base_id = settings.mqtt_client_id or "infusion-ingest"
    out += ["--workers", "1", "--sites", ",".join(sites), "--client-id", f"{base_id}-w{index}of{n}",
            "--data-dir", str(Path(settings.data_dir) / f"workers-{n}" / str(index)),
            "--http-port", str(settings.http_port + index if settings.http_port else 0)]
    return out


def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    """Start the workers, restart any that dies, stop them all on SIGTERM / SIGINT; return 0 once they stopped."""
    shares = split_sites(settings.site_list() or [], settings.workers)
    commands = []
    for index, sites in enumerate(shares):
        if not sites:
            log.warning("worker %d of %d has no site (only %d sites configured); not started",
                        index, settings.workers, len(settings.site_list() or []))
            continue
        commands.append((index, sites, [sys.executable, "-m", "infusion_monitor", "--log-level",
                                        logging.getLevelName(logging.getLogger().level), "ingest",
                                        *worker_arguments(args, settings, index, sites)]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    procs: dict[int, subprocess.Popen] = {}
    for index, sites, command in commands:
        procs[index] = subprocess.Popen(command, env=os.environ.copy())
        log.info("worker %d (pid %d) takes sites %s", index, procs[index].pid, ",".join(sites))
    while not stop.wait(0.5):
        for index, sites, command in commands:
            code = procs[index].poll()
            if code is None:
                continue
            if code == 2:  # refused to start (state of another origin): restarting would only repeat it
                log.error("worker %d refused to start (exit 2); stopping the others", index)
                stop.set()
                break
            log.error("worker %d (sites %s) exited with %s; restarting in %.0f s", index, ",".join(sites), code,
                      RESTART_DELAY_S)
            time.sleep(RESTART_DELAY_S)
            procs[index] = subprocess.Popen(command, env=os.environ.copy())
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs.values():
        try:
            codes.append(proc.wait(60))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    return 2 if 2 in codes else 0
