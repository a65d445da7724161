"""The ``sitebus`` command (also ``python -m sitebus``)."""

from __future__ import annotations

import argparse
import sys

from sitebus import __version__
from sitebus.bus import Bus
from sitebus.errors import exit_code_of
from sitebus.logs import log_to_screen
from sitebus.signals import SignalHandler


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sitebus", description="Run and control a web site.")
    parser.add_argument("--version", action="version", version=f"sitebus {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the site in the foreground")
    return parser


def run(args: argparse.Namespace) -> int:
    bus = Bus()
    log_to_screen()
    SignalHandler(bus).subscribe()
    try:
        bus.start()
    except Exception as error:
        return exit_code_of(error)
    bus.block()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["run"])
    sys.exit(run(args))
