# -*- test-case-name: tests.logs.test_line -*-
"""
One log line: when it happened, its fields in order, and its two spellings.

FortiOS writes logs as C{key=value} pairs separated by single spaces, with
strings in double quotes and numbers, addresses, dates and times bare.
Administrators grep these lines, SIEMs parse them, and log files are split
into records at newlines.  So a value taken from a client (a C{Host} header,
a user name, the CN of a certificate that failed validation) must never be
able to end a line, open or close a quote, or look like another field: every
string is quoted and escaped here, in one place, and L{parseKeyValue} is the
exact inverse that the tests use to prove it.

The JSON-lines spelling carries the same fields in the same order with their
natural types (numbers as numbers, the tag list as an array), for log
shippers that prefer JSON.

Escapes inside a quoted value (documented in C{docs/logs.md}):

  - C{\\"} and C{\\\\} for the quote and the backslash;
  - C{\\n}, C{\\r}, C{\\t};
  - C{\\xHH} for every other C0 or C1 control character and DEL;
  - C{\\uHHHH} for line and paragraph separators, bidirectional and
    zero-width formatting characters, the byte-order mark and lone
    surrogates: characters that split lines in some readers or make a log
    line display differently from what it contains.
"""

from __future__ import annotations

import datetime
import enum
import functools
import ipaddress
import json
import re
import time
from typing import Iterable, Union

from attrs import field, frozen

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@frozen
class Token:
    """
    A value that FortiOS prints bare although it is not a number: the
    C{date} and C{time} fields.  Only this module creates tokens, from
    digits and separators it formatted itself.

    @ivar text: the token, made of digits, C{-} and C{:} only.
    """

    text: str = field()

    @text.validator
    def _check(self, attribute: object, value: str) -> None:
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"not a bare log token: {value!r}")


_TOKEN = re.compile(r"[0-9:-]+")

#: The types a field value may have.  C{str} is quoted; C{int}, addresses
#: and L{Token}s are bare; a C{tuple} of strings is a tag list.
FieldValue = Union[str, int, IPAddress, Token, tuple]

_NANOSECONDS = 1_000_000_000


@frozen
class LogTime:
    """
    The time stamp of one log line, as FortiOS prints it: C{date} and
    C{time} in the gateway's local time zone, C{tz} as C{+hhmm}, and
    C{eventtime} in nanoseconds since the POSIX epoch.

    @ivar eventTime: nanoseconds since the epoch (UTC).
    @ivar utcOffset: seconds east of UTC of the local time zone at that
        instant.
    """

    eventTime: int
    utcOffset: int

    @classmethod
    def fromSeconds(
        cls, seconds: float, timeZone: datetime.tzinfo | None = None
    ) -> LogTime:
        """
        Stamp the instant C{seconds}.

        @param seconds: POSIX time, as
            L{twisted.internet.interfaces.IReactorTime.seconds} returns it.
        @param timeZone: the zone for C{date}, C{time} and C{tz}; C{None}
            (the default, as FortiOS does) means the host's local time zone
            as configured when the line is stamped.
        """
        whole = int(seconds // 1)
        # The fraction of a float is exact; multiplying only it keeps the
        # integer part exact too (seconds * 1e9 would round to 256 ns).
        nanoseconds = whole * _NANOSECONDS + round(
            (seconds - whole) * _NANOSECONDS
        )
        # Lines come hundreds per second: the zone's offset is looked up
        # once per second (an offset changes only on a whole second), and
        # again when the host's zone was changed (time.tzset() replaces
        # time.tzname).
        global _lastOffset
        last = _lastOffset
        hostZone = time.tzname
        if last[0] == whole and last[1] is timeZone and last[2] is hostZone:
            return cls(nanoseconds, last[3])
        instant = datetime.datetime.fromtimestamp(whole, datetime.timezone.utc)
        offset = instant.astimezone(timeZone).utcoffset()
        assert offset is not None
        utcOffset = int(offset.total_seconds())
        _lastOffset = (whole, timeZone, hostZone, utcOffset)
        return cls(nanoseconds, utcOffset)

    def _local(self) -> datetime.datetime:
        seconds = self.eventTime // _NANOSECONDS + self.utcOffset
        return datetime.datetime(1970, 1, 1) + datetime.timedelta(
            seconds=seconds
        )

    @property
    def date(self) -> str:
        """
        Local date, C{YYYY-MM-DD}.
        """
        return self._local().strftime("%Y-%m-%d")

    @property
    def time(self) -> str:
        """
        Local time of day, C{HH:MM:SS}.
        """
        return self._local().strftime("%H:%M:%S")

    @property
    def tz(self) -> str:
        """
        The UTC offset as FortiOS prints it: C{+0900}, C{-0700}.
        """
        sign = "-" if self.utcOffset < 0 else "+"
        minutes = abs(self.utcOffset) // 60
        return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"

    def _header(self) -> tuple[Token, Token, str]:
        # The date and time tokens and the tz of this stamp; the same for
        # every line of one second, so kept for the last second seen.
        global _lastHeader
        key = (self.eventTime // _NANOSECONDS, self.utcOffset)
        last = _lastHeader
        if last[0] == key:
            return last[1]
        header = (Token(self.date), Token(self.time), self.tz)
        _lastHeader = (key, header)
        return header


#: The last second L{LogTime.fromSeconds} looked up: (POSIX second, time
#: zone, the host's zone names, offset).
_lastOffset: tuple[int, object, object, int] = (-1, None, None, 0)

#: The last header L{LogTime._header} spelled: ((second, offset), header).
_lastHeader: tuple[tuple[int, int], tuple[Token, Token, str]] = (
    (-1, 0),
    (Token("0"), Token("0"), ""),
)


@frozen
class LogLine:
    """
    One stamped log line: its fields in FortiOS order.

    @ivar fields: C{(key, value)} pairs; keys are FortiOS field names,
        values are L{FieldValue}s.  Fields whose value is unknown are
        absent, as in FortiOS.
    """

    fields: tuple[tuple[str, FieldValue], ...]

    @classmethod
    def fromEntry(
        cls,
        when: LogTime,
        entryFields: Iterable[tuple[str, FieldValue]],
        deviceName: str | None = None,
    ) -> LogLine:
        """
        Put the time stamp (and the gateway's name) in front of an entry's
        fields.

        @param when: the time stamp.
        @param entryFields: the entry's fields, from C{logid} on (see
            L{ztnagw.logs.interfaces.ILogEntry.logFields}).
        @param deviceName: the gateway's name (C{devname}, from C{config
            system global} C{hostname}), or C{None} to leave it out as
            FortiOS's C{execute log display} does.
        """
        date, time, tz = when._header()
        if deviceName is not None:
            header: tuple[tuple[str, FieldValue], ...] = (
                ("date", date),
                ("time", time),
                ("devname", deviceName),
                ("eventtime", when.eventTime),
                ("tz", tz),
            )
        else:
            header = (
                ("date", date),
                ("time", time),
                ("eventtime", when.eventTime),
                ("tz", tz),
            )
        return cls(header + tuple(entryFields))

    def get(self, key: str) -> FieldValue | None:
        """
        The value of field C{key}, or C{None} if the line has no such field.
        """
        for name, value in self.fields:
            if name == key:
                return value
        return None

    def keyValue(self) -> str:
        """
        The FortiOS C{key=value} spelling, without a line terminator.  The
        result never contains a control character, a line separator or an
        unescaped quote inside a value.
        """
        # A line of some forty fields is spelled for every request: strings
        # and numbers (nearly all of them) take the short way, and a quoted
        # string is escaped once and remembered (see _quoted).
        parts = []
        append = parts.append
        for name, value in self.fields:
            kind = type(value)
            if kind is str:
                quoted = _QUOTED.get(value)  # type: ignore[arg-type]
                append(f"{name}={quoted or _quoted(value)}")  # type: ignore[arg-type]
            elif kind is int:
                append(f"{name}={value}")
            elif kind is Token:
                append(f"{name}={value.text}")  # type: ignore[union-attr]
            elif kind is ipaddress.IPv4Address:
                append(f"{name}={_addressText(value)}")  # type: ignore[arg-type]
            else:
                append(f"{name}={_keyValueText(value)}")
        return " ".join(parts)

    def jsonObject(self) -> dict[str, object]:
        """
        The fields as a JSON-ready mapping in FortiOS order: numbers as
        numbers, addresses, dates and times as strings, tags as a list.
        """
        return {
            name: (
                value
                if type(value) is str or type(value) is int
                else _addressText(value)  # type: ignore[arg-type]
                if type(value) is ipaddress.IPv4Address
                else _jsonValue(value)
            )
            for name, value in self.fields
        }

    def json(self) -> str:
        """
        The JSON-lines spelling, without a line terminator.  Non-ASCII
        characters are escaped, so the line is pure ASCII and cannot be
        split by any reader.
        """
        return json.dumps(
            self.jsonObject(), ensure_ascii=True, separators=(",", ":")
        )


class LogFormat(enum.Enum):
    """
    How a destination spells lines.  The values are FortiOS's names for
    the same choice (C{config log syslogd setting}, C{set format}).
    """

    #: FortiOS C{key=value}.
    KEY_VALUE = "default"
    #: One JSON object per line.
    JSON = "json"

    def render(self, line: LogLine) -> str:
        """
        Spell C{line} in this format, without a line terminator.
        """
        if self is LogFormat.JSON:
            return line.json()
        return line.keyValue()


# Characters that must not appear raw inside a quoted value: the quote and
# the backslash (syntax), C0/C1 controls and DEL (line breaks, terminal
# escapes, NUL), and the Unicode characters that split lines in some
# readers (U+2028/9, U+0085 is in C1) or change how a line displays
# (bidirectional overrides, zero-width characters, BOM), plus lone
# surrogates, which cannot be encoded.
_UNSAFE = re.compile(
    '[\x00-\x1f"\\\\\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e'
    "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)

_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _escapeOne(match: re.Match[str]) -> str:
    character = match.group()
    short = _SHORT_ESCAPES.get(character)
    if short is not None:
        return short
    codePoint = ord(character)
    if codePoint <= 0xFF:
        return f"\\x{codePoint:02x}"
    return f"\\u{codePoint:04x}"


def escapeValue(text: str) -> str:
    """
    Escape C{text} for use between double quotes in a C{key=value} line.

    @param text: any string, including lone surrogates.
    @return: printable text with no quote, backslash or unsafe character
        left unescaped.
    """
    return _UNSAFE.sub(_escapeOne, text)


#: Quoted and escaped spellings of strings already logged: the same VIP,
#: policy, device and host names appear on line after line.  Bounded: when
#: full it is emptied, so values chosen by clients cannot make it grow.
_QUOTED: dict[str, str] = {}
_QUOTED_LIMIT = 4096
_QUOTED_LONGEST = 256


def _quoted(text: str) -> str:
    quoted = f'"{escapeValue(text)}"'
    if len(text) <= _QUOTED_LONGEST:
        if len(_QUOTED) >= _QUOTED_LIMIT:
            _QUOTED.clear()
        _QUOTED[text] = quoted
    return quoted


def joinTags(tags: Iterable[str]) -> str:
    """
    Join posture tags for C{clientdevicetags}: C{EMS1_ZTNA_a/EMS1_ZTNA_b}.

    A C{/} or C{\\} inside a tag name is written C{\\/} or C{\\\\} (before
    the value is quoted), so that L{splitTags} recovers every tag exactly.
    """
    return "/".join(
        tag.replace("\\", "\\\\").replace("/", "\\/") for tag in tags
    )


def splitTags(text: str) -> tuple[str, ...]:
    """
    The inverse of L{joinTags}.

    @raise ValueError: C{text} ends in a lone backslash or escapes another
        character.
    """
    if text == "":
        return ()
    tags: list[str] = []
    current: list[str] = []
    characters = iter(text)
    for character in characters:
        if character == "/":
            tags.append("".join(current))
            current = []
        elif character == "\\":
            escaped = next(characters, None)
            if escaped not in ("/", "\\"):
                raise ValueError(f"bad escape in tag list: {text!r}")
            current.append(escaped)
        else:
            current.append(character)
    tags.append("".join(current))
    return tuple(tags)


@functools.lru_cache(maxsize=4096)
def _addressText(address: ipaddress.IPv4Address) -> str:
    # str() of an address computes its dotted text anew each time.
    return str(address)


def _keyValueText(value: FieldValue) -> str:
    if isinstance(value, bool):
        raise TypeError("booleans are not log values")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Token):
        return value.text
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, tuple):
        return f'"{escapeValue(joinTags(value))}"'
    if isinstance(value, str):
        return f'"{escapeValue(value)}"'
    raise TypeError(f"not a log value: {value!r}")


def _jsonValue(value: FieldValue) -> object:
    if isinstance(value, bool):
        raise TypeError("booleans are not log values")
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, Token):
        return value.text
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not a log value: {value!r}")


_PAIR = re.compile(
    r'([a-z0-9_]+)=(?:"((?:[^"\\]|\\.)*)"|([^\s"\\=]+))(?: |\Z)', re.DOTALL
)
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|(.))", re.DOTALL)
_UNESCAPE_SHORT = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _unescapeOne(match: re.Match[str]) -> str:
    hexByte, hexCodePoint, other = match.groups()
    if hexByte is not None:
        return chr(int(hexByte, 16))
    if hexCodePoint is not None:
        return chr(int(hexCodePoint, 16))
    try:
        return _UNESCAPE_SHORT[other]
    except KeyError:
        raise ValueError(f"unknown escape \\{other}") from None


def parseKeyValue(line: str) -> list[tuple[str, str]]:
    """
    Split one C{key=value} log line into its fields: the inverse of
    L{LogLine.keyValue} for reading logs back (tests, tools).

    @param line: one line, without its line terminator.
    @return: C{(key, text)} pairs in order; a quoted value is unescaped,
        a bare value is returned as written.
    @raise ValueError: C{line} is not a well-formed log line.
    """
    fields: list[tuple[str, str]] = []
    position = 0
    while position < len(line):
        match = _PAIR.match(line, position)
        if match is None:
            raise ValueError(f"malformed log line at offset {position}")
        key, quoted, bare = match.groups()
        if quoted is not None:
            fields.append((key, _ESCAPE.sub(_unescapeOne, quoted)))
        else:
            fields.append((key, bare))
        position = match.end()
    if line.endswith(" "):
        raise ValueError("malformed log line: trailing space")
    return fields
