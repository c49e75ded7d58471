# -*- test-case-name: tests.cli.test_endpoint -*-
"""
C{ztnagw endpoint}: look at and change the devices in an EMS's registry.

What an EMS administrator does in FortiClient EMS's endpoint list (revoke a
client certificate, quarantine a device, tag it) is done here, against the
registry of one C{fctems} entry.  Every change is one registry transaction;
a running gateway applies it within a second, without a restart (see
L{ztnagw.registry.index}).

C{register} records a device whose certificate was issued elsewhere (another
CA the gateway trusts); devices that enrol through the EMS role are recorded
by it.  A registered device is offline until it reports telemetry, unless it
is registered C{--static}: a device without an agent (a server, a kiosk) is
then always online, and only revocation, quarantine or deletion stop it.

The command bodies are methods of L{EndpointCommands}, which takes the store
and the EMS settings; the argparse glue opens them from C{--config} and
C{--ems}.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

import attrs

from ztnagw.cli._common import (
    CommandFailed,
    addRegistryOptions,
    openRegistry,
    runCommand,
)
from ztnagw.ems.tagging import ruleTags
from ztnagw.registry.exceptions import InvalidRecord
from ztnagw.registry.interfaces import RegistryUnavailable, UnknownEndpoint
from ztnagw.registry.record import (
    ALL_REGISTERED_CLIENTS,
    REGISTERED,
    EndpointRecord,
    canonicalSerial,
    isUid,
)
from ztnagw.registry.validation import tagNameProblem

if TYPE_CHECKING:  # pragma: no cover
    from cryptography import x509

    from ztnagw.config.model import TaggingRule
    from ztnagw.registry.interfaces import IEndpointStore


class EmsSettings(Protocol):
    """
    What the endpoint commands need to know of an C{fctems} entry (the
    configuration's C{EmsConnector} provides it).
    """

    id: int
    serialNumber: str
    tenantId: str
    outOfSyncThreshold: float
    taggingRules: Mapping[str, TaggingRule]


# Parsing command-line values


def uidArgument(text: str) -> str:
    """
    A UID as typed on the command line, in any case, as the registry spells
    it (upper case).

    @raise argparse.ArgumentTypeError: it is not 32 hex digits.
    """
    uid = text.strip().upper()
    if not isUid(uid):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a FortiClient UID (32 hex digits)"
        )
    return uid


def tagArgument(text: str) -> str:
    """
    A tag name as typed on the command line.

    @raise argparse.ArgumentTypeError: it is not a valid tag name.
    """
    problem = tagNameProblem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def ipArgument(text: str) -> str:
    """
    An IP address as typed on the command line, normalised.

    @raise argparse.ArgumentTypeError: it is not an IPv4 or IPv6 address.
    """
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address")


# Certificates


def loadCertificate(data: bytes, source: str) -> "x509.Certificate":
    """
    Read exactly one certificate, PEM or DER.

    @param source: how messages name the input (a file name).
    @raise CommandFailed: C{data} holds no certificate, or several.
    """
    from cryptography import x509

    if b"-----BEGIN" in data:
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CommandFailed(f"{source} holds no PEM certificate")
        if len(certificates) != 1:
            raise CommandFailed(
                f"{source} holds {len(certificates)} certificates; give the "
                "device certificate alone"
            )
        return certificates[0]
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CommandFailed(f"{source} is not a PEM or DER certificate")


def certificateIdentity(
    certificate: "x509.Certificate", source: str
) -> tuple[str, str]:
    """
    The UID and serial a device certificate carries, by the rules the
    gateway applies to a presented certificate: exactly one subject CN,
    which is a FortiClient UID exactly as written (32 upper-case hex
    digits), and a non-negative serial.

    @return: C{(uid, certSerial)}, the serial as L{canonicalSerial} spells
        it.
    @raise CommandFailed: the certificate is not a device certificate; the
        message says why.
    """
    from cryptography.x509.oid import NameOID

    from ztnagw.device import subjectUid

    try:
        names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        raise CommandFailed(f"{source}: the certificate's subject is malformed")
    if len(names) != 1:
        raise CommandFailed(
            f"{source}: the subject has {len(names)} common names (CN); a "
            "device certificate has exactly one, the FortiClient UID"
        )
    uid = subjectUid(certificate)
    if uid is None:
        raise CommandFailed(
            f"{source}: the subject CN {names[0].value!r} is not a FortiClient "
            "UID (32 upper-case hex digits)"
        )
    serial = certificate.serial_number
    if serial < 0:
        raise CommandFailed(
            f"{source}: the certificate's serial number is negative, which "
            "RFC 5280 forbids"
        )
    return uid, canonicalSerial(serial)


# Presenting records


def formatTime(when: float | None, now: float | None = None) -> str:
    """
    A POSIX time as UTC text, with how long ago it was when C{now} is given.
    """
    if when is None:
        return "never"
    text = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC"
    )
    if now is not None:
        text += f" ({max(0, round(now - when))} s ago)"
    return text


def statusOf(record: EndpointRecord, online: bool) -> str:
    """
    One word for what the gateway will do with the device: C{revoked} and
    C{quarantined} devices are denied whatever else holds; the others are
    C{online} or C{offline}.
    """
    if record.revoked:
        return "revoked"
    if record.quarantined:
        return "quarantined"
    return "online" if online else "offline"


def policyTagNames(record: EndpointRecord, emsId: int, ruleTags: Iterable[str] = ()) -> list[str]:
    """
    The tags of C{record} as ZTNA policies name them
    (C{EMS<id>_ZTNA_<tag>}), the built-in C{all_registered_clients} first
    for a registered device.

    @param ruleTags: the tags its EMS's tagging rules give the device now
        (L{ztnagw.ems.tagging.ruleTags}): policies see them like assigned
        ones, so a view of what policies match must show them too.
    """
    tags = sorted(set(record.tags).union(ruleTags))
    if record.registrationStatus == REGISTERED:
        tags.insert(0, ALL_REGISTERED_CLIENTS)
    return [f"EMS{emsId}_ZTNA_{tag}" for tag in tags]


def recordToJson(record: EndpointRecord, online: bool, derived: Iterable[str] = ()) -> dict[str, Any]:
    """
    A record as a JSON object: every attribute under its own name (tags
    sorted, times as POSIX seconds), plus C{online} and C{ruleTags} (the
    tags tagging rules give the device now, C{derived}, sorted).
    """
    result: dict[str, Any] = {}
    for field in attrs.fields(EndpointRecord):
        value = getattr(record, field.name)
        if field.name == "tags":
            value = sorted(value)
        elif field.name == "macList":
            value = list(value)
        elif field.name == "facts":
            value = dict(sorted(value.items()))
        result[field.name] = value
    result["online"] = online
    result["ruleTags"] = sorted(derived)
    return result


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


class EndpointCommands:
    """
    The bodies of the C{ztnagw endpoint} subcommands, on one store and one
    EMS.  Each method prints to C{out} and returns the exit status, or
    raises L{CommandFailed}.
    """

    def __init__(
        self,
        store: "IEndpointStore",
        ems: EmsSettings,
        out: IO[str],
        errors: IO[str] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        """
        @param store: the EMS's registry.
        @param ems: the EMS's settings.
        @param out: where results go.
        @param errors: where warnings go (standard error by default).
        @param clock: the current POSIX time.
        """
        self._store = store
        self._ems = ems
        self._out = out
        self._errors = errors if errors is not None else sys.stderr
        self._clock = clock

    def _print(self, line: str = "") -> None:
        print(line, file=self._out)

    def _unknown(self, uid: str) -> CommandFailed:
        return CommandFailed(
            f"no endpoint {uid} in the registry of EMS {self._ems.id}"
        )

    def _online(self, record: EndpointRecord, now: float) -> bool:
        return record.isOnline(now, self._ems.outOfSyncThreshold)

    def _ruleTags(self, record: EndpointRecord) -> frozenset[str]:
        return ruleTags(self._ems.taggingRules, record)

    # Reading

    def list(self, asJson: bool = False) -> int:
        """
        C{endpoint list}: every device, one line each (or a JSON array).
        """
        now = self._clock()
        records = self._store.list()
        if asJson:
            self._print(
                json.dumps(
                    [recordToJson(r, self._online(r, now), self._ruleTags(r)) for r in records],
                    indent=2,
                )
            )
            return 0
        if not records:
            self._print(f"No endpoints in the registry of EMS {self._ems.id}.")
            return 0
        rows = [["UID", "STATUS", "CERT SN", "IP", "HOST", "TAGS"]]
        for r in records:
            rows.append(
                [
                    r.uid,
                    statusOf(r, self._online(r, now)),
                    r.certSerial,
                    r.ip or "-",
                    r.hostName or "-",
                    ",".join(sorted(r.tags)) or "-",
                ]
            )
        for line in _table(rows):
            self._print(line)
        return 0

    def show(self, uid: str, asJson: bool = False) -> int:
        """
        C{endpoint show UID}: everything the registry knows of one device.
        """
        record = self._store.get(uid)
        if record is None:
            raise self._unknown(uid)
        now = self._clock()
        online = self._online(record, now)
        derived = self._ruleTags(record)
        if asJson:
            self._print(json.dumps(recordToJson(record, online, derived), indent=2))
            return 0
        if record.staticPresence:
            presence = "online (static: always online)"
        elif online:
            presence = "online"
        else:
            presence = "offline"
        lines = [
            ("FortiClient UID", record.uid),
            ("Status", statusOf(record, online)),
            ("Client cert SN", record.certSerial),
            ("Client cert revoked", "yes" if record.revoked else "no"),
            ("Quarantined", "yes" if record.quarantined else "no"),
            ("Online status", presence),
            ("Last seen", formatTime(record.lastSeen, now)),
            ("Registration status", record.registrationStatus),
            ("Registered", formatTime(record.registeredAt)),
            ("EMS serial number", record.emsSerial),
            ("EMS tenant id", record.tenantId),
            ("IP address", record.ip or ""),
            ("MAC address", record.mac or ""),
            ("MAC list", ", ".join(record.macList)),
            ("Public IP address", record.publicIp or ""),
            ("On-net status", "on-net" if record.onNet else "off-net"),
            ("Host name", record.hostName or ""),
            ("OS", " ".join(filter(None, (record.osType, record.osVersion)))),
            ("Client version", record.clientVersion or ""),
            ("User", record.user or ""),
            ("Tags", ", ".join(sorted(record.tags))),
            ("Rule tags", ", ".join(sorted(derived))),
            ("Policy tags", ", ".join(policyTagNames(record, self._ems.id, derived))),
        ]
        lines += [(f"Fact {name}", value) for name, value in sorted(record.facts.items())]
        lines.append(("Generation", str(record.generation)))
        width = max(len(label) for label, _ in lines) + 1
        for label, value in lines:
            self._print(f"{label + ':':<{width}} {value}".rstrip())
        return 0

    # Changing

    def register(
        self,
        certificateData: bytes,
        source: str,
        tags: Iterable[str] = (),
        ip: str | None = None,
        hostName: str | None = None,
        static: bool = False,
        replace: bool = False,
    ) -> int:
        """
        C{endpoint register}: record the device a certificate names.

        @param certificateData: the certificate, PEM or DER.
        @param source: how messages name it (the file name).
        @param tags: posture tags to assign (validated by L{tagArgument}).
        @param ip: the device's private IP address.
        @param hostName: the device's host name.
        @param static: the device is always online (no agent reports
            telemetry for it).
        @param replace: replace an existing record of the same UID
            (everything it held is forgotten).
        """
        certificate = loadCertificate(certificateData, source)
        uid, serial = certificateIdentity(certificate, source)
        now = self._clock()
        notAfter = certificate.not_valid_after_utc.timestamp()
        notBefore = certificate.not_valid_before_utc.timestamp()
        if notAfter < now:
            print(
                f"ztnagw: warning: the certificate expired on "
                f"{formatTime(notAfter)}; the gateway will refuse it",
                file=self._errors,
            )
        elif notBefore > now:
            print(
                f"ztnagw: warning: the certificate is valid only from "
                f"{formatTime(notBefore)}",
                file=self._errors,
            )
        record = EndpointRecord(
            uid=uid,
            certSerial=serial,
            # A disabled fctems entry may have no serial number yet.
            emsSerial=self._ems.serialNumber or "",
            tenantId=self._ems.tenantId,
            ip=ip,
            hostName=hostName,
            tags=frozenset(tags),
            registeredAt=now,
            lastSeen=None,
            staticPresence=static,
        )
        with self._store.transaction() as transaction:
            existing = transaction.get(uid)
            if existing is not None and not replace:
                raise CommandFailed(
                    f"endpoint {uid} is already registered (certificate SN "
                    f"{existing.certSerial}); use --replace to replace its "
                    "record"
                )
            transaction.put(record)
        verb = "Replaced" if existing is not None else "Registered"
        self._print(
            f"{verb} endpoint {uid} (client cert SN {serial}, EMS "
            f"{self._ems.id}"
            + (", always online" if static else ", offline until it reports")
            + ")."
        )
        return 0

    def _change(
        self,
        uid: str,
        change: Callable[[EndpointRecord], EndpointRecord],
        done: str,
        already: str,
    ) -> int:
        before: list[EndpointRecord] = []

        def remember(record: EndpointRecord) -> EndpointRecord:
            before.append(record)
            return change(record)

        try:
            after = self._store.update(uid, remember)
        except UnknownEndpoint:
            raise self._unknown(uid)
        if after.generation == before[-1].generation:
            self._print(f"Endpoint {uid} {already}.")
        else:
            self._print(f"Endpoint {uid} {done}.")
        return 0

    def _setFlag(self, uid: str, name: str, value: bool, word: str) -> int:
        return self._change(
            uid,
            lambda r: attrs.evolve(r, **{name: value}),
            word,
            f"was already {word}",
        )

    def revoke(self, uid: str) -> int:
        """
        C{endpoint revoke UID}: refuse the device's certificate (code 063).
        """
        return self._setFlag(uid, "revoked", True, "revoked")

    def unrevoke(self, uid: str) -> int:
        """
        C{endpoint unrevoke UID}: accept the device's certificate again.
        """
        return self._setFlag(uid, "revoked", False, "no longer revoked")

    def quarantine(self, uid: str) -> int:
        """
        C{endpoint quarantine UID}: deny the device everywhere.
        """
        return self._setFlag(uid, "quarantined", True, "quarantined")

    def unquarantine(self, uid: str) -> int:
        """
        C{endpoint unquarantine UID}: release the device from quarantine.
        """
        return self._setFlag(uid, "quarantined", False, "no longer quarantined")

    def tag(self, uid: str, action: str, tag: str) -> int:
        """
        C{endpoint tag UID add|remove TAG}.
        """
        if action == "add":
            return self._change(
                uid,
                lambda r: attrs.evolve(r, tags=r.tags | {tag}),
                f"now has tag {tag}",
                f"already has tag {tag}",
            )
        if action == "remove":
            return self._change(
                uid,
                lambda r: attrs.evolve(r, tags=r.tags - {tag}),
                f"no longer has tag {tag}",
                f"does not have tag {tag}",
            )
        raise CommandFailed(f"unknown tag action {action!r}: use add or remove")

    def delete(self, uid: str) -> int:
        """
        C{endpoint delete UID}: forget the device; its certificate no longer
        opens anything (code 066) until it is registered again.
        """
        try:
            self._store.delete(uid)
        except UnknownEndpoint:
            raise self._unknown(uid)
        self._print(f"Endpoint {uid} deleted.")
        return 0


# The argparse glue


def _readCertificateFile(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read(1024 * 1024)
    except OSError as e:
        raise CommandFailed(f"cannot read {path}: {e.strerror}")


def withRegistry(
    body: Callable[["IEndpointStore", EmsSettings, argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """
    Turn C{body(store, ems, arguments)} into an argparse C{func}: open the
    registry chosen by C{--config}/C{--ems}, run the body, close the
    registry, and report any failure on stderr with a non-zero status.
    """

    def run(arguments: argparse.Namespace) -> int:
        store, ems, _ = openRegistry(arguments)
        try:
            return body(store, ems, arguments)
        except RegistryUnavailable as e:
            raise CommandFailed(f"the endpoint registry failed: {e}")
        except InvalidRecord as e:
            raise CommandFailed(f"the endpoint registry refused the record: {e}")
        finally:
            store.close()

    return lambda arguments: runCommand(run, arguments)


def withEndpointCommands(
    body: Callable[[EndpointCommands, argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """
    Turn C{body(commands, arguments)} into an argparse C{func} (see
    L{withRegistry}), C{commands} being an L{EndpointCommands} printing to
    standard output.
    """
    return withRegistry(
        lambda store, ems, arguments: body(
            EndpointCommands(store, ems, sys.stdout), arguments
        )
    )


def _uidCommand(
    commands: argparse._SubParsersAction,
    name: str,
    help: str,
    method: Callable[[EndpointCommands, str], int],
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    parser.add_argument("uid", metavar="UID", type=uidArgument, help="FortiClient UID")
    addRegistryOptions(parser)
    parser.set_defaults(func=withEndpointCommands(lambda c, a: method(c, a.uid)))
    return parser


def addCommands(subparsers: argparse._SubParsersAction) -> None:
    """
    Register C{ztnagw endpoint} and its subcommands.
    """
    endpoint = subparsers.add_parser(
        "endpoint",
        help="list, register, revoke, quarantine and tag devices",
        description="Look at and change the devices in the registry of an "
        "fctems entry.  A running gateway applies every change within a "
        "second.",
    )
    commands = endpoint.add_subparsers(title="commands", metavar="COMMAND", required=True)

    register = commands.add_parser(
        "register",
        help="record a device from its certificate",
        description="Record the device named by a certificate issued outside "
        "the EMS role (PEM or DER; '-' reads standard input).  The UID is "
        "the certificate's subject CN, the serial its serial number.  The "
        "device is offline until it reports telemetry, unless --static.",
    )
    register.add_argument("--cert", metavar="FILE", required=True, help="the device certificate")
    register.add_argument(
        "--tag",
        metavar="TAG",
        action="append",
        default=[],
        type=tagArgument,
        help="posture tag to assign (repeatable); policies see it as "
        "EMS<id>_ZTNA_<TAG>",
    )
    register.add_argument("--ip", type=ipArgument, help="the device's private IP address")
    register.add_argument("--host", metavar="NAME", help="the device's host name")
    register.add_argument(
        "--static",
        action="store_true",
        help="the device has no agent: count it as always online",
    )
    register.add_argument(
        "--replace",
        action="store_true",
        help="replace the record of an already registered UID",
    )
    addRegistryOptions(register)
    register.set_defaults(
        func=withEndpointCommands(
            lambda c, a: c.register(
                _readCertificateFile(a.cert),
                "standard input" if a.cert == "-" else a.cert,
                tags=a.tag,
                ip=a.ip,
                hostName=a.host,
                static=a.static,
                replace=a.replace,
            )
        )
    )

    listing = commands.add_parser(
        "list", help="list every device", description="List every device in the registry."
    )
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    addRegistryOptions(listing)
    listing.set_defaults(func=withEndpointCommands(lambda c, a: c.list(asJson=a.json)))

    show = _uidCommand(commands, "show", "show everything known of one device", EndpointCommands.show)
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(func=withEndpointCommands(lambda c, a: c.show(a.uid, asJson=a.json)))

    _uidCommand(commands, "revoke", "revoke a device's certificate (code 063)", EndpointCommands.revoke)
    _uidCommand(commands, "unrevoke", "accept a revoked device's certificate again", EndpointCommands.unrevoke)
    _uidCommand(commands, "quarantine", "deny a device everywhere", EndpointCommands.quarantine)
    _uidCommand(commands, "unquarantine", "release a device from quarantine", EndpointCommands.unquarantine)
    _uidCommand(commands, "delete", "forget a device", EndpointCommands.delete)

    tag = _uidCommand(commands, "tag", "add or remove a posture tag", EndpointCommands.tag)
    tag.add_argument("action", choices=("add", "remove"), help="what to do")
    tag.add_argument("tag", metavar="TAG", type=tagArgument, help="the tag name")
    tag.set_defaults(func=withEndpointCommands(lambda c, a: c.tag(a.uid, a.action, a.tag)))
