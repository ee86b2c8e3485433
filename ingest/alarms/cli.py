"""``infusion-monitor alarms report|whatif``: the alarm report and the what-if replay, from the store.

    infusion-monitor alarms report [--site S] --since T --until T [--format md|csv|json]
    infusion-monitor alarms whatif [--site S] --since T --until T --rules ALT.toml [--format md|json]
    infusion-monitor alarms whatif [--site S] --since T --until T --grid RULE [--limits 88,90] [--delays 15,30]

Times are RFC 3339. The store and the rules in force come from the settings (``store_url``,
``alarm_rules_file``); the alternative is an override file in the documented format (docs/alarm-rules.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from vitals.reading import parse_ts
from vitals.settings import add_settings_arguments, settings_from_args


def _time(value: str) -> int:
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not an RFC 3339 time: {exc}") from None


def _numbers(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of numbers") from None


def _period(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, "alarms")
    parser.add_argument("--since", type=_time, required=True, help="start of the period (RFC 3339)")
    parser.add_argument("--until", type=_time, required=True, help="end of the period (RFC 3339), exclusive")


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of processes from 1 to 64")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` and ``whatif`` subcommands."""
    subs = parser.add_subparsers(dest="alarms_command", required=True, metavar="{report,whatif}")
    report = subs.add_parser("report", help="alarm burden, durations, acknowledgement and actionability")
    _period(report)
    report.add_argument("--format", choices=("md", "csv", "json"), default="md")
    whatif = subs.add_parser("whatif", help="replay the period under the rules in force and an alternative")
    _period(whatif)
    whatif.add_argument("--rules", help="alternative rules: an override file (docs/alarm-rules.md)")
    whatif.add_argument("--grid", metavar="RULE", help="sweep this rule's limit and delay instead of --rules")
    whatif.add_argument("--limits", type=_numbers, default=[], help="with --grid: limits to try, e.g. 86,88,90")
    whatif.add_argument("--delays", type=_numbers, default=[], help="with --grid: delays (s) to try, e.g. 10,15,30")
    whatif.add_argument("--format", choices=("md", "json"), default="md")
    whatif.add_argument("--workers", type=_workers, default=min(os.cpu_count() or 1, 8),
                        help="processes replaying chairs in parallel (default: one per core)")


def run(args: argparse.Namespace) -> int:
    """Print the report or the what-if; 2 for bad input (with the reason on stderr)."""
    from vitals.store import open_store_from

    settings = settings_from_args(args, "alarms")
    if args.until <= args.since:
        print("infusion-monitor alarms: --until must be after --since", file=sys.stderr)
        return 2
    store = open_store_from(settings)
    try:
        if args.alarms_command == "report":
            from vitals.alarm_report import render, report_from_store

            doc = report_from_store(store, since_ms=args.since, until_ms=args.until, site=settings.site)
            sys.stdout.write(render(doc, args.format))
            return 0
        return _whatif(args, settings, store)
    finally:
        store.close()


def _whatif(args: argparse.Namespace, settings: object, store: object) -> int:
    from vitals.store import open_store_from

    from .engine import EngineConfig
    from .rules import RulesError, load_rules
    from .whatif import grid, grid_markdown, layered, whatif, whatif_markdown

    try:
        current = load_rules(settings.alarm_rules_file)  # type: ignore[attr-defined]
        config = EngineConfig.from_settings(settings)
        site = settings.site  # type: ignore[attr-defined]
        parallel = {"workers": args.workers, "opener": lambda: open_store_from(settings)}  # type: ignore[arg-type]
        if args.grid:
            rows = grid(store, current, args.grid, args.limits, args.delays, since_ms=args.since,
                        until_ms=args.until, site=site, config=config, **parallel)
            sys.stdout.write(json.dumps(rows, indent=2) + "\n" if args.format == "json" else grid_markdown(rows))
            return 0
        if not args.rules:
            print("infusion-monitor alarms whatif: give --rules ALT.toml or --grid RULE", file=sys.stderr)
            return 2
        try:
            with open(args.rules, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            print(f"infusion-monitor alarms whatif: cannot read {args.rules}: {exc.strerror}", file=sys.stderr)
            return 2
        alternative = layered(current, text, args.rules)
    except (RulesError, ValueError) as exc:
        print(f"infusion-monitor alarms whatif: {exc}", file=sys.stderr)
        return 2
    doc = whatif(store, current, alternative, since_ms=args.since, until_ms=args.until, site=site, config=config,
                 **parallel)
    sys.stdout.write(json.dumps(doc, indent=2) + "\n" if args.format == "json" else whatif_markdown(doc))
    return 0
