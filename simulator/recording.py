"""Recordings: JSON Lines of MQTT messages, ``{"topic", "received_at", "payload", "retain", "qos"}`` per line.

``received_at`` is RFC 3339 UTC with milliseconds; ``payload`` is the message as UTF-8 text (bytes that are not
UTF-8 survive as surrogate escapes). Pure functions here; record_cli.py and replay_cli.py do the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import IO, Any

from simulator.stream import Message, dumps
from vitals.reading import format_ts, parse_ts
from vitals.topics import Topics


def to_line(topic: str, received_ms: int, payload: bytes, retain: bool, qos: int) -> str:
    """Return one recording line (without newline)."""
    text = payload.decode("utf-8", errors="surrogateescape")
    return json.dumps({"topic": topic, "received_at": format_ts(received_ms), "payload": text,
                       "retain": bool(retain), "qos": int(qos)}, separators=(",", ":"))


def write_stream(messages: Iterable[Message], out: IO[str]) -> int:
    """Write a simulated stream as a recording (received_at = simulated publish time); return the line count."""
    n = 0
    for msg in messages:
        out.write(to_line(msg.topic, msg.sim_ms, msg.payload, msg.retain, msg.qos) + "\n")
        n += 1
    return n


def read_lines(lines: Iterable[str]) -> Iterator[Message]:
    """Yield the messages of a recording, raising ValueError naming the line that is broken."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            yield Message(parse_ts(doc["received_at"]), str(doc["topic"]),
                          str(doc["payload"]).encode("utf-8", errors="surrogateescape"),
                          int(doc.get("qos", 1)), bool(doc.get("retain", False)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"recording line {number} is not a recorded message: {exc}") from None


TIME_KEYS = {"vitals": ("ts",), "session": ("started_at", "ended_at"), "record": ("ts",)}
RETAINED_KINDS = ("session", "status")


def _objects(msg: Message) -> list[dict[str, Any]]:
    """Return the JSON objects of a vitals or session message ([] for anything else or broken JSON)."""
    if msg.topic.rsplit("/", 1)[-1] not in TIME_KEYS:
        return []
    try:
        doc = json.loads(msg.payload)
    except ValueError:
        return []
    return [obj for obj in (doc if isinstance(doc, list) else [doc]) if isinstance(obj, dict)]


def timestamps(msg: Message) -> list[int]:
    """Return the epoch-ms timestamps a vitals or session message carries (readings' ts, session times)."""
    out = []
    for obj in _objects(msg):
        for key in TIME_KEYS[msg.topic.rsplit("/", 1)[-1]]:
            value = obj.get(key)
            if value is None or isinstance(value, bool):
                continue
            try:
                out.append(parse_ts(value))
            except ValueError:
                continue
    return out


def as_contract(msg: Message) -> Message:
    """Return the message retained if its topic is one the contract keeps retained (session, status)."""
    kind = msg.topic.rsplit("/", 1)[-1]
    return msg._replace(retain=True) if kind in RETAINED_KINDS and not msg.retain else msg


def _shift(obj: Any, key: str, offset_ms: int) -> None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return
    try:
        shifted = parse_ts(value) + offset_ms
    except ValueError:
        return
    obj[key] = shifted if isinstance(value, int | float) else format_ts(shifted)


def restamp(msg: Message, offset_ms: int) -> Message:
    """Return a message moved ``offset_ms`` later: publish time, reading and record ``ts`` and session times."""
    kind = msg.topic.rsplit("/", 1)[-1]
    payload = msg.payload
    if kind in TIME_KEYS:
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None  # not JSON: replayed as it was (the ingest will refuse it, as it did before)
        if isinstance(doc, dict | list):
            for obj in doc if isinstance(doc, list) else [doc]:
                if isinstance(obj, dict):
                    for key in TIME_KEYS[kind]:
                        _shift(obj, key, offset_ms)
            payload = dumps(doc)
    return msg._replace(sim_ms=msg.sim_ms + offset_ms, payload=payload)


def resite(msg: Message, topics: Topics, site: str) -> Message:
    """Return a message moved to another site (chair-level topics only; others unchanged)."""
    try:
        parsed = topics.parse_chair(msg.topic)
    except ValueError:
        return msg
    return msg._replace(topic=topics.chair(site, parsed.chair, parsed.kind))
