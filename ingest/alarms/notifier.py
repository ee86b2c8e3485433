"""Staff notifications through apprise: off the ingest threads, retried with backoff, never silent.

``submit`` only puts a job on a queue and returns. Worker threads deliver each (notice, URL) pair on its own,
so one slow or broken target neither delays nor duplicates the others. A failed attempt is retried after
``retry_backoff_s``, doubling, up to ``retries`` attempts; then ``on_failed`` is called (the service raises the
``notify_failed`` technical alarm). A delivery calls ``on_delivered``.

Who is told (settings ``[notify]``): a raise or upgrade goes to ``urls`` (low priority only with
``notify_low``); an escalation goes to ``escalation_urls``; ``notify_failed`` goes to both lists. A message
names site, chair, vital, value, limit, priority, time, session elapsed time and the pseudonymous
``patient_ref``, and nothing else about the patient.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import apprise

from vitals.reading import LABELS, UNITS, format_ts
from vitals.records import AlarmEvent
from vitals.settings import NotifySettings

from .engine import TECH_TEXT

log = logging.getLogger("ingest.notify")

# Parallel deliveries: enough that one target hanging until its timeout leaves the others flowing.
WORKERS = 4
# One delivery attempt may take at most this long (apprise's own per-service timeouts also apply).
ATTEMPT_TIMEOUT_S = 15.0
NOTIFY_TYPE = {"high": apprise.NotifyType.FAILURE, "medium": apprise.NotifyType.WARNING, "low": apprise.NotifyType.INFO}


@dataclass(frozen=True, slots=True)
class Notice:
    """An alarm event with the context a message needs (pseudonymous only)."""

    event: AlarmEvent
    session_elapsed_s: float | None = None
    patient_ref: str | None = None


@dataclass(slots=True)
class _Job:
    notice: Notice
    url: str
    attempt: int = 0


def redact(url: str) -> str:
    """Return scheme and host of an apprise URL: its path and query often carry tokens, so log only those."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}/..."


def _value(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:g} {unit}".strip()


def message(notice: Notice) -> tuple[str, str]:
    """Return (title, body) of a notification; only ids, values and the pseudonymous reference."""
    e = notice.event
    label = LABELS.get(e.vital) or TECH_TEXT.get(e.vital, e.vital)
    unit = UNITS.get(e.vital, "")
    verb = {"raised": "ALARM", "upgraded": "ALARM RAISED TO", "escalated": "UNACKNOWLEDGED"}.get(e.event, e.event.upper())
    title = f"{verb} {e.priority.upper()}: {e.site} / chair {e.chair}: {label}"
    lines = [
        f"{e.priority.upper()} priority {e.kind} alarm {e.event}",
        f"Site: {e.site}",
        f"Chair: {e.chair}",
        f"Vital: {label}",
        f"Value: {_value(e.value, unit)}",
        f"Limit: {_value(e.limit, unit)}",
    ]
    if e.text:
        lines.append(f"Condition: {e.text}")
    lines.append(f"Time: {format_ts(e.ts)}")
    if notice.session_elapsed_s is not None:
        lines.append(f"Session elapsed: {int(notice.session_elapsed_s // 60)} min {int(notice.session_elapsed_s % 60)} s")
    if notice.patient_ref:
        lines.append(f"Patient ref: {notice.patient_ref}")
    lines.append(f"Alarm id: {e.alarm_id}")
    if e.event == "escalated":
        lines.append("Not acknowledged in time: please attend or acknowledge at the station.")
    return title, "\n".join(lines)


class Notifier:
    """Deliver notices to apprise URLs from worker threads, with retries and a failure callback."""

    def __init__(self, settings: NotifySettings, *, on_failed: Callable[[AlarmEvent], None],
                 on_delivered: Callable[[AlarmEvent], None] | None = None, workers: int = WORKERS) -> None:
        self.settings = settings
        self._on_failed = on_failed
        self._on_delivered = on_delivered
        self._heap: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._run, name=f"notify-{i}", daemon=True) for i in range(workers)]
        self._busy = 0
        self.delivered = 0
        self.failed = 0
        self.attempts_failed = 0

    # -- public ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Check the URLs (logging any apprise does not understand) and start the workers."""
        for url in {*self.settings.urls, *self.settings.escalation_urls}:
            if not apprise.Apprise().add(url):
                log.error("notification URL %s is not understood by apprise: deliveries to it will fail", redact(url))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the workers, waiting up to ``timeout`` for deliveries that are due now."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._busy or (self._heap and self._heap[0][0] <= time.monotonic())) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            self._stopping = True
            left = len(self._heap)
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.1, deadline - time.monotonic()))
        if left:
            log.error("stopping with %d notifications not delivered", left)

    def targets(self, event: AlarmEvent) -> list[str]:
        """Return the URLs an event goes to (none for events that notify no one)."""
        if event.event == "escalated":
            return list(self.settings.escalation_urls)
        if event.event not in ("raised", "upgraded"):
            return []
        if event.vital == "notify_failed":
            return list(dict.fromkeys([*self.settings.urls, *self.settings.escalation_urls]))
        if event.priority == "low" and not self.settings.notify_low:
            return []
        return list(self.settings.urls)

    def submit(self, notice: Notice) -> None:
        """Queue a notice for every URL it goes to; never blocks."""
        urls = self.targets(notice.event)
        if not urls:
            return
        now = time.monotonic()
        with self._cond:
            for url in urls:
                heapq.heappush(self._heap, (now, next(self._seq), _Job(notice, url)))
            self._cond.notify(len(urls))

    @property
    def pending(self) -> int:
        """Return how many deliveries wait or run."""
        with self._cond:
            return len(self._heap) + self._busy

    # -- workers --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        _, _, job = heapq.heappop(self._heap)
                        self._busy += 1
                        break
                    wait = (self._heap[0][0] - time.monotonic()) if self._heap else None
                    self._cond.wait(wait)
            try:
                self._attempt(job)
            except Exception:  # a bug in one delivery must not stop the worker, nor go unseen
                log.exception("notification delivery crashed")
                self._give_up(job)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        job.attempt += 1
        title, body = message(job.notice)
        sender = apprise.Apprise()
        ok = False
        if sender.add(job.url):
            ok = bool(sender.notify(body=body, title=title, notify_type=NOTIFY_TYPE[job.notice.event.priority],
                                    timeout=ATTEMPT_TIMEOUT_S))
        if ok:
            self.delivered += 1
            if self._on_delivered is not None:
                self._on_delivered(job.notice.event)
            return
        self.attempts_failed += 1
        if job.attempt >= max(1, self.settings.retries):
            self._give_up(job)
            return
        delay = self.settings.retry_backoff_s * 2 ** (job.attempt - 1)
        log.warning("notification %s to %s failed (attempt %d of %d); retrying in %.1f s", job.notice.event.alarm_id,
                    redact(job.url), job.attempt, self.settings.retries, delay)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), job))
            self._cond.notify()

    def _give_up(self, job: _Job) -> None:
        self.failed += 1
        log.error("notification %s to %s failed after %d attempts", job.notice.event.alarm_id, redact(job.url), job.attempt)
        self._on_failed(job.notice.event)
