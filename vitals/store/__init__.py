"""Stores chosen by URL: ``sqlite:///path``, ``influxdb://host:port/db``, ``influxdb2://host:port/bucket?org=ORG``."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from vitals.store.base import Latest, Series, Store, StoreError, StoreRejected, choose_step_ms

if TYPE_CHECKING:
    from vitals.settings import Settings

__all__ = ["Latest", "Series", "Store", "StoreError", "StoreRejected", "choose_step_ms", "open_store", "open_store_from",
           "redact_url"]

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


def open_store_from(settings: Settings) -> Store:
    """Open the store the settings name, with their token (or 1.x ``user:password``), timeout and retention.

    Every role opens its store here, so a setting that one role honours (the token) no role can forget.
    """
    if not settings.store_url:
        raise ValueError("no store configured: set store_url (INFUSION_STORE_URL, --store-url or the --config file)")
    return open_store(settings.store_url, token=settings.token(), timeout_s=settings.store_timeout_s,
                      retention=settings.influx_retention)
