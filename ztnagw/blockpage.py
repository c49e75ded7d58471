# -*- test-case-name: tests.test_blockpage -*-
"""
The pages a client sees when the gateway refuses or fails its request.

A FortiGate that denies a ZTNA request answers with a replacement page
showing the category, the three-digit error code and the facts a help desk
needs to find the matching log line: the device certificate's serial, the
device UID, the destination, the EMS serial and tenant, the request time.
Users read these pages in browsers, scripts read them with curl, and the
forwarder reads them when a tunnel is refused, so every page comes in three
representations chosen from the C{Accept} header: HTML (the default, and
what C{curl}'s C{*/*} gets), JSON for clients that prefer
C{application/json}, and plain text for clients that accept only
C{text/plain}.

Every value on a page may come from the attacker (the C{Host} header, the
CN of a certificate that failed validation), so each is decoded without
failing, stripped of control and formatting characters, cut to a bounded
length and HTML-escaped; the page loads nothing from anywhere
(C{Content-Security-Policy: default-src 'none'}, the one inline style
allowed by its hash) and stays under 4 KiB.

Gateway errors that are not ZTNA denials (a malformed request, a real
server that failed) use the same look and the same negotiation, without an
error code: L{renderErrorPage}.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import ipaddress
import json
import math
import re
from attrs import field, frozen

from ztnagw.errors import ZtnaError

HTML = "text/html"
JSON = "application/json"
TEXT = "text/plain"

#: The media types a page can be sent as, the server's preference first.
MEDIA_TYPES = (HTML, JSON, TEXT)

Headers = list[tuple[bytes, bytes]]
Page = tuple[int, Headers, bytes]

# --- values shown on pages -------------------------------------------------

# Characters that would make a value display as something else, or break a
# line of the text page: C0/C1 controls, DEL, line/paragraph separators,
# bidirectional and zero-width formatting, BOM, lone surrogates.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)


def _visible(match: re.Match[str]) -> str:
    codePoint = ord(match.group())
    if codePoint <= 0xFF:
        return f"\\x{codePoint:02x}"
    return f"\\u{codePoint:04x}"


def _text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return str(value)
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def _optionalText(value: str | bytes | None) -> str | None:
    return None if value is None else _text(value)


def _shown(value: str, limit: int) -> str:
    """
    C{value} as it may be shown on any page: invisible characters written
    as escapes, at most C{limit} characters.
    """
    value = _INVISIBLE.sub(_visible, value)
    if len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return value


def _htmlBounded(value: str, maxBytes: int) -> str:
    """
    HTML-escape C{value}, cutting it (never inside an entity) so that its
    UTF-8 encoding stays within C{maxBytes}.
    """
    escaped = html.escape(value, quote=True)
    if len(escaped.encode("utf-8")) <= maxBytes:
        return escaped
    pieces: list[str] = []
    used = len("\u2026".encode("utf-8"))
    for character in value:
        piece = html.escape(character, quote=True)
        size = len(piece.encode("utf-8"))
        if used + size > maxBytes:
            break
        pieces.append(piece)
        used += size
    return "".join(pieces) + "\u2026"


def _optionalAddress(
    value: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address | None,
) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii")
    parsed = ipaddress.ip_address(value)
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(parsed).split("%", 1)[0]
    return str(parsed)


def _optionalId(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"not an id: {value!r}")
    return int(value)


_YEAR_10000 = 253402300800


def _instant(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"request time must be a number, not {value!r}")
    # The page prints the time as a date, which ends with year 9999.
    if not math.isfinite(value) or not 0 <= value < _YEAR_10000:
        raise ValueError(f"bad request time: {value!r}")
    return float(value)


@frozen
class BlockFacts:
    """
    What a block page says about one denied request.  Every field but
    C{error} and C{requestTime} is optional; unknown facts are not shown.
    Text fields may be given as C{bytes} from the network; bytes that are
    not UTF-8 are shown as U+FFFD.

    @ivar error: why the request was denied.
    @ivar requestTime: when the request arrived (POSIX seconds); shown in
        UTC.
    @ivar uid: the device UID, as presented (it may come from a certificate
        that failed validation).
    @ivar certSerial: the presented device certificate's serial.
    @ivar destination: what the client asked for: the URL of an HTTPS
        request, C{host:port} of a tunnel.
    @ivar emsSerial: serial number of the device's EMS.
    @ivar tenantId: the EMS tenant id.
    @ivar clientIp: the client's address.
    @ivar policyId: the ZTNA policy that matched, when one did.
    @ivar sessionId: the session number, the same as in the traffic log.
    @ivar user: the authenticated user, when known.
    @ivar detail: the reason behind the error, in one sentence for the
        user.  It is shown to the client: never put anything here the
        client must not learn (internal addresses, exception text).
    """

    error: ZtnaError = field()
    requestTime: float = field(converter=_instant)
    uid: str | None = field(default=None, converter=_optionalText)
    certSerial: str | None = field(default=None, converter=_optionalText)
    destination: str | None = field(default=None, converter=_optionalText)
    emsSerial: str | None = field(default=None, converter=_optionalText)
    tenantId: str | None = field(default=None, converter=_optionalText)
    clientIp: str | None = field(default=None, converter=_optionalAddress)
    policyId: int | None = field(default=None, converter=_optionalId)
    sessionId: int | None = field(default=None, converter=_optionalId)
    user: str | None = field(default=None, converter=_optionalText)
    detail: str | None = field(default=None, converter=_optionalText)

    @error.validator
    def _checkError(self, attribute: object, value: object) -> None:
        if not isinstance(value, ZtnaError):
            raise TypeError(f"not a ZtnaError: {value!r}")


@frozen
class GatewayError:
    """
    An error of the gateway itself, not a ZTNA denial.

    @ivar status: the HTTP status.
    @ivar title: the page title (the status's reason phrase).
    @ivar detail: what went wrong, in one sentence for the user.
    """

    status: int
    title: str
    detail: str


#: The gateway's own errors, by status, with the words to use for them.
GATEWAY_ERRORS: dict[int, GatewayError] = {
    e.status: e
    for e in (
        GatewayError(400, "Bad Request", "The request could not be parsed."),
        GatewayError(
            408,
            "Request Timeout",
            "The request was not received completely in time.",
        ),
        GatewayError(
            413,
            "Content Too Large",
            "The request body is larger than the gateway accepts.",
        ),
        GatewayError(
            414,
            "URI Too Long",
            "The request target is longer than the gateway accepts.",
        ),
        GatewayError(
            421,
            "Misdirected Request",
            "Misdirected request: the Host header names a virtual host with "
            "other certificate rules than the TLS server name.",
        ),
        GatewayError(
            431,
            "Request Header Fields Too Large",
            "The request headers are larger than the gateway accepts.",
        ),
        GatewayError(
            501,
            "Not Implemented",
            "The gateway does not implement this request method or upgrade.",
        ),
        GatewayError(
            502,
            "Bad Gateway",
            "The real server refused the connection or failed to answer.",
        ),
        GatewayError(
            504, "Gateway Timeout", "The real server did not answer in time."
        ),
        GatewayError(
            505,
            "HTTP Version Not Supported",
            "The gateway speaks HTTP/1.0 and HTTP/1.1 only.",
        ),
    )
}

# --- content negotiation ---------------------------------------------------

# RFC 9110 section 12.4.2: at most three decimals, never above 1.
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# A client may send any number of ranges; a page never needs more than
# this many to be chosen well, and the bound keeps the work constant.
_MAX_RANGES = 64


def _mediaRanges(accept: str) -> list[tuple[str, str, float]]:
    ranges: list[tuple[str, str, float]] = []
    for element in accept.split(",")[:_MAX_RANGES]:
        mediaRange, *parameters = element.split(";")
        kind, slash, subtype = mediaRange.strip().lower().partition("/")
        if not (
            slash and _TOKEN.fullmatch(kind) and _TOKEN.fullmatch(subtype)
        ):
            continue
        if kind == "*" and subtype != "*":
            continue
        quality: float | None = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                quality = float(value) if _QVALUE.fullmatch(value) else None
                # Parameters after q are accept-extensions: ignored.
                break
        if quality is not None:
            ranges.append((kind, subtype, quality))
    return ranges


def chooseMediaType(acceptHeader: bytes | str | None) -> str:
    """
    Choose the representation of a page from the request's C{Accept}.

    Each of L{MEDIA_TYPES} gets the quality of the most specific media
    range that matches it (RFC 9110 section 12.5.1); the highest quality
    wins, then the most specific match (so C{application/json, */*} gets
    JSON), then the server's preference: HTML, JSON, text.  Malformed
    ranges are ignored.  When nothing acceptable is offered (or there is
    no C{Accept}), the page is HTML: a block page is always sent.

    @param acceptHeader: the C{Accept} field value, several fields joined
        with commas, or C{None}.
    @return: one of L{MEDIA_TYPES}.
    """
    if not acceptHeader:
        return HTML
    if isinstance(acceptHeader, bytes):
        acceptHeader = acceptHeader.decode("latin-1")
    ranges = _mediaRanges(acceptHeader)
    best: tuple[float, int, int] | None = None
    chosen = HTML
    for preference, mediaType in enumerate(MEDIA_TYPES):
        kind, subtype = mediaType.split("/")
        specificity, quality = -1, 0.0
        for rangeKind, rangeSubtype, rangeQuality in ranges:
            if (rangeKind, rangeSubtype) == (kind, subtype):
                matched = 2
            elif (rangeKind, rangeSubtype) == (kind, "*"):
                matched = 1
            elif (rangeKind, rangeSubtype) == ("*", "*"):
                matched = 0
            else:
                continue
            if matched > specificity:
                specificity, quality = matched, rangeQuality
            elif matched == specificity:
                quality = max(quality, rangeQuality)
        if quality <= 0:
            continue
        score = (quality, specificity, -preference)
        if best is None or score > best:
            best, chosen = score, mediaType
    return chosen


# --- rendering -------------------------------------------------------------

_STYLE = (
    "body{margin:0;background:#eef0f3;color:#1c1e21;"
    "font:16px/1.5 system-ui,sans-serif}"
    "main{max-width:42em;margin:8vh auto;padding:1.5em 2em;background:#fff;"
    "border-top:6px solid #c8102e;box-shadow:0 1px 4px #0003}"
    "h1{margin:0;font-size:1.6em}"
    ".sub{margin:.2em 0 1em;color:#555}"
    ".code{font:700 1.15em ui-monospace,monospace}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1em}"
    "dt{font-weight:600;color:#444}"
    "dd{margin:0;overflow-wrap:anywhere;font-family:ui-monospace,monospace}"
    ".help{margin-top:1.5em;font-size:.9em;color:#555}"
)
_STYLE_HASH = base64.b64encode(
    hashlib.sha256(_STYLE.encode("ascii")).digest()
).decode("ascii")

_CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
).encode("ascii")

_CONTENT_TYPES = {
    HTML: b"text/html; charset=utf-8",
    JSON: b"application/json; charset=utf-8",
    TEXT: b"text/plain; charset=utf-8",
}

_SUBTITLES = {
    "Invalid ZTNA Certificate": "This device did not present a valid ZTNA "
    "device certificate.",
    "ZTNA Application Not Found": "The gateway has no reachable application "
    "for this request.",
    "ZTNA Portal Error": "The web portal could not reach the requested "
    "bookmark.",
    "ZTNA Policy Deny": "The ZTNA policy does not allow this device to reach "
    "this application.",
}
_DEFAULT_SUBTITLE = "The ZTNA gateway refused this request."

_BLOCK_HELP = (
    "If you need this application, give the error code and the request "
    "time to your help desk."
)
_ERROR_SUBTITLE = "The ZTNA gateway could not complete this request."

# (limit in characters, limit in bytes of escaped HTML) per shown value: a
# hostile value can neither hide the rest of the page nor make it large.
_LIMITS = {
    "detail": (160, 480),
    "destination": (160, 480),
    "user": (64, 200),
    "uid": (48, 160),
    "certSerial": (48, 160),
    "ems": (96, 300),
    "title": (80, 240),
    "errorDetail": (300, 900),
    "short": (64, 200),
}

_Row = tuple[str, str, str]


def subtitleFor(error: ZtnaError) -> str:
    """
    The sentence under the title of C{error}'s block page.
    """
    return _SUBTITLES.get(error.category, _DEFAULT_SUBTITLE)


def _requestTime(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(seconds), datetime.timezone.utc)


def _blockRows(facts: BlockFacts) -> list[_Row]:
    """
    The facts shown on a block page, as (label, limit key, shown text),
    in FortiOS's order.
    """
    rows: list[_Row] = []

    def add(label: str, limitKey: str, value: str | None) -> None:
        if value is not None:
            rows.append((label, limitKey, value))

    add("Detail", "detail", facts.detail)
    add("User", "user", facts.user)
    add("Certificate Information", "certSerial", facts.certSerial)
    add("Device Information", "uid", facts.uid)
    add("Destination", "destination", facts.destination)
    if facts.emsSerial is not None or facts.tenantId is not None:
        ems = ", ".join(
            part
            for part in (
                facts.emsSerial,
                None if facts.tenantId is None else f"tenant {facts.tenantId}",
            )
            if part is not None
        )
        add("EMS Information", "ems", ems)
    if facts.policyId is not None:
        add("Policy ID", "short", str(facts.policyId))
    add("Client IP", "short", facts.clientIp)
    if facts.sessionId is not None:
        add("Session ID", "short", str(facts.sessionId))
    add(
        "Request Time",
        "short",
        _requestTime(facts.requestTime).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    return rows


def _shownRow(row: _Row) -> tuple[str, str, int]:
    label, limitKey, value = row
    characters, htmlBytes = _LIMITS[limitKey]
    return label, _shown(value, characters), htmlBytes


def _htmlPage(
    title: str,
    subtitle: str,
    code: str,
    message: str,
    rows: list[_Row],
    helpText: str,
) -> bytes:
    shownTitle = _htmlBounded(_shown(title, _LIMITS["title"][0]), 240)
    items = "".join(
        f"<dt>{html.escape(label)}</dt>"
        f"<dd>{_htmlBounded(value, htmlBytes)}</dd>"
        for label, value, htmlBytes in map(_shownRow, rows)
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{shownTitle}</title><style>{_STYLE}</style></head>"
        f'<body><main><h1>{shownTitle}</h1><p class="sub">'
        f"{html.escape(subtitle)}</p>"
        f'<p class="code">{html.escape(code)}</p>'
        f"<p>{_htmlBounded(_shown(message, 300), 900)}</p>"
        f"{f'<dl>{items}</dl>' if items else ''}"
        f'<p class="help">{html.escape(helpText)}</p>'
        "</main></body></html>\n"
    )
    return page.encode("utf-8")


def _textPage(
    title: str,
    subtitle: str,
    code: str,
    message: str,
    rows: list[_Row],
    helpText: str,
) -> bytes:
    lines = [_shown(title, 80), subtitle, "", code, _shown(message, 300)]
    lines += [f"{label}: {value}" for label, value, _ in map(_shownRow, rows)]
    lines += ["", helpText]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _jsonBody(error: dict[str, object]) -> bytes:
    text = json.dumps({"error": error}, ensure_ascii=True, indent=2)
    return (text + "\n").encode("ascii")


def _page(
    status: int, mediaType: str, body: bytes, ztnaCode: str | None
) -> Page:
    headers: Headers = [
        (b"Content-Type", _CONTENT_TYPES[mediaType]),
        (b"Content-Length", str(len(body)).encode("ascii")),
        (b"Cache-Control", b"no-store"),
        (b"Content-Security-Policy", _CONTENT_SECURITY_POLICY),
        (b"X-Content-Type-Options", b"nosniff"),
        (b"Referrer-Policy", b"no-referrer"),
        # The body depends on Accept.
        (b"Vary", b"Accept"),
    ]
    if ztnaCode is not None:
        headers.append((b"X-ZTNA-Error", ztnaCode.encode("ascii")))
    return status, headers, body


def renderBlockPage(facts: BlockFacts, acceptHeader: bytes | None) -> Page:
    """
    The response that tells a client its request was denied.

    @param facts: what to say.
    @param acceptHeader: the request's C{Accept} (see L{chooseMediaType}).
    @return: C{(status, headers, body)}: the status is the error's, the
        headers include C{X-ZTNA-Error} with the code and C{Content-Length};
        for a C{HEAD} request send the same status and headers without the
        body.
    """
    error = facts.error
    mediaType = chooseMediaType(acceptHeader)
    if mediaType == JSON:
        rendered: dict[str, object] = {
            "code": error.code,
            "category": error.category,
            "message": error.message,
            "status": error.httpStatus,
        }
        limits = {
            "detail": ("detail", facts.detail),
            "user": ("user", facts.user),
            "certificateSerial": ("certSerial", facts.certSerial),
            "deviceUid": ("uid", facts.uid),
            "destination": ("destination", facts.destination),
            "emsSerial": ("ems", facts.emsSerial),
            "emsTenantId": ("ems", facts.tenantId),
        }
        for key, (limitKey, value) in limits.items():
            if value is not None:
                rendered[key] = _shown(value, _LIMITS[limitKey][0])
        for key, known in (
            ("policyId", facts.policyId),
            ("clientIp", facts.clientIp),
            ("sessionId", facts.sessionId),
        ):
            if known is not None:
                rendered[key] = known
        rendered["requestTime"] = _requestTime(facts.requestTime).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        body = _jsonBody(rendered)
    else:
        render = _htmlPage if mediaType == HTML else _textPage
        body = render(
            error.category,
            subtitleFor(error),
            f"Error Code: {error.code}",
            error.message,
            _blockRows(facts),
            _BLOCK_HELP,
        )
    return _page(error.httpStatus, mediaType, body, error.code)


def renderErrorPage(
    status: int,
    title: str | bytes,
    detail: str | bytes,
    acceptHeader: bytes | None,
) -> Page:
    """
    The response for an error of the gateway itself (no ZTNA code), in the
    same look and with the same negotiation as L{renderBlockPage}.

    @param status: an HTTP error status, 400 to 599 (see
        L{GATEWAY_ERRORS} for the ones the gateway uses and their words).
    @param title: the page title, usually the reason phrase.
    @param detail: what went wrong, in one sentence for the user; it is
        shown to the client.
    @param acceptHeader: the request's C{Accept}.
    @return: C{(status, headers, body)}.
    @raise ValueError: C{status} is not an error status.
    """
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {status!r}")
    if not 400 <= status <= 599:
        raise ValueError(f"not an error status: {status}")
    titleText, detailText = _text(title), _text(detail)
    mediaType = chooseMediaType(acceptHeader)
    if mediaType == JSON:
        body = _jsonBody(
            {
                "status": status,
                "title": _shown(titleText, _LIMITS["title"][0]),
                "detail": _shown(detailText, _LIMITS["errorDetail"][0]),
            }
        )
    else:
        render = _htmlPage if mediaType == HTML else _textPage
        body = render(
            titleText,
            _ERROR_SUBTITLE,
            f"HTTP Status: {status}",
            detailText,
            [],
            "If the problem persists, tell your help desk the time and "
            "the address you tried to reach.",
        )
    return _page(status, mediaType, body, None)
