"""The storage interface every backend implements (schema: docs/storage-schema.md).

Small on purpose: the ingest writes through it, the dashboard and replay read through it, and nothing
else is needed. Every method is blocking and thread-safe; writes are durable when they return.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from vitals.care import EVENT_TYPES, CareRecord
from vitals.reading import Reading
from vitals.records import AlarmEvent, AuditRecord, Session


class StoreError(Exception):
    """The store could not be reached or refused the operation; the caller may retry."""


class StoreRejected(StoreError):
    """The store refused records for good (e.g. older than its retention); retrying cannot help.

    Whatever else the write carried was stored. ``dropped`` is how many records the store refused.
    """

    def __init__(self, message: str, dropped: int) -> None:
        super().__init__(message)
        self.dropped = dropped


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest value of each vital of one chair, each with its own time (epoch ms)."""

    site: str
    chair: str
    values: dict[str, tuple[int, float]]  # vital -> (ts_ms, value)


@dataclass(slots=True)
class Series:
    """A chair's readings over a range, downsampled to buckets of ``step_ms`` (0 = raw)."""

    step_ms: int
    times: list[int] = field(default_factory=list)
    mean: dict[str, list[float | None]] = field(default_factory=dict)
    low: dict[str, list[float | None]] = field(default_factory=dict)
    high: dict[str, list[float | None]] = field(default_factory=dict)


def choose_step_ms(start_ms: int, end_ms: int, max_points: int) -> int:
    """Return the bucket width giving at most ``max_points`` buckets, 0 when raw 1 Hz data fits."""
    span = max(0, end_ms - start_ms)
    if max_points <= 0 or span <= max_points * 1000:
        return 0
    step = -(-span // max_points)
    # Round up to a whole second so buckets line up across backends.
    return -(-step // 1000) * 1000


class Store(ABC):
    """Where readings, sessions, alarm events, audit records and session-record entries are kept."""

    url_redacted: str = ""

    @abstractmethod
    def write_readings(self, readings: Sequence[Reading]) -> None:
        """Write readings durably; a reading written twice (same chair and time) is stored once."""

    @abstractmethod
    def latest(self, site: str | None = None, since_ms: int | None = None) -> list[Latest]:
        """Return each chair's newest value of every vital (optionally only values newer than since_ms)."""

    @abstractmethod
    def series(self, site: str, chair: str, start_ms: int, end_ms: int, max_points: int = 2000) -> Series:
        """Return a chair's vitals in [start_ms, end_ms), downsampled so no series exceeds max_points."""

    @abstractmethod
    def readings(self, site: str, chair: str, start_ms: int, end_ms: int) -> list[Reading]:
        """Return a chair's raw readings in [start_ms, end_ms), oldest first."""

    @abstractmethod
    def count_readings(self, site: str | None = None, chair: str | None = None) -> int:
        """Return how many readings are stored (for a site, a chair, or everything)."""

    @abstractmethod
    def write_sessions(self, sessions: Sequence[Session]) -> None:
        """Write sessions; a session is keyed by chair and start time, so an update replaces it."""

    @abstractmethod
    def sessions(self, site: str | None = None, chair: str | None = None,
                 start_ms: int | None = None, end_ms: int | None = None) -> list[Session]:
        """Return sessions that started in [start_ms, end_ms), oldest first."""

    @abstractmethod
    def write_alarm_events(self, events: Sequence[AlarmEvent]) -> None:
        """Write alarm events; the same event written twice is stored once."""

    @abstractmethod
    def alarm_events(self, site: str | None = None, chair: str | None = None,
                     start_ms: int | None = None, end_ms: int | None = None) -> list[AlarmEvent]:
        """Return alarm events in [start_ms, end_ms), oldest first."""

    @abstractmethod
    def write_audit(self, records: Sequence[AuditRecord]) -> None:
        """Write audit records."""

    @abstractmethod
    def audit(self, site: str | None = None, start_ms: int | None = None,
              end_ms: int | None = None, user: str | None = None) -> list[AuditRecord]:
        """Return audit records in [start_ms, end_ms), oldest first."""

    @abstractmethod
    def write_care_records(self, records: Sequence[CareRecord]) -> None:
        """Write session-record entries (infusion events, assessments, discharges); keyed by chair, ts and type,
        so the same record written twice is stored once."""

    @abstractmethod
    def care_records(self, site: str, chair: str | None = None, session_id: str | None = None,
                     types: Sequence[str] | None = None, start_ms: int | None = None,
                     end_ms: int | None = None) -> list[CareRecord]:
        """Return session-record entries of a site (a chair, a session, some types) in [start_ms, end_ms), oldest
        first."""

    def infusion_events(self, site: str, chair: str, session_id: str) -> list[CareRecord]:
        """Return a session's infusion events, adverse events and notes, oldest first."""
        return self.care_records(site, chair, session_id, EVENT_TYPES)

    def assessments(self, site: str, chair: str, session_id: str) -> list[CareRecord]:
        """Return a session's assessments, oldest first."""
        return self.care_records(site, chair, session_id, ("assessment",))

    def discharges(self, site: str, chair: str, session_id: str) -> list[CareRecord]:
        """Return a session's discharge (a list: empty, or one entry), with its criteria and any override."""
        return self.care_records(site, chair, session_id, ("discharge",))

    @abstractmethod
    def ping(self) -> bool:
        """Return whether the store answers now."""

    def close(self) -> None:  # noqa: B027 - optional for backends holding nothing
        """Release connections."""
