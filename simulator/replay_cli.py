"""``infusion-monitor replay``: republish a recording, or a stored session, with its original pacing.

``replay FILE.jsonl --mqtt-url URL [--speed X] [--restamp] [--site NEW]`` republishes a recording (recording.py);
``replay --store-url URL --site S --chair C --from T --to T`` republishes a chair's stored readings at their
timestamps (the store is opened from the settings: --store-url, with INFUSION_INFLUX_TOKEN or the --config file).
``--restamp`` shifts every timestamp by one offset so the replay happens now (see ``restamp_offset``). Session and
status messages are always republished retained, as the contract says, whatever the recording's flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from simulator.common import parse_speed, parse_time_ms
from simulator.publisher import Publisher, PublishStats, pace
from simulator.recording import as_contract, read_lines, resite, restamp, timestamps
from simulator.stream import Message, dumps
from vitals.settings import Settings, add_settings_arguments, settings_from_args
from vitals.topics import Topics

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the replay options."""
    add_settings_arguments(parser, "replay")
    parser.add_argument("file", nargs="?", help="recording (JSON Lines) to replay")
    parser.add_argument("--speed", type=parse_speed, default=1.0, help="pacing factor; 'max' or 0 = as fast as possible")
    parser.add_argument("--restamp", action="store_true", help="shift timestamps so the replay happens now")
    parser.add_argument("--site", help="with a file: publish under this site instead; with --store-url: the stored site")
    parser.add_argument("--to-site", help="with --store-url: publish under this site (default: the stored one)")
    parser.add_argument("--chair", help="with --store-url: the chair")
    parser.add_argument("--from", dest="from_ms", type=parse_time_ms, help="with --store-url: start (ISO 8601)")
    parser.add_argument("--to", dest="to_ms", type=parse_time_ms, help="with --store-url: end (ISO 8601)")


def load_recording(path: str) -> list[Message]:
    """Return the messages of a recording file, in recorded order."""
    with open(path, encoding="utf-8") as fh:
        return list(read_lines(fh))


# Sessions that started this long before --from are still looked for (one that is running at --from is replayed).
SESSION_LOOKBACK_MS = 24 * 3600 * 1000


def stored_messages(settings: Settings, topics: Topics, site: str, chair: str, start_ms: int, end_ms: int,
                    to_site: str | None = None) -> list[Message]:
    """Return a chair's stored readings in [start_ms, end_ms) and its sessions then, as messages at their times.

    A session is published ``active`` at its start (or at ``start_ms`` if it began before) and ``ended`` at its
    end if that falls in the range, retained, as its device published it.
    """
    from vitals.store import open_store_from

    store = open_store_from(settings)
    try:
        readings = store.readings(site, chair, start_ms, end_ms)
        sessions = store.sessions(site, chair, start_ms - SESSION_LOOKBACK_MS, end_ms)
    finally:
        store.close()
    out_site = to_site or site
    topic, session_topic = topics.vitals(out_site, chair), topics.session(out_site, chair)
    timed: list[tuple[int, int, Message]] = []
    for session in sessions:
        if session.ended_at is not None and session.ended_at <= start_ms:
            continue
        active = dataclasses.replace(session, site=out_site, state="active", ended_at=None)
        at = max(session.started_at, start_ms)
        timed.append((at, 0, Message(at, session_topic, dumps(active.to_json_obj()), 1, True)))
        if session.ended_at is not None and session.ended_at < end_ms:
            ended = dataclasses.replace(active, state="ended", ended_at=session.ended_at)
            timed.append((session.ended_at, 0, Message(session.ended_at, session_topic,
                                                       dumps(ended.to_json_obj()), 1, True)))
    timed.extend((r.ts_ms, 1, Message(r.ts_ms, topic, dumps(r.to_json_obj()), 1, False)) for r in readings)
    timed.sort(key=lambda item: (item[0], item[1]))
    return [m for _, _, m in timed]


def paced(messages: list[Message]) -> list[Message]:
    """Return messages with non-decreasing times (a recording's receive times need not be monotonic)."""
    latest = messages[0].sim_ms if messages else 0
    out = []
    for m in messages:
        latest = max(latest, m.sim_ms)
        out.append(m if m.sim_ms == latest else m._replace(sim_ms=latest))
    return out


def restamp_offset(messages: list[Message], now_ms: int, speed: float) -> int:
    """Return the shift that makes the replay happen now without a timestamp ever ahead of the clock.

    A message published ``p`` real seconds into the replay carries timestamps at most ``now + p``; the newest one
    that is binding lands exactly on it. At ``--speed 1`` the recording's first reading becomes now; faster, the
    last message's readings become the moment it is published, so nothing is refused as being in the future.
    """
    if not messages:
        return 0
    first = messages[0].sim_ms
    offset: float | None = None
    for m in messages:
        stamps = timestamps(m)
        if not stamps:
            continue
        published = now_ms + ((m.sim_ms - first) / speed if speed > 0 else 0.0)
        candidate = published - max(stamps)
        offset = candidate if offset is None else min(offset, candidate)
    return round(offset) if offset is not None else now_ms - first


def prepare(messages: list[Message], topics: Topics, *, restamp_now_ms: int | None = None, speed: float = 1.0,
            site: str | None = None) -> list[Message]:
    """Return messages paced in order, restamped to ``restamp_now_ms`` if asked and moved to ``site`` if asked."""
    messages = paced(messages)
    if restamp_now_ms is not None and messages:
        offset = restamp_offset(messages, restamp_now_ms, speed)
        messages = [restamp(m, offset) for m in messages]
    if site is not None:
        messages = [resite(m, topics, site) for m in messages]
    return messages


def replay(settings: Settings, messages: list[Message], *, speed: float, stop: threading.Event | None = None,
           progress: Callable[[PublishStats], None] | None = None) -> PublishStats:
    """Publish messages over one connection, paced by their times scaled by ``speed``."""
    publisher = Publisher(settings, client_prefix=f"infusion-replay-{os.getpid()}", mode="gateway")
    try:
        return pace(paced(messages), lambda m: publisher.send(as_contract(m), stop), speed=speed, stop=stop,
                    progress=progress)
    finally:
        publisher.close()


def _progress_bar(total: int) -> Callable[[PublishStats], None]:
    def show(stats: PublishStats) -> None:
        width = 40
        done = int(width * stats.messages / max(total, 1))
        sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {stats.messages}/{total} messages "
                         f"{stats.sim_s:.0f} s replayed")
        sys.stderr.flush()

    return show


def run(args: argparse.Namespace) -> int:
    """Replay a recording or a stored session until done or Ctrl-C."""
    settings = settings_from_args(args, "replay")
    topics = Topics(settings.topic_prefix)
    try:
        if args.store_url:
            if not (args.site and args.chair and args.from_ms is not None and args.to_ms is not None):
                log.error("replay from a store needs --site, --chair, --from and --to")
                return 2
            messages = stored_messages(settings, topics, args.site, args.chair, args.from_ms, args.to_ms,
                                       args.to_site)
            messages = prepare(messages, topics, restamp_now_ms=round(time.time() * 1000) if args.restamp else None,
                               speed=args.speed)
        elif args.file:
            messages = prepare(load_recording(args.file), topics,
                               restamp_now_ms=round(time.time() * 1000) if args.restamp else None, speed=args.speed,
                               site=args.site)
        else:
            log.error("give a recording file, or --store-url with --site, --chair, --from and --to")
            return 2
    except (OSError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    if not messages:
        log.warning("nothing to replay")
        return 0
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    progress = _progress_bar(len(messages)) if sys.stderr.isatty() else None
    try:
        stats = replay(settings, messages, speed=args.speed, stop=stop, progress=progress)
    except ConnectionError as exc:
        log.error("%s", exc)
        return 1
    if progress is not None:
        progress(stats)
        sys.stderr.write("\n")
    log.info("replayed %d of %d messages (%d readings) in %.1f s", stats.messages, len(messages), stats.readings,
             stats.real_s)
    return 0 if not stats.stopped else 130
