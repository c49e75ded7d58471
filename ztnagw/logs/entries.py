# -*- test-case-name: tests.logs.test_entries -*-
"""
What the gateway logs: one L{TrafficLog} per session and an L{EventLog} per
ZTNA event, with FortiOS field names and field order.

FortiGate administrators already have parsers, SIEM rules and habits built
on FortiOS's ZTNA traffic log (logid C{0005000024}) and ZTNA event logs
(60511 policy denied, 60522 API-gateway match failure).  ztnagw writes the
same fields in the same order, fills every field it knows, and leaves out
the ones it cannot know (FortiOS does the same), so those tools keep
working.  Fields FortiOS does not have (the ZTNA error code of a denial,
the device certificate serial, the HTTP host and URL) come after the
FortiOS fields they belong with and are listed in C{docs/logs.md}.

Entries are immutable values built by the gateway and validated on
construction: addresses are parsed (so that an address is always printed
bare and can never carry a space), numbers are range-checked, and strings
taken from the network may be given as C{bytes} and are decoded without
ever failing.  The time stamp is not part of an entry: the writer adds it
from its clock.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from typing import Callable, Iterable

from attrs import field, frozen
from zope.interface import implementer

from ztnagw.errors import ZtnaError
from ztnagw.logs.interfaces import ILogEntry
from ztnagw.logs.line import FieldValue, IPAddress

# --- FortiOS vocabulary ----------------------------------------------------

#: FortiOS severity names, most severe first.
LEVELS = (
    "emergency",
    "alert",
    "critical",
    "error",
    "warning",
    "notice",
    "information",
    "debug",
)

#: The session was allowed and ended normally (FortiOS's spelling for ZTNA
#: sessions).
ACCEPT = "accept"
#: The request or tunnel was refused; the entry carries the ZTNA error.
DENY = "deny"
#: The gateway ended an allowed session itself (registry change, shutdown).
CLOSE = "close"
#: The session ended because it was idle for too long.
TIMEOUT = "timeout"
#: The client reset or dropped the connection.
CLIENT_RST = "client-rst"
#: The real server reset or dropped the connection.
SERVER_RST = "server-rst"
#: The connection to the real server could not be made.
IP_CONN = "ip-conn"
#: The real server's name could not be resolved.
DNS = "dns"

ACTIONS = frozenset(
    {ACCEPT, DENY, CLOSE, TIMEOUT, CLIENT_RST, SERVER_RST, IP_CONN, DNS}
)

#: C{service} of an HTTPS access-proxy session.
HTTPS = "HTTPS"
#: C{service} of a plain HTTP access-proxy session.
HTTP = "HTTP"


def tunnelService(port: int) -> str:
    """
    The C{service} of a TCP forwarding tunnel to C{port}: C{tcp/3389}.
    """
    _check(_port(port) not in (None, 0), f"bad tunnel port: {port!r}")
    return f"tcp/{port}"


#: C{policytype} of a ZTNA rule (C{config firewall proxy-policy}).
PROXY_POLICY = "proxy-policy"
#: C{policytype} of a simple ZTNA firewall policy (C{config firewall policy}).
FIREWALL_POLICY = "policy"
POLICY_TYPES = frozenset({PROXY_POLICY, FIREWALL_POLICY})

#: C{clientdevicemanageable}: the client presented a device certificate, or
#: looks like a client that should have one.
MANAGEABLE = "manageable"
#: C{clientdevicemanageable}: a client without a device certificate that
#: does not look like FortiClient or the ztnagw forwarder.
UNMANAGEABLE = "unmanageable"
MANAGEABILITY = frozenset({MANAGEABLE, UNMANAGEABLE})

# --- value checks and conversions ------------------------------------------

_UINT16 = 0xFFFF
_UINT32 = 0xFFFFFFFF
_UINT64 = 0xFFFFFFFFFFFFFFFF


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _text(value: str | bytes) -> str:
    # Header values and certificate names arrive as bytes; a log must take
    # them as they are, so undecodable bytes become visible \xHH text
    # instead of an exception.
    if type(value) is str:
        # The common case first: an entry is built for every request.
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def _optionalText(value: str | bytes | None) -> str | None:
    if value is None or type(value) is str:
        return value
    return _text(value)


def _address(value: str | bytes | IPAddress) -> IPAddress:
    if type(value) is ipaddress.IPv4Address:
        # Already what the log prints (and parsing its text again is the
        # costliest step of building an entry).
        return value
    if isinstance(value, bytes):
        value = value.decode("ascii")
    parsed = ipaddress.ip_address(value)
    if isinstance(parsed, ipaddress.IPv6Address):
        # A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d;
        # FortiOS logs them as IPv4.
        if parsed.ipv4_mapped is not None:
            return parsed.ipv4_mapped
        # The scope of a link-local address is free text (it may hold a
        # space) and would be printed bare: drop it.
        if parsed.scope_id is not None:
            return ipaddress.IPv6Address(str(parsed).split("%", 1)[0])
    return parsed


def _optionalAddress(
    value: str | bytes | IPAddress | None,
) -> IPAddress | None:
    if value is None or type(value) is ipaddress.IPv4Address:
        return value
    return _address(value)


def _bounded(limit: int, what: str) -> Callable[[int | None], int | None]:
    def convert(value: int | None) -> int | None:
        if type(value) is int and 0 <= value <= limit:  # type: ignore[operator]
            return value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{what} must be an int, not {value!r}")
        _check(0 <= value <= limit, f"{what} out of range: {value}")
        return int(value)

    return convert


_port = _bounded(_UINT16, "port")
_uint32 = _bounded(_UINT32, "id")
_counter = _bounded(_UINT64, "byte counter")


def _required(
    convert: Callable[[int | None], int | None],
) -> Callable[[int | None], int]:
    def strict(value: int | None) -> int:
        if type(value) is int and value >= 0:  # type: ignore[operator]
            converted = convert(value)
            assert converted is not None
            return converted
        _check(value is not None, "required log field missing")
        converted = convert(value)
        assert converted is not None
        return converted

    return strict


def _seconds(value: int | float) -> int:
    # FortiOS prints whole seconds; a session of 0.7 s lasted 0 s.
    if type(value) is float and 0.0 <= value < _UINT32:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"duration must be a number, not {value!r}")
    _check(math.isfinite(value) and value >= 0, f"bad duration: {value}")
    return min(int(value), _UINT32)


def _tags(value: Iterable[str | bytes]) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)):
        raise TypeError("tags must be a collection of tag names")
    if not value:
        return ()
    # Sorted: a device's tags are a set, and equal sets must log equally.
    return tuple(sorted({_text(tag) for tag in value}))


def _oneOf(
    choices: frozenset[str], what: str
) -> Callable[[object, object, str | None], None]:
    def validate(
        instance: object, attribute: object, value: str | None
    ) -> None:
        if value is not None and value not in choices:
            raise ValueError(f"unknown {what}: {value!r}")

    return validate


def _isError(instance: object, attribute: object, value: object) -> None:
    if value is not None and not isinstance(value, ZtnaError):
        raise TypeError(f"not a ZtnaError: {value!r}")


_LOG_ID = re.compile(r"[0-9]{10}")
_LEVELS = frozenset(LEVELS)
_LOG_TYPES = frozenset({"utm", "event"})


# --- the entries -----------------------------------------------------------


@implementer(ILogEntry)
@frozen
class TrafficLog:
    """
    One ZTNA session: an HTTPS or HTTP request relayed (or refused) by the
    access proxy, or a TCP forwarding tunnel.  FortiOS logid C{0005000024},
    C{type="traffic" subtype="ztna"}.

    @ivar srcIp: client address (C{srcip}).
    @ivar srcPort: client port (C{srcport}).
    @ivar sessionId: the gateway's session number (C{sessionid}); the same
        number appears on the block page of a denied session.
    @ivar service: L{HTTPS}, L{HTTP} or L{tunnelService}C{(port)}.
    @ivar action: one of L{ACTIONS}.
    @ivar srcIntf: name of the interface the client came in on.
    @ivar srcIntfRole: its role (C{wan}, C{lan}, C{dmz}, C{undefined}).
    @ivar dstIp: real server address, once one was chosen.
    @ivar dstPort: real server port.
    @ivar dstIntf: interface towards the real server.
    @ivar dstIntfRole: its role.
    @ivar policyId: the ZTNA policy that matched (C{policyid}), if any.
    @ivar policyType: L{PROXY_POLICY} or L{FIREWALL_POLICY}.
    @ivar policyUuid: the policy's UUID (C{poluuid}).
    @ivar policyName: the policy's name.
    @ivar duration: session length in seconds (a float is truncated).
    @ivar user: authenticated user, when known.
    @ivar group: the user group that matched, when known.
    @ivar apiGatewayId: id of the api-gateway that matched (C{gatewayid}).
    @ivar realServerId: id of the real server used (C{realserverid}).
    @ivar vip: name of the VIP the client connected to.
    @ivar accessProxy: name of the access proxy.
    @ivar uid: the device UID (C{clientdeviceid}), as presented: it may come
        from a certificate that failed validation.
    @ivar manageable: L{MANAGEABLE} or L{UNMANAGEABLE}
        (C{clientdevicemanageable}).
    @ivar tags: the device's tags as policies see them
        (C{EMS1_ZTNA_<tag>}), logged sorted and joined with C{/}
        (C{clientdevicetags}).
    @ivar emsSerial: serial number of the EMS that registered the device
        (C{clientdeviceems}).
    @ivar certSerial: serial of the presented device certificate
        (C{clientcertsn}, ours).
    @ivar hostname: the HTTP C{Host} (ours for ZTNA logs).
    @ivar url: the request target (ours for ZTNA logs).
    @ivar ztnaError: why the session was denied (C{ztnaerror} and C{msg},
        ours).
    @ivar detail: the reason behind the error, for the administrator
        (C{ztnadetail}, ours).
    @ivar lanIn: bytes received from the client (C{lanin}, also C{sentbyte}).
    @ivar lanOut: bytes sent to the client (C{lanout}).
    @ivar wanIn: bytes received from the real server (C{wanin}, also
        C{rcvdbyte}).
    @ivar wanOut: bytes sent to the real server (C{wanout}).
    @ivar level: FortiOS severity, C{notice} by default.
    @ivar vd: the virtual domain, always C{root} in ztnagw.
    """

    srcIp: IPAddress = field(converter=_address)
    srcPort: int = field(converter=_required(_port))
    sessionId: int = field(converter=_required(_uint32))
    service: str = field(converter=_text)
    action: str = field(validator=_oneOf(ACTIONS, "action"))
    srcIntf: str | None = field(default=None, converter=_optionalText)
    srcIntfRole: str | None = field(default=None, converter=_optionalText)
    dstIp: IPAddress | None = field(default=None, converter=_optionalAddress)
    dstPort: int | None = field(default=None, converter=_port)
    dstIntf: str | None = field(default=None, converter=_optionalText)
    dstIntfRole: str | None = field(default=None, converter=_optionalText)
    policyId: int | None = field(default=None, converter=_uint32)
    policyType: str | None = field(
        default=PROXY_POLICY, validator=_oneOf(POLICY_TYPES, "policy type")
    )
    policyUuid: str | None = field(default=None, converter=_optionalText)
    policyName: str | None = field(default=None, converter=_optionalText)
    duration: int = field(default=0, converter=_seconds)
    user: str | None = field(default=None, converter=_optionalText)
    group: str | None = field(default=None, converter=_optionalText)
    apiGatewayId: int | None = field(default=None, converter=_uint32)
    realServerId: int | None = field(default=None, converter=_uint32)
    vip: str | None = field(default=None, converter=_optionalText)
    accessProxy: str | None = field(default=None, converter=_optionalText)
    uid: str | None = field(default=None, converter=_optionalText)
    manageable: str | None = field(
        default=None, validator=_oneOf(MANAGEABILITY, "manageability")
    )
    tags: tuple[str, ...] = field(default=(), converter=_tags)
    emsSerial: str | None = field(default=None, converter=_optionalText)
    certSerial: str | None = field(default=None, converter=_optionalText)
    hostname: str | None = field(default=None, converter=_optionalText)
    url: str | None = field(default=None, converter=_optionalText)
    ztnaError: ZtnaError | None = field(default=None, validator=_isError)
    detail: str | None = field(default=None, converter=_optionalText)
    lanIn: int = field(default=0, converter=_required(_counter))
    lanOut: int = field(default=0, converter=_required(_counter))
    wanIn: int = field(default=0, converter=_required(_counter))
    wanOut: int = field(default=0, converter=_required(_counter))
    level: str = field(default="notice", validator=_oneOf(_LEVELS, "level"))
    vd: str = field(default="root", converter=_text)

    def logFields(self) -> list[tuple[str, FieldValue]]:
        """
        The fields in FortiOS order (see L{ILogEntry.logFields}).
        """
        fields: list[tuple[str, FieldValue | None]] = [
            ("logid", "0005000024"),
            ("type", "traffic"),
            ("subtype", "ztna"),
            ("level", self.level),
            ("vd", self.vd),
            ("srcip", self.srcIp),
            ("srcport", self.srcPort),
            ("srcintf", self.srcIntf),
            ("srcintfrole", self.srcIntfRole),
            ("dstcountry", _country(self.dstIp)),
            ("srccountry", _country(self.srcIp)),
            ("dstip", self.dstIp),
            ("dstport", self.dstPort),
            ("dstintf", self.dstIntf),
            ("dstintfrole", self.dstIntfRole),
            ("sessionid", self.sessionId),
            ("service", self.service),
            ("proxyapptype", "http"),
            ("proto", 6),
            ("action", self.action),
            ("policyid", self.policyId),
            ("policytype", self.policyType),
            ("poluuid", self.policyUuid),
            ("policyname", self.policyName),
            ("duration", self.duration),
            ("user", self.user),
            ("group", self.group),
            ("gatewayid", self.apiGatewayId),
            ("realserverid", self.realServerId),
            ("vip", self.vip),
            ("accessproxy", self.accessProxy),
        ]
        fields += [
            ("clientdeviceid", self.uid),
            ("clientdevicemanageable", self.manageable),
        ]
        fields += _deviceFields(self)
        fields += _requestFields(self)
        fields += [
            # Observed in FortiOS ZTNA logs: sentbyte equals lanin and
            # rcvdbyte equals wanin.
            ("wanin", self.wanIn),
            ("rcvdbyte", self.wanIn),
            ("wanout", self.wanOut),
            ("lanin", self.lanIn),
            ("sentbyte", self.lanIn),
            ("lanout", self.lanOut),
            # ztnagw never classifies applications, as FortiOS says for
            # sessions no application-control profile scanned.
            ("appcat", "unscanned"),
        ]
        return [(key, value) for key, value in fields if value is not None]


def _country(address: IPAddress | None) -> str | None:
    # FortiOS names the country of an address from its GeoIP database and
    # says "Reserved" for addresses no country has.  ztnagw has no GeoIP
    # database: it fills in only the second case.
    if address is None or _isGlobal(address):
        return None
    return "Reserved"


@functools.lru_cache(maxsize=4096)
def _isGlobal(address: IPAddress) -> bool:
    # is_global tests the address against a dozen networks: a few
    # microseconds, twice per traffic line, for the same few addresses.
    return address.is_global


def _deviceFields(
    entry: TrafficLog | EventLog,
) -> list[tuple[str, FieldValue | None]]:
    return [
        ("clientdevicetags", entry.tags or None),
        ("clientdeviceems", entry.emsSerial),
        ("clientcertsn", entry.certSerial),
    ]


def _requestFields(
    entry: TrafficLog | EventLog, msg: str | None = None
) -> list[tuple[str, FieldValue | None]]:
    error = entry.ztnaError
    if msg is None and error is not None:
        msg = error.message
    return [
        ("hostname", entry.hostname),
        ("url", entry.url),
        ("ztnaerror", None if error is None else error.code),
        ("ztnadetail", entry.detail),
        ("msg", msg),
    ]


@frozen
class EventKind:
    """
    One kind of ZTNA event log: its id, how FortiOS classifies it, and what
    it means.

    @ivar logId: the ten-digit C{logid}.
    @ivar name: the symbolic name (C{LOG_ID_ZTNA_POLICY_DENIED}).
    @ivar logType: C{type}: C{utm} for FortiOS's ZTNA events, C{event} for
        ztnagw's own.
    @ivar eventType: C{eventtype}, the event's category.
    @ivar level: the FortiOS severity.
    @ivar description: what the event means (C{desc} for C{utm} events,
        C{logdesc} for C{event} ones, as FortiOS names them).
    """

    logId: str = field()
    name: str
    logType: str = field(validator=_oneOf(_LOG_TYPES, "log type"))
    eventType: str
    level: str = field(validator=_oneOf(_LEVELS, "level"))
    description: str

    @logId.validator
    def _checkLogId(self, attribute: object, value: str) -> None:
        _check(bool(_LOG_ID.fullmatch(value)), f"bad logid: {value!r}")


# FortiOS's own ZTNA events.  21 is FortiOS's log category for ZTNA (FortiOS
# Log ID definitions); the two subtype digits are not published, 00 here.
ZTNA_POLICY_DENIED = EventKind(
    "2100060511",
    "LOG_ID_ZTNA_POLICY_DENIED",
    "utm",
    "ztna-policy-match",
    "warning",
    "Connection is blocked because proxy-policy action is deny.",
)
ZTNA_GATEWAY_MATCH_FAILURE = EventKind(
    "2100060522",
    "LOG_ID_ZTNA_GWY_MATCH_FAILURE",
    "utm",
    "ztna-error",
    "warning",
    "Unable to match an API-gateway.",
)

# ztnagw's own events: category 99 (unused by FortiOS), message ids
# 69901-69999.
DEVICE_SESSION_ENDED = EventKind(
    "9900069901",
    "LOG_ID_ZTNAGW_DEVICE_SESSION_ENDED",
    "event",
    "ztna-registry",
    "warning",
    "A session was ended because its device's registry record changed.",
)
REAL_SERVER_UP = EventKind(
    "9900069902",
    "LOG_ID_ZTNAGW_REALSERVER_UP",
    "event",
    "ztna-realserver",
    "notice",
    "A real server passed its health check and is used again.",
)
REAL_SERVER_DOWN = EventKind(
    "9900069903",
    "LOG_ID_ZTNAGW_REALSERVER_DOWN",
    "event",
    "ztna-realserver",
    "warning",
    "A real server failed its health check and is no longer used.",
)
DEVICE_ENROLLED = EventKind(
    "9900069904",
    "LOG_ID_ZTNAGW_DEVICE_ENROLLED",
    "event",
    "ztna-enrollment",
    "notice",
    "A device enrolled and received a device certificate.",
)
ENROLLMENT_REFUSED = EventKind(
    "9900069905",
    "LOG_ID_ZTNAGW_ENROLLMENT_REFUSED",
    "event",
    "ztna-enrollment",
    "warning",
    "An enrollment request was refused.",
)
DEVICE_OFFLINE = EventKind(
    "9900069906",
    "LOG_ID_ZTNAGW_DEVICE_OFFLINE",
    "event",
    "ztna-telemetry",
    "warning",
    "A device sent no telemetry for longer than out-of-sync-threshold.",
)
DEVICE_ONLINE = EventKind(
    "9900069907",
    "LOG_ID_ZTNAGW_DEVICE_ONLINE",
    "event",
    "ztna-telemetry",
    "notice",
    "A device that was offline sent telemetry again.",
)

#: Every event kind, by logid.
EVENT_KINDS: dict[str, EventKind] = {
    kind.logId: kind
    for kind in (
        ZTNA_POLICY_DENIED,
        ZTNA_GATEWAY_MATCH_FAILURE,
        DEVICE_SESSION_ENDED,
        REAL_SERVER_UP,
        REAL_SERVER_DOWN,
        DEVICE_ENROLLED,
        ENROLLMENT_REFUSED,
        DEVICE_OFFLINE,
        DEVICE_ONLINE,
    )
}


@implementer(ILogEntry)
@frozen
class EventLog:
    """
    One ZTNA event.  Every field but C{kind} is optional; fill the ones
    that describe the event (see C{docs/logs.md} for which fields each kind
    carries).  The fields mean what they mean in L{TrafficLog}.

    @ivar kind: which event (one of L{EVENT_KINDS}).
    @ivar msg: a sentence about this occurrence; defaults to the
        ZTNA error's message when there is an error.
    """

    kind: EventKind
    msg: str | None = field(default=None, converter=_optionalText)
    srcIp: IPAddress | None = field(default=None, converter=_optionalAddress)
    srcPort: int | None = field(default=None, converter=_port)
    srcIntf: str | None = field(default=None, converter=_optionalText)
    srcIntfRole: str | None = field(default=None, converter=_optionalText)
    dstIp: IPAddress | None = field(default=None, converter=_optionalAddress)
    dstPort: int | None = field(default=None, converter=_port)
    dstIntf: str | None = field(default=None, converter=_optionalText)
    dstIntfRole: str | None = field(default=None, converter=_optionalText)
    sessionId: int | None = field(default=None, converter=_uint32)
    service: str | None = field(default=None, converter=_optionalText)
    policyId: int | None = field(default=None, converter=_uint32)
    action: str | None = field(
        default=None, validator=_oneOf(ACTIONS, "action")
    )
    user: str | None = field(default=None, converter=_optionalText)
    group: str | None = field(default=None, converter=_optionalText)
    apiGatewayId: int | None = field(default=None, converter=_uint32)
    realServerId: int | None = field(default=None, converter=_uint32)
    vip: str | None = field(default=None, converter=_optionalText)
    accessProxy: str | None = field(default=None, converter=_optionalText)
    uid: str | None = field(default=None, converter=_optionalText)
    tags: tuple[str, ...] = field(default=(), converter=_tags)
    emsSerial: str | None = field(default=None, converter=_optionalText)
    certSerial: str | None = field(default=None, converter=_optionalText)
    hostname: str | None = field(default=None, converter=_optionalText)
    url: str | None = field(default=None, converter=_optionalText)
    ztnaError: ZtnaError | None = field(default=None, validator=_isError)
    detail: str | None = field(default=None, converter=_optionalText)
    vd: str = field(default="root", converter=_text)

    @property
    def level(self) -> str:
        """
        The event kind's severity.
        """
        return self.kind.level

    def logFields(self) -> list[tuple[str, FieldValue]]:
        """
        The fields in FortiOS order (see L{ILogEntry.logFields}).
        """
        kind = self.kind
        tcp = self.srcPort is not None or self.dstPort is not None
        fields: list[tuple[str, FieldValue | None]] = [
            ("logid", kind.logId),
            ("type", kind.logType),
            ("subtype", "ztna"),
            ("eventtype", kind.eventType),
            ("level", kind.level),
            ("vd", self.vd),
            ("desc" if kind.logType == "utm" else "logdesc", kind.description),
            ("srcip", self.srcIp),
            ("srcport", self.srcPort),
            ("srcintf", self.srcIntf),
            ("srcintfrole", self.srcIntfRole),
            ("dstip", self.dstIp),
            ("dstport", self.dstPort),
            ("dstintf", self.dstIntf),
            ("dstintfrole", self.dstIntfRole),
            ("sessionid", self.sessionId),
            ("proto", 6 if tcp else None),
            ("service", self.service),
            ("policyid", self.policyId),
            ("action", self.action),
            ("user", self.user),
            ("group", self.group),
            ("gatewayid", self.apiGatewayId),
            ("realserverid", self.realServerId),
            ("vip", self.vip),
            ("accessproxy", self.accessProxy),
        ]
        fields.append(("clientdeviceid", self.uid))
        fields += _deviceFields(self)
        fields += _requestFields(self, self.msg)
        return [(key, value) for key, value in fields if value is not None]
