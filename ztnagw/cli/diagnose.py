# -*- test-case-name: tests.cli.test_diagnose -*-
"""
C{ztnagw diagnose}: FortiOS diagnostic commands, with FortiOS output.

FortiGate administrators check a ZTNA client with C{diagnose endpoint ec-shm
list} (C{diagnose endpoint record list} before FortiOS 7.4.2): does the
gateway hold a record for the device, with which certificate serial, is it
online, quarantined, tagged?  The same command here prints the same layout
from our registry, so that the walkthroughs and runbooks they know work
unchanged.

Lines FortiOS prints that describe FortiGate internals we do not have
(gateway routes, interfaces, AV engine versions) are left out.  Two kinds of
lines are ours: C{Client cert revoked} (FortiOS keeps revocation on the EMS
side) and the tags, listed under C{Number of Tags} as policies name them
(C{EMS<id>_ZTNA_<tag>}).

The summary line counts the listed records: C{online} and C{offline} as the
access decision judges them (L{EndpointRecord.isOnline} with the EMS's
C{out-of-sync-threshold}), C{quarantined} among them, and C{out-of-sync}
the offline ones that did report telemetry but have been silent longer than
the threshold (as opposed to devices that never reported).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from typing import IO, TYPE_CHECKING, Callable, Iterable

from ztnagw.cli._common import CommandFailed, addRegistryOptions
from ztnagw.cli.endpoint import EmsSettings, policyTagNames, withRegistry
from ztnagw.registry.record import EndpointRecord, isUid

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.registry.interfaces import IEndpointStore

_INDENT = "    "


def _yesNo(value: bool) -> str:
    return "yes" if value else "no"


def formatEcShmRecord(
    number: int, record: EndpointRecord, ems: EmsSettings, now: float
) -> list[str]:
    """
    The lines that show one record, FortiOS style.

    @param number: the record's position in the listing (from 0).
    """
    online = record.isOnline(now, ems.outOfSyncThreshold)
    tags = policyTagNames(record, ems.id)
    fields = [
        f"IP Address = {record.ip or ''}",
        f"MAC Address = {record.mac or ''}",
        f"MAC list = {','.join(record.macList)}",
        "VDOM = root (0)",
        f"EMS serial number: {record.emsSerial}",
        f"EMS tenant id: {record.tenantId}",
        f"Client cert SN: {record.certSerial}",
        f"Client cert revoked: {_yesNo(record.revoked)}",
        f"Public IP address: {record.publicIp or ''}",
        f"Quarantined: {_yesNo(record.quarantined)}",
        f"Online status: {'online' if online else 'offline'}",
        f"Registration status: {record.registrationStatus}",
        f"On-net status: {'on-net' if record.onNet else 'off-net'}",
        f"FortiClient version: {record.clientVersion or ''}",
        f"FortiClient UID: {record.uid}",
        f"Host Name: {record.hostName or ''}",
        f"OS type: {record.osType or ''}",
        f"User: {record.user or ''}",
        f"Number of Tags: ({len(tags)})",
    ]
    lines = [f"Record #{number}:"]
    lines += [(_INDENT + line).rstrip() for line in fields]
    lines += [f"{_INDENT * 2}Tag #{i}: {tag}" for i, tag in enumerate(tags)]
    return lines


def summaryLine(records: Iterable[EndpointRecord], ems: EmsSettings, now: float) -> str:
    """
    The FortiOS summary of a listing (see the module docstring for what
    each count means).
    """
    online = offline = quarantined = outOfSync = 0
    for record in records:
        if record.isOnline(now, ems.outOfSyncThreshold):
            online += 1
        else:
            offline += 1
            if record.lastSeen is not None:
                outOfSync += 1
        if record.quarantined:
            quarantined += 1
    return (
        f"online records: {online}; offline records: {offline}; "
        f"quarantined records: {quarantined}; out-of-sync records: {outOfSync}"
    )


def formatEcShm(records: list[EndpointRecord], ems: EmsSettings, now: float) -> str:
    """
    The whole output of C{diagnose endpoint ec-shm list}: each record, then
    the summary line.
    """
    lines: list[str] = []
    for number, record in enumerate(records):
        lines += formatEcShmRecord(number, record, ems, now)
    lines.append(summaryLine(records, ems, now))
    return "\n".join(lines) + "\n"


def _matchesIp(record: EndpointRecord, address: ipaddress._BaseAddress) -> bool:
    for text in (record.ip, record.publicIp):
        if text is None:
            continue
        try:
            if ipaddress.ip_address(text) == address:
                return True
        except ValueError:
            continue
    return False


def selectRecords(
    store: "IEndpointStore", which: str | None, emsId: int
) -> list[EndpointRecord]:
    """
    The records C{ec-shm list [UID-or-IP]} shows.

    @param which: C{None} for every record; a UID (any case) for that
        device; an IP address for the devices whose private or public
        address it is.
    @raise CommandFailed: C{which} is neither, or names an unknown UID.
    """
    if which is None:
        return store.list()
    uid = which.strip().upper()
    if isUid(uid):
        record = store.get(uid)
        if record is None:
            raise CommandFailed(f"no endpoint {uid} in the registry of EMS {emsId}")
        return [record]
    try:
        address = ipaddress.ip_address(which)
    except ValueError:
        raise CommandFailed(
            f"{which!r} is neither a FortiClient UID (32 hex digits) nor an IP "
            "address"
        )
    return [r for r in store.list() if _matchesIp(r, address)]


def ecShmList(
    store: "IEndpointStore",
    ems: EmsSettings,
    which: str | None,
    out: IO[str],
    clock: Callable[[], float] = time.time,
) -> int:
    """
    The body of C{diagnose endpoint ec-shm list}.

    @return: the exit status.
    """
    records = selectRecords(store, which, ems.id)
    out.write(formatEcShm(records, ems, clock()))
    return 0


def addCommands(subparsers: argparse._SubParsersAction) -> None:
    """
    Register C{ztnagw diagnose endpoint ec-shm list} (and its pre-7.4.2
    name, C{diagnose endpoint record list}).
    """
    diagnose = subparsers.add_parser(
        "diagnose",
        help="FortiOS diagnostic commands",
        description="FortiOS diagnostic commands, printing what FortiOS prints.",
    )
    areas = diagnose.add_subparsers(title="areas", metavar="AREA", required=True)
    from ztnagw.cli import realserver

    realserver.addCommands(areas)
    endpoint = areas.add_parser(
        "endpoint",
        help="endpoint records",
        description="Endpoint records of an fctems entry's registry.",
    )
    tables = endpoint.add_subparsers(title="tables", metavar="TABLE", required=True)
    for name, note in (
        ("ec-shm", "FortiOS 7.4.2 and later"),
        ("record", "FortiOS before 7.4.2; the same as ec-shm"),
    ):
        table = tables.add_parser(
            name,
            help=f"endpoint records ({note})",
            description=f"Endpoint records ({note}).",
        )
        actions = table.add_subparsers(title="actions", metavar="ACTION", required=True)
        listing = actions.add_parser(
            "list",
            help="show records, FortiOS layout",
            description="Show every endpoint record, or those of one UID or "
            "IP address, in the FortiOS layout, then the online / offline / "
            "quarantined / out-of-sync counts.",
        )
        listing.add_argument(
            "which",
            metavar="UID-or-IP",
            nargs="?",
            default=None,
            help="only this device (UID) or address (private or public IP)",
        )
        addRegistryOptions(listing)
        listing.set_defaults(
            func=withRegistry(
                lambda store, ems, arguments: ecShmList(
                    store, ems, arguments.which, sys.stdout
                )
            )
        )
