"""Stores chosen by URL: ``sqlite:///path``, ``influxdb://host:port/db``, ``influxdb2://host:port/bucket?org=ORG``."""

from __future__ import annotations

from urllib.parse import urlsplit

from vitals.store.base import Latest, Series, Store, StoreError, StoreRejected, choose_step_ms

__all__ = ["Latest", "Series", "Store", "StoreError", "StoreRejected", "choose_step_ms", "open_store", "redact_url"]

SCHEMES = ("sqlite", "influxdb", "influxdb2")


def redact_url(url: str) -> str:
    """Return a URL with any password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def open_store(url: str, **options: object) -> Store:
    """Open the store a URL names; raise ValueError with the accepted forms when it names none."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from vitals.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, **options)
    if scheme in ("influxdb", "influxdb2"):
        from vitals.store.influx import InfluxStore

        return InfluxStore.from_url(url, **options)
    raise ValueError(
        f"unsupported store URL {redact_url(url)!r}: use sqlite:///path/file.db, "
        "influxdb://[user:password@]host:port/database or influxdb2://host:port/bucket?org=ORG"
    )
