"""
Tests for L{ztnagw.http.headers}.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.http.headers import (
    Headers,
    InvalidHeader,
    checkName,
    checkValue,
    connectionTokens,
    serializeFields,
    withoutHopByHop,
)


class HeadersTests(SynchronousTestCase):
    """
    L{Headers} keeps fields in order, repeated, and finds them in any case.
    """

    def test_orderAndRepeats(self) -> None:
        """
        Fields keep their order and spelling; repeated ones are all kept.
        """
        headers = Headers([(b"Set-Cookie", b"a=1"), (b"Host", b"x"), (b"set-cookie", b"b=2")])
        self.assertEqual(
            list(headers),
            [(b"Set-Cookie", b"a=1"), (b"Host", b"x"), (b"set-cookie", b"b=2")],
        )
        self.assertEqual(headers.getAll(b"SET-COOKIE"), [b"a=1", b"b=2"])
        self.assertEqual(headers.get(b"set-cookie"), b"a=1")
        self.assertEqual(headers.get(b"missing"), None)
        self.assertEqual(headers.get(b"missing", b"d"), b"d")
        self.assertIn(b"HOST", headers)
        self.assertNotIn("Host", headers)
        self.assertEqual(len(headers), 3)

    def test_mutation(self) -> None:
        """
        C{add}, C{set} and C{remove} change the fields and the lookups.
        """
        headers = Headers([(b"A", b"1"), (b"a", b"2"), (b"B", b"3")])
        self.assertEqual(headers.get(b"a"), b"1")
        headers.set(b"A", b"9")
        self.assertEqual(list(headers), [(b"B", b"3"), (b"A", b"9")])
        headers.add(b"b", b"4")
        self.assertEqual(headers.getAll(b"B"), [b"3", b"4"])
        self.assertEqual(headers.remove(b"B"), 2)
        self.assertEqual(list(headers), [(b"A", b"9")])
        copy = headers.copy()
        copy.add(b"C", b"5")
        self.assertEqual(len(headers), 1)
        self.assertEqual(headers, Headers([(b"A", b"9")]))

    def test_injectionRefused(self) -> None:
        """
        Names and values that could break a head are refused, whichever way
        they come in.
        """
        for name in [b"", b"A B", b"A:", b"A\r\nB", b"\x00", "Host"]:
            self.assertRaises(InvalidHeader, checkName, name)
            self.assertRaises(InvalidHeader, Headers, [(name, b"v")])
        for value in [b"a\r\nEvil: 1", b"a\rb", b"a\nb", b"a\x00b", b"\x7f", "v"]:
            self.assertRaises(InvalidHeader, checkValue, value)
            headers = Headers()
            self.assertRaises(InvalidHeader, headers.add, b"X", value)
            self.assertRaises(InvalidHeader, headers.set, b"X", value)
            self.assertEqual(list(headers), [])
        self.assertEqual(checkValue(b"a\tb \xff"), b"a\tb \xff")

    @given(
        st.lists(
            st.tuples(
                st.text("abcXYZ-_!#", min_size=1, max_size=8).map(str.encode),
                st.binary(max_size=16),
            ),
            max_size=8,
        )
    )
    def test_neverSerializesBrokenHead(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """
        Whatever is offered, a L{Headers} either refuses it or serializes to
        lines with exactly one CRLF each.
        """
        try:
            headers = Headers(pairs)
        except InvalidHeader:
            return
        block = serializeFields(headers)
        self.assertEqual(block.count(b"\r\n"), len(pairs))
        self.assertEqual(block.count(b"\n"), len(pairs))
        self.assertEqual(block.count(b"\r"), len(pairs))
        self.assertNotIn(b"\x00", block)


class HopByHopTests(SynchronousTestCase):
    """
    L{withoutHopByHop} drops what concerns one connection only.
    """

    def test_standardFields(self) -> None:
        """
        The RFC 9110 hop-by-hop fields (and Keep-Alive, Proxy-Connection,
        Trailer) are dropped; end-to-end ones are kept in order.
        """
        headers = Headers(
            [
                (b"Host", b"h"),
                (b"Connection", b"keep-alive"),
                (b"Keep-Alive", b"timeout=5"),
                (b"Proxy-Connection", b"x"),
                (b"TE", b"trailers"),
                (b"Trailer", b"X-T"),
                (b"Transfer-Encoding", b"chunked"),
                (b"Upgrade", b"websocket"),
                (b"Accept", b"*/*"),
                (b"Content-Length", b"3"),
            ]
        )
        self.assertEqual(
            list(withoutHopByHop(headers)),
            [(b"Host", b"h"), (b"Accept", b"*/*"), (b"Content-Length", b"3")],
        )

    def test_connectionNamedFields(self) -> None:
        """
        Fields named in C{Connection} are dropped too, in any case.
        """
        headers = Headers(
            [
                (b"Connection", b"X-Secret , close"),
                (b"connection", b"X-Other"),
                (b"x-secret", b"1"),
                (b"X-OTHER", b"2"),
                (b"X-Kept", b"3"),
            ]
        )
        self.assertEqual(
            connectionTokens(headers), frozenset({b"x-secret", b"close", b"x-other"})
        )
        self.assertEqual(list(withoutHopByHop(headers)), [(b"X-Kept", b"3")])
