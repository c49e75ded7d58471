# -*- test-case-name: tests.cli.test_realserver -*-
"""
C{ztnagw diagnose realserver list}: the real servers of every pool as the
running daemon sees them now (up, down, in hold-down; why; since when).

Only the daemon knows whether a real server passed its last health check,
so the command asks it through the control channel (L{ztnagw.control}),
found in the state directory of the configuration.  The layout follows
FortiOS's C{diagnose firewall vip realserver list}: one block per
api-gateway, one line per real server.
"""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any, Sequence

from ztnagw.cli._common import CommandFailed, addConfigOption, loadConfiguration, runCommand

__all__ = ["addCommands", "formatRealServers"]


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    value = int(value)
    if value < 120:
        return f"{value}s"
    if value < 7200:
        return f"{value // 60}m{value % 60:02d}s"
    return f"{value // 3600}h{(value % 3600) // 60:02d}m"


def formatRealServers(entries: Sequence[dict[str, Any]]) -> str:
    """
    The listing of C{entries} (the control channel's C{realserver list}
    answer).
    """
    lines: list[str] = []
    current = None
    for entry in entries:
        key = (entry["vip"], entry["accessProxy"], entry["apiGateway"])
        if key != current:
            current = key
            lines.append(
                f"vip={entry['vip']} access-proxy={entry['accessProxy']} "
                f"api-gateway={entry['apiGateway']} service={entry['service']} "
                f"ldb-method={entry['ldbMethod']} persistence={entry['persistence']}"
            )
        check = entry["healthCheck"] or "disable"
        detail = entry["detail"]
        # A tunnel pool member: the names it serves come before its address.
        domain = entry.get("domain")
        line = (
            f"    realserver {entry['realServer']}: "
            + (f"domain={domain} " if domain else "")
            + f"{entry['address']}:{entry['port']} "
            f"status={entry['status']} weight={entry['weight']} health-check={check} "
            f"state={entry['state']} serving={'yes' if entry['serving'] else 'no'}"
        )
        if entry["healthCheck"]:
            line += (
                f" since={_seconds(entry['since'])} checks={entry['checks']} "
                f"failures={entry['failures']} holddown={entry['holddown']}s"
            )
            if detail:
                line += f' last="{detail}"'
        lines.append(line)
    serving = sum(1 for e in entries if e["serving"])
    lines.append(f"real servers: {len(entries)}; serving: {serving}; not serving: {len(entries) - serving}")
    return "\n".join(lines) + "\n"


def realServerList(arguments: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    """
    Ask the daemon of C{--config} for its real servers and print them.

    @raise CommandFailed: the daemon does not run or refuses.
    """
    from ztnagw.control import ControlError, ask

    config = loadConfiguration(arguments)
    try:
        entries = ask(config.systemGlobal.stateDir, "realserver list")
    except ControlError as e:
        raise CommandFailed(str(e))
    out.write(formatRealServers(entries))
    return 0


def addCommands(areas: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """
    Register C{diagnose realserver list} under C{diagnose}'s areas.
    """
    area = areas.add_parser(
        "realserver",
        help="real servers of the running gateway",
        description="Real servers of the running gateway's pools, with their health.",
    )
    actions = area.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        help="show every real server and its health",
        description="Show every real server of every api-gateway as the running "
        "gateway sees it now: status, weight, health check, up/down/holddown, "
        "since when and the last check's result (asked through the control "
        "socket in the state directory).",
    )
    addConfigOption(listing)
    listing.set_defaults(func=lambda arguments: runCommand(realServerList, arguments))
