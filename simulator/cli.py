"""``infusion-monitor simulate``: publish simulated infusion sessions of one site."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from simulator.common import parse_speed, parse_time_ms
from simulator.scenario import ScenarioError, builtin_names, load_scenario, parse_duration, parse_override
from vitals.settings import add_settings_arguments, settings_from_args
from vitals.topics import TopicError, check_id

log = logging.getLogger(__name__)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _override(text: str) -> tuple[str, object]:
    try:
        return parse_override(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: minutes, 0 or more (0 = no cuff readings)")
    return value


def _site(text: str) -> str:
    try:
        return check_id(text, "site id")
    except TopicError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulate options."""
    add_settings_arguments(parser, "simulate")
    parser.add_argument("--site", type=_site, default="sim", help="site id (default sim)")
    parser.add_argument("--chairs", type=int, help="number of chairs (default: the scenario's, else 4)")
    parser.add_argument("--scenario", default="normal",
                        help=f"scenario name ({', '.join(builtin_names())}) or a TOML file (default normal)")
    parser.add_argument("--speed", type=parse_speed, default=1.0,
                        help="simulated time per real time: 10 = ten minutes per minute; 'max' or 0 = as fast as possible")
    parser.add_argument("--seed", type=int, help="random seed; with --start the stream is byte-identical")
    parser.add_argument("--start", type=parse_time_ms, help="simulated start: ISO 8601, or now-45m, now-2h (default: now)")
    parser.add_argument("--duration", type=_duration, help="simulated length, e.g. 90s, 45m, 2h (default: the scenario's)")
    parser.add_argument("--cuff-interval", type=_minutes, metavar="MINUTES",
                        help="minutes between cuff (NIBP) readings after the one at session start (default 10)")
    parser.add_argument("--set", dest="overrides", action="append", type=_override, default=[],
                        metavar="TABLE.KEY=VALUE", help="override any scenario parameter, e.g. "
                        "--set response.sys_rise_mean=16 --set baseline.hr=[70,80] (repeatable; docs/simulator.md)")
    parser.add_argument("--list-scenarios", action="store_true", help="print the shipped scenarios and exit")
    parser.add_argument("--connection", choices=["auto", "device", "gateway"], default="auto",
                        help="one MQTT connection per chair (device) or one shared (gateway); auto: device up to 50 chairs")


def run(args: argparse.Namespace) -> int:
    """Run the simulator until the duration is simulated or SIGINT/SIGTERM."""
    import simulator

    if args.list_scenarios:
        for name in builtin_names():
            print(f"{name:16} {load_scenario(name).description}")
        return 0
    try:
        overrides = dict(args.overrides)
        if args.cuff_interval is not None:
            overrides["timing.cuff_interval_min"] = args.cuff_interval
        scenario = load_scenario(args.scenario, overrides)
    except ScenarioError as exc:
        log.error("%s", exc)
        return 2
    if args.chairs is not None and not 1 <= args.chairs <= 100_000:
        log.error("--chairs must be between 1 and 100000")
        return 2
    settings = settings_from_args(args, "simulate")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        simulator.run(settings, args.site, args.chairs, scenario, args.speed, args.seed, stop,
                      start_ms=args.start, duration_s=args.duration, connection=args.connection)
    except ConnectionError as exc:
        log.error("%s", exc)
        return 1
    return 0
