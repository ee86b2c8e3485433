"""The overview tiles' push channel: server-sent events from a Flask route (docs/dashboard.md, "Push").

Why server-sent events (checked in the installed packages and measured, benchmarks/findings.md): Dash 4.4.1's
websocket callbacks exist only with its FastAPI or Quart backend (``websocket_capability`` is False for Flask),
and waitress, a WSGI server, cannot hand a connection over to a WebSocket (flask-sock needs werkzeug's
development server or gunicorn). An event stream is a plain HTTP GET: it passes the login gate, the site
scope and the security headers like every request, and waitress writes each event to the socket at once
(``send_bytes`` = 1).

``GET /_push/tiles`` answers ``text/event-stream``. Each ``tiles`` event is one line of JSON::

    {"now": server ms, "noDataMs": 15000, "full": bool, "density": "...", "summary": [chairs, live, not live, alarms],
     "tiles": [tile_data, ...]}

``full`` carries every tile of the user's sites in display order (first event, a chair added or gone);
otherwise only tiles whose display changed, each as its id and the fields that changed. A tile goes out when
its chair changes (a reading, alarms, session, status), at most every ``GAP_S``; every ``TICK_S`` the tiles
not evaluated since are evaluated again (ages, values turning stale, NO DATA) and an event goes out even when
nothing changed (the page's heartbeat), after the login is checked again: an ended login gets an ``ended``
event and the stream stops. Each tile carries its server-clock deadlines (``liveUntil``, per value
``staleAt``); the page greys values and shows NO DATA on its own when they pass.

A stream holds one waitress worker thread for as long as the page is open: at most ``dashboard_threads -
RESERVED_THREADS`` streams run at once; one more is answered 503 and that page keeps its one-second poll.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from dashboard.components import density, spark_src, tile_data
from dashboard.live import Scope, in_scope, now_ms
from dashboard.pages.session import record_tile
from dashboard.services import Services
from dashboard.state import TileView

PUSH_PATH = "/_push/tiles"
RESERVED_THREADS = 4  # worker threads never taken by streams: pages, callbacks, exports, logins
GAP_S = 0.1  # changes within 100 ms travel in one event (at most 10 events a second per page)
TICK_S = 1.0  # every tile re-evaluated, the login re-checked and a heartbeat sent this often
RETRY_MS = 2000  # the browser reconnects this long after a broken stream
BUSY_RETRY_S = 30  # a page refused for want of threads polls, and tries the stream again after this


class TileStream:
    """One page's event stream: what it was sent, so that only what changed goes out."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.state = services.state
        self.sent: dict[tuple[str, str], dict[str, Any]] = {}  # chair -> its tile data as last sent
        self.evaluated: dict[tuple[str, str], float] = {}  # chair -> when its tile was last evaluated (monotonic)
        self.modes: dict[tuple[str, str], tuple[bool, bool]] = {}  # chair -> (live, with alarms), for the summary
        self.order: list[tuple[str, str]] = []
        self.scope: Scope = None
        self.several_sites = False

    def events(self) -> Iterator[str]:
        """Yield the stream's events until the dashboard stops or the login ends."""
        state = self.state
        yield f"retry: {RETRY_MS}\n\n"
        seq = state.change_seq()
        self.scope = self.services.scope()
        yield self.everything(now_ms())
        next_tick = time.monotonic() + TICK_S
        last_sent = time.monotonic()
        while not state.closed:
            seq_now, keys = state.changes_since(seq, max(0.0, next_tick - time.monotonic()))
            if state.closed:
                return
            now = time.monotonic()
            if now >= next_tick:
                seq, _ = state.changes_since(seq_now, 0)  # the tick covers every chair
                if not self.login_still_valid():
                    yield "event: ended\ndata: {}\n\n"
                    return
                self.scope = self.services.scope()
                yield self.everything(now_ms())
                next_tick, last_sent = now + TICK_S, now
                continue
            if not keys:
                continue
            if now - last_sent < GAP_S:  # let the changes of the next few ms join this event
                time.sleep(min(GAP_S - (now - last_sent), max(0.0, next_tick - now)))
                seq_now, keys = state.changes_since(seq, 0)
            seq = seq_now
            event = self.changed(keys, now_ms())
            if event is not None:
                yield event
                last_sent = time.monotonic()

    def login_still_valid(self) -> bool:
        """Return whether the stream's login still stands (expired, signed out, removed user: it does not)."""
        from flask import g

        g.pop("login", None)  # the gate caches the session per request; a stream is a long request
        return self.services.user() is not None

    def everything(self, at: int) -> str:
        """Return the tick's event: every tile when the set of chairs changed, else the tiles not evaluated for a
        tick (a chair that changed was evaluated when it did) whose display differs."""
        order = [key for key in self.state.chairs() if in_scope(key[0], self.scope)]
        full = order != self.order
        if full:
            self.order = order
            self.several_sites = len({site for site, _ in order}) > 1
            keep = set(order)
            for table in (self.sent, self.evaluated, self.modes):
                for key in [k for k in table if k not in keep]:
                    del table[key]
            due = order
        else:
            since = time.monotonic() - TICK_S * 0.9
            due = [key for key in order if self.evaluated.get(key, 0.0) <= since]
        parts = self._tiles(self.state.tiles_of(due, at), at, full)
        return self._event(at, full, parts)

    def changed(self, keys: list[tuple[str, str]], at: int) -> str | None:
        """Return the event for chairs that changed, or None when none of their tiles looks different."""
        mine = [k for k in keys if in_scope(k[0], self.scope)]
        if any(k not in self.sent for k in mine):  # a new chair: its place in the order is needed
            return self.everything(at)
        parts = self._tiles(self.state.tiles_of(mine, at), at, False)
        return self._event(at, False, parts) if parts else None

    def _tiles(self, views: list[TileView], at: int, full: bool) -> list[str]:
        """Return the JSON of each tile to send: whole when ``full`` or new, else its id and the fields that changed."""
        parts = []
        evaluated = time.monotonic()
        for view in views:
            key = (view.site, view.chair)
            data = tile_data(view, self.several_sites,
                             spark_src(view, at, lambda v=view: self.state.spark_points(v.site, v.chair, at)))
            data["record"] = record_tile(self.services, view.site, view.chair, at)  # the session record's line
            self.evaluated[key] = evaluated
            self.modes[key] = (view.mode == "live", bool(view.alarm_priority))
            old = self.sent.get(key)
            self.sent[key] = data
            if not full and old is not None:
                data = {name: value for name, value in data.items() if old.get(name) != value}
                if not data:
                    continue
                data["id"] = old["id"]
            parts.append(json.dumps(data, separators=(",", ":")))
        return parts

    def _event(self, at: int, full: bool, parts: list[str]) -> str:
        count = len(self.order)
        live = sum(1 for key in self.order if self.modes.get(key, (False, False))[0])
        alarms = sum(1 for key in self.order if self.modes.get(key, (False, False))[1])
        head = json.dumps({"now": at, "noDataMs": self.state.no_data_ms, "full": full, "density": density(count),
                           "summary": [count, live, count - live, alarms]}, separators=(",", ":"))
        return f"event: tiles\ndata: {head[:-1]},\"tiles\":[{','.join(parts)}]}}\n\n"


class _Slot:
    """A stream's claim on a worker thread, given back once when the server closes the response."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            if self._held:
                self._held = False
                self._slots.release()


def stream_limit(threads: int) -> int:
    """Return how many push streams may run at once with ``threads`` worker threads."""
    return max(0, threads - RESERVED_THREADS)


def install(server: Any, services: Services) -> None:
    """Register the push route on the Flask server (behind the login gate and the guards, like every route)."""
    from flask import Response, jsonify, stream_with_context

    limit = stream_limit(services.config.dashboard_threads)
    slots = threading.BoundedSemaphore(limit) if limit else None

    def tiles() -> Any:
        if services.config.dashboard_no_push:
            response = jsonify({"error": "push is off (--no-push): the page polls"})
            response.status_code = 404
            return response
        if slots is None or not slots.acquire(blocking=False):
            response = jsonify({"error": f"all {limit} push streams are taken: this page polls; raise --threads"})
            response.status_code = 503
            response.headers["Retry-After"] = str(BUSY_RETRY_S)
            return response
        slot = _Slot(slots)
        try:
            response = Response(stream_with_context(TileStream(services).events()), mimetype="text/event-stream")
        except BaseException:
            slot.release()
            raise
        response.call_on_close(slot.release)
        response.headers["X-Accel-Buffering"] = "no"  # a reverse proxy must pass events on at once
        return response

    server.add_url_rule(PUSH_PATH, "infusion_push_tiles", tiles, methods=["GET"])
