# -*- test-case-name: tests.config.test_cli_config,tests.cli.test_endpoint -*-
"""
The C{ztnagw} admin command.

One entry point with a subcommand per area (C{config}, C{endpoint},
C{diagnose}, ...).  Each area lives in its own module of this package and
exposes C{addCommands(subparsers)}, which registers its subcommands and sets
C{func} on each parser: C{func(arguments) -> int} is the exit status.

Admin commands are short-lived, run outside the reactor and may block (they
talk to the registry directly); the running daemon learns of their changes
through the registry (see L{ztnagw.registry.index}).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

#: Modules of this package that contribute subcommands, in help order.
AREAS = ("config", "endpoint", "diagnose", "ems", "token", "demo")

#: Where the admin command looks for the configuration by default.
DEFAULT_CONFIG = "/etc/ztnagw/ztnagw.conf"


def defaultConfigPath() -> str:
    """
    The configuration file to use when C{--config} is not given:
    C{$ZTNAGW_CONFIG}, else L{DEFAULT_CONFIG}.
    """
    return os.environ.get("ZTNAGW_CONFIG", DEFAULT_CONFIG)


def buildParser() -> argparse.ArgumentParser:
    """
    The complete argument parser, every area's subcommands included.
    """
    parser = argparse.ArgumentParser(
        prog="ztnagw",
        description="Administer a ztnagw zero-trust access gateway.",
    )
    from ztnagw import __version__

    parser.add_argument(
        "--version", action="version", version=f"ztnagw {__version__}"
    )
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True
    )
    for area in AREAS:
        module = importlib.import_module(f"ztnagw.cli.{area}")
        module.addCommands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run the admin command.

    @param argv: the arguments after the program name; C{sys.argv[1:]} by
        default.
    @return: the exit status (also passed to C{sys.exit} when run as a
        console script).
    """
    parser = buildParser()
    arguments = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        status = arguments.func(arguments)
    except KeyboardInterrupt:
        status = 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
