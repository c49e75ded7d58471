# -*- test-case-name: tests.http.test_parser -*-
"""
Strict parsing of HTTP/1.1 message heads (RFC 9112), for requests (the
gateway's clients) and responses (real servers, and the forwarder reading
the gateway's C{101}).

The gateway re-serializes what it forwards, so any ambiguity it tolerated
could be read differently by the next hop: that is request smuggling.  The
parser therefore refuses, instead of repairing: bare CR or LF line ends,
obs-fold, whitespace before a colon, control characters in values,
C{Transfer-Encoding} other than exactly C{chunked}, C{Transfer-Encoding}
with C{Content-Length}, several C{Content-Length} fields, several or
missing C{Host}, and absolute-form targets naming another host than
C{Host} (the gateway is never an open forward proxy).

Heads are parsed with bytes methods only (C{find}, C{split},
C{translate}): one pass over the whole head checks every byte, then the
fields are split out.
"""

from __future__ import annotations

from attrs import frozen

from ztnagw.http.errors import HTTPParseError
from ztnagw.http.headers import FIELD_VALUE_BYTES, TOKEN_BYTES, Headers
from ztnagw.http.limits import ServerLimits

#: The bytes a request-target may contain (VCHAR: printable ASCII).
_TARGET_BYTES = bytes(range(0x21, 0x7F))

#: The bytes of C{uri-host [":" port]}, IPv6 literals included.
_HOST_BYTES = (
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    b"-._~!$&'()*+,;=%:[]"
)

_DIGITS = b"0123456789"

#: Longest C{Content-Length} accepted: 18 digits is below 2**63.
MAX_CONTENT_LENGTH_DIGITS = 18

#: Methods that never carry request semantics in their body and may be
#: repeated without harm (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset(
    {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"}
)

_DEFAULT_LIMITS = ServerLimits()

#: How a response body is delimited.
FRAMING_NONE = 0
FRAMING_LENGTH = 1
FRAMING_CHUNKED = 2
FRAMING_CLOSE = 3


@frozen
class RequestHead:
    """
    A parsed, validated request head.

    @ivar method: the method token, as sent (case-sensitive).
    @ivar target: the request-target, raw.
    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar headers: the header fields.
    @ivar bodyLength: the body length from C{Content-Length}, C{None} for a
        chunked body, C{0} when there is no body.
    @ivar keepAlive: whether the client asked for a persistent connection.
    @ivar expectContinue: whether an HTTP/1.1 client sent
        C{Expect: 100-continue} with a body.
    @ivar upgrade: the C{Upgrade} field value of an HTTP/1.1 request that
        also lists C{upgrade} in C{Connection}, else C{None}.
    @ivar host: the C{Host} value (for an absolute-form target without
        C{Host} in HTTP/1.0, its authority), or C{None}.
    @ivar path: the path and query: the target itself in origin-form, the
        part after the authority in absolute-form, C{b"*"} in
        asterisk-form.
    """

    method: bytes
    target: bytes
    version: bytes
    headers: Headers
    bodyLength: int | None
    keepAlive: bool
    expectContinue: bool
    upgrade: bytes | None
    host: bytes | None
    path: bytes


@frozen
class ResponseHead:
    """
    A parsed, validated response head.

    @ivar version: C{b"HTTP/1.1"} or C{b"HTTP/1.0"}.
    @ivar status: the status code.
    @ivar reason: the reason phrase (possibly empty).
    @ivar headers: the header fields.
    @ivar keepAlive: whether the server allows the connection to be reused
        (before framing is considered).
    """

    version: bytes
    status: int
    reason: bytes
    headers: Headers
    keepAlive: bool


def findHeadEnd(buffer: bytes, start: int = 0) -> int:
    """
    The index of the blank line (C{CRLF CRLF}) ending a head that starts at
    C{start}, or -1.  The head is C{buffer[start:index]}; what follows it
    starts at C{index + 4}.
    """
    return buffer.find(b"\r\n\r\n", start)


def checkNewHeadBytes(buffer: bytes, scanned: int) -> None:
    """
    Check the bytes of an incomplete head received since C{scanned} for a
    bare LF, so that a client sending one byte at a time costs work in
    proportion to what it sends, not to the square of it.

    @raise HTTPParseError: 400.
    """
    at = buffer.find(b"\n", scanned)
    while at >= 0:
        if at == 0 or buffer[at - 1] != 0x0D:
            raise HTTPParseError(400, "bare LF in the message head")
        at = buffer.find(b"\n", at + 1)


def checkHeadBytes(block: bytes) -> None:
    """
    Check, in one pass, that a head contains no control character other
    than HTAB and that every CR and LF is part of a CRLF line end.

    @raise HTTPParseError: 400.
    """
    bad = block.translate(None, FIELD_VALUE_BYTES)
    if bad and len(bad) != 2 * block.count(b"\r\n"):
        raise HTTPParseError(
            400, "control character, NUL, or bare CR or LF in the message head"
        )


def parseFieldLines(block: bytes, maxCount: int) -> Headers:
    """
    Parse C{CRLF}-separated field lines (no request or status line) into
    L{Headers}.

    @raise HTTPParseError: 400 for malformed lines, 431 for too many.
    """
    checkHeadBytes(block)
    lines = block.split(b"\r\n")
    if len(lines) > maxCount:
        raise HTTPParseError(431, "too many header fields")
    return _fields(lines, 0)


def _fields(lines: list[bytes], first: int) -> Headers:
    pairs: list[tuple[bytes, bytes]] = []
    index: dict[bytes, list[bytes]] = {}
    append = pairs.append
    get = index.get
    for i in range(first, len(lines)):
        name, colon, value = lines[i].partition(b":")
        if not colon or not name:
            _fieldError(lines[i])
        value = value.strip(b" \t")
        append((name, value))
        lower = name.lower()
        values = get(lower)
        if values is None:
            index[lower] = [value]
        else:
            values.append(value)
    # One pass checks every name (the common case has no bad byte at all).
    if b"".join([name for name, value in pairs]).translate(None, TOKEN_BYTES):
        for name, value in pairs:
            if name.translate(None, TOKEN_BYTES):
                for line in lines[first:]:
                    if line.startswith(name):
                        _fieldError(line)
    return Headers._trusted(pairs, index)


def _fieldError(line: bytes) -> None:
    name, colon, value = line.partition(b":")
    if line[:1] in (b" ", b"\t"):
        raise HTTPParseError(400, "obsolete line folding (obs-fold)")
    if not colon:
        raise HTTPParseError(400, "header line without a colon")
    if name.rstrip(b" \t") != name:
        raise HTTPParseError(400, "whitespace before the colon")
    raise HTTPParseError(400, f"invalid header name {name[:64]!r}")


def _tokens(values: list[bytes] | None) -> frozenset[bytes]:
    if not values:
        return frozenset()
    return frozenset(
        t for t in (
            token.strip(b" \t").lower() for v in values for token in v.split(b",")
        ) if t
    )


def _checkVersion(version: bytes) -> None:
    if (
        len(version) == 8
        and version.startswith(b"HTTP/")
        and version[5:6].isdigit()
        and version[6:7] == b"."
        and version[7:8].isdigit()
    ):
        raise HTTPParseError(505, f"HTTP version {version.decode()} not supported")
    raise HTTPParseError(400, "malformed HTTP version")


def _normalAuthority(authority: bytes, scheme: bytes) -> bytes:
    authority = authority.lower()
    default = b":443" if scheme == b"https" else b":80"
    if authority.endswith(default):
        return authority[: -len(default)]
    return authority


def parseRequestHead(block: bytes, limits: ServerLimits = _DEFAULT_LIMITS) -> RequestHead:
    """
    Parse a request head: C{block} is everything before the blank line
    (leading empty lines already skipped).

    @param limits: the bounds to enforce.
    @raise HTTPParseError: with the status to answer: 400, 405 (C{CONNECT}),
        413, 414, 417, 431, 501 or 505.
    """
    lineEnd = block.find(b"\r\n")
    if (lineEnd if lineEnd >= 0 else len(block)) > limits.maxRequestLineLength:
        raise HTTPParseError(414, "request line too long")
    if len(block) > limits.maxHeadBytes:
        raise HTTPParseError(431, "request head too large")
    checkHeadBytes(block)
    lines = block.split(b"\r\n")
    requestLine = lines[0]
    parts = requestLine.split(b" ")
    if len(parts) != 3:
        raise HTTPParseError(400, "malformed request line")
    method, target, version = parts
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        _checkVersion(version)
    if not method or method.translate(None, TOKEN_BYTES):
        raise HTTPParseError(400, "invalid method")
    if not target or target.translate(None, _TARGET_BYTES):
        raise HTTPParseError(400, "invalid request target")
    if len(lines) - 1 > limits.maxHeaderCount:
        raise HTTPParseError(431, "too many header fields")
    headers = _fields(lines, 1)
    index = headers._index
    assert index is not None
    http11 = version == b"HTTP/1.1"

    if method == b"CONNECT":
        raise HTTPParseError(405, "CONNECT is not supported")

    hosts = index.get(b"host")
    host: bytes | None = None
    if hosts is not None:
        if len(hosts) > 1:
            raise HTTPParseError(400, "several Host fields")
        host = hosts[0]
        if not host or host.translate(None, _HOST_BYTES):
            raise HTTPParseError(400, "invalid Host")
    elif http11:
        raise HTTPParseError(400, "missing Host")

    first = target[0]
    if first == 0x2F:  # "/": origin-form, by far the most common
        path = target
    elif target == b"*":
        if method != b"OPTIONS":
            raise HTTPParseError(400, "asterisk-form target only with OPTIONS")
        path = target
    else:
        lowered = target[:8].lower()
        if lowered.startswith(b"http://"):
            scheme, rest = b"http", target[7:]
        elif lowered.startswith(b"https://"):
            scheme, rest = b"https", target[8:]
        else:
            raise HTTPParseError(400, "invalid request target form")
        cut = len(rest)
        for separator in (b"/", b"?", b"#"):
            at = rest.find(separator)
            if 0 <= at < cut:
                cut = at
        authority, path = rest[:cut], rest[cut:]
        if not authority or b"@" in authority or authority.translate(None, _HOST_BYTES):
            raise HTTPParseError(400, "invalid authority in the request target")
        if not path.startswith(b"/"):
            path = b"/" + path
        if host is None:
            host = authority
        elif _normalAuthority(authority, scheme) != _normalAuthority(host, scheme):
            raise HTTPParseError(
                400, "absolute-form target names another host than Host"
            )

    transferEncodings = index.get(b"transfer-encoding")
    contentLengths = index.get(b"content-length")
    bodyLength: int | None
    if transferEncodings is not None:
        if not http11:
            raise HTTPParseError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if contentLengths is not None:
            raise HTTPParseError(400, "both Transfer-Encoding and Content-Length")
        if len(transferEncodings) != 1:
            raise HTTPParseError(400, "several Transfer-Encoding fields")
        coding = transferEncodings[0].lower()
        if coding != b"chunked":
            if not coding or coding.translate(None, TOKEN_BYTES):
                raise HTTPParseError(400, "malformed Transfer-Encoding")
            raise HTTPParseError(501, "unsupported Transfer-Encoding")
        bodyLength = None
    elif contentLengths is not None:
        if len(contentLengths) != 1:
            raise HTTPParseError(400, "several Content-Length fields")
        bodyLength = parseContentLength(contentLengths[0])
        if limits.maxBodyLength is not None and bodyLength > limits.maxBodyLength:
            raise HTTPParseError(413, "request body too large")
    else:
        bodyLength = 0

    connection = _tokens(index.get(b"connection"))
    if http11:
        keepAlive = b"close" not in connection
    else:
        keepAlive = b"keep-alive" in connection and b"close" not in connection

    expectContinue = False
    expects = index.get(b"expect")
    if expects is not None and http11:
        # RFC 9110 section 10.1.1: an HTTP/1.0 Expect is ignored.
        if len(expects) != 1 or expects[0].lower() != b"100-continue":
            raise HTTPParseError(417, "unsupported expectation")
        expectContinue = bodyLength != 0

    upgrade: bytes | None = None
    upgrades = index.get(b"upgrade")
    if upgrades is not None and http11 and b"upgrade" in connection:
        upgrade = b", ".join(upgrades)
        if bodyLength != 0:
            # Bytes after the head of an Upgrade request belong to the new
            # protocol; a body there would be ambiguous.
            raise HTTPParseError(400, "Upgrade request with a body")

    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers=headers,
        bodyLength=bodyLength,
        keepAlive=keepAlive,
        expectContinue=expectContinue,
        upgrade=upgrade,
        host=host,
        path=path,
    )


def parseContentLength(value: bytes) -> int:
    """
    Parse a C{Content-Length} value: 1 to 18 ASCII digits, nothing else.

    @raise HTTPParseError: 400.
    """
    if (
        not value
        or len(value) > MAX_CONTENT_LENGTH_DIGITS
        or value.translate(None, _DIGITS)
    ):
        raise HTTPParseError(400, "invalid Content-Length")
    return int(value)


def parseResponseHead(block: bytes, maxHeaderCount: int = 200) -> ResponseHead:
    """
    Parse a response head: C{block} is everything before the blank line.

    @raise HTTPParseError: the head is malformed (its status is
        meaningless: there is no one to answer).
    """
    checkHeadBytes(block)
    lines = block.split(b"\r\n")
    statusLine = lines[0]
    version = statusLine[:8]
    if version != b"HTTP/1.1" and version != b"HTTP/1.0":
        raise HTTPParseError(502, f"unsupported response version {version[:16]!r}")
    code = statusLine[9:12]
    if (
        statusLine[8:9] != b" "
        or len(code) != 3
        or code.translate(None, _DIGITS)
        or statusLine[12:13] not in (b" ", b"")
    ):
        raise HTTPParseError(502, "malformed status line")
    status = int(code)
    if status < 100:
        raise HTTPParseError(502, "invalid status code")
    reason = statusLine[13:]
    if len(lines) - 1 > maxHeaderCount:
        raise HTTPParseError(502, "too many header fields")
    headers = _fields(lines, 1)
    index = headers._index
    assert index is not None
    connection = _tokens(index.get(b"connection"))
    if version == b"HTTP/1.1":
        keepAlive = b"close" not in connection
    else:
        keepAlive = b"keep-alive" in connection and b"close" not in connection
    return ResponseHead(
        version=version, status=status, reason=reason, headers=headers, keepAlive=keepAlive
    )


def responseFraming(head: ResponseHead, requestMethod: bytes) -> tuple[int, int]:
    """
    How the body of a response is delimited (RFC 9112 section 6.3), strictly.

    @param requestMethod: the method of the request it answers.
    @return: C{(framing, length)}: one of L{FRAMING_NONE},
        L{FRAMING_LENGTH} (with C{length}), L{FRAMING_CHUNKED},
        L{FRAMING_CLOSE}; C{length} is 0 unless the framing is by length.
    @raise HTTPParseError: conflicting or invalid framing fields.
    """
    status = head.status
    if requestMethod == b"HEAD" or status < 200 or status == 204 or status == 304:
        return FRAMING_NONE, 0
    index = head.headers._getIndex()
    transferEncodings = index.get(b"transfer-encoding")
    contentLengths = index.get(b"content-length")
    if transferEncodings is not None:
        if contentLengths is not None:
            raise HTTPParseError(502, "both Transfer-Encoding and Content-Length")
        if head.version != b"HTTP/1.1":
            raise HTTPParseError(502, "Transfer-Encoding in an HTTP/1.0 response")
        if len(transferEncodings) != 1 or transferEncodings[0].lower() != b"chunked":
            raise HTTPParseError(502, "unsupported Transfer-Encoding")
        return FRAMING_CHUNKED, 0
    if contentLengths is not None:
        if len(contentLengths) != 1:
            raise HTTPParseError(502, "several Content-Length fields")
        try:
            return FRAMING_LENGTH, parseContentLength(contentLengths[0])
        except HTTPParseError:
            raise HTTPParseError(502, "invalid Content-Length") from None
    return FRAMING_CLOSE, 0


def serializeRequestHead(
    method: bytes, target: bytes, fields: bytes, version: bytes = b"HTTP/1.1"
) -> bytes:
    """
    A request head from checked parts: C{fields} is already serialized
    (see L{ztnagw.http.headers.serializeFields}).
    """
    return b"%s %s %s\r\n%s\r\n" % (method, target, version, fields)
