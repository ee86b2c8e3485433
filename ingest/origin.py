"""Where the ingest's local state belongs: the broker and store its spool and alarm state were made for.

The data directory outlives any one configuration. Without a record of its origin, an ingest started in the
same directory against another broker restored the first one's alarm state (and raised "No data" for chairs
that never existed on its broker), and a spool left for one store would drain into whichever store the next
start named. So each file records an ``Origin`` and each start decides (``decide``, pure) whether the file is
its own; a file that is not is refused, or with ``state_mismatch = "fresh"`` moved aside (``set_aside``),
never deleted, never drained elsewhere. docs/reliability.md ("State bound to its origin") is the reference.

An identity is the URL without credentials, normalised: scheme, host in lower case, port with its default,
database or bucket (and org, retention policy); for SQLite the resolved file path. A password or token change
is therefore the same origin; ``broker_id`` and ``store_id`` name an origin explicitly when its address
changes (a DNS rename).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from vitals.mqtt import MqttTarget
from vitals.settings import Settings

log = logging.getLogger("ingest.origin")

FIELDS = ("broker", "store", "topic_prefix", "site")
Verdict = Literal["new", "adopt", "same", "rebind", "mismatch"]


class OriginMismatch(ValueError):
    """A state file belongs to another broker or store; the message says what was found and what to do."""


def _host(host: str) -> str:
    host = host.lower()
    return f"[{host}]" if ":" in host else host


def broker_identity(url: str) -> str:
    """Return the broker's identity: ``mqtt[s]://host:port`` without credentials, normalised."""
    target = MqttTarget.parse(url)
    return f"{'mqtts' if target.tls else 'mqtt'}://{_host(target.host)}:{target.port}"


def store_identity(url: str) -> str:
    """Return the store's identity: the SQLite file's resolved path, or the InfluxDB server and database."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = url[len("sqlite:///"):].split("?", 1)[0] if url.startswith("sqlite:///") else ""
        if not path:
            raise ValueError(f"a SQLite store URL is sqlite:///path/file.db, not {url!r}")
        return "sqlite:///" + (path if path == ":memory:" else str(Path(path).expanduser().resolve()))
    if parts.scheme in ("influxdb", "influxdb2") and parts.hostname:
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        database = unquote(parts.path.strip("/"))
        identity = f"{parts.scheme}://{_host(parts.hostname)}:{parts.port or 8086}/{database}"
        extra = [f"{key}={query[key]}" for key in ("org", "rp") if query.get(key)]
        return identity + ("?" + "&".join(extra) if extra else "")
    raise ValueError(f"cannot tell which store {parts.scheme}://{_host(parts.hostname or '')} is")


@dataclass(frozen=True, slots=True)
class Origin:
    """The broker, store, topic prefix and site filter a state file belongs to."""

    broker: str
    store: str
    topic_prefix: str
    site: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Origin:
        """Return the origin these settings name (explicit ``broker_id``/``store_id`` win over the URLs)."""
        return cls(
            broker=settings.broker_id or broker_identity(settings.mqtt_url),
            store=settings.store_id or store_identity(settings.store_url),
            topic_prefix=settings.topic_prefix,
            site=settings.site or settings.sites,
        )

    def to_json_obj(self) -> dict[str, Any]:
        """Return the origin as recorded in a state file."""
        return {name: getattr(self, name) for name in FIELDS}

    @classmethod
    def from_json_obj(cls, obj: Any) -> Origin:
        """Read a recorded origin; raise ValueError when it is not one."""
        if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in ("broker", "store", "topic_prefix")):
            raise ValueError(f"not a recorded origin: {str(obj)[:200]!r}")
        site = obj.get("site")
        if site is not None and not isinstance(site, str):
            raise ValueError(f"not a recorded origin (site {site!r})")
        return cls(obj["broker"], obj["store"], obj["topic_prefix"], site)

    def describe(self, names: Sequence[str]) -> str:
        """Return the named parts in words, e.g. ``broker mqtt://h:1883, every site``."""
        words = {
            "broker": f"broker {self.broker}",
            "store": f"store {self.store}",
            "topic_prefix": f"topic prefix {self.topic_prefix!r}",
            "site": f"site {self.site!r}" if self.site else "every site",
        }
        return ", ".join(words[name] for name in names)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a start does with a state file, and which bound parts of its origin differ."""

    verdict: Verdict
    differs: tuple[str, ...] = ()


def decide(exists: bool, recorded: Origin | None, current: Origin, *, always: Sequence[str],
           while_pending: Sequence[str] = (), pending: bool = False) -> Decision:
    """Decide whether a state file belongs to ``current``.

    ``always`` are the parts its contents describe (the alarm state describes one broker's chairs);
    ``while_pending`` the parts its pending contents are bound for (a spool's batches for one store), which
    an empty file may change. A file with no recorded origin was written before origins were recorded: it is
    adopted, so an upgrade never refuses to start.
    """
    if not exists:
        return Decision("new")
    if recorded is None:
        return Decision("adopt")
    bound = [*always, *(while_pending if pending else ())]
    differs = tuple(name for name in FIELDS if name in bound and getattr(recorded, name) != getattr(current, name))
    if differs:
        return Decision("mismatch", differs)
    if recorded != current:
        return Decision("rebind", tuple(n for n in FIELDS if getattr(recorded, n) != getattr(current, n)))
    return Decision("same")


def refusal(what: str, path: Path, recorded: Origin, current: Origin, differs: Sequence[str], holding: str) -> str:
    """Return the refusal message: what was found, what was given, and what to do."""
    advice = []
    if "store" in differs and holding:
        advice.append(f"to keep {holding}, start the ingest against {recorded.store} again until /healthz shows "
                      "it empty (spool_items 0), then switch")
    else:
        advice.append(f"to keep it, point the ingest back at {recorded.describe(differs)}")
    renamed = [f"{name}_id = {getattr(recorded, name)!r} (INFUSION_{name.upper()}_ID)"
               for name in ("broker", "store") if name in differs]
    if renamed:
        advice.append("if it is the same server under a new address, set " + " and ".join(renamed))
    advice.append("to start fresh, run with --fresh-state (state_mismatch = \"fresh\"), which moves the old "
                  "file aside (never deletes it)")
    return (f"{what} {path} belongs to {recorded.describe(differs)}{f' and holds {holding}' if holding else ''}; "
            f"this ingest was given {current.describe(differs)}. Refusing to start: "
            + "; ".join(advice) + ".")


def set_aside(path: Path, now: float | None = None) -> Path:
    """Move a file (and its SQLite -wal/-shm companions) to a timestamped name beside it; return the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    aside = path.with_name(f"{path.stem}.aside-{stamp}{path.suffix}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.stem}.aside-{stamp}-{n}{path.suffix}")
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.replace(aside.with_name(aside.name + suffix))
    path.replace(aside)
    return aside


def enforce(what: str, path: Path, decision: Decision, recorded: Origin | None, current: Origin, *,
            fresh: bool, holding: str = "") -> bool:
    """Log the decision; raise OriginMismatch when refusing; return True when the file must be set aside."""
    if decision.verdict == "adopt":
        log.warning("%s %s records no origin (written before origins were recorded): adopted as belonging to %s",
                    what, path, current.describe(FIELDS))
    elif decision.verdict == "rebind":
        assert recorded is not None
        log.info("%s %s holds nothing bound to its old %s: now belongs to %s", what, path,
                 recorded.describe(decision.differs), current.describe(decision.differs))
    elif decision.verdict == "mismatch":
        assert recorded is not None
        if not fresh:
            raise OriginMismatch(refusal(what, path, recorded, current, decision.differs, holding))
        return True
    return False
