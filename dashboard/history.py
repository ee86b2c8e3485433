"""Data access for history: trends, sessions, alarm history, audit and CSV export, read from the store.

Every call either answers or raises HistoryUnavailable quickly: while the store is down (a background check
pings it every few seconds) pages say "history unavailable" instead of waiting on timeouts, and the live
view, which never touches the store, carries on.
"""

from __future__ import annotations

import csv
import io
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from dashboard.live import LiveState, now_ms
from dashboard.state import SPARK_BUCKET_MS, SPARK_WINDOW_MS
from vitals.reading import VITALS, Reading, format_ts
from vitals.records import AlarmEvent, AuditRecord, Session
from vitals.settings import Settings
from vitals.store import Series, Store, open_store_from, redact_url

log = logging.getLogger("dashboard.history")
T = TypeVar("T")

# How often the background thread checks the store; also how soon history comes back after an outage.
PING_INTERVAL_S = 5.0
# At start-up, chairs heard from in this window are shown (greyed, with their age) before MQTT says more.
SEED_WINDOW_MS = 12 * 3600_000


class HistoryUnavailable(Exception):
    """The store does not answer; history cannot be shown now."""


class History:
    """Store access for the dashboard, with availability tracked in the LiveState."""

    def __init__(self, settings: Settings, state: LiveState, *,
                 opener: Callable[[Settings], Store] = open_store_from, ping_interval_s: float = PING_INTERVAL_S) -> None:
        self.settings = settings
        self.store_url = store_url = settings.store_url
        self.state = state
        self.site = settings.site
        self._opener = opener
        self._store: Store | None = None
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue()
        self._pending: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seeded = False
        self.ping_interval_s = ping_interval_s
        if store_url is None:
            state.set_store(False, "no store configured")

    def _get_store(self) -> Store:
        with self._lock:
            if self._store is None:
                if self.store_url is None:
                    raise HistoryUnavailable("no store configured")
                self._store = self._opener(self.settings)
            return self._store

    def _call(self, fn: Callable[[Store], T], *, force: bool = False) -> T:
        if not force and not self.state.store_available:
            raise HistoryUnavailable(self.state.store_reason or "store unavailable")
        try:
            return fn(self._get_store())
        except HistoryUnavailable:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            self.state.set_store(False, reason)
            log.warning("store unavailable: %s", reason)
            raise HistoryUnavailable(reason) from None

    # --- background: availability, seeding, sparkline backfill ---

    def start(self) -> None:
        """Start the background thread that checks the store and backfills sparklines."""
        if self.store_url is None:
            return
        self.state.on_new_chair = self.request_backfill
        self._thread = threading.Thread(target=self._run, name="dashboard-history", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background thread and close the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            if self._store is not None:
                try:
                    self._store.close()
                except Exception:
                    log.debug("store close failed", exc_info=True)
                self._store = None

    def request_backfill(self, site: str, chair: str) -> None:
        """Ask for a chair's last 15 minutes to be loaded into its sparkline."""
        if (site, chair) not in self._pending:
            self._pending.add((site, chair))
            self._queue.put((site, chair))

    def check(self) -> bool:
        """Ping the store now and record the answer."""
        try:
            ok = self._call(lambda s: s.ping(), force=True)
        except HistoryUnavailable:
            return False
        if ok:
            if not self.state.store_available:
                log.info("store %s answers", redact_url(self.store_url or ""))
            self.state.set_store(True)
        else:
            self.state.set_store(False, "store does not answer")
        return bool(ok)

    def seed(self) -> None:
        """Show chairs heard from recently, with their stored latest values, before MQTT says more."""
        latest = self._call(lambda s: s.latest(self.site, since_ms=now_ms() - SEED_WINDOW_MS))
        for item in latest:
            self.state.seed(item.site, item.chair, item.values)
        self._seeded = True

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.check():
                try:
                    if not self._seeded:
                        self.seed()
                    self._drain_backfill()
                except HistoryUnavailable:
                    pass
            self._stop.wait(self.ping_interval_s if not self.state.store_available else 0.5)

    def _drain_backfill(self) -> None:
        while not self._stop.is_set():
            try:
                site, chair = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                self.state.backfill(site, chair, self.spark_points(site, chair))
            except HistoryUnavailable:
                self._queue.put((site, chair))  # retry when the store is back
                raise

    def spark_points(self, site: str, chair: str) -> list[tuple[int, float | None, float | None]]:
        """Return a chair's stored HR and SpO2 of the last 15 minutes in sparkline buckets."""
        end = now_ms()
        series = self.series(site, chair, end - SPARK_WINDOW_MS, end, max_points=SPARK_WINDOW_MS // SPARK_BUCKET_MS)
        hr = series.mean.get("hr", [])
        spo2 = series.mean.get("spo2", [])
        return [(t, hr[i] if i < len(hr) else None, spo2[i] if i < len(spo2) else None)
                for i, t in enumerate(series.times)]

    # --- reads for the pages ---

    def series(self, site: str, chair: str, start_ms: int, end_ms: int, max_points: int = 1500) -> Series:
        """Return a chair's downsampled vitals over a range."""
        return self._call(lambda s: s.series(site, chair, start_ms, end_ms, max_points))

    def readings(self, site: str, chair: str, start_ms: int, end_ms: int) -> list[Reading]:
        """Return a chair's raw readings over a range."""
        return self._call(lambda s: s.readings(site, chair, start_ms, end_ms))

    def sessions(self, site: str, chair: str, start_ms: int | None = None, end_ms: int | None = None) -> list[Session]:
        """Return a chair's sessions that started in a range."""
        return self._call(lambda s: s.sessions(site, chair, start_ms, end_ms))

    def alarm_events(self, site: str, chair: str | None, start_ms: int | None = None,
                     end_ms: int | None = None) -> list[AlarmEvent]:
        """Return alarm events of a chair (or a site) in a range."""
        return self._call(lambda s: s.alarm_events(site, chair, start_ms, end_ms))

    def audit(self, site: str | None, start_ms: int | None = None, end_ms: int | None = None) -> list[AuditRecord]:
        """Return audit records of a site in a range."""
        return self._call(lambda s: s.audit(site, start_ms, end_ms))

    def with_store(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn`` on the store (raises HistoryUnavailable while it is down), e.g. to build a session report."""
        return self._call(fn)

    def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Write audit records (raises HistoryUnavailable when the store is down)."""
        self._call(lambda s: s.write_audit(records), force=True)


def readings_csv(readings: Iterable[Reading]) -> str:
    """Return readings as CSV text: time (RFC 3339 UTC), epoch ms, seq and every vital."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", "ts_ms", "site", "chair", "seq", *VITALS])
    for r in readings:
        row: list[Any] = [format_ts(r.ts_ms), r.ts_ms, r.site, r.chair, "" if r.seq is None else r.seq]
        row += ["" if getattr(r, v) is None else f"{getattr(r, v):g}" for v in VITALS]
        writer.writerow(row)
    return out.getvalue()
