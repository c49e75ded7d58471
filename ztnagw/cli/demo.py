# -*- test-case-name: tests.test_demo -*-
"""
C{ztnagw demo}: run the walkthrough on loopback (see L{ztnagw.demo}).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["addCommands"]


def addCommands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """
    Register C{ztnagw demo}.
    """
    demo = subparsers.add_parser(
        "demo",
        help="run the ZTNA walkthrough on this machine's loopback",
        description="Create an EMS CA, a gateway certificate, an enrolled "
        "device and an internal web server in a throwaway directory, start "
        "the gateway in front of the web server on 127.0.0.1, and print the "
        "curl commands that reproduce the FortiGate walkthrough's three "
        "examples.  Runs until Ctrl-C.",
    )
    demo.add_argument(
        "--directory",
        metavar="DIR",
        default=None,
        help="an empty or new directory to keep the demo's files in (default: "
        "a temporary directory, removed at the end)",
    )
    demo.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        default=11443,
        help="the first VIP's port, with the next one for the second VIP, "
        "when they are free (default: 11443, the walkthrough's)",
    )
    demo.set_defaults(func=_run)


def _run(arguments: argparse.Namespace) -> int:
    # The admin command's entry point owns the reactor for this command.
    from twisted.internet import reactor

    from ztnagw.demo import runDemo

    return runDemo(reactor, arguments.directory, sys.stdout, arguments.port)
