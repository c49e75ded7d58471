# -*- test-case-name: tests.tunnel.test_wire -*-
"""
The TFACP wire protocol: how a tunnel is asked for, and how a refusal
reads.

FortiClient opens a tunnel with one HTTP/1.1 request inside its mutual-TLS
connection to the access-proxy VIP::

    GET /tcp?address=HOST&port=N&tls=1 HTTP/1.1
    Host: <gateway>:<port>
    User-Agent: Forticlient
    Accept: */*
    Upgrade: tcp-forwarding/1.0
    Connection: Upgrade
    Cookie:
    Authorization: Basic

and the gateway answers C{101 Switching Protocols} (then the connection
carries the raw TCP stream) or an ordinary response with the ZTNA error
code.  The gateway parses the query with L{parseTunnelTarget}; the forwarder
writes the request with L{tunnelRequest} and reads a refusal with
L{parseRefusal}.  Both ends use the same host and port rules
(L{parseHost}, L{parseHostPort}), so whatever the forwarder accepts on its
command line is what the gateway accepts on the wire.

The query is parsed strictly because its values become a DNS query and a
TCP connection inside the protected network: every byte is checked, a
parameter the tunnel needs may appear exactly once, and anything odd is a
C{400} with a sentence saying what was wrong, never a guess.
"""

from __future__ import annotations

import ipaddress
import json
import re

from attrs import frozen

from ztnagw import errors
from ztnagw.http.headers import Headers, serializeFields
from ztnagw.http.parser import ResponseHead, serializeRequestHead

__all__ = [
    "TUNNEL_PATH",
    "UPGRADE_TOKEN",
    "TunnelQueryError",
    "TunnelRefusal",
    "TunnelTarget",
    "isTunnelRequest",
    "parseHost",
    "parseHostPort",
    "parsePort",
    "parseRefusal",
    "parseTunnelTarget",
    "tunnelRequest",
]

#: The C{Upgrade} token of a TFACP request (and of the C{101} answering it).
UPGRADE_TOKEN = b"tcp-forwarding/1.0"

#: The path of a TFACP request.
TUNNEL_PATH = b"/tcp"

#: The most query parameters a tunnel request may carry.  FortiClient sends
#: three; a bound keeps the work per request constant.
MAX_PARAMETERS = 16

#: The longest host name (RFC 1035: 253 characters without the final dot).
MAX_HOST_NAME = 253

_LABEL = re.compile(r"\A[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
# What inet_aton(3), and so getaddrinfo(3), reads as a number: a final
# label like this makes a "name" an address in disguise.
_NUMERIC_LABEL = re.compile(r"\A(?:[0-9]+|0x[0-9a-f]*)\Z")
_HEX = b"0123456789abcdefABCDEF"
_DIGITS = "0123456789"


class TunnelQueryError(ValueError):
    """
    A tunnel request's target is malformed; the message says what is wrong,
    in a sentence fit for the client.
    """


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@frozen
class TunnelTarget:
    """
    Where a tunnel should lead, as a client asked for it.

    @ivar host: an IP address in its canonical text form (IPv6 without
        brackets) or a host name in lower case without a final dot.
    @ivar port: the TCP port, 1 to 65535.
    @ivar encrypted: C{tls=1}: the tunnelled bytes stay inside the TLS
        session; C{tls=0}: after the C{101} they travel in clear on the same
        TCP connection.
    """

    host: str
    port: int
    encrypted: bool = True

    @property
    def address(self) -> Address | None:
        """
        The address, if L{host} is one; C{None} for a host name.
        """
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def hostPort(self) -> str:
        """
        C{host:port} as people write it (C{[2001:db8::1]:22} for IPv6).
        """
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    def query(self) -> bytes:
        """
        The request target that asks for this tunnel.
        """
        return b"%s?address=%s&port=%d&tls=%d" % (
            TUNNEL_PATH,
            self.host.encode("ascii"),
            self.port,
            1 if self.encrypted else 0,
        )


def parsePort(text: str) -> int:
    """
    A TCP port given as decimal digits: 1 to 65535, no sign, no blank, no
    leading zero.

    @raise ValueError: anything else; the message says why.
    """
    if not text or text.strip(_DIGITS):
        raise ValueError(f"{_shown(text)} is not a port number")
    if len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"{_shown(text)} is not a port number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{_shown(text)} is not a port number from 1 to 65535")
    return port


def parseHost(text: str) -> str:
    """
    Check and canonicalize a tunnel destination host: an IPv4 address, an
    IPv6 address (bracketed or not, without a zone), or a DNS host name
    (letters, digits, C{-} and C{_} in labels of 1 to 63 characters, at
    most 253 characters, one final dot allowed).  A name whose last label
    is a number (C{127.1}, C{10.0.0.010}, C{0x7f000001}) is refused: the
    resolver would read it as an address in a form nobody checks.

    @return: the address in canonical form, or the name in lower case
        without its final dot.
    @raise ValueError: anything else; the message says why.
    """
    if not text:
        raise ValueError("the destination host is empty")
    bracketed = text.startswith("[") and text.endswith("]")
    candidate = text[1:-1] if bracketed else text
    if ":" in candidate or bracketed:
        if "%" in candidate:
            raise ValueError(f"{_shown(text)}: IPv6 zone identifiers are not accepted")
        try:
            return str(ipaddress.IPv6Address(candidate))
        except ValueError:
            raise ValueError(f"{_shown(text)} is not an IPv6 address") from None
    try:
        return str(ipaddress.IPv4Address(candidate))
    except ValueError:
        pass
    name = candidate.lower()
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_HOST_NAME or not name.isascii():
        raise ValueError(f"{_shown(text)} is not an IP address or host name")
    labels = name.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(f"{_shown(text)} is not an IP address or host name")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise ValueError(
            f"{_shown(text)} is neither an IP address in dotted-quad form nor a "
            "host name"
        )
    return name


def parseHostPort(text: str) -> tuple[str, int]:
    """
    C{HOST:PORT} as on the forwarder's command line and in rules files;
    an IPv6 host in brackets (C{[2001:db8::1]:22}).

    @return: the canonical host (see L{parseHost}) and the port.
    @raise ValueError: malformed; the message says why.
    """
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{_shown(text)} is not [IPv6-ADDRESS]:PORT")
        host, port = text[: end + 1], text[end + 2 :]
    else:
        host, colon, port = text.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"{_shown(text)} is not HOST:PORT")
    return parseHost(host), parsePort(port)


def _percentDecode(raw: bytes, what: str) -> str:
    # Strict RFC 3986 decoding: "%" must start an escape of two hex digits,
    # and the result must be printable ASCII (no blank, no control
    # character, nothing a resolver or a log could read differently).
    out = bytearray()
    index = 0
    length = len(raw)
    while index < length:
        byte = raw[index]
        if byte == 0x25:  # "%"
            pair = raw[index + 1 : index + 3]
            if len(pair) != 2 or pair.translate(None, _HEX):
                raise TunnelQueryError(f"the {what} holds a malformed %-escape")
            byte = int(pair, 16)
            index += 3
        else:
            index += 1
        if not 0x21 <= byte <= 0x7E:
            raise TunnelQueryError(
                f"the {what} holds a blank, a control character or a non-ASCII byte"
            )
        out.append(byte)
    return out.decode("ascii")


def parseTunnelTarget(path: bytes) -> TunnelTarget:
    """
    Read the destination of a tunnel request from its path and query
    (C{/tcp?address=HOST&port=N&tls=1}).

    C{address} and C{port} are required, C{tls} is optional (C{1}, the
    safe choice, when absent); each may appear once.  Values may be
    %-escaped.  Parameters ztnagw does not know are ignored (a later
    FortiClient may send more), up to L{MAX_PARAMETERS} in all.

    @param path: the request's origin-form path and query.
    @raise TunnelQueryError: the path is not C{/tcp}, or the query is
        malformed; the message says what is wrong.
    """
    base, question, query = path.partition(b"?")
    if base != TUNNEL_PATH:
        raise TunnelQueryError("a tunnel request is GET /tcp?address=HOST&port=PORT")
    if not question or not query:
        raise TunnelQueryError("the tunnel request has no query (address=HOST&port=PORT)")
    parts = query.split(b"&")
    if len(parts) > MAX_PARAMETERS:
        raise TunnelQueryError(
            f"the tunnel request has more than {MAX_PARAMETERS} query parameters"
        )
    values: dict[bytes, bytes] = {}
    for part in parts:
        name, equals, value = part.partition(b"=")
        if not name or not equals:
            raise TunnelQueryError(
                "the tunnel request's query has a parameter that is not NAME=VALUE"
            )
        if name in (b"address", b"port", b"tls"):
            if name in values:
                raise TunnelQueryError(
                    f"the tunnel request names {name.decode('ascii')} more than once"
                )
            values[name] = value
    if b"address" not in values:
        raise TunnelQueryError("the tunnel request has no address parameter")
    if b"port" not in values:
        raise TunnelQueryError("the tunnel request has no port parameter")
    try:
        host = parseHost(_percentDecode(values[b"address"], "address"))
    except ValueError as e:
        raise TunnelQueryError(f"address: {e}") from None
    try:
        port = parsePort(_percentDecode(values[b"port"], "port"))
    except ValueError as e:
        raise TunnelQueryError(f"port: {e}") from None
    encrypted = True
    if b"tls" in values:
        tls = values[b"tls"]
        if tls not in (b"0", b"1"):
            raise TunnelQueryError("tls must be 1 (encrypted) or 0 (not encrypted)")
        encrypted = tls == b"1"
    return TunnelTarget(host, port, encrypted)


def isTunnelRequest(method: bytes, path: bytes, upgrade: bytes | None) -> bool:
    """
    Whether a request asks for a tunnel: C{GET /tcp...} upgrading to
    L{UPGRADE_TOKEN} (compared without regard to case, as HTTP tokens are).
    """
    if method != b"GET" or upgrade is None:
        return False
    if path != TUNNEL_PATH and not path.startswith(TUNNEL_PATH + b"?"):
        return False
    offered = [token.strip(b" \t").lower() for token in upgrade.split(b",")]
    return UPGRADE_TOKEN in offered


def tunnelRequest(target: TunnelTarget, authority: bytes, userAgent: bytes) -> bytes:
    """
    The request that asks a gateway for a tunnel to C{target}.

    @param authority: the gateway as the C{Host} field names it
        (C{gateway.example.com:443}).
    @param userAgent: the C{User-Agent} value.
    @return: the whole request head.
    """
    fields = Headers(
        [
            (b"Host", authority),
            (b"User-Agent", userAgent),
            # Refusals come back as JSON, which carries the detail.
            (b"Accept", b"application/json"),
            (b"Upgrade", UPGRADE_TOKEN),
            (b"Connection", b"Upgrade"),
        ]
    )
    return serializeRequestHead(b"GET", target.query(), serializeFields(fields))


#: The longest refusal body the forwarder reads; a block page is < 4 KiB.
MAX_REFUSAL_BODY = 64 * 1024

_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")


def _shown(value: str, limit: int = 200) -> str:
    """
    C{value} made safe to print on a terminal and bounded; quoted.
    """
    cleaned = _UNPRINTABLE.sub("?", value)
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "\u2026"
    return repr(cleaned)


def _plain(value: object, limit: int = 300) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = _UNPRINTABLE.sub("?", value).strip()
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "\u2026"
    return cleaned or None


@frozen
class TunnelRefusal:
    """
    A gateway's answer other than C{101}, as the forwarder reports it.

    @ivar status: the HTTP status.
    @ivar code: the ZTNA error code (C{"063"}) when the answer carries one.
    @ivar message: the error's meaning: the message ztnagw knows for the
        code, else what the gateway said, else the reason phrase.
    @ivar detail: the gateway's more specific explanation, if it gave one.
    """

    status: int
    code: str | None
    message: str
    detail: str | None = None

    def describe(self) -> str:
        """
        One line for the user: C{blocked by gateway: 063 client certificate
        revoked}, or C{gateway refused the tunnel: 400 ...} for an answer
        without a ZTNA code.
        """
        if self.code is not None:
            line = f"blocked by gateway: {self.code} {self.message}"
        else:
            line = f"gateway refused the tunnel: {self.status} {self.message}"
        if self.detail and self.detail != self.message:
            line += f" ({self.detail})"
        return line


def parseRefusal(head: ResponseHead, body: bytes) -> TunnelRefusal:
    """
    Understand a gateway's refusal of a tunnel: the code from the
    C{X-ZTNA-Error} field, the detail from a JSON body (as ztnagw sends
    when asked with C{Accept: application/json}).  Whatever the gateway
    sent, the result is printable: text from the network is cleaned of
    control characters and bounded.

    @param head: the response head.
    @param body: the response body (at most L{MAX_REFUSAL_BODY} bytes
        need be read).
    """
    code: str | None = None
    raw = head.headers.get(b"x-ztna-error")
    if raw is not None and len(raw) == 3 and raw.isdigit():
        code = raw.decode("ascii")
    document: dict[str, object] = {}
    contentType = (head.headers.get(b"content-type") or b"").lower()
    if contentType.startswith(b"application/json") and len(body) <= MAX_REFUSAL_BODY:
        try:
            parsed = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            document = parsed["error"]
    if code is None:
        bodyCode = document.get("code")
        if isinstance(bodyCode, str) and len(bodyCode) == 3 and bodyCode.isdigit():
            code = bodyCode
    known = errors.ALL.get(code) if code is not None else None
    message = (
        known.message
        if known is not None
        else _plain(document.get("message"))
        or _plain(document.get("title"))
        or _plain(head.reason.decode("iso-8859-1"))
        or "refused"
    )
    return TunnelRefusal(
        status=head.status,
        code=code,
        message=message,
        detail=_plain(document.get("detail")),
    )
