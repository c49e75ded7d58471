# -*- test-case-name: tests.gateway.test_paths -*-
"""
One meaning for every request path: the gateway's url-maps and the real
server must agree on which resource a request names.

An api-gateway's url-map decides what a client may reach.  If the gateway
matched the path as sent while the real server normalised it first, a
client could name an allowed prefix and reach something else: nginx, for
instance, serves C{/admin} for C{/public/../admin}, C{/public/%2e%2e/admin},
C{/public/..%2Fadmin} and C{/public//../admin}, all of which contain
C{/public/}.  The security battery found exactly that (C{docs/security.md},
finding F1).

The rule (L{normalizePath}): the gateway I{normalises the path before
matching and forwards the normalised path}, so that the real server
receives the very path the url-map judged, with nothing left to
normalise; and it I{refuses with 400} the paths that have no single
meaning, those that servers are known to read in different ways:

  - normalised (RFC 3986 section 6.2.2): percent-encoded unreserved
    characters decoded (C{%2e} is C{.}), other escapes in upper case;
    empty segments merged (C{//} is C{/}, as nginx and Apache's
    C{MergeSlashes} read it); dot segments removed (RFC 3986 section
    5.2.4; C{..} above the root stays at the root);
  - refused: malformed percent-encoding; an encoded control character or
    NUL (C{%00}); a backslash, literal or encoded (a path separator on
    Windows servers); percent-encoded bytes that are not UTF-8 (overlong
    forms such as C{%C0%AE}, read as C{.} by old decoders); a dot segment
    hidden behind an encoded slash (C{..%2F}); a dot segment with
    parameters (C{..;}, which Java servers read as C{..}); a
    percent-encoded C{%} followed by hex digits (double encoding, for
    servers that decode twice).

An encoded slash (C{%2F}) elsewhere is kept as it is: some applications
use it inside one segment (an API naming C{group%2Fproject}); the gateway
matches and forwards it encoded, and a url-map never sees it as a
separator.  The query is never changed.
"""

from __future__ import annotations

import re

__all__ = ["AmbiguousPath", "normalizePath"]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DOUBLE = re.compile(rb"%[0-9A-Fa-f]{2}")


class AmbiguousPath(ValueError):
    """
    A request path that real servers could read in different ways; the
    gateway refuses it (400).  The message says why, for the client.
    """


def _segment(raw: bytes) -> tuple[bytes, bytes]:
    """
    Check one path segment and normalise its encoding.

    @return: the segment with unreserved escapes decoded and other escapes
        in upper case, and the segment fully decoded.
    @raise AmbiguousPath: see the module docstring.
    """
    if b"%" in raw:
        out = bytearray()
        plain = bytearray()
        i = 0
        size = len(raw)
        while i < size:
            byte = raw[i]
            if byte != 0x25:
                out.append(byte)
                plain.append(byte)
                i += 1
                continue
            digits = raw[i + 1 : i + 3]
            if len(digits) != 2 or digits[0] not in _HEX or digits[1] not in _HEX:
                raise AmbiguousPath("malformed percent-encoding")
            value = int(digits, 16)
            plain.append(value)
            if value in _UNRESERVED:
                out.append(value)
            else:
                out += b"%" + digits.upper()
            i += 3
        decoded = bytes(plain)
        normal = bytes(out)
        if any(byte < 0x20 or byte == 0x7F for byte in decoded):
            raise AmbiguousPath("an encoded control character or NUL")
        if b"\\" in decoded:
            raise AmbiguousPath("a backslash")
        try:
            decoded.decode("utf-8")
        except UnicodeDecodeError:
            raise AmbiguousPath("percent-encoded bytes that are not UTF-8 (an overlong form?)") from None
        if _DOUBLE.search(decoded) is not None:
            raise AmbiguousPath("a double percent-encoding")
        if b"/" in decoded and any(_isDot(piece) for piece in decoded.split(b"/")):
            raise AmbiguousPath("a dot segment behind an encoded slash")
    else:
        decoded = normal = raw
    if b";" in decoded and _isDot(decoded):
        raise AmbiguousPath("a dot segment with parameters")
    return normal, decoded


def _isDot(segment: bytes) -> bool:
    """
    Whether a decoded segment, without its parameters, is C{.} or C{..}.
    """
    return segment.split(b";", 1)[0] in (b".", b"..")


def normalizePath(path: bytes) -> bytes:
    """
    The path the gateway matches url-maps against and forwards (see the
    module docstring).

    @param path: a request's origin-form path and query (C{Request.path}:
        printable ASCII, as the HTTP layer accepts it); C{*}
        (asterisk-form) is returned unchanged.
    @return: the normalised path, with the query as it was.
    @raise AmbiguousPath: the path has no single meaning.
    """
    if path == b"*":
        return path
    query = b""
    mark = path.find(b"?")
    if mark >= 0:
        path, query = path[:mark], path[mark:]
    if path[:1] == b"/" and b"%" not in path and b"/." not in path and b"//" not in path and b"\\" not in path:
        # Nothing to decode, merge or remove (most requests).
        return path + query
    if b"\\" in path:
        raise AmbiguousPath("a backslash")
    segments = path.split(b"/")
    if segments[0]:
        # Origin-form paths start with "/"; the HTTP layer guarantees it,
        # and anything else has no meaning here.
        raise AmbiguousPath("no leading /")
    out: list[bytes] = []
    # Whether the result ends with "/": a final empty segment, ".", "..".
    directory = False
    for raw in segments[1:]:
        normal, decoded = _segment(raw)
        if not raw or decoded == b".":
            directory = True
            continue
        if decoded == b"..":
            if out:
                out.pop()
            directory = True
            continue
        out.append(normal)
        directory = False
    result = b"/" + b"/".join(out)
    if directory and out:
        result += b"/"
    return result + query
