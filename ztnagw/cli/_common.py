# -*- test-case-name: tests.cli.test_endpoint,tests.cli.test_diagnose -*-
"""
What several admin subcommands share: finding and loading the configuration,
choosing an EMS connector and opening its endpoint registry.

Every failure here ends the command with a clear message on stderr and a
non-zero status (L{CommandFailed}); no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.config.model import Config, EmsConnector
    from ztnagw.registry.interfaces import IEndpointStore


class CommandFailed(Exception):
    """
    An admin command cannot go on; the message says why and what to do.

    @ivar status: the exit status to use.
    """

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


def addConfigOption(parser: argparse.ArgumentParser) -> None:
    """
    Give C{parser} the C{--config FILE} option every registry-using command
    takes.
    """
    from ztnagw.cli import defaultConfigPath

    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="gateway configuration (default: $ZTNAGW_CONFIG, else "
        f"{defaultConfigPath()})",
    )


def addRegistryOptions(parser: argparse.ArgumentParser) -> None:
    """
    Give C{parser} the options that choose an endpoint registry:
    C{--config FILE} and C{--ems ID}.
    """
    addConfigOption(parser)
    parser.add_argument(
        "--ems",
        metavar="ID",
        type=int,
        default=None,
        help="fctems entry whose registry to use (default: the only enabled "
        "one)",
    )


def loadConfiguration(arguments: argparse.Namespace) -> "Config":
    """
    Load the configuration named by C{--config} (or the default).

    @raise CommandFailed: the file is missing or invalid; the message
        lists every error with its C{file:line}.
    """
    from ztnagw.cli import defaultConfigPath
    from ztnagw.config import load
    from ztnagw.config.tree import ConfigurationRejected

    path = getattr(arguments, "config", None) or defaultConfigPath()
    try:
        return load(path)
    except ConfigurationRejected as e:
        raise CommandFailed(
            f"configuration {path} is invalid:\n"
            + "\n".join(str(error) for error in e.errors)
        )
    except OSError as e:
        raise CommandFailed(f"cannot read configuration {path}: {e.strerror}")


def selectEms(config: "Config", emsId: int | None) -> "EmsConnector":
    """
    Choose the C{fctems} entry a command works on.

    @param emsId: the entry asked for with C{--ems}, or C{None} for the only
        enabled entry.
    @raise CommandFailed: no such entry, or a choice is needed.
    """
    connectors = config.emsConnectors
    if emsId is not None:
        if emsId not in connectors:
            raise CommandFailed(
                f"no 'config endpoint-control fctems' entry {emsId} "
                f"(configured: {', '.join(map(str, connectors)) or 'none'})"
            )
        return connectors[emsId]
    enabled = [c for c in connectors.values() if c.status]
    if len(enabled) == 1:
        return enabled[0]
    if not enabled:
        raise CommandFailed(
            "no enabled 'config endpoint-control fctems' entry in the "
            "configuration"
        )
    raise CommandFailed(
        "several fctems entries are enabled ("
        + ", ".join(str(c.id) for c in enabled)
        + "); choose one with --ems ID"
    )


def openRegistry(
    arguments: argparse.Namespace,
) -> tuple["IEndpointStore", "EmsConnector", "Config"]:
    """
    Open the endpoint registry of the EMS chosen by C{--config}/C{--ems}.

    @raise CommandFailed: the configuration or the registry cannot be
        opened.
    """
    from ztnagw.registry import openStore
    from ztnagw.registry.interfaces import RegistryUnavailable

    config = loadConfiguration(arguments)
    ems = selectEms(config, getattr(arguments, "ems", None))
    try:
        store = openStore(ems.registry, config.systemGlobal.stateDir, ems.id)
    except RegistryUnavailable as e:
        raise CommandFailed(f"cannot open the endpoint registry: {e}")
    return store, ems, config


def runCommand(function, arguments: argparse.Namespace) -> int:
    """
    Run a subcommand body, turning L{CommandFailed} into a message on
    stderr and its exit status.
    """
    try:
        return function(arguments)
    except CommandFailed as e:
        print(f"ztnagw: {e}", file=sys.stderr)
        return e.status
