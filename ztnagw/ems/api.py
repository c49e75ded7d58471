# -*- test-case-name: tests.ems.test_api -*-
"""
What the EMS JSON API reads and how it answers: strict JSON, the device
report shared by enrollment and telemetry, and errors with stable codes.

The EMS listener faces unauthenticated clients (enrollment needs no
certificate), so every request body is hostile until checked: the HTTP
layer bounds its size, L{parseJsonObject} refuses anything but one JSON
object of bounded depth without duplicate keys or non-finite numbers, and
L{parseDeviceReport} keeps only what it knows, each value checked and
bounded, refusing unknown fields so that a typo in a client is a clear
error rather than a silently ignored fact.

Every refusal is an L{ApiError}: an HTTP status, a stable machine-readable
C{error.code} (clients and scripts switch on it; C{docs/ems.md} lists them
all) and a sentence for people.  Nothing a client sends makes the EMS
answer anything but such an error or a success.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from typing import Any, Iterable

from attrs import field, frozen
from zope.interface import implementer

from ztnagw.ems.conditions import isFactName
from ztnagw.http.interfaces import IErrorPageRenderer

__all__ = [
    "MAX_BODY",
    "MAX_DEPTH",
    "ApiError",
    "DeviceReport",
    "JsonErrorPages",
    "checkFields",
    "errorBody",
    "jsonBody",
    "parseDeviceReport",
    "parseJsonObject",
    "text",
]

#: The largest request body the EMS reads: a CSR (at most 16 KiB) and a
#: device report fit comfortably.
MAX_BODY = 64 * 1024

#: The deepest nesting of arrays and objects accepted.
MAX_DEPTH = 4

#: Bounds of a device report.
MAX_TEXT = 255
MAX_ADDRESSES = 32
MAX_FACTS = 64
MAX_FACT_VALUE = 255

_CONTROL = re.compile("[\x00-\x1f\x7f]")
_MAC = re.compile(r"\A[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}\Z")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class ApiError(Exception):
    """
    A request the EMS refuses.

    @ivar status: the HTTP status.
    @ivar code: the stable error code (C{bad-request}, C{token-invalid}...).
    @ivar message: a sentence for the client's user.
    @ivar ztnaCode: the ZTNA error code, when the refusal is about the
        device (telemetry from a revoked device: C{"063"}).
    @ivar retryAfter: seconds the client should wait (429, 503).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        ztnaCode: str | None = None,
        retryAfter: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.ztnaCode = ztnaCode
        self.retryAfter = retryAfter


def errorBody(code: str, message: str, ztnaCode: str | None = None) -> bytes:
    """
    The JSON body of an error answer: C{{"error": {"code": ..., "message":
    ..., "ztnaCode": ...}}}.
    """
    error: dict[str, str] = {"code": code, "message": message}
    if ztnaCode is not None:
        error["ztnaCode"] = ztnaCode
    return jsonBody({"error": error})


def jsonBody(value: dict[str, Any]) -> bytes:
    """
    An answer body: compact JSON, UTF-8, ending with a newline.
    """
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"


#: HTTP statuses the HTTP layer answers by itself, and their codes.
_LAYER_CODES = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    411: "length-required",
    413: "body-too-large",
    414: "uri-too-long",
    417: "expectation-failed",
    431: "headers-too-large",
    500: "internal-error",
    501: "not-implemented",
    505: "http-version-not-supported",
}


@implementer(IErrorPageRenderer)
class JsonErrorPages:
    """
    The errors the HTTP layer answers by itself (a malformed request, a
    body over the limit), in the EMS's JSON form.
    """

    def renderError(self, status: int, reason: bytes, detail: str) -> tuple[bytes, bytes]:
        """
        @see: L{IErrorPageRenderer.renderError}
        """
        code = _LAYER_CODES.get(status, "bad-request" if status < 500 else "internal-error")
        return b"application/json", errorBody(code, detail)


def _noDuplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ApiError(400, "bad-request", f"the JSON object has the key {key!r} twice")
        result[key] = value
    return result


def _noConstant(name: str) -> Any:
    raise ApiError(400, "bad-request", f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(400, "bad-request", "a number in the request is too large")
    return value


def parseJsonObject(data: bytes, maxDepth: int = MAX_DEPTH) -> dict[str, Any]:
    """
    Read a request body that must be one JSON object.

    @param maxDepth: the deepest nesting of arrays and objects allowed
        (the top-level object is depth 1).
    @raise ApiError: 400 C{bad-request}: not UTF-8, not JSON, nested too
        deeply, a key twice, a non-finite number, or not an object.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad-request", "the request body is not UTF-8 text") from None
    # Depth is measured before parsing, so that a deeply nested body never
    # reaches the recursive parser.
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > maxDepth:
                raise ApiError(
                    400, "bad-request", f"the JSON is nested more than {maxDepth} levels deep"
                )
        else:
            depth -= 1
    try:
        value = json.loads(
            text,
            object_pairs_hook=_noDuplicates,
            parse_constant=_noConstant,
            parse_float=_finite,
        )
    except ValueError as e:
        # json.JSONDecodeError says where; RecursionError cannot happen
        # after the depth check.
        raise ApiError(400, "bad-request", f"the request body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "bad-request", "the request body must be a JSON object")
    return value


def checkFields(value: dict[str, Any], allowed: Iterable[str], where: str) -> None:
    """
    Refuse fields the API does not know.

    @param where: how messages name the object (C{"the request"}).
    @raise ApiError: 400 C{bad-request} naming the first unknown field.
    """
    known = set(allowed)
    for name in value:
        if name not in known:
            raise ApiError(
                400,
                "bad-request",
                f"{where} has an unknown field {name[:40]!r}; known: {', '.join(sorted(known))}",
            )


def text(value: dict[str, Any], name: str, where: str, maxLength: int = MAX_TEXT, required: bool = False) -> str | None:
    """
    An optional (or required) text field: one line of printable text of at
    most C{maxLength} characters.  An empty string counts as absent.

    @raise ApiError: 400 C{bad-request} for anything else.
    """
    item = value.get(name)
    if item is None or item == "":
        if required:
            raise ApiError(400, "bad-request", f"{where} needs the field {name!r}")
        return None
    if not isinstance(item, str):
        raise ApiError(400, "bad-request", f"{where}: {name!r} must be text")
    if len(item) > maxLength:
        raise ApiError(400, "bad-request", f"{where}: {name!r} is longer than {maxLength} characters")
    if _CONTROL.search(item):
        raise ApiError(400, "bad-request", f"{where}: {name!r} contains control characters")
    return item


def _list(value: dict[str, Any], name: str, where: str) -> list[Any]:
    items = value.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ApiError(400, "bad-request", f"{where}: {name!r} must be a list")
    if len(items) > MAX_ADDRESSES:
        raise ApiError(400, "bad-request", f"{where}: {name!r} lists more than {MAX_ADDRESSES} items")
    return items


def _ips(value: dict[str, Any], where: str) -> tuple[str, ...]:
    found: list[str] = []
    for item in _list(value, "ips", where):
        try:
            if not isinstance(item, str) or len(item) > 64:
                raise ValueError
            address = str(ipaddress.ip_address(item))
        except ValueError:
            raise ApiError(400, "bad-request", f"{where}: 'ips' holds something that is not an IP address") from None
        if address not in found:
            found.append(address)
    return tuple(found)


def _macs(value: dict[str, Any], where: str) -> tuple[str, ...]:
    found: list[str] = []
    for item in _list(value, "macs", where):
        if not isinstance(item, str) or not _MAC.match(item):
            raise ApiError(
                400, "bad-request", f"{where}: 'macs' holds something that is not a MAC address (aa:bb:cc:dd:ee:ff)"
            )
        mac = item.lower().replace("-", ":")
        if mac not in found:
            found.append(mac)
    return tuple(found)


def _facts(value: dict[str, Any], where: str) -> dict[str, str]:
    facts = value.get("facts")
    if facts is None:
        return {}
    if not isinstance(facts, dict):
        raise ApiError(400, "bad-request", f"{where}: 'facts' must be an object")
    if len(facts) > MAX_FACTS:
        raise ApiError(400, "bad-request", f"{where}: more than {MAX_FACTS} facts")
    result: dict[str, str] = {}
    for name, item in facts.items():
        if not isFactName(name):
            raise ApiError(
                400,
                "bad-request",
                f"{where}: {name[:40]!r} is not a fact name (1 to 64 letters, digits, _ . -)",
            )
        if isinstance(item, bool):
            result[name] = "true" if item else "false"
        elif isinstance(item, int):
            if abs(item) >= 10**18:
                raise ApiError(400, "bad-request", f"{where}: fact {name!r} is too large")
            result[name] = str(item)
        elif isinstance(item, str):
            if len(item) > MAX_FACT_VALUE or _CONTROL.search(item):
                raise ApiError(
                    400,
                    "bad-request",
                    f"{where}: fact {name!r} must be one line of at most {MAX_FACT_VALUE} characters",
                )
            result[name] = item
        else:
            raise ApiError(
                400, "bad-request", f"{where}: fact {name!r} must be text, an integer or true/false"
            )
    return result


#: The fields of a device report.
REPORT_FIELDS = (
    "hostName",
    "osType",
    "osVersion",
    "clientVersion",
    "user",
    "ips",
    "macs",
    "facts",
)


@frozen
class DeviceReport:
    """
    What a device says about itself, at enrollment and in every telemetry
    report.  Every field is optional.

    @ivar hostName: its host name.
    @ivar osType: its operating system (C{"Linux"}).
    @ivar osVersion: the operating system's version.
    @ivar clientVersion: the forwarder's (or FortiClient's) version.
    @ivar user: the logged-on user.
    @ivar ips: its IP addresses, the primary first.
    @ivar macs: its MAC addresses (lower case, colons), the primary first.
    @ivar facts: posture facts, name to text.
    """

    hostName: str | None = None
    osType: str | None = None
    osVersion: str | None = None
    clientVersion: str | None = None
    user: str | None = None
    ips: tuple[str, ...] = ()
    macs: tuple[str, ...] = ()
    facts: dict[str, str] = field(factory=dict, hash=False)

    def toJson(self) -> dict[str, Any]:
        """
        The report as the API reads it (what L{parseDeviceReport} reads
        back).
        """
        result: dict[str, Any] = {}
        for name in ("hostName", "osType", "osVersion", "clientVersion", "user"):
            value = getattr(self, name)
            if value is not None:
                result[name] = value
        result["ips"] = list(self.ips)
        result["macs"] = list(self.macs)
        result["facts"] = dict(self.facts)
        return result


def parseDeviceReport(value: Any, where: str = "the device report") -> DeviceReport:
    """
    Check a device report (a JSON object).

    @raise ApiError: 400 C{bad-request} naming the first field that is
        unknown, of the wrong type, too long or too many.
    """
    if not isinstance(value, dict):
        raise ApiError(400, "bad-request", f"{where} must be a JSON object")
    checkFields(value, REPORT_FIELDS, where)
    return DeviceReport(
        hostName=text(value, "hostName", where),
        osType=text(value, "osType", where, maxLength=64),
        osVersion=text(value, "osVersion", where, maxLength=128),
        clientVersion=text(value, "clientVersion", where, maxLength=64),
        user=text(value, "user", where),
        ips=_ips(value, where),
        macs=_macs(value, where),
        facts=_facts(value, where),
    )
