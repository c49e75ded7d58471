# -*- test-case-name: tests.http.test_headers -*-
"""
HTTP header fields: the ordered, case-insensitive collection both sides of
the HTTP layer hand to the gateway, the checks that keep anything the
gateway forwards from breaking a message head, and the hop-by-hop rules of
RFC 9110 section 7.6.1.

A gateway relays headers it did not write: a value that smuggles a CR or LF
into a head it re-serializes would let a client (or a real server) inject
headers or whole messages.  So every name and value is checked once, when it
enters a L{Headers} (the parsers check whole heads in one pass and use a
trusted constructor), and serialization can then be a plain bytes join.
"""

from __future__ import annotations

from typing import Iterable, Iterator

#: RFC 9110 C{tchar}: the bytes a header name or a method may contain.
TOKEN_BYTES = (
    b"!#$%&'*+-.^_`|~0123456789"
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

#: The bytes a field value may contain: HTAB, SP, VCHAR and obs-text.  CR,
#: LF, NUL and the other controls are refused (RFC 9110 section 5.5).
FIELD_VALUE_BYTES = bytes([9]) + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))

#: Header names are matched in lower case; this set lists the ones that are
#: only meaningful for a single connection (RFC 9110 section 7.6.1, plus the
#: non-standard C{Proxy-Connection} and C{Keep-Alive}, and C{Trailer} which
#: only describes the sender's own framing).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)


class InvalidHeader(ValueError):
    """
    A header name or value that must never be put in a message head.
    """


def checkName(name: bytes) -> bytes:
    """
    Check that C{name} is a valid header name (an RFC 9110 token).

    @return: C{name}
    @raise InvalidHeader: it is empty, not bytes, or contains anything but
        token characters (whitespace, colon, CR, LF, NUL...).
    """
    if type(name) is not bytes:
        raise InvalidHeader(f"header name must be bytes, not {type(name).__name__}")
    if not name or name.translate(None, TOKEN_BYTES):
        raise InvalidHeader(f"invalid header name {name!r}")
    return name


def checkValue(value: bytes) -> bytes:
    """
    Check that C{value} may be put in a message head as a field value.

    @return: C{value}
    @raise InvalidHeader: it is not bytes or contains CR, LF, NUL or another
        control character other than HTAB.
    """
    if type(value) is not bytes:
        raise InvalidHeader(
            f"header value must be bytes, not {type(value).__name__}"
        )
    if value.translate(None, FIELD_VALUE_BYTES):
        raise InvalidHeader(f"invalid header value {value!r}")
    return value


class Headers:
    """
    An ordered list of header fields with case-insensitive lookup.

    Repeated fields are kept, in order, with the name spelled as received,
    so that a relay changes nothing it does not mean to.  Lookups use a
    lower-case index built on first use (the parsers hand over the one they
    built anyway).

    Every name and value is checked on the way in (L{checkName},
    L{checkValue}), so a L{Headers} can always be serialized safely.
    """

    __slots__ = ("_pairs", "_index")

    def __init__(self, pairs: Iterable[tuple[bytes, bytes]] = ()) -> None:
        """
        @param pairs: C{(name, value)} byte strings, in order.
        @raise InvalidHeader: a name or value is not acceptable.
        """
        self._pairs: list[tuple[bytes, bytes]] = [
            (checkName(name), checkValue(value)) for name, value in pairs
        ]
        self._index: dict[bytes, list[bytes]] | None = None

    @classmethod
    def _trusted(
        cls,
        pairs: list[tuple[bytes, bytes]],
        index: dict[bytes, list[bytes]] | None = None,
    ) -> Headers:
        # The parsers validated every byte of the head already; checking
        # each field again would double the per-request work.
        self = cls.__new__(cls)
        self._pairs = pairs
        self._index = index
        return self

    def _getIndex(self) -> dict[bytes, list[bytes]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._pairs:
                lower = name.lower()
                values = index.get(lower)
                if values is None:
                    index[lower] = [value]
                else:
                    values.append(value)
            self._index = index
        return index

    def get(self, name: bytes, default: bytes | None = None) -> bytes | None:
        """
        The first value of the field C{name} (any case), or C{default}.
        """
        values = self._getIndex().get(name.lower())
        if values is None:
            return default
        return values[0]

    def getAll(self, name: bytes) -> list[bytes]:
        """
        All values of the field C{name} (any case), in order; empty when
        there is none.
        """
        return list(self._getIndex().get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, bytes):
            return False
        return name.lower() in self._getIndex()

    def add(self, name: bytes, value: bytes) -> None:
        """
        Append a field, keeping any existing ones of the same name.

        @raise InvalidHeader: C{name} or C{value} is not acceptable.
        """
        self._pairs.append((checkName(name), checkValue(value)))
        self._index = None

    def set(self, name: bytes, value: bytes) -> None:
        """
        Replace every field called C{name} with one field.

        @raise InvalidHeader: C{name} or C{value} is not acceptable.
        """
        checkName(name)
        checkValue(value)
        self.remove(name)
        self._pairs.append((name, value))
        self._index = None

    def remove(self, name: bytes) -> int:
        """
        Remove every field called C{name} (any case).

        @return: how many fields were removed.
        """
        lower = name.lower()
        before = len(self._pairs)
        self._pairs = [pair for pair in self._pairs if pair[0].lower() != lower]
        self._index = None
        return before - len(self._pairs)

    def copy(self) -> Headers:
        """
        An independent copy.
        """
        return Headers._trusted(list(self._pairs))

    def pairs(self) -> list[tuple[bytes, bytes]]:
        """
        The fields as a new list of C{(name, value)} pairs, in order.
        """
        return list(self._pairs)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._pairs == other._pairs

    def __repr__(self) -> str:
        return f"Headers({self._pairs!r})"


def serializeFields(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """
    Serialize already-checked fields as C{name: value CRLF} lines.
    """
    return b"".join([name + b": " + value + b"\r\n" for name, value in pairs])


def connectionTokens(headers: Headers) -> frozenset[bytes]:
    """
    The lower-case option tokens of every C{Connection} field.
    """
    values = headers._getIndex().get(b"connection")
    if not values:
        return frozenset()
    return frozenset(
        token.strip(b" \t").lower()
        for value in values
        for token in value.split(b",")
        if token.strip(b" \t")
    )


def withoutHopByHop(headers: Headers) -> Headers:
    """
    A copy of C{headers} without the fields that concern only one
    connection: those in L{HOP_BY_HOP} and those named in C{Connection}.

    A proxy must drop them before forwarding (RFC 9110 section 7.6.1).  A
    client can name any field in C{Connection} to have it dropped, so a
    gateway adds its own fields (C{X-Forwarded-For}, identity headers)
    I{after} calling this, never before.
    """
    drop = HOP_BY_HOP | connectionTokens(headers)
    return Headers._trusted(
        [pair for pair in headers._pairs if pair[0].lower() not in drop]
    )
