"""The what-if request an admin's limits edit sends before it is applied, and its answer (docs/mqtt-contract.md).

The dashboard cannot run the alarm engine (it never imports ingest/), so it asks the ingest, which can:
a request on ``{prefix}/{site}/whatif/request`` names the chair, the rule overrides the edit would publish and
how many days back to replay; the ingest replays the chair's stored history under the limits in force and under
the edit, and answers on ``{prefix}/{site}/whatif/response/{request_id}`` (both QoS 1, not retained).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from vitals.records import RecordError, clean_text
from vitals.topics import TopicError, check_id

# History an admin sees before applying an edit (or what there is of it).
WHATIF_DAYS = 7.0
MAX_DAYS = 31.0
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True, slots=True)
class WhatIfRequest:
    """A what-if of one chair's rule overrides ({rule id: {field: value}}), as the dashboard asks it."""

    request_id: str
    site: str
    chair: str
    rules: dict[str, dict[str, Any]]
    days: float = WHATIF_DAYS
    user: str | None = None

    @classmethod
    def new(cls, site: str, chair: str, rules: dict[str, dict[str, Any]], user: str | None = None,
            days: float = WHATIF_DAYS) -> WhatIfRequest:
        """Return a request with a fresh random id."""
        return cls(secrets.token_hex(12), site, chair, rules, days, user)

    def to_payload(self) -> str:
        """Return the request's JSON payload."""
        return json.dumps({"request_id": self.request_id, "chair": self.chair, "rules": self.rules, "days": self.days,
                           "user": self.user}, sort_keys=True)

    @classmethod
    def from_payload(cls, site: str, payload: bytes | str) -> WhatIfRequest:
        """Parse a request, raising RecordError with a readable reason."""
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError):
            raise RecordError("what-if request is not JSON") from None
        if not isinstance(doc, dict):
            raise RecordError("what-if request must be a JSON object")
        request_id = doc.get("request_id")
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise RecordError("what-if request_id must be 8-64 characters of A-Z a-z 0-9 _ -")
        rules = doc.get("rules")
        if not isinstance(rules, dict) or not all(isinstance(v, dict) for v in rules.values()):
            raise RecordError("what-if rules must be an object of rule overrides")
        days = doc.get("days", WHATIF_DAYS)
        if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= MAX_DAYS:
            raise RecordError(f"what-if days must be a number in (0, {MAX_DAYS:g}]")
        try:
            chair = check_id(doc.get("chair"), "chair id")
            site = check_id(site, "site id")
        except TopicError as exc:
            raise RecordError(str(exc)) from None
        return cls(request_id, site, chair, rules, float(days), clean_text(doc.get("user"), "user", max_len=64))


def response_payload(request_id: str, result: dict[str, Any] | None = None, error: str | None = None) -> str:
    """Return the answer: ``{"request_id", "ok": true, "result": {...}}`` or ``{"request_id", "ok": false, "error"}``."""
    if error is not None:
        return json.dumps({"request_id": request_id, "ok": False, "error": error[:500]})
    return json.dumps({"request_id": request_id, "ok": True, "result": result})
