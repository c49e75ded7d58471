"""
Tests for L{ztnagw.cli.endpoint}: the C{ztnagw endpoint} commands.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import sys

import attrs
from attrs import frozen
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.support.pki import DEVICE_UID, makeCA, makeDevice, makeLeaf
from ztnagw.cli import endpoint
from ztnagw.cli._common import CommandFailed
from ztnagw.cli.endpoint import (
    EndpointCommands,
    ipArgument,
    recordToJson,
    tagArgument,
    uidArgument,
)
from ztnagw.config.model import TaggingCondition, TaggingRule
from ztnagw.config.schema import FrozenMap
from ztnagw.registry.interfaces import RegistryUnavailable
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore

#: The time the tests run at: 2026-05-26 10:00:00 UTC.
NOW = 1779789600.0

OTHER_UID = "0123456789ABCDEF0123456789ABCDEF"


@frozen
class FakeEms:
    """
    The EMS settings the endpoint commands need, as an fctems entry has
    them.
    """

    id: int = 1
    serialNumber: str = "FCTEMS8825007278"
    tenantId: str = "0" * 32
    outOfSyncThreshold: int = 180
    taggingRules: FrozenMap[str, TaggingRule] = FrozenMap()


class CommandTestCase(SynchronousTestCase):
    """
    L{EndpointCommands} over a real registry in a temporary directory.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(self.path)
        self.addCleanup(self.store.close)
        self.ems = FakeEms()
        self.out = io.StringIO()
        self.errors = io.StringIO()
        self.commands = EndpointCommands(
            self.store, self.ems, self.out, self.errors, clock=lambda: NOW
        )
        self.ca = makeCA(keySlot=10)

    def output(self) -> str:
        """
        What the commands printed so far; forget it.
        """
        text = self.out.getvalue()
        self.out.seek(0)
        self.out.truncate()
        return text

    def devicePem(self, uid: str = DEVICE_UID, serial: int = 0x1D3D0710, **kwargs: object) -> bytes:
        """
        A PEM device certificate for C{uid}, valid at L{NOW} unless
        C{kwargs} say otherwise.
        """
        kwargs.setdefault("notBefore", datetime.datetime.fromtimestamp(NOW - 86400, datetime.timezone.utc))
        kwargs.setdefault("notAfter", datetime.datetime.fromtimestamp(NOW + 86400, datetime.timezone.utc))
        return makeDevice(self.ca, uid, serial=serial, **kwargs).certificatePem()

    def registered(self, uid: str = DEVICE_UID, **changes: object) -> EndpointRecord:
        """
        Put a record for C{uid} in the registry.
        """
        return self.store.put(
            EndpointRecord(
                uid=uid,
                certSerial="1D3D0710",
                emsSerial=self.ems.serialNumber,
                registeredAt=NOW - 3600,
                **changes,  # type: ignore[arg-type]
            )
        )


class RegisterTests(CommandTestCase):
    """
    C{endpoint register}.
    """

    def test_pem(self) -> None:
        """
        A PEM device certificate gives a record with its UID and serial, the
        EMS's serial and tenant, the registration time, and no telemetry
        (offline).
        """
        status = self.commands.register(
            self.devicePem(),
            "dev.crt",
            tags=["Domain-Users"],
            ip="10.0.3.2",
            hostName="WIN10-01",
        )
        self.assertEqual(status, 0)
        stored = self.store.get(DEVICE_UID)
        self.assertEqual(
            stored,
            EndpointRecord(
                uid=DEVICE_UID,
                certSerial="1D3D0710",
                emsSerial="FCTEMS8825007278",
                tenantId="0" * 32,
                ip="10.0.3.2",
                hostName="WIN10-01",
                tags=frozenset({"Domain-Users"}),
                registeredAt=NOW,
                lastSeen=None,
                staticPresence=False,
                generation=stored.generation,
            ),
        )
        self.assertFalse(stored.isOnline(NOW, 180))
        self.assertEqual(
            self.output(),
            f"Registered endpoint {DEVICE_UID} (client cert SN 1D3D0710, EMS 1, "
            "offline until it reports).\n",
        )
        self.assertEqual(self.errors.getvalue(), "")

    def test_der(self) -> None:
        """
        A DER certificate is accepted too.
        """
        der = makeDevice(self.ca, DEVICE_UID, serial=0xABCDEF).certificate.public_bytes(
            serialization.Encoding.DER
        )
        self.commands.register(der, "dev.der")
        self.assertEqual(self.store.get(DEVICE_UID).certSerial, "ABCDEF")

    def test_static(self) -> None:
        """
        C{--static} registers an always-online device.
        """
        self.commands.register(self.devicePem(), "dev.crt", static=True)
        stored = self.store.get(DEVICE_UID)
        self.assertTrue(stored.staticPresence)
        self.assertTrue(stored.isOnline(NOW + 10**6, 180))
        self.assertIn("always online", self.output())

    def test_alreadyRegistered(self) -> None:
        """
        Registering a UID that is already registered fails and leaves the
        record alone, unless C{replace} is given.
        """
        before = self.registered(tags={"keep"})
        error = self.assertRaises(
            CommandFailed, self.commands.register, self.devicePem(serial=5), "dev.crt"
        )
        self.assertIn("already registered", str(error))
        self.assertIn("--replace", str(error))
        self.assertEqual(self.store.get(DEVICE_UID), before)
        self.commands.register(self.devicePem(serial=5), "dev.crt", replace=True)
        after = self.store.get(DEVICE_UID)
        self.assertEqual((after.certSerial, after.tags), ("05", frozenset()))
        self.assertIn("Replaced endpoint", self.output())

    def assertRefused(self, data: bytes, *fragments: str) -> None:
        """
        Registering C{data} fails with a message holding C{fragments}, and
        nothing is stored.
        """
        error = self.assertRaises(CommandFailed, self.commands.register, data, "dev.crt")
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        self.assertEqual(self.store.list(), [])

    def test_notACertificate(self) -> None:
        """
        Data that is neither a PEM nor a DER certificate is refused.
        """
        self.assertRefused(b"hello", "dev.crt is not a PEM or DER certificate")
        self.assertRefused(
            b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n",
            "dev.crt holds no PEM certificate",
        )

    def test_severalCertificates(self) -> None:
        """
        A PEM file with a chain is refused: the device certificate must come
        alone.
        """
        self.assertRefused(
            self.devicePem() + self.ca.certificatePem(), "2 certificates"
        )

    def test_commonNames(self) -> None:
        """
        The subject must have exactly one CN, a UID as EMS writes it (upper
        case); the gateway would refuse anything else.
        """
        self.assertRefused(
            makeLeaf(self.ca, commonNames=(DEVICE_UID, OTHER_UID)).certificatePem(),
            "2 common names",
        )
        self.assertRefused(
            makeLeaf(self.ca, commonNames=()).certificatePem(), "0 common names"
        )
        self.assertRefused(
            self.devicePem(DEVICE_UID.lower()),
            repr(DEVICE_UID.lower()),
            "not a FortiClient UID",
        )
        self.assertRefused(
            makeLeaf(self.ca, commonNames=("laptop",)).certificatePem(),
            "'laptop' is not a FortiClient UID",
        )

    def test_expired(self) -> None:
        """
        An expired certificate is registered with a warning on the error
        stream.
        """
        pem = self.devicePem(
            notBefore=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
            notAfter=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
        )
        self.commands.register(pem, "dev.crt")
        self.assertIsNotNone(self.store.get(DEVICE_UID))
        self.assertIn("warning: the certificate expired on 2021-01-01", self.errors.getvalue())


class ReadTests(CommandTestCase):
    """
    C{endpoint list} and C{endpoint show}.
    """

    def test_listEmpty(self) -> None:
        """
        An empty registry says so.
        """
        self.assertEqual(self.commands.list(), 0)
        self.assertEqual(self.output(), "No endpoints in the registry of EMS 1.\n")

    def test_list(self) -> None:
        """
        One line per device, ordered by UID, with its status as the gateway
        sees it.
        """
        self.registered(ip="10.0.3.2", hostName="WIN10-01", tags={"b", "a"}, lastSeen=NOW - 5)
        self.registered(OTHER_UID, revoked=True)
        self.commands.list()
        self.assertEqual(
            self.output(),
            "UID                               STATUS   CERT SN   IP        HOST      TAGS\n"
            f"{OTHER_UID}  revoked  1D3D0710  -         -         -\n"
            f"{DEVICE_UID}  online   1D3D0710  10.0.3.2  WIN10-01  a,b\n",
        )

    def test_listJson(self) -> None:
        """
        C{--json} prints every record with every attribute and whether it is
        online.
        """
        a = self.registered(tags={"b", "a"}, facts={"os": "linux"}, macList=("m1",), lastSeen=NOW)
        b = self.registered(OTHER_UID)
        self.commands.list(asJson=True)
        listed = json.loads(self.output())
        self.assertEqual(listed, [recordToJson(b, False), recordToJson(a, True)])
        self.assertEqual(listed[1]["tags"], ["a", "b"])
        self.assertEqual(listed[1]["macList"], ["m1"])
        self.assertEqual(
            set(listed[1]), {f.name for f in attrs.fields(EndpointRecord)} | {"online", "ruleTags"}
        )

    def test_show(self) -> None:
        """
        C{show} prints every fact of one device.
        """
        self.registered(
            ip="10.0.3.2",
            publicIp="148.230.50.82",
            macList=("02:09:0f:00:03:03", "02:09:0f:00:03:04"),
            tags={"Domain-Users"},
            facts={"os.version": "12"},
            lastSeen=NOW - 12,
            quarantined=True,
        )
        self.commands.show(DEVICE_UID)
        text = self.output()
        for line in (
            f"FortiClient UID:     {DEVICE_UID}",
            "Status:              quarantined",
            "Client cert SN:      1D3D0710",
            "Quarantined:         yes",
            "Online status:       online",
            "Last seen:           2026-05-26 09:59:48 UTC (12 s ago)",
            "MAC list:            02:09:0f:00:03:03, 02:09:0f:00:03:04",
            "Policy tags:         EMS1_ZTNA_all_registered_clients, EMS1_ZTNA_Domain-Users",
            "Fact os.version:     12",
        ):
            self.assertIn(line + "\n", text)

    def test_showRuleTags(self) -> None:
        """
        C{show} lists the tags the EMS's tagging rules give the device now
        (they are derived, not stored, and policies match them like
        assigned ones), in C{Rule tags} and among the C{Policy tags}, and
        C{show --json} has them as C{ruleTags}; a rule the device does not
        satisfy adds nothing.
        """
        linux = TaggingRule(
            name="linux",
            tag="Linux-Hosts",
            conditions=FrozenMap({1: TaggingCondition(id=1, type="os", os="linux")}),
        )
        windows = TaggingRule(
            name="windows",
            tag="Windows-Hosts",
            conditions=FrozenMap({1: TaggingCondition(id=1, type="os", os="windows")}),
        )
        self.commands = EndpointCommands(
            self.store,
            FakeEms(taggingRules=FrozenMap({"linux": linux, "windows": windows})),
            self.out,
            self.errors,
            clock=lambda: NOW,
        )
        stored = self.registered(osType="Linux", tags={"Domain-Users"}, lastSeen=NOW)
        self.commands.show(DEVICE_UID)
        text = self.output()
        self.assertIn("Tags:                Domain-Users\n", text)
        self.assertIn("Rule tags:           Linux-Hosts\n", text)
        self.assertIn(
            "Policy tags:         EMS1_ZTNA_all_registered_clients, "
            "EMS1_ZTNA_Domain-Users, EMS1_ZTNA_Linux-Hosts\n",
            text,
        )
        self.commands.show(DEVICE_UID, asJson=True)
        shown = json.loads(self.output())
        self.assertEqual(shown["ruleTags"], ["Linux-Hosts"])
        self.assertEqual(shown, recordToJson(stored, True, {"Linux-Hosts"}))

    def test_showJson(self) -> None:
        """
        C{show --json} prints the record as a JSON object.
        """
        stored = self.registered(staticPresence=True)
        self.commands.show(DEVICE_UID, asJson=True)
        self.assertEqual(json.loads(self.output()), recordToJson(stored, True))

    def test_showUnknown(self) -> None:
        """
        Showing an unknown UID fails, naming it and the EMS.
        """
        error = self.assertRaises(CommandFailed, self.commands.show, DEVICE_UID)
        self.assertEqual(str(error), f"no endpoint {DEVICE_UID} in the registry of EMS 1")


class ChangeTests(CommandTestCase):
    """
    The commands that change one record.
    """

    def test_flags(self) -> None:
        """
        C{revoke}, C{quarantine} and their opposites set the flags; doing it
        twice says so and writes nothing.
        """
        self.registered()
        for method, name, value in (
            (self.commands.revoke, "revoked", True),
            (self.commands.unrevoke, "revoked", False),
            (self.commands.quarantine, "quarantined", True),
            (self.commands.unquarantine, "quarantined", False),
        ):
            self.assertEqual(method(DEVICE_UID), 0)
            stored = self.store.get(DEVICE_UID)
            self.assertEqual(getattr(stored, name), value)
            self.assertNotIn("already", self.output())
            method(DEVICE_UID)
            self.assertIn("was already", self.output())
            self.assertEqual(self.store.get(DEVICE_UID), stored)

    def test_revokeMessage(self) -> None:
        """
        C{revoke} confirms in one line.
        """
        self.registered()
        self.commands.revoke(DEVICE_UID)
        self.assertEqual(self.output(), f"Endpoint {DEVICE_UID} revoked.\n")

    def test_tags(self) -> None:
        """
        C{tag add} and C{tag remove} change one tag and keep the others.
        """
        self.registered(tags={"keep"})
        self.commands.tag(DEVICE_UID, "add", "Low")
        self.assertEqual(self.store.get(DEVICE_UID).tags, {"keep", "Low"})
        self.commands.tag(DEVICE_UID, "add", "Low")
        self.commands.tag(DEVICE_UID, "remove", "keep")
        self.commands.tag(DEVICE_UID, "remove", "keep")
        self.assertEqual(self.store.get(DEVICE_UID).tags, {"Low"})
        self.assertEqual(
            self.output().splitlines(),
            [
                f"Endpoint {DEVICE_UID} now has tag Low.",
                f"Endpoint {DEVICE_UID} already has tag Low.",
                f"Endpoint {DEVICE_UID} no longer has tag keep.",
                f"Endpoint {DEVICE_UID} does not have tag keep.",
            ],
        )

    def test_delete(self) -> None:
        """
        C{delete} removes the record.
        """
        self.registered()
        self.commands.delete(DEVICE_UID)
        self.assertIsNone(self.store.get(DEVICE_UID))
        self.assertEqual(self.output(), f"Endpoint {DEVICE_UID} deleted.\n")

    def test_unknown(self) -> None:
        """
        Every change of an unknown UID fails with the same clear message.
        """
        for method in (
            self.commands.revoke,
            self.commands.unrevoke,
            self.commands.quarantine,
            self.commands.unquarantine,
            self.commands.delete,
            lambda uid: self.commands.tag(uid, "add", "x"),
        ):
            error = self.assertRaises(CommandFailed, method, DEVICE_UID)
            self.assertEqual(
                str(error), f"no endpoint {DEVICE_UID} in the registry of EMS 1"
            )


class ArgumentTests(SynchronousTestCase):
    """
    The parsers of command-line values.
    """

    @given(st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32))
    def test_uidAnyCase(self, text: str) -> None:
        """
        A UID is accepted in any case and comes out upper case.
        """
        self.assertEqual(uidArgument(text), text.upper())

    @given(st.text())
    def test_uidRefused(self, text: str) -> None:
        """
        Anything but 32 hex digits (around blanks) is refused.
        """
        stripped = text.strip()
        if len(stripped) == 32 and all(c in "0123456789abcdefABCDEF" for c in stripped):
            self.assertEqual(uidArgument(text), stripped.upper())
        else:
            self.assertRaises(argparse.ArgumentTypeError, uidArgument, text)

    def test_tag(self) -> None:
        """
        Tags are checked by the registry's rules.
        """
        self.assertEqual(tagArgument("Domain-Users"), "Domain-Users")
        error = self.assertRaises(argparse.ArgumentTypeError, tagArgument, "a b")
        self.assertIn("no spaces", str(error))

    def test_ip(self) -> None:
        """
        IP addresses are normalised; anything else is refused.
        """
        self.assertEqual(ipArgument("2001:DB8::0:1"), "2001:db8::1")
        self.assertEqual(ipArgument("10.0.3.2"), "10.0.3.2")
        self.assertRaises(argparse.ArgumentTypeError, ipArgument, "10.0.3")


class GlueTests(SynchronousTestCase):
    """
    The argparse glue: options, exit statuses and messages, with the
    registry opening replaced (the configuration is tested end to end in
    L{EndToEndTests}).
    """

    def setUp(self) -> None:
        path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.store = SQLiteEndpointStore(path)
        self.addCleanup(SQLiteEndpointStore.close, self.store)
        self.closed: list[bool] = []
        self.opened: list[argparse.Namespace] = []
        # The test goes on using the store after the command "closed" it.
        self.patch(self.store, "close", lambda: self.closed.append(True))

        def openRegistry(arguments: argparse.Namespace) -> tuple:
            self.opened.append(arguments)
            return self.store, FakeEms(), None

        self.patch(endpoint, "openRegistry", openRegistry)
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)

    def ztnagw(self, *argv: str) -> int:
        """
        Run C{ztnagw endpoint argv...} and return its exit status.
        """
        parser = argparse.ArgumentParser(prog="ztnagw")
        endpoint.addCommands(parser.add_subparsers(required=True))
        arguments = parser.parse_args(["endpoint", *argv])
        return arguments.func(arguments)

    def test_options(self) -> None:
        """
        C{--config} and C{--ems} reach the registry opening; the registry is
        closed afterwards.
        """
        self.assertEqual(self.ztnagw("list", "--config", "/x.conf", "--ems", "2"), 0)
        self.assertEqual((self.opened[0].config, self.opened[0].ems), ("/x.conf", 2))
        self.assertEqual(self.closed, [True])

    def test_lowerCaseUid(self) -> None:
        """
        A UID typed in lower case finds the record.
        """
        self.store.put(EndpointRecord(uid=DEVICE_UID, certSerial="01"))
        self.assertEqual(self.ztnagw("revoke", DEVICE_UID.lower()), 0)
        self.assertTrue(self.store.get(DEVICE_UID).revoked)

    def test_unknownUid(self) -> None:
        """
        An unknown UID ends the command with a message on stderr, status 1
        and no traceback.
        """
        self.assertEqual(self.ztnagw("show", DEVICE_UID), 1)
        self.assertEqual(
            self.stderr.getvalue(),
            f"ztnagw: no endpoint {DEVICE_UID} in the registry of EMS 1\n",
        )
        self.assertEqual(self.closed, [True])

    def test_registryFails(self) -> None:
        """
        A registry failure during a command is reported on stderr, status 1.
        """

        def broken() -> None:
            raise RegistryUnavailable("disk on fire")

        self.patch(self.store, "list", broken)
        self.assertEqual(self.ztnagw("list"), 1)
        self.assertEqual(
            self.stderr.getvalue(), "ztnagw: the endpoint registry failed: disk on fire\n"
        )

    def test_registerFile(self) -> None:
        """
        C{register --cert FILE} reads the file; a missing file is a clear
        error.
        """
        ca = makeCA(keySlot=10)
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        certPath, _ = makeDevice(ca, DEVICE_UID, serial=0x42).writeTo(directory, "dev")
        self.assertEqual(
            self.ztnagw("register", "--cert", certPath, "--tag", "Low", "--static"), 0
        )
        stored = self.store.get(DEVICE_UID)
        self.assertEqual((stored.certSerial, stored.tags, stored.staticPresence), ("42", {"Low"}, True))
        missing = os.path.join(directory, "missing.crt")
        self.assertEqual(self.ztnagw("register", "--cert", missing), 1)
        self.assertEqual(
            self.stderr.getvalue(),
            f"ztnagw: cannot read {missing}: No such file or directory\n",
        )

    def test_badTag(self) -> None:
        """
        An invalid tag is a usage error (status 2) naming the rule.
        """
        error = self.assertRaises(
            SystemExit, self.ztnagw, "tag", DEVICE_UID, "add", "two words"
        )
        self.assertEqual(error.code, 2)
        self.assertIn("no spaces", self.stderr.getvalue())

    def test_help(self) -> None:
        """
        Every subcommand has C{--help}.
        """
        for command in (
            "register", "list", "show", "revoke", "unrevoke", "quarantine",
            "unquarantine", "tag", "delete",
        ):
            error = self.assertRaises(SystemExit, self.ztnagw, command, "--help")
            self.assertEqual(error.code, 0)
            self.assertIn(f"usage: ztnagw endpoint {command}", self.stdout.getvalue())


class CertificateParsingTests(SynchronousTestCase):
    """
    L{endpoint.loadCertificate} never fails otherwise than with a clear
    L{CommandFailed}, whatever the input.
    """

    @given(st.binary(max_size=2000))
    def test_arbitraryBytes(self, data: bytes) -> None:
        """
        Random bytes are refused with a message naming the input.
        """
        error = self.assertRaises(CommandFailed, endpoint.loadCertificate, data, "in.crt")
        self.assertIn("in.crt", str(error))

    @given(st.binary(max_size=500))
    def test_arbitraryPem(self, body: bytes) -> None:
        """
        Random data between PEM armour lines is refused the same way.
        """
        data = b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"
        error = self.assertRaises(CommandFailed, endpoint.loadCertificate, data, "in.crt")
        self.assertIn("in.crt", str(error))

    @given(st.ip_addresses())
    def test_ipRoundTrip(self, address: object) -> None:
        """
        Every IPv4 and IPv6 address is accepted and printed canonically.
        """
        self.assertEqual(ipArgument(str(address)), str(address))
        self.assertEqual(ipArgument(str(address).upper()), str(address))

    def test_disabledEmsWithoutSerial(self) -> None:
        """
        Registering on an fctems entry that has no serial number yet records
        an empty EMS serial instead of failing.
        """
        path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        store = SQLiteEndpointStore(path)
        self.addCleanup(store.close)
        commands = EndpointCommands(store, FakeEms(serialNumber=None), io.StringIO())  # type: ignore[arg-type]
        commands.register(makeDevice(makeCA(keySlot=10), DEVICE_UID).certificatePem(), "d.crt")
        self.assertEqual(store.get(DEVICE_UID).emsSerial, "")


#: A configuration with one enabled EMS and its registry in the state
#: directory next to the file.
CONFIGURATION = """\
config system global
    set state-dir "state"
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set https-port 18013
        set serial-number "FCTEMS8825007278"
    next
end
"""


class EndToEndTests(SynchronousTestCase):
    """
    The real C{ztnagw} entry point with a real configuration file.
    """

    def setUp(self) -> None:
        self.directory = os.path.abspath(self.mktemp())
        os.mkdir(self.directory)
        self.config = os.path.join(self.directory, "ztnagw.conf")
        with open(self.config, "w") as f:
            f.write(CONFIGURATION)
        self.registry = os.path.join(self.directory, "state", "ems1", "registry.sqlite")
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.patch(sys, "stdout", self.stdout)
        self.patch(sys, "stderr", self.stderr)
        ca = makeCA(keySlot=10)
        self.certificate, _ = makeDevice(ca, DEVICE_UID, serial=0x1D3D).writeTo(
            self.directory, "device"
        )

    def ztnagw(self, *argv: str) -> tuple[int, str, str]:
        """
        Run C{ztnagw argv...}; return its status and what it printed.
        """
        from ztnagw.cli import main

        for stream in (self.stdout, self.stderr):
            stream.seek(0)
            stream.truncate()
        status = main(list(argv))
        return status, self.stdout.getvalue(), self.stderr.getvalue()

    def test_lifeCycle(self) -> None:
        """
        Register, revoke, tag, show and delete a device through the
        command line; the registry is created in the EMS's state directory
        with private modes.
        """
        c = ("--config", self.config)
        status, out, errors = self.ztnagw(
            "endpoint", "register", "--cert", self.certificate, "--tag", "Low", *c
        )
        self.assertEqual((status, errors), (0, ""))
        self.assertEqual(os.stat(self.registry).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.registry)).st_mode & 0o777, 0o700)
        self.assertEqual(self.ztnagw("endpoint", "revoke", DEVICE_UID.lower(), *c)[0], 0)
        self.assertEqual(self.ztnagw("endpoint", "tag", DEVICE_UID, "add", "High", *c)[0], 0)
        status, out, _ = self.ztnagw("endpoint", "show", DEVICE_UID, "--json", *c)
        shown = json.loads(out)
        self.assertEqual(
            (shown["certSerial"], shown["revoked"], shown["tags"], shown["emsSerial"]),
            ("1D3D", True, ["High", "Low"], "FCTEMS8825007278"),
        )
        status, out, _ = self.ztnagw("diagnose", "endpoint", "ec-shm", "list", *c)
        self.assertIn("    Client cert revoked: yes\n", out)
        self.assertTrue(out.endswith("out-of-sync records: 0\n"))
        self.assertEqual(self.ztnagw("endpoint", "delete", DEVICE_UID, *c)[0], 0)
        self.assertEqual(
            self.ztnagw("endpoint", "list", *c)[1], "No endpoints in the registry of EMS 1.\n"
        )

    def test_environment(self) -> None:
        """
        Without C{--config}, C{$ZTNAGW_CONFIG} names the configuration.
        """
        self.patch(os, "environ", {**os.environ, "ZTNAGW_CONFIG": self.config})
        self.assertEqual(self.ztnagw("endpoint", "list"), (0, "No endpoints in the registry of EMS 1.\n", ""))

    def test_unknownEms(self) -> None:
        """
        An C{--ems} that is not configured is a clear error.
        """
        status, _, errors = self.ztnagw("endpoint", "list", "--config", self.config, "--ems", "2")
        self.assertEqual(status, 1)
        self.assertIn("no 'config endpoint-control fctems' entry 2", errors)

    def test_damagedRegistry(self) -> None:
        """
        A registry that is not a database ends the command with a clear
        message and status 1, without a traceback.
        """
        os.makedirs(os.path.dirname(self.registry), mode=0o700)
        with open(self.registry, "wb") as f:
            f.write(b"garbage " * 1000)
        status, out, errors = self.ztnagw("endpoint", "list", "--config", self.config)
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(
            errors.startswith(
                f"ztnagw: cannot open the endpoint registry: {self.registry} is "
                "damaged or not an SQLite database"
            ),
            errors,
        )
        self.assertNotIn("Traceback", errors)

    def test_missingConfiguration(self) -> None:
        """
        A missing configuration is a clear error.
        """
        missing = os.path.join(self.directory, "missing.conf")
        status, _, errors = self.ztnagw("endpoint", "list", "--config", missing)
        self.assertEqual(status, 1)
        self.assertEqual(
            errors, f"ztnagw: cannot read configuration {missing}: No such file or directory\n"
        )
