"""Command-line pieces shared by simulate, record and replay: speed and time parsing (settings flags: vitals.settings)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from simulator.scenario import parse_duration


def parse_speed(text: str) -> float:
    """Return a speed factor: a positive number, or 0 for 'max' / '0' (as fast as possible)."""
    if str(text).strip().lower() in ("max", "0", "0.0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: use a positive number or 'max'") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: use a positive number or 'max'")
    return value


def parse_time_ms(text: str) -> int:
    """Return epoch ms from ISO 8601 (no offset = UTC), epoch milliseconds, or 'now-2h' (seconds rounded)."""
    value = str(text).strip()
    if value.isdigit():
        return int(value)
    if value.lower().startswith("now"):
        rest = value[3:].strip()
        try:
            ago = parse_duration(rest[1:]) if rest.startswith("-") else (0.0 if not rest else None)
        except ValueError:
            ago = None
        if ago is None:
            raise argparse.ArgumentTypeError(f"invalid time {text!r}: use now, now-90s, now-45m or now-2h")
        return (round(time.time()) - round(ago)) * 1000
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: use ISO 8601, e.g. 2026-01-05T08:00:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)
