"""``infusion-monitor record``: capture vitals, session and status topics to JSON Lines (see recording.py)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.subscribeoptions import SubscribeOptions

from simulator.recording import to_line
from simulator.scenario import parse_duration
from vitals.mqtt import connect, make_client, redact, wait_connected
from vitals.settings import Settings, add_settings_arguments, settings_from_args
from vitals.topics import Topics

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the record options."""
    add_settings_arguments(parser, "record")
    parser.add_argument("--out", required=True, help="JSON Lines file to write ('-' = standard output)")
    parser.add_argument("--duration", type=parse_duration, help="stop after this long, e.g. 90s, 10m (default: until Ctrl-C)")


def record(settings: Settings, out_path: str | Path, *, site: str | None = None, stop: threading.Event,
           ready: threading.Event | None = None) -> int:
    """Record until ``stop`` is set; set ``ready`` once subscribed; return the number of messages written."""
    topics = Topics(settings.topic_prefix)
    filters = [topics.chair_filter(kind, site) for kind in ("vitals", "session", "status")]
    out = sys.stdout if str(out_path) == "-" else open(out_path, "w", encoding="utf-8")  # noqa: SIM115
    count = 0
    lock = threading.Lock()

    def on_message(client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        nonlocal count
        with lock:
            out.write(to_line(msg.topic, round(time.time() * 1000), msg.payload, msg.retain, msg.qos) + "\n")
            count += 1

    def on_connect(client, userdata, flags, reason_code, properties=None) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            return
        if client.protocol == paho.MQTTv5:  # keep the publisher's retain flag (v3.1.1 marks only stale state)
            client.subscribe([(f, SubscribeOptions(qos=1, retainAsPublished=True)) for f in filters])
        else:
            client.subscribe([(f, 1) for f in filters])

    def on_subscribe(client, userdata, mid, reason_codes, properties=None) -> None:  # type: ignore[no-untyped-def]
        if ready is not None:
            ready.set()

    client_id = f"infusion-record-{os.getpid()}-{id(out):x}"[:64]
    client, target = make_client(settings.mqtt_url, client_id, protocol=settings.mqtt_protocol, ca_file=settings.mqtt_ca_file,
                                 cert_file=settings.mqtt_cert_file, key_file=settings.mqtt_key_file)
    client.on_message, client.on_connect, client.on_subscribe = on_message, on_connect, on_subscribe
    connect(client, target)
    client.loop_start()
    try:
        if not wait_connected(client, 15):
            raise ConnectionError(f"could not connect to the MQTT broker at {redact(settings.mqtt_url)}")
        log.info("recording %s to %s", ", ".join(filters), out_path)
        while not stop.wait(0.5):
            with lock:
                out.flush()
    finally:
        client.disconnect()
        client.loop_stop()
        with lock:
            out.flush()
            if out is not sys.stdout:
                out.close()
    log.info("recorded %d messages", count)
    return count


def run(args: argparse.Namespace) -> int:
    """Record until Ctrl-C, SIGTERM or --duration."""
    settings = settings_from_args(args, "record")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration:
        timer = threading.Timer(args.duration, stop.set)
        timer.daemon = True
        timer.start()
    try:
        record(settings, args.out, site=settings.site, stop=stop)
    except ConnectionError as exc:
        log.error("%s", exc)
        return 1
    return 0
