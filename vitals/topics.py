"""MQTT topic names: the one place that spells them (see docs/mqtt-contract.md).

Every topic lives under a configurable prefix (default ``clinic``):

    {prefix}/{site}/chair/{chair}/vitals    readings (device -> ingest)
    {prefix}/{site}/chair/{chair}/session   session state, retained (device/EHR gateway -> all)
    {prefix}/{site}/chair/{chair}/status    device presence online/offline, retained, last will
    {prefix}/{site}/chair/{chair}/alarms    active alarms of a chair, retained (ingest -> all)
    {prefix}/{site}/chair/{chair}/ack       acknowledge / audio-pause commands (dashboard -> ingest)
    {prefix}/{site}/chair/{chair}/limits    an admin's alarm-limit edit, retained (dashboard -> ingest)
    {prefix}/{site}/chair/{chair}/effective_limits  the limits the alarm engine enforces, retained (ingest -> all)
    {prefix}/{site}/chair/{chair}/record    session record: infusion events, assessments, discharge (nurse/pump/EHR -> ingest)
    {prefix}/{site}/chair/{chair}/record_state  the session record's state, retained (ingest -> all)
    {prefix}/{site}/alarms/events           alarm events (ingest -> all)
    {prefix}/ingest/rejected                refusals with their reasons (ingest -> all)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "clinic"

# Site and chair ids: 1-64 characters of A-Z a-z 0-9 _ -. Being this strict keeps ids safe to use as
# MQTT topic levels, InfluxDB tag values, SQL parameters and HTML text without further escaping.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The prefix may have several levels but no wildcards and no empty levels.
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,7}")

# Chair-level topic kinds, in the order the contract lists them.
CHAIR_KINDS = ("vitals", "session", "status", "alarms", "ack", "limits", "effective_limits", "record", "record_state")


class TopicError(ValueError):
    """A topic that is not part of the contract, or an id that breaks the id rule."""


def check_id(value: object, what: str = "id") -> str:
    """Return ``value`` if it is a valid site or chair id, else raise TopicError naming it."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80]) + "..."
        raise TopicError(f"invalid {what} {shown}: must be 1-64 characters of A-Z a-z 0-9 _ -")
    return value


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a usable topic prefix, else raise TopicError."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise TopicError(f"invalid topic prefix {prefix!r}: levels of A-Z a-z 0-9 _ - separated by '/'")
    return prefix


@dataclass(frozen=True, slots=True)
class ChairTopic:
    """A parsed chair-level topic."""

    site: str
    chair: str
    kind: str


@dataclass(frozen=True, slots=True)
class Topics:
    """Topic names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    def chair(self, site: str, chair: str, kind: str) -> str:
        """Return the chair-level topic of ``kind`` for a site and chair."""
        if kind not in CHAIR_KINDS:
            raise TopicError(f"unknown chair topic kind {kind!r}")
        return f"{self.prefix}/{check_id(site, 'site id')}/chair/{check_id(chair, 'chair id')}/{kind}"

    def vitals(self, site: str, chair: str) -> str:
        """Return the readings topic of a chair."""
        return self.chair(site, chair, "vitals")

    def session(self, site: str, chair: str) -> str:
        """Return the retained session topic of a chair."""
        return self.chair(site, chair, "session")

    def status(self, site: str, chair: str) -> str:
        """Return the retained device-presence topic of a chair."""
        return self.chair(site, chair, "status")

    def alarms(self, site: str, chair: str) -> str:
        """Return the retained active-alarms topic of a chair."""
        return self.chair(site, chair, "alarms")

    def ack(self, site: str, chair: str) -> str:
        """Return the acknowledgement command topic of a chair."""
        return self.chair(site, chair, "ack")

    def limits(self, site: str, chair: str) -> str:
        """Return the retained topic of an admin's alarm-limit edit for a chair."""
        return self.chair(site, chair, "limits")

    def effective_limits(self, site: str, chair: str) -> str:
        """Return the retained topic of the limits the alarm engine enforces for a chair."""
        return self.chair(site, chair, "effective_limits")

    def record(self, site: str, chair: str) -> str:
        """Return the session-record topic of a chair (infusion events, assessments, discharge)."""
        return self.chair(site, chair, "record")

    def record_state(self, site: str, chair: str) -> str:
        """Return the retained topic of a chair's session-record state (published by the ingest)."""
        return self.chair(site, chair, "record_state")

    def alarm_events(self, site: str) -> str:
        """Return the alarm events topic of a site."""
        return f"{self.prefix}/{check_id(site, 'site id')}/alarms/events"

    @property
    def rejected(self) -> str:
        """Return the topic where the ingest reports refusals."""
        return f"{self.prefix}/ingest/rejected"

    def chair_filter(self, kind: str, site: str | None = None) -> str:
        """Return a subscription filter for one chair topic kind, for one site or every site."""
        if kind not in CHAIR_KINDS:
            raise TopicError(f"unknown chair topic kind {kind!r}")
        return f"{self.prefix}/{check_id(site, 'site id') if site else '+'}/chair/+/{kind}"

    def alarm_events_filter(self, site: str | None = None) -> str:
        """Return a subscription filter for alarm events of one site or every site."""
        return f"{self.prefix}/{check_id(site, 'site id') if site else '+'}/alarms/events"

    def parse_chair(self, topic: str) -> ChairTopic:
        """Parse a chair-level topic, raising TopicError with a readable reason when it is not one."""
        head = self.prefix + "/"
        if not topic.startswith(head):
            raise TopicError(f"topic does not start with {head!r}")
        parts = topic[len(head) :].split("/")
        if len(parts) != 4 or parts[1] != "chair":
            raise TopicError(f"topic is not of the form {head}{{site}}/chair/{{chair}}/{{kind}}")
        site, _, chair, kind = parts
        check_id(site, "site id")
        check_id(chair, "chair id")
        if kind not in CHAIR_KINDS:
            raise TopicError(f"unknown chair topic kind {kind!r}")
        return ChairTopic(site, chair, kind)
