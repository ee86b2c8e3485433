"""Prometheus metrics and the health endpoint of the ingest (``/metrics``, ``/healthz``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The ingest's counters and gauges, in a registry of its own (several services can share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("ingest_messages_received", "MQTT messages received", ["kind"], registry=r)
        self.readings_received = Counter("ingest_readings_received", "valid readings received", registry=r)
        self.readings_stored = Counter("ingest_readings_stored", "readings written to the store", registry=r)
        self.refusals = Counter("ingest_refusals", "refusals by scope and code", ["scope", "code"], registry=r)
        self.store_rejected = Counter(
            "ingest_store_rejected", "records the store refused for good (e.g. older than its retention)", registry=r)
        self.spooled = Counter("ingest_readings_spooled", "readings written to the local spool", registry=r)
        self.spool_items = Gauge("ingest_spool_items", "records waiting in the local spool", registry=r)
        self.spool_bytes = Gauge("ingest_spool_bytes", "bytes in the local spool", registry=r)
        self.backpressure = Gauge("ingest_backpressure", "1 while the spool is full and acks are held back", registry=r)
        self.store_up = Gauge("ingest_store_up", "1 when the last store write succeeded", registry=r)
        self.mqtt_connected = Gauge("ingest_mqtt_connected", "1 while connected to the broker", registry=r)
        self.pending = Gauge("ingest_pending_messages", "messages received and not yet acknowledged", registry=r)
        self.write_latency = Histogram(
            "ingest_store_write_seconds", "duration of one store batch write", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.batch_size = Histogram(
            "ingest_batch_readings", "readings per store write", registry=r,
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
        )
        self.store_lag = Histogram(
            "ingest_receive_to_store_seconds", "time from receipt to durable write (store or spool)", registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def render(self) -> bytes:
        """Return the metrics in the Prometheus text format."""
        return generate_latest(self.registry)


class HealthServer:
    """A small HTTP server: ``/metrics`` for Prometheus, ``/healthz`` JSON (503 while not healthy)."""

    def __init__(self, host: str, port: int, metrics: Metrics, health: Callable[[], dict[str, Any]]) -> None:
        metrics_ref, health_ref = metrics, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, ctype, status = metrics_ref.render(), CONTENT_TYPE_LATEST, 200
                elif self.path in ("/healthz", "/health"):
                    state = health_ref()
                    body = json.dumps(state).encode()
                    ctype, status = "application/json", 200 if state.get("healthy") else 503
                else:
                    body, ctype, status = b"not found\n", "text/plain", 404
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="ingest-http", daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
