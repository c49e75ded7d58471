"""
Tests for L{ztnagw.logs.line}: time stamps, the C{key=value} and JSON
spellings, escaping and reading lines back.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import time

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.logs.line import (
    LogFormat,
    LogLine,
    LogTime,
    Token,
    escapeValue,
    joinTags,
    parseKeyValue,
    splitTags,
)

#: Every code point, lone surrogates included: log values come from the
#: network and from C{surrogateescape} decoding.
anyText = st.text(alphabet=st.characters(codec=None, exclude_categories=()))

_UNSAFE_RAW = (
    {chr(c) for c in range(0x20)}
    | {chr(0x7F)}
    | {chr(c) for c in range(0x80, 0xA0)}
    | {"\u2028", "\u2029", "\u202e", "\u200b", "\ufeff"}
)


def setTimeZone(testCase: SynchronousTestCase, zone: str) -> None:
    """
    Make C{zone} the process's local time zone for the rest of
    C{testCase}.

    @param testCase: the test; the old zone is restored when it ends.
    @param zone: a POSIX C{TZ} value such as C{JST-9}.
    """
    old = os.environ.get("TZ")

    def restore() -> None:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    testCase.addCleanup(restore)
    os.environ["TZ"] = zone
    time.tzset()


class LogTimeTests(SynchronousTestCase):
    """
    L{LogTime} stamps lines the way FortiOS does.
    """

    def test_fortiosSample(self) -> None:
        """
        The instant of a FortiOS sample line, in its C{-0700} zone, gives
        the sample's C{date}, C{time} and C{tz}.
        """
        zone = datetime.timezone(datetime.timedelta(hours=-7))
        when = LogTime.fromSeconds(1683620074.0, zone)
        self.assertEqual(
            (when.date, when.time, when.tz, when.eventTime),
            ("2023-05-09", "01:14:34", "-0700", 1683620074000000000),
        )

    def test_nanoseconds(self) -> None:
        """
        C{eventtime} keeps the whole seconds exact and rounds only the
        fraction to the nearest nanosecond.
        """
        utc = datetime.timezone.utc
        self.assertEqual(
            LogTime.fromSeconds(1736510401.25, utc).eventTime,
            1736510401250000000,
        )
        # A fraction that rounds up carries into the seconds.
        self.assertEqual(
            LogTime.fromSeconds(1.9999999999, utc).eventTime, 2000000000
        )

    def test_partialHourOffset(self) -> None:
        """
        Offsets that are not whole hours print their minutes, with the
        sign in front.
        """
        zone = datetime.timezone(-datetime.timedelta(hours=3, minutes=30))
        when = LogTime.fromSeconds(0.0, zone)
        self.assertEqual(
            (when.date, when.time, when.tz),
            ("1969-12-31", "20:30:00", "-0330"),
        )

    def test_hostLocalZone(self) -> None:
        """
        Without a time zone, the host's local zone is used, as on a
        FortiGate.
        """
        setTimeZone(self, "JST-9")
        when = LogTime.fromSeconds(1736510401.0)
        self.assertEqual(
            (when.date, when.time, when.tz),
            ("2025-01-10", "21:00:01", "+0900"),
        )


class KeyValueTests(SynchronousTestCase):
    """
    L{LogLine.keyValue} spells lines like FortiOS: strings quoted, numbers,
    addresses, dates and times bare.
    """

    def test_kinds(self) -> None:
        """
        Each kind of value is spelled its own way.
        """
        line = LogLine(
            (
                ("date", Token("2025-01-10")),
                ("eventtime", 1736510401000000000),
                ("srcip", ipaddress.ip_address("2001:db8::1")),
                ("user", "alice"),
                ("clientdevicetags", ("EMS1_ZTNA_a", "EMS1_CLASS_High")),
            )
        )
        self.assertEqual(
            line.keyValue(),
            "date=2025-01-10 eventtime=1736510401000000000 srcip=2001:db8::1 "
            'user="alice" clientdevicetags="EMS1_ZTNA_a/EMS1_CLASS_High"',
        )

    def test_refusesOtherTypes(self) -> None:
        """
        A value of another type (a bool, a float) is a programming error,
        not something to print.
        """
        for value in (True, 1.5, None):
            self.assertRaises(TypeError, LogLine((("x", value),)).keyValue)

    def test_tokenChecked(self) -> None:
        """
        A bare token can only hold digits and C{-}/C{:}: nothing that could
        end a field.
        """
        self.assertRaises(ValueError, Token, '1 user="x"')
        self.assertRaises(ValueError, Token, "")

    def test_get(self) -> None:
        """
        L{LogLine.get} finds a field's value, or C{None}.
        """
        line = LogLine((("level", "notice"),))
        self.assertEqual(
            (line.get("level"), line.get("user")), ("notice", None)
        )


class EscapeTests(SynchronousTestCase):
    """
    A hostile value can neither split nor forge a log line.
    """

    def test_quotesAndBackslashes(self) -> None:
        """
        Quotes and backslashes are escaped with a backslash.
        """
        self.assertEqual(escapeValue('a"b\\c'), 'a\\"b\\\\c')

    def test_lineBreaks(self) -> None:
        """
        CR, LF, TAB, NUL, DEL, C1 controls, Unicode line separators, bidi
        overrides and lone surrogates are written as escapes.
        """
        self.assertEqual(
            escapeValue("\r\n\t\x00\x7f\x85\u2028\u202e\ud800"),
            "\\r\\n\\t\\x00\\x7f\\x85\\u2028\\u202e\\ud800",
        )
        self.assertEqual(
            escapeValue("\u061c\u200b\u2066\ufeff\ufffb"),
            "\\u061c\\u200b\\u2066\\ufeff\\ufffb",
        )

    def test_printableKept(self) -> None:
        """
        Printable non-ASCII text is kept as it is, so names stay readable.
        """
        self.assertEqual(escapeValue("Zoë 東京"), "Zoë 東京")

    def test_forgedFields(self) -> None:
        """
        A user name made to look like more fields, or like a new line with
        other fields, stays one value of one field.
        """
        hostile = 'evil" action="accept"\r\ndate=2025-01-01 user="root'
        line = LogLine((("user", hostile), ("action", "deny")))
        text = line.keyValue()
        self.assertNotIn("\n", text)
        self.assertNotIn("\r", text)
        self.assertEqual(
            parseKeyValue(text), [("user", hostile), ("action", "deny")]
        )

    @given(anyText, anyText)
    def test_roundTrip(self, first: str, second: str) -> None:
        """
        Whatever two strings are logged, the line holds exactly the two
        fields, no unsafe character appears raw, and the line encodes to
        UTF-8.
        """
        line = LogLine((("user", first), ("hostname", second), ("proto", 6)))
        text = line.keyValue()
        self.assertEqual(
            parseKeyValue(text),
            [("user", first), ("hostname", second), ("proto", "6")],
        )
        self.assertFalse(_UNSAFE_RAW & set(text))
        text.encode("utf-8")

    @given(st.lists(anyText))
    def test_tagsRoundTrip(self, tags: list[str]) -> None:
        """
        L{splitTags} recovers exactly the tags L{joinTags} joined, whatever
        they contain, when there is at least one tag.
        """
        if tags == [""]:
            # One empty tag and no tag at all are spelled alike; entries
            # never log empty tag lists.
            return
        line = LogLine((("clientdevicetags", tuple(tags)),))
        [(key, text)] = parseKeyValue(line.keyValue())
        self.assertEqual(splitTags(text), tuple(tags))

    def test_tagSeparatorEscaped(self) -> None:
        """
        A C{/} inside a tag name is escaped so that it does not split the
        tag.
        """
        self.assertEqual(joinTags(["a/b", "c"]), "a\\/b/c")
        self.assertEqual(splitTags("a\\/b/c"), ("a/b", "c"))

    def test_badTagEscape(self) -> None:
        """
        A tag list with an unknown or unfinished escape is refused.
        """
        self.assertRaises(ValueError, splitTags, "a\\")
        self.assertRaises(ValueError, splitTags, "a\\x")


class ParseKeyValueTests(SynchronousTestCase):
    """
    L{parseKeyValue} reads lines back, and refuses what is not a line.
    """

    def test_bareAndQuoted(self) -> None:
        """
        Bare values are returned as written, quoted ones unescaped.
        """
        self.assertEqual(
            parseKeyValue('date=2025-01-10 srcip=::1 msg="a \\"b\\""'),
            [("date", "2025-01-10"), ("srcip", "::1"), ("msg", 'a "b"')],
        )

    def test_malformed(self) -> None:
        """
        Unterminated quotes, missing values, stray spaces and unknown
        escapes are errors.
        """
        for line in (
            'user="abc',
            "user=",
            "user=a  proto=6",
            "user=a ",
            " user=a",
            'user="a"proto=6',
            'msg="\\q"',
            "=a",
        ):
            self.assertRaises(ValueError, parseKeyValue, line)

    def test_empty(self) -> None:
        """
        An empty line has no fields.
        """
        self.assertEqual(parseKeyValue(""), [])

    @given(anyText)
    def test_neverCrashes(self, text: str) -> None:
        """
        Any text either parses or raises L{ValueError}.
        """
        try:
            parseKeyValue(text)
        except ValueError:
            pass


class JsonTests(SynchronousTestCase):
    """
    L{LogLine.json} writes the same fields with their natural types.
    """

    def test_types(self) -> None:
        """
        Numbers stay numbers, addresses and tokens become strings, tags a
        list, and the order is kept.
        """
        line = LogLine(
            (
                ("date", Token("2025-01-10")),
                ("srcip", ipaddress.ip_address("10.0.0.1")),
                ("srcport", 443),
                ("clientdevicetags", ("a", "b")),
                ("user", "zoë"),
            )
        )
        text = line.json()
        self.assertEqual(
            list(json.loads(text).items()),
            [
                ("date", "2025-01-10"),
                ("srcip", "10.0.0.1"),
                ("srcport", 443),
                ("clientdevicetags", ["a", "b"]),
                ("user", "zoë"),
            ],
        )
        self.assertTrue(text.isascii())

    @given(anyText)
    def test_oneLine(self, value: str) -> None:
        """
        Whatever a value holds, the JSON line is one ASCII line that reads
        back to the value.
        """
        text = LogLine((("user", value),)).json()
        self.assertTrue(text.isascii())
        self.assertNotIn("\n", text)
        self.assertEqual(json.loads(text), {"user": value})

    def test_render(self) -> None:
        """
        L{LogFormat} picks the spelling; its values are FortiOS's names.
        """
        line = LogLine((("proto", 6),))
        self.assertEqual(LogFormat.KEY_VALUE.render(line), "proto=6")
        self.assertEqual(LogFormat.JSON.render(line), '{"proto":6}')
        self.assertEqual(LogFormat("default"), LogFormat.KEY_VALUE)
        self.assertEqual(LogFormat("json"), LogFormat.JSON)
