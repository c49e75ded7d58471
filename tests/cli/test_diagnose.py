"""
Tests for L{ztnagw.cli.diagnose}: C{diagnose endpoint ec-shm list}.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.cli.test_endpoint import NOW, FakeEms
from tests.support.pki import DEVICE_UID
from ztnagw.cli import diagnose, endpoint
from ztnagw.cli._common import CommandFailed
from ztnagw.cli.diagnose import ecShmList, formatEcShm, selectRecords, summaryLine
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore

#: The device of the walkthrough, as our registry holds it.
WALKTHROUGH_DEVICE = EndpointRecord(
    uid=DEVICE_UID,
    certSerial="1D3D0710258CF569961291DF259F6333B9540EF9",
    emsSerial="FCTEMS8825007278",
    tenantId="0" * 32,
    ip="10.0.3.2",
    mac="02:09:0f:00:03:03",
    publicIp="148.230.50.82",
    hostName="WIN10-01",
    osType="Windows",
    clientVersion="7.4.4",
    user="alice",
    tags=frozenset({"Domain-Users"}),
    registeredAt=NOW - 86400,
    lastSeen=NOW - 30,
    generation=7,
)

#: What C{diagnose endpoint ec-shm list} prints for it: the walkthrough's
#: lines in FortiOS's indented layout, with our revocation line and tags.
GOLDEN = """\
Record #0:
    IP Address = 10.0.3.2
    MAC Address = 02:09:0f:00:03:03
    MAC list =
    VDOM = root (0)
    EMS serial number: FCTEMS8825007278
    EMS tenant id: 00000000000000000000000000000000
    Client cert SN: 1D3D0710258CF569961291DF259F6333B9540EF9
    Client cert revoked: no
    Public IP address: 148.230.50.82
    Quarantined: no
    Online status: online
    Registration status: registered
    On-net status: off-net
    FortiClient version: 7.4.4
    FortiClient UID: 9A016B5A6E914B42AD4168C066EB04CA
    Host Name: WIN10-01
    OS type: Windows
    User: alice
    Number of Tags: (2)
        Tag #0: EMS1_ZTNA_all_registered_clients
        Tag #1: EMS1_ZTNA_Domain-Users
online records: 1; offline records: 0; quarantined records: 0; out-of-sync records: 0
"""


def device(n: int, **kwargs: object) -> EndpointRecord:
    """
    A record with UID number C{n}.
    """
    return EndpointRecord(uid=f"{n:032X}", certSerial="01", **kwargs)  # type: ignore[arg-type]


class FormatTests(SynchronousTestCase):
    """
    L{formatEcShm} and L{summaryLine}.
    """

    def test_golden(self) -> None:
        """
        The walkthrough's device is printed exactly as the golden sample.
        """
        self.assertEqual(formatEcShm([WALKTHROUGH_DEVICE], FakeEms(), NOW), GOLDEN)

    def test_numbering(self) -> None:
        """
        Records are numbered from 0 in the order given; an unregistered
        device has no built-in tag; absent values leave their label bare.
        """
        text = formatEcShm(
            [device(1, macList=("a", "b")), device(2, registrationStatus="unregistered")],
            FakeEms(id=3),
            NOW,
        )
        self.assertEqual(
            [line for line in text.splitlines() if line.startswith("Record")],
            ["Record #0:", "Record #1:"],
        )
        self.assertIn("    MAC list = a,b\n", text)
        self.assertIn("    IP Address =\n", text)
        self.assertIn("    Number of Tags: (1)\n        Tag #0: EMS3_ZTNA_all_registered_clients\n", text)
        self.assertIn("    Registration status: unregistered\n    On-net status: off-net\n", text)
        self.assertIn("    Number of Tags: (0)\nonline records", text)

    def test_flags(self) -> None:
        """
        Revocation, quarantine and on-net status are printed as yes/no and
        on-net/off-net.
        """
        text = formatEcShm([device(1, revoked=True, quarantined=True, onNet=True)], FakeEms(), NOW)
        for line in ("Client cert revoked: yes", "Quarantined: yes", "On-net status: on-net"):
            self.assertIn(f"    {line}\n", text)

    def test_summary(self) -> None:
        """
        The summary counts online and offline devices as the access
        decision judges them with the EMS's threshold, quarantined ones,
        and as out-of-sync the offline ones that once reported.
        """
        records = [
            device(1, lastSeen=NOW - 10),  # online
            device(2, lastSeen=NOW - 180),  # online: at the threshold
            device(3, lastSeen=NOW - 181),  # offline, out of sync
            device(4),  # offline, never reported
            device(5, staticPresence=True, quarantined=True),  # online
            device(6, quarantined=True),  # offline
        ]
        self.assertEqual(
            summaryLine(records, FakeEms(outOfSyncThreshold=180), NOW),
            "online records: 3; offline records: 3; quarantined records: 2; "
            "out-of-sync records: 1",
        )
        self.assertIn(
            "offline records: 4",
            summaryLine(records, FakeEms(outOfSyncThreshold=10), NOW),
        )

    def test_empty(self) -> None:
        """
        An empty listing is only the summary line.
        """
        self.assertEqual(
            formatEcShm([], FakeEms(), NOW),
            "online records: 0; offline records: 0; quarantined records: 0; "
            "out-of-sync records: 0\n",
        )


class SelectTests(SynchronousTestCase):
    """
    L{selectRecords}: the optional UID-or-IP argument.
    """

    def setUp(self) -> None:
        path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(path)
        self.addCleanup(self.store.close)
        self.a = self.store.put(device(1, ip="10.0.3.2", publicIp="2001:db8::1"))
        self.b = self.store.put(device(2, ip="10.0.3.3", publicIp="148.230.50.82"))

    def test_all(self) -> None:
        """
        Without an argument, every record.
        """
        self.assertEqual(selectRecords(self.store, None, 1), [self.a, self.b])

    def test_uid(self) -> None:
        """
        A UID, in any case, selects its record.
        """
        self.assertEqual(selectRecords(self.store, f"{2:032x}", 1), [self.b])

    def test_unknownUid(self) -> None:
        """
        An unknown UID is an error.
        """
        error = self.assertRaises(CommandFailed, selectRecords, self.store, DEVICE_UID, 1)
        self.assertEqual(str(error), f"no endpoint {DEVICE_UID} in the registry of EMS 1")

    def test_ip(self) -> None:
        """
        An address selects the records whose private or public address it
        is, IPv6 in any spelling; an address nobody has selects nothing.
        """
        self.assertEqual(selectRecords(self.store, "10.0.3.2", 1), [self.a])
        self.assertEqual(selectRecords(self.store, "148.230.50.82", 1), [self.b])
        self.assertEqual(selectRecords(self.store, "2001:DB8:0::1", 1), [self.a])
        self.assertEqual(selectRecords(self.store, "192.0.2.1", 1), [])

    def test_neither(self) -> None:
        """
        An argument that is neither a UID nor an address is an error.
        """
        error = self.assertRaises(CommandFailed, selectRecords, self.store, "laptop", 1)
        self.assertIn("neither a FortiClient UID", str(error))

    def test_ecShmList(self) -> None:
        """
        L{ecShmList} prints the selected records and their summary.
        """
        out = io.StringIO()
        self.assertEqual(ecShmList(self.store, FakeEms(), "10.0.3.3", out, lambda: NOW), 0)
        self.assertEqual(out.getvalue(), formatEcShm([self.b], FakeEms(), NOW))


class GlueTests(SynchronousTestCase):
    """
    The argparse glue of C{diagnose endpoint ec-shm list}.
    """

    def setUp(self) -> None:
        path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(path)
        self.addCleanup(SQLiteEndpointStore.close, self.store)
        self.patch(self.store, "close", lambda: None)
        self.patch(endpoint, "openRegistry", lambda arguments: (self.store, FakeEms(), None))
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def ztnagw(self, *argv: str) -> int:
        """
        Run C{ztnagw argv...} with the diagnose commands; return the status.
        """
        parser = argparse.ArgumentParser(prog="ztnagw")
        diagnose.addCommands(parser.add_subparsers(required=True))
        arguments = parser.parse_args(list(argv))
        return arguments.func(arguments)

    def test_bothNames(self) -> None:
        """
        C{ec-shm list} and its pre-7.4.2 name C{record list} print the same.
        """
        self.store.put(WALKTHROUGH_DEVICE)
        self.assertEqual(self.ztnagw("diagnose", "endpoint", "ec-shm", "list"), 0)
        first = self.stdout.getvalue()
        self.assertIn("Record #0:\n", first)
        self.assertEqual(self.ztnagw("diagnose", "endpoint", "record", "list", DEVICE_UID), 0)
        self.assertEqual(self.stdout.getvalue(), first * 2)

    def test_error(self) -> None:
        """
        A bad argument ends with a message on stderr and status 1.
        """
        self.assertEqual(self.ztnagw("diagnose", "endpoint", "ec-shm", "list", "x"), 1)
        self.assertIn("ztnagw: 'x' is neither", self.stderr.getvalue())

    def test_help(self) -> None:
        """
        The command has C{--help}.
        """
        error = self.assertRaises(
            SystemExit, self.ztnagw, "diagnose", "endpoint", "ec-shm", "list", "--help"
        )
        self.assertEqual(error.code, 0)
        self.assertIn("usage: ztnagw diagnose endpoint ec-shm list", self.stdout.getvalue())


class FilterParsingTests(SynchronousTestCase):
    """
    The UID-or-IP argument, on any text.
    """

    def setUp(self) -> None:
        path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(path)
        self.addCleanup(self.store.close)

    @given(st.text(max_size=40))
    def test_anyText(self, text: str) -> None:
        """
        Any text either selects records (an address; a UID, here unknown)
        or is refused with L{CommandFailed}: nothing else escapes.
        """
        try:
            self.assertEqual(selectRecords(self.store, text, 1), [])
        except CommandFailed as e:
            self.assertTrue(str(e).startswith(("no endpoint", repr(text))), str(e))
