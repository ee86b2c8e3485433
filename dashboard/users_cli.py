"""``infusion-monitor user add NAME --role nurse|admin [--sites A,B] [--users-file F]``: manage dashboard users.

The password is read from standard input when it is not a terminal (first line), else prompted twice.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from dashboard.auth import ROLES, UsersError, UsersFile
from vitals.settings import add_settings_arguments, settings_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the user subcommands."""
    subs = parser.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = subs.add_parser("add", help="add a user (password from stdin when it is not a terminal)")
    add.add_argument("name", help="user name: 1-64 characters of A-Z a-z 0-9 . _ @ -")
    add.add_argument("--role", choices=ROLES, required=True, help="nurse: view and acknowledge; admin: also edit limits")
    add.add_argument("--replace", action="store_true", help="change the password and role of an existing user")
    add.add_argument("--sites", default="", help="comma-separated site ids the user may see (default: every site)")
    remove = subs.add_parser("remove", help="remove a user (their sessions end at their next request)")
    remove.add_argument("name")
    subs.add_parser("list", help="list users and roles")
    for sub in (add, remove, subs.choices["list"]):
        add_settings_arguments(sub, "user")  # --users-file, the dashboard's own setting


def read_password(stdin=None) -> str:  # type: ignore[no-untyped-def]
    """Return the new password: first line of stdin when it is not a terminal, else prompted twice."""
    stream = stdin or sys.stdin
    if not stream.isatty():
        return stream.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise UsersError("the passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    """Run a user subcommand; return the exit status."""
    try:
        path = settings_from_args(args, "user").dashboard_users_file
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if path is None:
        print("error: no users file configured (--users-file or INFUSION_DASHBOARD_USERS_FILE)", file=sys.stderr)
        return 2
    users = UsersFile(path)
    try:
        if args.user_command == "add":
            sites = tuple(s.strip() for s in args.sites.split(",") if s.strip())
            new = users.add(args.name, args.role, read_password(), replace=args.replace, sites=sites)
            limited = f", sites {','.join(sites)}" if sites else ""
            print(f"{'added' if new else 'updated'} {args.name} ({args.role}{limited}) in {users.path}")
        elif args.user_command == "remove":
            if not users.remove(args.name):
                print(f"no user {args.name!r} in {users.path}", file=sys.stderr)
                return 1
            print(f"removed {args.name} from {users.path}")
        else:
            for user in sorted(users.users().values(), key=lambda u: u.name):
                print(f"{user.name}\t{user.role}\t{','.join(user.sites) or '*'}")
    except UsersError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
