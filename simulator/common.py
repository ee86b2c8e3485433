"""Command-line pieces shared by simulate, record and replay: common flags, speed and time parsing."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from simulator.scenario import parse_duration
from vitals.settings import Settings, load_settings


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config, --mqtt-url, --mqtt-protocol and --topic-prefix (defaults from settings, env, TOML)."""
    parser.add_argument("--config", help="TOML configuration file (see docs/configuration.md)")
    parser.add_argument("--mqtt-url", help="broker URL mqtt[s]://[user:password@]host:port (setting mqtt_url)")
    parser.add_argument("--mqtt-protocol", choices=["5", "3.1.1"], help="MQTT protocol version (setting mqtt_protocol)")
    parser.add_argument("--topic-prefix", help="first topic level (setting topic_prefix, default clinic)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Return settings from defaults, --config, the environment and the common flags."""
    return load_settings(args.config, mqtt_url=args.mqtt_url, mqtt_protocol=args.mqtt_protocol,
                         topic_prefix=args.topic_prefix)


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
