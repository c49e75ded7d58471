# -*- test-case-name: tests.config.test_model -*-
"""
The typed configuration model: one frozen C{attrs} class per FortiOS
object ztnagw understands, and L{Config}, which holds them all.

Everything else in ztnagw reads the configuration through these classes,
never through the text or the syntax tree: values are already Python values
(C{bool}, C{int}, C{ipaddress} objects, C{datetime.time}...), defaults are
filled in, references are known to resolve and cross-object rules hold.
L{ztnagw.config.build} makes a L{Config} from a syntax tree and
L{ztnagw.config.printer} writes one back.

Each option is one declaration (L{ztnagw.config.schema.option}) carrying its
CLI name, value type, default, origin and help text; the reference
documentation is generated from these declarations, so the C{help} strings
below are the user documentation of each option.
"""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from typing import TYPE_CHECKING, Iterable, Mapping

from attrs import field, frozen

from ztnagw.config.schema import (
    EXTENSION,
    Choice,
    Condition,
    ConfigObject,
    DateTime,
    Days,
    EmsTag,
    EmsTags,
    FilePath,
    Flag,
    FrozenMap,
    HostName,
    Integer,
    InterfaceAddress,
    IPv4,
    Password,
    PortRange,
    PortRanges,
    Reference,
    ReferenceList,
    Subnet,
    Text,
    TimeOfDay,
    Uuid,
    ValueProblem,
    idKey,
    nameKey,
    option,
    singleton,
    table,
)
from ztnagw.config.tree import ConfigError
from ztnagw.ems.conditions import (
    FACT_NAME_PATTERN,
    OS_FAMILIES,
    TEXT_OPERATORS,
    VERSION_OPERATORS,
    VERSION_PATTERN,
)

if TYPE_CHECKING:  # pragma: no cover
    from cryptography import x509

    from ztnagw.config.addresses import AddressSet
    from ztnagw.config.certificates import CertificateMaterial

__all__ = [
    "AccessProxy",
    "Address",
    "AddressGroup",
    "ApiGateway",
    "CaCertificate",
    "ClientCertificateSettings",
    "Config",
    "ConflictingSettings",
    "EmsConnector",
    "EmsTag",
    "FirewallPolicy",
    "Interface",
    "LocalCertificate",
    "LocalUser",
    "OnetimeSchedule",
    "PortRange",
    "ProxyPolicy",
    "RealServer",
    "RecurringSchedule",
    "SystemGlobal",
    "TaggingCondition",
    "TaggingRule",
    "UserGroup",
    "Vip",
    "VirtualHost",
    "WebProxyHeader",
    "WebProxyProfile",
]

_ADDRESSES = ("addresses", "addressGroups")
_ADDRESS_NOUN = "address or address group"
_SCHEDULES = ("recurringSchedules", "onetimeSchedules")
_ANY_INTERFACE = ("any",)
_HTTP = ("http", "https")
_TCP_FORWARDING = ("tcp-forwarding",)

#: Settings that a virtual host, a VIP and an access proxy can all give
#: and that follow the precedence rule of L{Config.clientCertificateSettings}.
_INHERITED = (
    ("client-cert", "clientCert"),
    ("empty-cert-action", "emptyCertAction"),
    ("user-agent-detect", "userAgentDetect"),
)

_INHERITED_HELP = "inherited; see client-certificate precedence"


def _clientCert() -> object:
    return option(
        "client-cert",
        Flag(),
        defaultHelp=_INHERITED_HELP + " (in effect: enable)",
        help="Ask clients for a device certificate during the TLS handshake.",
    )


def _emptyCertAction() -> object:
    return option(
        "empty-cert-action",
        Choice(("accept", "block", "accept-unmanageable")),
        defaultHelp=_INHERITED_HELP + " (in effect: block)",
        help="What to do with a client that presents no certificate: block "
        "it (error 002), accept it, or accept it only when it is not a "
        "manageable device (else error 003).  Not configurable with "
        "client-cert disable.",
    )


def _userAgentDetect() -> object:
    return option(
        "user-agent-detect",
        Flag(),
        defaultHelp=_INHERITED_HELP + " (in effect: enable)",
        help="Use the User-Agent header to tell manageable devices "
        "(FortiClient) from others when no certificate is presented.",
    )


def _uuid() -> object:
    return option("uuid", Uuid(), help="The object's UUID (informational).")


def _color() -> object:
    return option(
        "color",
        Integer(0, 32),
        default=0,
        help="Icon colour in the FortiGate GUI (informational).",
    )


# ------------------------------------------------------------------ system


@frozen(kw_only=True)
class SystemGlobal(ConfigObject):
    """
    C{config system global}: settings of the gateway as a whole.
    """

    hostname: str = option(
        "hostname",
        Text(
            maxLength=35,
            pattern=r"[A-Za-z0-9._-]+",
            patternHelp="a host name of letters, digits, '.', '_' and '-'",
        ),
        default="ztnagw",
        help="The gateway's name, written in logs (devname).",
    )
    stateDir: str = option(
        "state-dir",
        FilePath("config"),
        default="/var/lib/ztnagw",
        origin=EXTENSION,
        help="Directory of the gateway's state: the EMS CA, the endpoint "
        "registry, generated certificates.  A relative path is relative to "
        "the configuration file's directory.",
    )
    logFile: str | None = option(
        "log-file",
        FilePath("config"),
        origin=EXTENSION,
        help="File that traffic and event log lines are appended to "
        "(created with mode 0600, reopened on SIGHUP for log rotation); a "
        "relative path is relative to the configuration file's directory.  "
        "Lines always go to twistd's log too.",
    )
    logFormat: str = option(
        "log-format",
        Choice(("default", "json")),
        default="default",
        origin=EXTENSION,
        help="How log-file lines are written: default, FortiOS key=value "
        "lines; json, one JSON object per line with the same fields.",
    )
    workers: int = option(
        "workers",
        Integer(0, 1024),
        default=1,
        origin=EXTENSION,
        help="Number of worker processes serving the VIPs and EMS listeners, "
        "each on its own SO_REUSEPORT socket of every port, under a supervisor "
        "that restarts them; 0 means one per CPU the gateway may run on; 1 is "
        "a single process with no supervisor.  See docs/operations.md.",
    )


@frozen(kw_only=True)
class Interface(ConfigObject):
    """
    C{config system interface}: a network interface, named in VIPs and
    policies.  ztnagw does not configure interfaces; it uses their names,
    roles and addresses in matching and logs.  The built-in name C{any}
    needs no definition.
    """

    name: str = nameKey()
    ip: ipaddress.IPv4Interface = option(
        "ip",
        InterfaceAddress(),
        default=ipaddress.IPv4Interface("0.0.0.0/0"),
        help="The interface's address and netmask.",
    )
    alias: str | None = option("alias", Text(maxLength=25), help="Alias shown in logs.")
    description: str | None = option(
        "description", Text(maxLength=255), help="Free text."
    )
    role: str = option(
        "role",
        Choice(("lan", "wan", "dmz", "undefined")),
        default="undefined",
        help="The interface's role, logged as srcintfrole/dstintfrole.",
    )
    status: str = option(
        "status",
        Choice(("up", "down")),
        default="up",
        help="Administrative status (informational).",
    )
    type: str = option(
        "type",
        Choice(("physical", "loopback", "vlan", "aggregate", "tunnel")),
        default="physical",
        help="Interface type (informational).",
    )
    vdom: str = option(
        "vdom",
        Choice(
            ("root",),
            unsupported={},
        ),
        default="root",
        help="Virtual domain; ztnagw has only root.",
    )


# ------------------------------------------------------------- certificates

_PEM_HELP = "inline PEM, as FortiOS stores it"


@frozen(kw_only=True)
class LocalCertificate(ConfigObject):
    """
    C{config vpn certificate local}: a certificate with its private key,
    for the VIPs' and virtual hosts' TLS (C{ssl-certificate}) and for the
    EMS CA (fctems C{ca-certificate}).  The material is inline (FortiOS) or
    in files (ztnagw); see L{ztnagw.config.certificates}.
    """

    name: str = nameKey()
    comments: str | None = option("comments", Text(maxLength=511), help="Free text.")
    certificate: str | None = option(
        "certificate",
        Text(multiline=True),
        help=f"The certificate (and any intermediates), {_PEM_HELP}.",
    )
    privateKey: str | None = option(
        "private-key",
        Text(multiline=True),
        secret=True,
        help=f"The private key, {_PEM_HELP}.  A configuration file holding "
        "one must be readable by its owner only.",
    )
    password: str | None = option(
        "password",
        Password(),
        secret=True,
        help="Pass phrase of an encrypted private key, in clear.",
    )
    certificateFile: str | None = option(
        "certificate-file",
        FilePath("state"),
        origin=EXTENSION,
        help="File holding the certificate (and any intermediates) in PEM; "
        "relative to the state directory.",
    )
    privateKeyFile: str | None = option(
        "private-key-file",
        FilePath("state"),
        origin=EXTENSION,
        help="File holding the private key in PEM, readable by its owner "
        "only (chmod 600); relative to the state directory.",
    )
    autoGenerate: bool = option(
        "auto-generate",
        Flag(),
        default=False,
        origin=EXTENSION,
        help="When the certificate and key files do not exist yet, the "
        "gateway creates them at start: a new key (mode 0600) and a "
        "certificate issued by the EMS CA.",
    )
    range: str = option(
        "range",
        Choice(("global", "vdom")),
        default="global",
        help="FortiOS scope (informational).",
    )
    source: str = option(
        "source",
        Choice(("user", "factory", "bundle")),
        default="user",
        help="FortiOS origin (informational).",
    )


@frozen(kw_only=True)
class CaCertificate(ConfigObject):
    """
    C{config vpn certificate ca}: trust anchors for verifying real servers'
    certificates.
    """

    name: str = nameKey()
    comments: str | None = option("comments", Text(maxLength=511), help="Free text.")
    ca: str | None = option(
        "ca",
        Text(multiline=True),
        help=f"The CA certificate(s), {_PEM_HELP}.",
    )
    caFile: str | None = option(
        "ca-file",
        FilePath("state"),
        origin=EXTENSION,
        help="File holding the CA certificate(s) in PEM; relative to the "
        "state directory.",
    )
    range: str = option(
        "range",
        Choice(("global", "vdom")),
        default="global",
        help="FortiOS scope (informational).",
    )
    source: str = option(
        "source",
        Choice(("user", "factory", "bundle")),
        default="user",
        help="FortiOS origin (informational).",
    )


# ---------------------------------------------------------------- addresses

_IPMASK = Condition("type", ("ipmask",))
_IPRANGE = Condition("type", ("iprange",))
_FQDN = Condition("type", ("fqdn",))


@frozen(kw_only=True)
class Address(ConfigObject):
    """
    C{config firewall address}: a subnet, an address range or a DNS name.
    The built-in addresses C{all} (0.0.0.0/0) and C{none} (0.0.0.0/32,
    which no real packet has) exist unless redefined.
    """

    name: str = nameKey()
    uuid: uuid.UUID | None = _uuid()
    type: str = option(
        "type",
        Choice(
            ("ipmask", "iprange", "fqdn"),
            unsupported={
                t: "only ipmask, iprange and fqdn addresses are implemented"
                for t in (
                    "geography",
                    "wildcard",
                    "dynamic",
                    "interface-subnet",
                    "mac",
                    "wildcard-fqdn",
                    "route-tag",
                )
            },
        ),
        default="ipmask",
        help="What the address is: a subnet, a range or a DNS name.",
    )
    subnet: ipaddress.IPv4Network = option(
        "subnet",
        Subnet(),
        default=ipaddress.IPv4Network("0.0.0.0/0"),
        when=_IPMASK,
        help="The subnet; host bits must be zero.",
    )
    startIp: ipaddress.IPv4Address | None = option(
        "start-ip",
        IPv4(),
        when=_IPRANGE,
        requiredWhen=_IPRANGE,
        help="First address of the range.",
    )
    endIp: ipaddress.IPv4Address | None = option(
        "end-ip",
        IPv4(),
        when=_IPRANGE,
        requiredWhen=_IPRANGE,
        help="Last address of the range (included).",
    )
    fqdn: str | None = option(
        "fqdn",
        HostName(),
        when=_FQDN,
        requiredWhen=_FQDN,
        help="The DNS name; the gateway resolves it when it needs the "
        "addresses.",
    )
    comment: str | None = option("comment", Text(maxLength=255), help="Free text.")
    associatedInterface: str | None = option(
        "associated-interface",
        Reference(("interfaces",), "interface"),
        help="Interface the address belongs to (informational).",
    )
    color: int = _color()


_EXCLUDE = Condition("exclude", (True,))


@frozen(kw_only=True)
class AddressGroup(ConfigObject):
    """
    C{config firewall addrgrp}: a set of addresses and groups, optionally
    minus excluded ones.  A group may not contain itself, directly or not.
    """

    name: str = nameKey()
    uuid: uuid.UUID | None = _uuid()
    member: tuple[str, ...] = option(
        "member",
        ReferenceList(_ADDRESSES, _ADDRESS_NOUN),
        default=(),
        required=True,
        help="Addresses and groups in the group.",
    )
    exclude: bool = option(
        "exclude",
        Flag(),
        default=False,
        help="Subtract exclude-member from the group.",
    )
    excludeMember: tuple[str, ...] = option(
        "exclude-member",
        ReferenceList(_ADDRESSES, _ADDRESS_NOUN),
        default=(),
        when=_EXCLUDE,
        requiredWhen=_EXCLUDE,
        help="Addresses and groups subtracted from the members.",
    )
    comment: str | None = option("comment", Text(maxLength=255), help="Free text.")
    color: int = _color()


# ---------------------------------------------------------------- schedules


@frozen(kw_only=True)
class RecurringSchedule(ConfigObject):
    """
    C{config firewall schedule recurring}: days of the week and a time
    window, in the gateway's local time.  The built-in schedule C{always}
    (every day, all day) exists unless redefined.  See
    L{ztnagw.config.schedules.isActive}.
    """

    name: str = nameKey()
    uuid: uuid.UUID | None = _uuid()
    start: datetime.time = option(
        "start",
        TimeOfDay(),
        default=datetime.time(0, 0),
        help="Start of the window (included).",
    )
    end: datetime.time = option(
        "end",
        TimeOfDay(),
        default=datetime.time(0, 0),
        help="End of the window (excluded).  Equal to start: all day; "
        "before start: the window runs past midnight into the next day.",
    )
    day: tuple[str, ...] = option(
        "day",
        Days(),
        default=(),
        help="Days on which the window starts; none (the FortiOS default) "
        "means the schedule is never active.",
    )
    color: int = _color()


@frozen(kw_only=True)
class OnetimeSchedule(ConfigObject):
    """
    C{config firewall schedule onetime}: one period between two dates, in
    the gateway's local time.  See L{ztnagw.config.schedules.isActive}.
    """

    name: str = nameKey()
    uuid: uuid.UUID | None = _uuid()
    start: datetime.datetime | None = option(
        "start",
        DateTime(),
        required=True,
        help="Start of the period (included).",
    )
    end: datetime.datetime | None = option(
        "end",
        DateTime(),
        required=True,
        help="End of the period (excluded); after start.",
    )
    expirationDays: int = option(
        "expiration-days",
        Integer(0, 100),
        default=3,
        help="Days before the end at which an event log warns of it (0: no "
        "warning).",
    )
    color: int = _color()


# ---------------------------------------------------------- access proxies

_TLS_VERSIONS = Choice(
    ("tls-1.0", "tls-1.1", "tls-1.2", "tls-1.3"),
    unsupported={"ssl-3.0": "SSL 3.0 is broken"},
)

_NOT_ACCESS_PROXY = "ztnagw only implements access-proxy VIPs"


@frozen(kw_only=True)
class Vip(ConfigObject):
    """
    C{config firewall vip} of type C{access-proxy}: an address and port on
    which the gateway accepts HTTPS (and TCP-forwarding) clients.
    """

    name: str = nameKey()
    uuid: uuid.UUID | None = _uuid()
    comment: str | None = option("comment", Text(maxLength=255), help="Free text.")
    type: str | None = option(
        "type",
        Choice(
            ("access-proxy",),
            unsupported={
                t: _NOT_ACCESS_PROXY
                for t in (
                    "static-nat",
                    "load-balance",
                    "server-load-balance",
                    "dns-translation",
                    "fqdn",
                    "nat46",
                    "nat64",
                )
            },
        ),
        required=True,
        missingHint="FortiOS's default type, static-nat, is not implemented "
        "(ztnagw only implements access-proxy VIPs): set type access-proxy",
        help="Must be access-proxy (FortiOS's default, static-nat, is not "
        "implemented, so the type must be given).",
    )
    serverType: str | None = option(
        "server-type",
        Choice(
            ("https",),
            unsupported={
                t: "an access-proxy VIP serves HTTPS"
                for t in ("http", "tcp", "udp", "ip", "ssl", "imaps", "pop3s", "smtps")
            },
        ),
        required=True,
        help="Must be https.",
    )
    extip: ipaddress.IPv4Address | None = option(
        "extip",
        IPv4(),
        required=True,
        help="Address the VIP listens on (0.0.0.0: every address).",
    )
    extintf: str | None = option(
        "extintf",
        Reference(("interfaces",), "interface", _ANY_INTERFACE),
        required=True,
        help="Interface clients arrive on, or any.",
    )
    extport: int | None = option(
        "extport",
        Integer(1, 65535),
        required=True,
        help="TCP port the VIP listens on.",
    )
    sslCertificate: tuple[str, ...] = option(
        "ssl-certificate",
        ReferenceList(("localCertificates",), "local certificate"),
        default=(),
        required=True,
        help="Server certificates (vpn certificate local), chosen by the "
        "client's SNI when several are given.",
    )
    clientCert: bool | None = _clientCert()
    emptyCertAction: str | None = _emptyCertAction()
    userAgentDetect: bool | None = _userAgentDetect()
    sslMinVersion: str = option(
        "ssl-min-version",
        _TLS_VERSIONS,
        default="tls-1.2",
        help="Lowest TLS version accepted from clients.  ztnagw's default is "
        "tls-1.2 (FortiOS: tls-1.1).",
    )
    sslMaxVersion: str = option(
        "ssl-max-version",
        _TLS_VERSIONS,
        default="tls-1.3",
        help="Highest TLS version accepted from clients.",
    )
    status: bool = option(
        "status",
        Flag(),
        default=True,
        help="A disabled VIP does not listen.",
    )


_SERVICE_HTTP = Condition("service", _HTTP, parent="api-gateway")
_SERVICE_HTTPS = Condition("service", ("https",), parent="api-gateway")
_SERVICE_TCP = Condition("service", _TCP_FORWARDING, parent="api-gateway")
_ADDR_IP = Condition("addr-type", ("ip",))
_HEALTH_CHECK = Condition("health-check", (True,))


@frozen
class HealthCheckProtocol(Choice):
    """
    The choice of C{health-check-proto}: C{ping} is refused on a machine
    where the gateway cannot send ICMP echo requests, so that a check that
    could never succeed is reported when the configuration is checked
    instead of marking every server down.
    """

    def parse(self, words, context):  # type: ignore[no-untyped-def]
        """
        See L{ztnagw.config.schema.IValueType.parse}.
        """
        word = Choice.parse(self, words, context)
        if word == "ping":
            from ztnagw.gateway.health import icmpProblem

            problem = icmpProblem()
            if problem is not None:
                raise ValueProblem(f"ping cannot be used on this machine: {problem}; use tcp-connect or http")
        return word


_HEALTH_CHECK_HTTP = Condition("health-check-proto", ("http",))


@frozen
class StatusCodes(PortRanges):
    """
    One or more HTTP status codes or C{N-M} ranges (100-599), as a tuple of
    L{PortRange}.
    """

    def parse(self, words, context):  # type: ignore[no-untyped-def]
        """
        See L{ztnagw.config.schema.IValueType.parse}.
        """
        ranges = PortRanges.parse(self, words, context)
        for statuses in ranges:
            if not 100 <= statuses.low <= statuses.high <= 599:
                raise ValueProblem(f"{statuses} is not an HTTP status (100-599)")
        return ranges

    def describe(self) -> str:
        """
        See L{ztnagw.config.schema.IValueType.describe}.
        """
        return "one or more HTTP statuses (100-599) or ranges N-M"


@frozen(kw_only=True)
class RealServer(ConfigObject):
    """
    C{config realservers} of an api-gateway: one server requests or
    tunnels are relayed to.  Several form the api-gateway's pool.
    """

    id: int = idKey()
    addrType: str = option(
        "addr-type",
        Choice(("ip", "fqdn")),
        default="ip",
        help="Whether the server is given by address (ip, or address) or by "
        "DNS name (address naming an fqdn address, or domain).",
    )
    address: str | None = option(
        "address",
        Reference(_ADDRESSES, _ADDRESS_NOUN),
        help="Firewall address or group of the server; with addr-type fqdn, "
        "an fqdn address.",
    )
    ip: ipaddress.IPv4Address = option(
        "ip",
        IPv4(),
        default=ipaddress.IPv4Address("0.0.0.0"),
        when=_ADDR_IP,
        help="The server's address (addr-type ip).",
    )
    domain: str | None = option(
        "domain",
        HostName(wildcard=True),
        when=_SERVICE_TCP,
        help="Destination names a tunnel may ask for (tcp-forwarding): the "
        "name itself, or every name under it for *.suffix.  Alone (addr-type "
        "fqdn) the gateway resolves the name and connects to its address; "
        "with ip, or an address naming one host, this server is a member of "
        "the pool for those names (the api-gateway's ldb-method, status and "
        "health checks choose the member).",
    )
    port: int = option(
        "port",
        Integer(1, 65535),
        default=443,
        help="The server's port.",
    )
    mappedport: tuple[PortRange, ...] = option(
        "mappedport",
        PortRanges(),
        default=(),
        when=_SERVICE_TCP,
        help="Ports a tunnel may ask for (tcp-forwarding); none set: the "
        "server's port.",
    )
    status: str = option(
        "status",
        Choice(("active", "standby", "disable")),
        default="active",
        help="active servers take traffic; standby ones only when no active "
        "one is usable; disabled ones never.",
    )
    type: str = option(
        "type",
        Choice(
            _TCP_FORWARDING,
            unsupported={"ssh": "the SSH access proxy is not implemented"},
        ),
        default="tcp-forwarding",
        when=_SERVICE_TCP,
        help="Kind of TCP forwarding server.",
    )
    weight: int = option(
        "weight",
        Integer(1, 255),
        default=1,
        help="Share of new sessions with ldb-method weighted.",
    )
    httpHost: str | None = option(
        "http-host",
        Text(maxLength=63),
        when=_SERVICE_HTTP,
        help="Host header sent to the server instead of the client's.",
    )
    translateHost: bool = option(
        "translate-host",
        Flag(),
        default=True,
        when=_SERVICE_HTTP,
        help="Rewrite the Host header to the server's name.",
    )
    healthCheck: bool = option(
        "health-check",
        Flag(),
        default=False,
        help="Check the server's health and skip it while it is down (a "
        "tunnel that names it is refused at once while it is down).  Needs a "
        "server naming one host: ip, an address of one host, or an fqdn "
        "address.",
    )
    healthCheckProto: str = option(
        "health-check-proto",
        HealthCheckProtocol(("ping", "http", "tcp-connect")),
        default="ping",
        when=_HEALTH_CHECK,
        help="How the health check probes the server: ping (ICMP echo; "
        "needs unprivileged ICMP sockets or the raw-socket privilege, "
        "refused where this machine has neither), tcp-connect (a TCP "
        "connection to port) or http (a GET answered with a status of "
        "health-check-http-status).",
    )
    holddownInterval: bool = option(
        "holddown-interval",
        Flag(),
        default=True,
        when=_HEALTH_CHECK,
        help="Consider a server that recovered up again only after a "
        "hold-down (holddown-time, 30 seconds by default) of good health "
        "checks.",
    )
    holddownTime: int = option(
        "holddown-time",
        Integer(1, 3600),
        default=30,
        when=_HEALTH_CHECK,
        origin=EXTENSION,
        help="Seconds of the hold-down of holddown-interval (FortiOS: 30).",
    )
    healthCheckInterval: int = option(
        "health-check-interval",
        Integer(1, 3600),
        default=10,
        when=_HEALTH_CHECK,
        origin=EXTENSION,
        help="Seconds between two health checks.",
    )
    healthCheckTimeout: int = option(
        "health-check-timeout",
        Integer(1, 300),
        default=2,
        when=_HEALTH_CHECK,
        origin=EXTENSION,
        help="Seconds a health check may take before it counts as failed.",
    )
    healthCheckFall: int = option(
        "health-check-fall",
        Integer(1, 100),
        default=3,
        when=_HEALTH_CHECK,
        origin=EXTENSION,
        help="Failed checks in a row that mark a server down.",
    )
    healthCheckRise: int = option(
        "health-check-rise",
        Integer(1, 100),
        default=2,
        when=_HEALTH_CHECK,
        origin=EXTENSION,
        help="Good checks in a row that mark a down server up again (then the "
        "hold-down, if enabled).",
    )
    healthCheckHttpPath: str = option(
        "health-check-http-path",
        Text(maxLength=1024, pattern=r"/[!-~]*", patternHelp="a path starting with /"),
        default="/",
        when=_HEALTH_CHECK_HTTP,
        origin=EXTENSION,
        help="Path the http health check asks for (GET, with the Host the "
        "server gets).",
    )
    healthCheckHttpStatus: str = option(
        "health-check-http-status",
        Text(
            maxLength=255,
            pattern=r"[1-5][0-9][0-9](-[1-5][0-9][0-9])?(,[1-5][0-9][0-9](-[1-5][0-9][0-9])?)*",
            patternHelp="HTTP statuses or ranges N-M, separated by commas (200,301-302)",
        ),
        default="200",
        when=_HEALTH_CHECK_HTTP,
        origin=EXTENSION,
        help="Statuses (or ranges N-M, comma-separated) an http health check "
        "accepts.",
    )
    verifyCert: bool = option(
        "verify-cert",
        Flag(),
        default=True,
        when=_SERVICE_HTTPS,
        help="Verify the server's certificate (service https).",
    )
    tunnelEncryption: bool = option(
        "tunnel-encryption",
        Flag(),
        default=False,
        when=_SERVICE_TCP,
        help="Keep tunnelled bytes inside the gateway's TLS even when the "
        "client asks for none (tcp-forwarding).",
    )


_PERSISTENCE = Condition("persistence", ("http-cookie",))
_HTTP_SERVICE = Condition("service", _HTTP)


@frozen(kw_only=True)
class ApiGateway(ConfigObject):
    """
    C{config api-gateway} of an access proxy: which requests it takes
    (virtual host, url-map), how they are served (service) and the pool of
    real servers.
    """

    id: int = idKey()
    urlMap: str = option(
        "url-map",
        Text(maxLength=511),
        default="/",
        help="The URL path the api-gateway serves, matched as url-map-type "
        "says.",
    )
    urlMapType: str = option(
        "url-map-type",
        Choice(("sub-string", "wildcard", "regex")),
        default="sub-string",
        help="How url-map is matched; a regex (Python syntax) is checked "
        "when the configuration loads.",
    )
    service: str = option(
        "service",
        Choice(
            ("https", "http", "tcp-forwarding"),
            unsupported={
                "samlsp": "SAML authentication is not implemented",
                "web-portal": "the web portal is not implemented",
                "saas": "SaaS access control is not implemented",
            },
        ),
        default="https",
        help="https or http: reverse proxy to the real servers over that "
        "protocol; tcp-forwarding: TCP tunnels (TFACP).",
    )
    virtualHost: str | None = option(
        "virtual-host",
        Reference(("virtualHosts",), "virtual host"),
        help="Serve only requests for this virtual host.",
    )
    ldbMethod: str = option(
        "ldb-method",
        Choice(
            ("static", "round-robin", "weighted", "first-alive", "http-host"),
            unsupported={
                "least-session": "not implemented",
                "least-rtt": "not implemented",
            },
        ),
        default="static",
        help="How a real server is chosen: static (by source address), "
        "round-robin, weighted, first-alive or http-host (http and https "
        "only: a tunnel has no Host).",
    )
    persistence: str = option(
        "persistence",
        Choice(("none", "http-cookie")),
        default="none",
        when=_HTTP_SERVICE,
        help="Keep a client on one real server with a cookie.",
    )
    httpCookieDomainFromHost: bool = option(
        "http-cookie-domain-from-host",
        Flag(),
        default=False,
        when=_PERSISTENCE,
        help="Take the cookie's domain from the Host header.",
    )
    httpCookieDomain: str | None = option(
        "http-cookie-domain",
        Text(maxLength=35),
        when=_PERSISTENCE,
        help="Domain of the persistence cookie.",
    )
    httpCookiePath: str | None = option(
        "http-cookie-path",
        Text(maxLength=35),
        when=_PERSISTENCE,
        help="Path of the persistence cookie.",
    )
    httpCookieGeneration: int = option(
        "http-cookie-generation",
        Integer(0, 4294967295),
        default=0,
        when=_PERSISTENCE,
        help="Generation of the cookie; changing it invalidates cookies "
        "given before.",
    )
    httpCookieAge: int = option(
        "http-cookie-age",
        Integer(0, 525600),
        default=60,
        when=_PERSISTENCE,
        help="Lifetime of the cookie in minutes (0: until the browser "
        "closes).",
    )
    httpCookieShare: str = option(
        "http-cookie-share",
        Choice(("disable", "same-ip")),
        default="same-ip",
        when=_PERSISTENCE,
        help="Whether the cookie is shared by api-gateways on the same VIP.",
    )
    httpsCookieSecure: bool = option(
        "https-cookie-secure",
        Flag(),
        default=False,
        when=_PERSISTENCE,
        help="Mark the cookie Secure.",
    )
    connectTimeout: int = option(
        "connect-timeout",
        Integer(1, 300),
        default=10,
        origin=EXTENSION,
        help="Seconds to connect to a real server, TLS handshake included "
        "(then 504 for a request; a tunnel is refused).",
    )
    responseTimeout: int = option(
        "response-timeout",
        Integer(1, 86400),
        default=60,
        when=_HTTP_SERVICE,
        origin=EXTENSION,
        help="Seconds from the end of a request (head and body sent) to the "
        "real server's response head (then 504).",
    )
    idleTimeout: int | None = option(
        "idle-timeout",
        Integer(0, 604800),
        origin=EXTENSION,
        defaultHelp="0 (none) for tcp-forwarding, 300 for http and https",
        help="Seconds a request or tunnel through this api-gateway may pass "
        "no byte in either direction before the gateway closes it; 0: never.",
    )
    maxLifetime: int = option(
        "max-lifetime",
        Integer(0, 31536000),
        default=0,
        origin=EXTENSION,
        help="Seconds a WebSocket or other upgraded connection, or a tunnel, "
        "through this api-gateway may last in all before the gateway closes "
        "it; 0: no limit (the device is decided again whenever its record "
        "changes, so a limit is only needed to bound sessions in time).",
    )
    realServers: FrozenMap[int, RealServer] = table("realservers", RealServer)

    @property
    def idleTimeoutInEffect(self) -> int:
        """
        C{idle-timeout}, or its default for the service when not set: 0
        (none) for tcp-forwarding, 300 for http and https.
        """
        if self.idleTimeout is not None:
            return self.idleTimeout
        return 0 if self.service == "tcp-forwarding" else 300


@frozen(kw_only=True)
class AccessProxy(ConfigObject):
    """
    C{config firewall access-proxy}: the api-gateways behind one VIP.
    """

    name: str = nameKey()
    vip: str | None = option(
        "vip",
        Reference(("vips",), "VIP"),
        required=True,
        help="The VIP clients connect to; one access proxy per VIP.",
    )
    clientCert: bool | None = _clientCert()
    emptyCertAction: str | None = _emptyCertAction()
    userAgentDetect: bool | None = _userAgentDetect()
    logBlockedTraffic: bool = option(
        "log-blocked-traffic",
        Flag(),
        default=True,
        help="Log requests that are denied.",
    )
    httpHeaderTimeout: int = option(
        "http-header-timeout",
        Integer(1, 3600),
        default=20,
        origin=EXTENSION,
        help="Seconds a client may take to send a request head, from its "
        "first byte (then 408 and close).",
    )
    httpKeepaliveTimeout: int = option(
        "http-keepalive-timeout",
        Integer(1, 86400),
        default=60,
        origin=EXTENSION,
        help="Seconds a client connection may wait for its next request "
        "(or its first) before the gateway closes it.",
    )
    httpMaxHeaderSize: int = option(
        "http-max-header-size",
        Integer(1024, 1048576),
        default=32768,
        origin=EXTENSION,
        help="Largest request head (request line and header fields), in "
        "bytes (larger: 431).",
    )
    httpMaxHeaderCount: int = option(
        "http-max-header-count",
        Integer(1, 10000),
        default=100,
        origin=EXTENSION,
        help="Most header fields in one request (more: 431).",
    )
    httpMaxUrlLength: int = option(
        "http-max-url-length",
        Integer(64, 1048576),
        default=8192,
        origin=EXTENSION,
        help="Longest request target (URL), in bytes (longer: 414).",
    )
    maxConnectionsPerSource: int = option(
        "max-connections-per-source",
        Integer(0, 1048576),
        default=2048,
        origin=EXTENSION,
        help="Most connections one client address may hold on the VIP at a "
        "time (tunnels included; counted by each worker process); more are "
        "closed at once, before any handshake; 0: no limit.",
    )
    maxConnectionsPerDevice: int = option(
        "max-connections-per-device",
        Integer(0, 1048576),
        default=2048,
        origin=EXTENSION,
        help="Most connections one device (a certificate issued by an EMS "
        "CA, by its UID) may hold on the VIP at a time, from any address "
        "(counted by each worker process); more are answered 429 and "
        "closed; 0: no limit.",
    )
    apiGateways: FrozenMap[int, ApiGateway] = table("api-gateway", ApiGateway)


@frozen(kw_only=True)
class VirtualHost(ConfigObject):
    """
    C{config firewall access-proxy-virtual-host}: a host-name rule with its
    own certificate and (FortiOS 7.6) client-certificate settings.
    """

    name: str = nameKey()
    host: str | None = option(
        "host",
        Text(
            maxLength=79,
            pattern=r"[^\s]+",
            patternHelp="a host name or pattern without blanks",
        ),
        required=True,
        help="The host name requests must carry (Host header, SNI).",
    )
    hostType: str = option(
        "host-type",
        Choice(("sub-string", "wildcard")),
        default="sub-string",
        help="How host is matched.",
    )
    sslCertificate: tuple[str, ...] = option(
        "ssl-certificate",
        ReferenceList(("localCertificates",), "local certificate"),
        default=(),
        help="Server certificates for this host; none: the VIP's.",
    )
    clientCert: bool | None = _clientCert()
    emptyCertAction: str | None = _emptyCertAction()
    userAgentDetect: bool | None = _userAgentDetect()


# --------------------------------------------------------- web-proxy profile

_HEADER_ACTION = Choice(("pass", "add", "remove"))


_IDENTITY = Condition("identity-assertion", (True,))


def _headerAction(cliName: str, what: str) -> object:
    return option(
        cliName,
        _HEADER_ACTION,
        default="pass",
        help=f"{what}: pass (the gateway's default), add (the gateway sets "
        "it) or remove (not sent).  A client's copy is never passed on.",
    )


@frozen(kw_only=True)
class WebProxyHeader(ConfigObject):
    """
    C{config headers} of a web-proxy profile: one header field the gateway
    adds to, or removes from, requests or responses.
    """

    id: int = idKey()
    name: str | None = option(
        "name",
        Text(maxLength=79, pattern=r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", patternHelp="a header field name"),
        required=True,
        help="The field name.",
    )
    action: str = option(
        "action",
        Choice(("add-to-request", "add-to-response", "remove-from-request", "remove-from-response")),
        default="add-to-request",
        help="Add the field to, or remove it from, requests to real servers "
        "or responses to clients.",
    )
    content: str | None = option(
        "content",
        Text(maxLength=1023),
        help="The value to add; $client-ip, $user (the authenticated user, "
        "empty while user authentication is not implemented) and the "
        "ztnagw extensions $device-uid, $device-tags (the device's tags "
        "as policies name them, comma-separated), $cert-serial and "
        "$device-user (the user the device's agent reported) are replaced.",
    )
    addOption: str = option(
        "add-option",
        Choice(("new", "append", "new-on-not-found")),
        default="new",
        help="new: replace any field of that name; append: add one more; "
        "new-on-not-found: add it only when none is there.",
    )
    base64Encoding: bool = option(
        "base64-encoding",
        Flag(),
        default=False,
        help="Send the value base64-encoded.",
    )


@frozen(kw_only=True)
class WebProxyProfile(ConfigObject):
    """
    C{config web-proxy profile}: what real servers learn about the client,
    referred to by a policy's C{webproxy-profile}.
    """

    name: str = nameKey()
    headerClientIp: str = _headerAction("header-client-ip", "Client-IP (the client's address)")
    headerXForwardedFor: str = _headerAction(
        "header-x-forwarded-for",
        "X-Forwarded-For (the client's address; ztnagw sets it by default, so "
        "pass and add both send it)",
    )
    headerXForwardedClientCert: str = _headerAction(
        "header-x-forwarded-client-cert",
        "X-Forwarded-Client-Cert (the device certificate: Hash, Subject and "
        "the URL-encoded PEM)",
    )
    headerFrontEndHttps: str = _headerAction("header-front-end-https", "Front-End-Https: On")
    headerXAuthenticatedUser: str = _headerAction(
        "header-x-authenticated-user",
        "X-Authenticated-User (the authenticated user, when there is one)",
    )
    headerXAuthenticatedGroups: str = _headerAction(
        "header-x-authenticated-groups",
        "X-Authenticated-Groups (the authenticated user's groups, when known)",
    )
    identityAssertion: bool = option(
        "identity-assertion",
        Flag(),
        default=False,
        origin=EXTENSION,
        help="Send a short-lived JWT (ES256) signed by the gateway that says "
        "who the device is (see docs/gateway.md for the claims and the JWKS "
        "URL).",
    )
    identityAssertionHeader: str = option(
        "identity-assertion-header",
        Text(maxLength=79, pattern=r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", patternHelp="a header field name"),
        default="X-ZTNA-Identity",
        when=_IDENTITY,
        origin=EXTENSION,
        help="The header the JWT is sent in (a client's copy is always "
        "removed).",
    )
    identityAssertionTtl: int = option(
        "identity-assertion-ttl",
        Integer(10, 3600),
        default=60,
        when=_IDENTITY,
        origin=EXTENSION,
        help="Seconds the JWT is valid (exp - iat).",
    )
    headers: FrozenMap[int, WebProxyHeader] = table("headers", WebProxyHeader)


def _webproxyProfile(origin: str) -> object:
    return option(
        "webproxy-profile",
        Reference(("webProxyProfiles",), "web-proxy profile"),
        origin=origin,
        help="The web-proxy profile (header actions, identity assertion) of "
        "the requests the policy accepts; none: ztnagw's defaults.",
    )


# ----------------------------------------------------------------- policies

_USERS_REFUSED = "user authentication is not implemented yet; remove users/groups"

_LOGTRAFFIC = Choice(("all", "utm", "disable"))
_ACTION = Choice(
    ("accept", "deny"),
    unsupported={
        "ipsec": "ztnagw is not a VPN gateway",
        "redirect": "not implemented",
        "isolate": "not implemented",
    },
)
_TAG_LOGIC = Choice(("or", "and"))


def _tags(cliName: str, what: str) -> object:
    return option(
        cliName,
        EmsTags(),
        default=(),
        help=f"{what} (EMS<id>_ZTNA_<tag>, <id> a configured fctems id; "
        f"EMS<id>_ZTNA_{EmsTag.ALL_REGISTERED} is built in).",
    )


@frozen(kw_only=True)
class FirewallPolicy(ConfigObject):
    """
    C{config firewall policy}, as FortiOS's "simple" ZTNA policy: it must
    name an access-proxy VIP in C{dstaddr} or have C{ztna-status enable}
    (ztnagw is not a packet firewall).  Policies are evaluated in
    configuration order; the first that matches decides.
    """

    id: int = idKey(1, 4294967294)
    name: str | None = option("name", Text(maxLength=35), help="The policy's name, logged.")
    uuid: uuid.UUID | None = _uuid()
    srcintf: tuple[str, ...] = option(
        "srcintf",
        ReferenceList(("interfaces",), "interface", _ANY_INTERFACE),
        default=(),
        required=True,
        help="Interfaces clients arrive on (or any).",
    )
    dstintf: tuple[str, ...] = option(
        "dstintf",
        ReferenceList(("interfaces",), "interface", _ANY_INTERFACE),
        default=(),
        required=True,
        help="Interfaces towards the real servers (or any).",
    )
    action: str = option(
        "action",
        _ACTION,
        default="deny",
        help="What a match does.",
    )
    srcaddr: tuple[str, ...] = option(
        "srcaddr",
        ReferenceList(_ADDRESSES, _ADDRESS_NOUN),
        default=(),
        required=True,
        help="Client addresses.",
    )
    dstaddr: tuple[str, ...] = option(
        "dstaddr",
        ReferenceList(_ADDRESSES + ("vips",), "address, address group or VIP"),
        default=(),
        required=True,
        help="The access-proxy VIPs (ZTNA servers) the policy applies to.",
    )
    schedule: str | None = option(
        "schedule",
        Reference(_SCHEDULES, "schedule"),
        required=True,
        help="When the policy applies.",
    )
    logtraffic: str = option(
        "logtraffic",
        _LOGTRAFFIC,
        default="utm",
        help="Which sessions are logged: all, utm (denied ones) or none.",
    )
    nat: bool = option(
        "nat",
        Flag(),
        default=False,
        help="Accepted for FortiOS compatibility; a proxy always connects to "
        "real servers from its own address.",
    )
    status: bool = option(
        "status", Flag(), default=True, help="A disabled policy never matches."
    )
    ztnaStatus: bool = option(
        "ztna-status",
        Flag(),
        default=False,
        help="Mark the policy as a ZTNA policy.",
    )
    ztnaEmsTag: tuple[EmsTag, ...] = _tags("ztna-ems-tag", "Posture tags required")
    ztnaEmsTagSecondary: tuple[EmsTag, ...] = _tags(
        "ztna-ems-tag-secondary", "A second group of tags, also required"
    )
    ztnaEmsTagNegate: bool = option(
        "ztna-ems-tag-negate",
        Flag(),
        default=False,
        help="Match devices that do not have the tags.",
    )
    ztnaTagsMatchLogic: str = option(
        "ztna-tags-match-logic",
        _TAG_LOGIC,
        default="or",
        help="Whether any (or) or all (and) of ztna-ems-tag are required.",
    )
    users: tuple[str, ...] = option(
        "users",
        ReferenceList(("localUsers",), "user"),
        default=(),
        refused=_USERS_REFUSED,
        help="Not implemented yet: a policy naming users is refused.",
    )
    groups: tuple[str, ...] = option(
        "groups",
        ReferenceList(("userGroups",), "user group"),
        default=(),
        refused=_USERS_REFUSED,
        help="Not implemented yet: a policy naming groups is refused.",
    )
    webproxyProfile: str | None = _webproxyProfile(EXTENSION)
    comments: str | None = option("comments", Text(maxLength=1023), help="Free text.")


@frozen(kw_only=True)
class ProxyPolicy(ConfigObject):
    """
    C{config firewall proxy-policy} with C{proxy access-proxy}: FortiOS's
    "full" ZTNA rule.  Evaluated in configuration order; the first that
    matches decides.
    """

    id: int = idKey(1, 4294967294)
    name: str | None = option("name", Text(maxLength=35), help="The policy's name, logged.")
    uuid: uuid.UUID | None = _uuid()
    proxy: str | None = option(
        "proxy",
        Choice(
            ("access-proxy",),
            unsupported={
                p: "ztnagw is only a ZTNA access proxy"
                for p in (
                    "explicit-web",
                    "transparent-web",
                    "ftp",
                    "ssh",
                    "ssh-tunnel",
                    "wanopt",
                    "ztna-proxy",
                    "access-proxy6",
                )
            },
        ),
        required=True,
        help="Must be access-proxy.",
    )
    accessProxy: tuple[str, ...] = option(
        "access-proxy",
        ReferenceList(("accessProxies",), "access proxy"),
        default=(),
        required=True,
        help="The access proxies the policy applies to.",
    )
    srcintf: tuple[str, ...] = option(
        "srcintf",
        ReferenceList(("interfaces",), "interface", _ANY_INTERFACE),
        default=(),
        help="Interfaces clients arrive on; none set: any.",
    )
    srcaddr: tuple[str, ...] = option(
        "srcaddr",
        ReferenceList(_ADDRESSES, _ADDRESS_NOUN),
        default=(),
        required=True,
        help="Client addresses.",
    )
    dstaddr: tuple[str, ...] = option(
        "dstaddr",
        ReferenceList(_ADDRESSES + ("vips",), "address, address group or VIP"),
        default=(),
        required=True,
        help="Real-server addresses.",
    )
    ztnaEmsTag: tuple[EmsTag, ...] = _tags("ztna-ems-tag", "Posture tags required")
    ztnaTagsMatchLogic: str = option(
        "ztna-tags-match-logic",
        _TAG_LOGIC,
        default="or",
        help="Whether any (or) or all (and) of ztna-ems-tag are required.",
    )
    ztnaEmsTagNegate: bool = option(
        "ztna-ems-tag-negate",
        Flag(),
        default=False,
        help="Match devices that do not have the tags.",
    )
    users: tuple[str, ...] = option(
        "users",
        ReferenceList(("localUsers",), "user"),
        default=(),
        refused=_USERS_REFUSED,
        help="Not implemented yet: a policy naming users is refused.",
    )
    groups: tuple[str, ...] = option(
        "groups",
        ReferenceList(("userGroups",), "user group"),
        default=(),
        refused=_USERS_REFUSED,
        help="Not implemented yet: a policy naming groups is refused.",
    )
    action: str = option("action", _ACTION, default="deny", help="What a match does.")
    schedule: str | None = option(
        "schedule",
        Reference(_SCHEDULES, "schedule"),
        required=True,
        help="When the policy applies.",
    )
    logtraffic: str = option(
        "logtraffic",
        _LOGTRAFFIC,
        default="utm",
        help="Which sessions are logged: all, utm (denied ones) or none.",
    )
    status: bool = option(
        "status", Flag(), default=True, help="A disabled policy never matches."
    )
    webproxyProfile: str | None = _webproxyProfile("FortiOS")
    comments: str | None = option("comments", Text(maxLength=1023), help="Free text.")


# --------------------------------------------------------------------- EMS

_ENABLED = Condition("status", (True,))


def _checkRegistry(url: str) -> None:
    # The registry package is the one judge of which URLs it can open, so
    # that a configuration that checks is one the gateway can start with.
    from ztnagw.registry import registryPath
    from ztnagw.registry.interfaces import RegistryUnavailable

    try:
        registryPath(url, "/", 1)
    except RegistryUnavailable as e:
        raise ValueProblem(str(e))


def _checkTagName(text: str) -> None:
    from ztnagw.registry.validation import tagNameProblem

    problem = tagNameProblem(text)
    if problem is not None:
        raise ValueProblem(problem)


_CONDITION_TYPES = (
    "os",
    "os-version",
    "client-version",
    "user",
    "host-name",
    "on-net",
    "fact",
)
_VERSION_TYPES = Condition("type", ("os-version", "client-version"))
_PATTERN_TYPES = Condition("type", ("user", "host-name"))
_FACT_TYPE = Condition("type", ("fact",))
_FACT_TEXT = Condition("fact-operator", TEXT_OPERATORS)
_FACT_VERSION = Condition(
    "fact-operator", tuple(o for o in VERSION_OPERATORS if o not in TEXT_OPERATORS)
)
_VERSION_HELP = "dot-separated numbers, such as 10.0.19045"


@frozen(kw_only=True)
class TaggingCondition(ConfigObject):
    """
    C{config rules} of a tagging rule: one condition on the facts a device
    reported.  C{type} says which fact, the options for that type how it is
    compared.  See L{ztnagw.ems.tagging}.
    """

    id: int = idKey()
    type: str | None = option(
        "type",
        Choice(_CONDITION_TYPES),
        required=True,
        origin=EXTENSION,
        help="What the condition reads: os (family), os-version, "
        "client-version, user, host-name, on-net, or a posture fact.",
    )
    os: str | None = option(
        "os",
        Choice(OS_FAMILIES),
        when=Condition("type", ("os",)),
        requiredWhen=Condition("type", ("os",)),
        origin=EXTENSION,
        help="The operating system family (type os).",
    )
    versionOperator: str = option(
        "version-operator",
        Choice(tuple(VERSION_OPERATORS)),
        default="ge",
        when=_VERSION_TYPES,
        origin=EXTENSION,
        help="How the reported version compares with version (type "
        "os-version or client-version).",
    )
    version: str | None = option(
        "version",
        Text(pattern=VERSION_PATTERN, patternHelp=_VERSION_HELP),
        when=_VERSION_TYPES,
        requiredWhen=_VERSION_TYPES,
        origin=EXTENSION,
        help="The version compared with (type os-version or client-version).",
    )
    pattern: str | None = option(
        "pattern",
        Text(maxLength=255),
        when=_PATTERN_TYPES,
        requiredWhen=_PATTERN_TYPES,
        origin=EXTENSION,
        help="Shell-style pattern (*, ?, [...]) the user (case-sensitive) or "
        "host name (ignoring case) must match; without them, the exact name.",
    )
    onNet: bool | None = option(
        "on-net",
        Flag(),
        when=Condition("type", ("on-net",)),
        requiredWhen=Condition("type", ("on-net",)),
        origin=EXTENSION,
        help="enable: the device is on-net (its last report came from an "
        "on-net-address); disable: it is off-net (type on-net).",
    )
    fact: str | None = option(
        "fact",
        Text(pattern=FACT_NAME_PATTERN, patternHelp="a fact name (letters, digits, _ . -)"),
        when=_FACT_TYPE,
        requiredWhen=_FACT_TYPE,
        origin=EXTENSION,
        help="The posture fact's name (type fact).",
    )
    factOperator: str = option(
        "fact-operator",
        Choice(("exists", "absent") + TEXT_OPERATORS + _FACT_VERSION.values),
        default="exists",
        when=_FACT_TYPE,
        origin=EXTENSION,
        help="exists or absent: whether the device reported the fact; eq, ne, "
        "glob: its value as text (fact-value); lt, le, gt, ge: as a version "
        "or number (fact-version).",
    )
    factValue: str | None = option(
        "fact-value",
        Text(maxLength=255),
        when=_FACT_TEXT,
        requiredWhen=_FACT_TEXT,
        origin=EXTENSION,
        help="The text or pattern compared with (fact-operator eq, ne, glob).",
    )
    factVersion: str | None = option(
        "fact-version",
        Text(pattern=VERSION_PATTERN, patternHelp=_VERSION_HELP),
        when=_FACT_VERSION,
        requiredWhen=_FACT_VERSION,
        origin=EXTENSION,
        help="The version or number compared with (fact-operator lt, le, gt, "
        "ge).",
    )
    negate: bool = option(
        "negate",
        Flag(),
        default=False,
        origin=EXTENSION,
        help="Hold when the comparison does not (a missing or malformed fact "
        "then makes the condition hold).",
    )


@frozen(kw_only=True)
class TaggingRule(ConfigObject):
    """
    C{config tagging-rule} of an EMS: a posture tag that devices get while
    their reported facts meet the rule's conditions (our extension of EMS's
    Zero Trust tagging rules).  Rule tags are derived on every decision,
    never stored.  See L{ztnagw.ems.tagging}.
    """

    name: str = nameKey()
    status: bool = option(
        "status",
        Flag(),
        default=True,
        origin=EXTENSION,
        help="A disabled rule tags no device.",
    )
    tag: str | None = option(
        "tag",
        Text(check=_checkTagName, patternHelp="a tag name"),
        required=True,
        origin=EXTENSION,
        help="The tag set; policies name it EMS<id>_ZTNA_<tag>.",
    )
    matchLogic: str = option(
        "match-logic",
        Choice(("and", "or")),
        default="and",
        origin=EXTENSION,
        help="and: every condition must hold; or: any one.  A rule without "
        "conditions tags no device.",
    )
    comments: str | None = option(
        "comments", Text(maxLength=255), origin=EXTENSION, help="Free text."
    )
    conditions: FrozenMap[int, TaggingCondition] = table("rules", TaggingCondition)


@frozen(kw_only=True)
class EmsConnector(ConfigObject):
    """
    C{config endpoint-control fctems}: on a FortiGate, a connection to a
    FortiClient EMS; in ztnagw, the EMS itself (enrollment, telemetry, CA,
    endpoint registry), so C{server} and C{https-port} are where ztnagw's
    EMS listener binds.
    """

    #: Appended to the error for any option not declared here.
    unknownOptionHint = (
        "ztnagw is its own EMS, so the options for connecting to a "
        "FortiClient EMS do not apply"
    )

    id: int = idKey(1, 7)
    name: str | None = option("name", Text(maxLength=35), help="The EMS's name.")
    status: bool = option(
        "status",
        Flag(),
        default=False,
        help="Run this EMS (enrollment and telemetry listener, registry).",
    )
    server: str | None = option(
        "server",
        HostName(allowAddress=True),
        requiredWhen=_ENABLED,
        help="Address (or name) the EMS listener binds to and clients "
        "enroll with.",
    )
    httpsPort: int = option(
        "https-port",
        Integer(1, 65535),
        default=443,
        help="Port of the EMS listener.",
    )
    serialNumber: str | None = option(
        "serial-number",
        Text(
            maxLength=16,
            pattern=r"FCTEMS[0-9]{10}",
            patternHelp="an EMS serial number, FCTEMS followed by 10 digits",
        ),
        requiredWhen=_ENABLED,
        help="The EMS serial number, written into device certificates and "
        "endpoint records.",
    )
    tenantId: str = option(
        "tenant-id",
        Text(
            pattern=r"[0-9a-fA-F]{32}",
            patternHelp="32 hexadecimal digits",
        ),
        default="0" * 32,
        help="EMS tenant (site) id; all zeros for the default site.",
    )
    outOfSyncThreshold: int = option(
        "out-of-sync-threshold",
        Integer(10, 3600),
        default=180,
        help="Seconds without telemetry after which a device is offline.",
    )
    registry: str = option(
        "registry",
        Text(check=_checkRegistry, patternHelp="a registry URL: sqlite: or sqlite:PATH"),
        default="sqlite:",
        origin=EXTENSION,
        help="Where endpoint records are kept: sqlite: (the embedded "
        "registry, <state-dir>/ems<id>/registry.sqlite) or sqlite:PATH (a "
        "file, relative to the state directory).",
    )
    caCertificate: str | None = option(
        "ca-certificate",
        Reference(("localCertificates",), "local certificate"),
        origin=EXTENSION,
        help="vpn certificate local entry holding the EMS CA certificate and "
        "key; none set: the CA that 'ztnagw ems init' keeps in the state "
        "directory.",
    )
    onNetAddress: tuple[str, ...] = option(
        "on-net-address",
        ReferenceList(_ADDRESSES, _ADDRESS_NOUN),
        default=(),
        origin=EXTENSION,
        help="Addresses a device's telemetry comes from when it is on-net "
        "(On-net status, tagging rules' on-net; FQDN addresses are not used); "
        "none: every device is off-net.",
    )
    taggingRules: FrozenMap[str, TaggingRule] = table("tagging-rule", TaggingRule)


# -------------------------------------------------------------------- users


@frozen(kw_only=True)
class LocalUser(ConfigObject):
    """
    C{config user local}: parsed and validated; user authentication comes
    in a later release.
    """

    name: str = nameKey()
    type: str = option(
        "type",
        Choice(
            ("password",),
            unsupported={
                t: "only local password users are implemented"
                for t in ("radius", "tacacs+", "ldap", "saml")
            },
        ),
        default="password",
        help="Only password.",
    )
    passwd: str | None = option(
        "passwd",
        Password(),
        secret=True,
        requiredWhen=Condition("type", ("password",)),
        help="The password, in clear.",
    )
    status: bool = option("status", Flag(), default=True, help="A disabled user cannot log in.")
    emailTo: str | None = option("email-to", Text(maxLength=63), help="E-mail address.")


@frozen(kw_only=True)
class UserGroup(ConfigObject):
    """
    C{config user group}: parsed and validated; user authentication comes
    in a later release.
    """

    name: str = nameKey()
    groupType: str = option(
        "group-type",
        Choice(
            ("firewall",),
            unsupported={
                t: "only firewall groups are implemented"
                for t in ("fsso-service", "rsso", "guest", "cmcc")
            },
        ),
        default="firewall",
        help="Only firewall.",
    )
    member: tuple[str, ...] = option(
        "member",
        ReferenceList(("localUsers",), "user"),
        default=(),
        help="Users in the group.",
    )


# ------------------------------------------------------------------- config


def _builtinAddresses() -> FrozenMap[str, Address]:
    return FrozenMap(
        {
            "all": Address(name="all", builtin=True, explicit=frozenset()),
            "none": Address(
                name="none",
                subnet=ipaddress.IPv4Network("0.0.0.0/32"),
                builtin=True,
                explicit=frozenset({"subnet"}),
            ),
        }
    )


def _builtinSchedules() -> FrozenMap[str, RecurringSchedule]:
    return FrozenMap(
        {
            "always": RecurringSchedule(
                name="always",
                day=("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"),
                builtin=True,
                explicit=frozenset({"day"}),
            )
        }
    )


#: Objects that exist without definition, by L{Config} table.
BUILTINS: Mapping[str, Mapping[str, ConfigObject]] = {
    "addresses": _builtinAddresses(),
    "recurringSchedules": _builtinSchedules(),
}

#: Names that may be referred to without being a table entry, by table.
BUILTIN_NAMES: Mapping[str, tuple[str, ...]] = {"interfaces": ("any",)}


@frozen
class ClientCertificateSettings:
    """
    The client-certificate settings in effect for requests on one VIP
    matched to one virtual host (see L{Config.clientCertificateSettings}).
    """

    clientCert: bool
    emptyCertAction: str
    userAgentDetect: bool


#: In effect when neither the virtual host, nor the VIP, nor its access
#: proxy says otherwise (FortiOS's defaults).
DEFAULT_CLIENT_CERTIFICATE_SETTINGS = ClientCertificateSettings(
    clientCert=True, emptyCertAction="block", userAgentDetect=True
)


class ConflictingSettings(ValueError):
    """
    A VIP and its access proxy both set one client-certificate option, to
    different values.

    @ivar option: the CLI name of the option.
    @ivar objects: the two objects.
    """

    def __init__(self, option: str, objects: tuple[ConfigObject, ConfigObject]) -> None:
        self.option = option
        self.objects = objects
        super().__init__(f"{option} is set differently on a VIP and its access proxy")


def settingSources(
    cliName: str,
    vip: Vip,
    accessProxy: AccessProxy | None,
    virtualHost: VirtualHost | None,
) -> tuple[int, tuple[ConfigObject, ...]]:
    """
    Where the value in effect of one inherited client-certificate option
    comes from.

    @return: the level (2: the virtual host, 1: the VIP and/or its access
        proxy, 0: the default) and the objects setting it at that level.
    @raise ConflictingSettings: the VIP and its access proxy both set it,
        differently.
    """
    attribute = dict(_INHERITED)[cliName]
    if virtualHost is not None and getattr(virtualHost, attribute) is not None:
        return 2, (virtualHost,)
    sources = tuple(
        o for o in (vip, accessProxy) if o is not None and getattr(o, attribute) is not None
    )
    if len(sources) == 2 and getattr(sources[0], attribute) != getattr(sources[1], attribute):
        raise ConflictingSettings(cliName, (sources[0], sources[1]))
    if sources:
        return 1, sources
    return 0, ()


def effectiveClientCertificateSettings(
    vip: Vip, accessProxy: AccessProxy | None, virtualHost: VirtualHost | None
) -> ClientCertificateSettings:
    """
    Apply the precedence rule (see L{Config.clientCertificateSettings}).

    @raise ConflictingSettings: see L{settingSources}.
    """
    values = {}
    for cliName, attribute in _INHERITED:
        level, sources = settingSources(cliName, vip, accessProxy, virtualHost)
        if level:
            values[attribute] = getattr(sources[0], attribute)
        else:
            values[attribute] = getattr(DEFAULT_CLIENT_CERTIFICATE_SETTINGS, attribute)
    return ClientCertificateSettings(**values)


@frozen(kw_only=True)
class Config:
    """
    A whole, valid gateway configuration.

    Tables are L{FrozenMap}s in configuration order, keyed by name (C{str})
    or id (C{int}).  Make one with L{ztnagw.config.load} or
    L{ztnagw.config.loads}, which guarantee that every reference resolves
    and every cross-object rule holds; the built-in objects (addresses
    C{all} and C{none}, schedule C{always}) are in their tables.

    @ivar source: the file it was read from, if any.
    @ivar warnings: things accepted but worth saying (an option set twice
        in one entry: the last value wins).
    """

    source: str | None = field(default=None, eq=False)
    systemGlobal: SystemGlobal = singleton(("system", "global"), SystemGlobal)
    interfaces: FrozenMap[str, Interface] = table(("system", "interface"), Interface)
    caCertificates: FrozenMap[str, CaCertificate] = table(
        ("vpn", "certificate", "ca"), CaCertificate
    )
    localCertificates: FrozenMap[str, LocalCertificate] = table(
        ("vpn", "certificate", "local"), LocalCertificate
    )
    emsConnectors: FrozenMap[int, EmsConnector] = table(
        ("endpoint-control", "fctems"), EmsConnector
    )
    localUsers: FrozenMap[str, LocalUser] = table(("user", "local"), LocalUser)
    userGroups: FrozenMap[str, UserGroup] = table(("user", "group"), UserGroup)
    addresses: FrozenMap[str, Address] = table(
        ("firewall", "address"), Address, builtins=_builtinAddresses
    )
    addressGroups: FrozenMap[str, AddressGroup] = table(
        ("firewall", "addrgrp"), AddressGroup
    )
    recurringSchedules: FrozenMap[str, RecurringSchedule] = table(
        ("firewall", "schedule", "recurring"),
        RecurringSchedule,
        builtins=_builtinSchedules,
    )
    onetimeSchedules: FrozenMap[str, OnetimeSchedule] = table(
        ("firewall", "schedule", "onetime"), OnetimeSchedule
    )
    vips: FrozenMap[str, Vip] = table(("firewall", "vip"), Vip)
    virtualHosts: FrozenMap[str, VirtualHost] = table(
        ("firewall", "access-proxy-virtual-host"), VirtualHost
    )
    accessProxies: FrozenMap[str, AccessProxy] = table(
        ("firewall", "access-proxy"), AccessProxy
    )
    webProxyProfiles: FrozenMap[str, WebProxyProfile] = table(
        ("web-proxy", "profile"), WebProxyProfile
    )
    policies: FrozenMap[int, FirewallPolicy] = table(("firewall", "policy"), FirewallPolicy)
    proxyPolicies: FrozenMap[int, ProxyPolicy] = table(
        ("firewall", "proxy-policy"), ProxyPolicy
    )
    warnings: tuple[ConfigError, ...] = field(default=(), eq=False)
    _accessProxyByVip: dict[str, AccessProxy] = field(
        init=False, eq=False, repr=False, hash=False
    )

    def __attrs_post_init__(self) -> None:
        # Requests look the access proxy of their VIP up; index it once.
        byVip: dict[str, AccessProxy] = {}
        for accessProxy in self.accessProxies.values():
            if accessProxy.vip is not None:
                byVip.setdefault(accessProxy.vip, accessProxy)
        object.__setattr__(self, "_accessProxyByVip", byVip)

    def accessProxyOf(self, vipName: str) -> AccessProxy | None:
        """
        The access proxy behind VIP C{vipName}, if any (there is at most
        one).
        """
        return self._accessProxyByVip.get(vipName)

    def clientCertificateSettings(
        self, vipName: str, virtualHostName: str | None = None
    ) -> ClientCertificateSettings:
        """
        The client-certificate settings (C{client-cert},
        C{empty-cert-action}, C{user-agent-detect}) in effect for a request
        on VIP C{vipName} matched to virtual host C{virtualHostName}.

        Precedence, option by option: a value set explicitly on the virtual
        host wins; otherwise a value set explicitly on the VIP or on its
        access proxy (FortiOS 7.6 keeps these options on the VIP, 7.0-7.4
        on the access proxy; setting both differently is a configuration
        error); otherwise the FortiOS default (enable, block, enable).

        @param virtualHostName: the virtual host of the matched
            api-gateway, or C{None} (no virtual host, or not matched yet).
        @raise KeyError: no such VIP or virtual host.
        """
        vip = self.vips[vipName]
        virtualHost = None if virtualHostName is None else self.virtualHosts[virtualHostName]
        return effectiveClientCertificateSettings(
            vip, self.accessProxyOf(vipName), virtualHost
        )

    def addressSet(self, names: Iterable[str]) -> "AddressSet":
        """
        What a list of address, group and VIP names (a policy's C{srcaddr}
        or C{dstaddr}) stands for, groups flattened; see
        L{ztnagw.config.addresses}.
        """
        from ztnagw.config.addresses import addressSet

        return addressSet(self, names)

    def singleAddress(self, name: str) -> ipaddress.IPv4Address | None:
        """
        The one host firewall address C{name} stands for (a /32 subnet or a
        range of one address), or C{None} when it stands for several, is
        an fqdn address or a group, or does not exist.  A real server
        given by such an address is one host a pool can send to.
        """
        address = self.addresses.get(name)
        if address is None:
            return None
        if address.type == "ipmask" and address.subnet.prefixlen == 32:
            return address.subnet.network_address
        if address.type == "iprange" and address.startIp is not None and address.startIp == address.endIp:
            return address.startIp
        return None

    def realServerAddress(self, realServer: "RealServer") -> ipaddress.IPv4Address | None:
        """
        The one address C{realServer} names: its C{ip}, or an C{address} of
        one host (L{singleAddress}), for C{addr-type ip}; C{None} otherwise
        (an FQDN, a subnet, a group, a domain alone).
        """
        if realServer.addrType != "ip":
            return None
        if realServer.ip != ipaddress.IPv4Address(0):
            return realServer.ip
        if realServer.address is not None:
            return self.singleAddress(realServer.address)
        return None

    def localCertificate(self, name: str) -> "CertificateMaterial":
        """
        Read and check the certificate and key of C{vpn certificate local}
        entry C{name}.  This reads files: call it before the reactor runs
        or in a thread.

        @raise KeyError: no such entry.
        @raise ztnagw.config.certificates.CertificateProblem: the material
            is missing or invalid.
        """
        from ztnagw.config.certificates import loadLocalCertificate

        return loadLocalCertificate(self.localCertificates[name])

    def caCertificate(self, name: str) -> "tuple[x509.Certificate, ...]":
        """
        Read the trust anchors of C{vpn certificate ca} entry C{name}.
        This may read a file: call it before the reactor runs or in a
        thread.

        @raise KeyError: no such entry.
        @raise ztnagw.config.certificates.CertificateProblem: the material
            is missing or invalid.
        """
        from ztnagw.config.certificates import loadCaCertificate

        return loadCaCertificate(self.caCertificates[name])

    def schedule(self, name: str) -> RecurringSchedule | OnetimeSchedule:
        """
        The recurring or one-time schedule called C{name}.

        @raise KeyError: no such schedule.
        """
        if name in self.recurringSchedules:
            return self.recurringSchedules[name]
        return self.onetimeSchedules[name]
