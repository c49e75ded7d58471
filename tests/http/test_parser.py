"""
Tests for L{ztnagw.http.parser}: strict request and response heads, and the
server's incremental use of them (arbitrary splits, arbitrary bytes).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.http.errors import HTTPParseError
from ztnagw.http.headers import TOKEN_BYTES, Headers, serializeFields
from ztnagw.http.limits import ServerLimits
from ztnagw.http.parser import (
    FRAMING_CHUNKED,
    FRAMING_CLOSE,
    FRAMING_LENGTH,
    FRAMING_NONE,
    parseRequestHead,
    parseResponseHead,
    responseFraming,
)

from tests.http.helpers import Collector, RecordingHandler, answerOK, connectServer, statusOf

#: Requests every strict server must refuse, and the status it answers.
#: Each is a whole head; C{{}} stands for nothing (used to keep lines short).
SMUGGLING = [
    # Transfer-Encoding must be exactly "chunked", once, in HTTP/1.1, alone.
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 1\r\n\r\n", 200),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    # Content-Length: one field, digits only, bounded.
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \xd9\xa3\r\n\r\n", 400),
    # Line ends, folding, whitespace and control characters.
    (b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\tz\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX\t: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX(: y\r\n\r\n", 400),
    # Request line.
    (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505),
    (b"GET / HTTP/1.1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET / http/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),
    # Host: exactly one in HTTP/1.1, and the only authority.
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    (b"GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET https://a:8443/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # Never a tunnel through this path.
    (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
    # Expectations we do not know; Upgrade with a body.
    (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n", 417),
    (b"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\n", 400),
    # Accepted for comparison: these are fine.
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    (b"GET http://A:80/x HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    (b"GET https://a/x HTTP/1.1\r\nHost: a:443\r\n\r\n", 200),
    (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 200),
    (b"GET / HTTP/1.0\r\n\r\n", 200),
    (b"GET / HTTP/1.1\r\nHost: [::1]:8443\r\nX:\tv\t\r\n\r\n", 200),
    (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 200),
]


class SmugglingTests(SynchronousTestCase):
    """
    Every ambiguous or malformed head is refused with a clean error response
    and a close; nothing is handed to the handler.
    """

    def test_cases(self) -> None:
        """
        Each case gets its status, whole or fed one byte at a time.
        """
        for raw, expected in SMUGGLING:
            for pieces in ([raw], [raw[i : i + 1] for i in range(len(raw))]):
                handler = RecordingHandler(answerOK)
                protocol, transport, clock = connectServer(handler)
                for piece in pieces:
                    protocol.dataReceived(piece)
                output = transport.value()
                self.assertEqual(
                    statusOf(output), expected, f"{raw!r}: {output[:200]!r}"
                )
                if expected >= 400:
                    self.assertEqual(handler.requests, [], raw)
                    self.assertIn(b"\r\nConnection: close\r\n", output)
                    clock.advance(ServerLimits().lingerTimeout)
                    self.assertTrue(transport.disconnecting, raw)


class RequestHeadTests(SynchronousTestCase):
    """
    L{parseRequestHead} extracts what the gateway needs.
    """

    def test_fields(self) -> None:
        """
        The head's parts, the framing and the connection options.
        """
        head = parseRequestHead(
            b"POST /p?q=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 12\r\n"
            b"Connection: Close\r\nX-A:  v  \r\nx-a: w"
        )
        self.assertEqual(head.method, b"POST")
        self.assertEqual(head.target, b"/p?q=1")
        self.assertEqual(head.path, b"/p?q=1")
        self.assertEqual(head.version, b"HTTP/1.1")
        self.assertEqual(head.host, b"example.com")
        self.assertEqual(head.bodyLength, 12)
        self.assertFalse(head.keepAlive)
        self.assertEqual(head.headers.getAll(b"X-a"), [b"v", b"w"])
        self.assertIsNone(head.upgrade)
        self.assertFalse(head.expectContinue)

    def test_keepAliveRules(self) -> None:
        """
        HTTP/1.1 is persistent unless C{close}; HTTP/1.0 only with
        C{keep-alive}.
        """
        cases = [
            (b"GET / HTTP/1.1\r\nHost: a", True),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close", False),
            (b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE", False),
            (b"GET / HTTP/1.0", False),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive", True),
        ]
        for raw, expected in cases:
            self.assertEqual(parseRequestHead(raw).keepAlive, expected, raw)

    def test_upgradeAndExpect(self) -> None:
        """
        An Upgrade counts only with C{Connection: upgrade} in HTTP/1.1;
        C{100-continue} only with a body.
        """
        head = parseRequestHead(
            b"GET /tcp HTTP/1.1\r\nHost: a\r\nUpgrade: tcp-forwarding/1.0\r\n"
            b"Connection: Upgrade"
        )
        self.assertEqual(head.upgrade, b"tcp-forwarding/1.0")
        self.assertIsNone(
            parseRequestHead(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: x").upgrade
        )
        self.assertIsNone(
            parseRequestHead(
                b"GET / HTTP/1.0\r\nUpgrade: x\r\nConnection: upgrade"
            ).upgrade
        )
        self.assertTrue(
            parseRequestHead(
                b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3"
            ).expectContinue
        )
        self.assertFalse(
            parseRequestHead(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue").expectContinue
        )
        self.assertFalse(
            parseRequestHead(
                b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3"
            ).expectContinue
        )

    def test_absoluteForm(self) -> None:
        """
        An absolute-form target gives its path; with no Host (HTTP/1.0) its
        authority is the host.
        """
        head = parseRequestHead(b"GET http://a.example?x HTTP/1.0")
        self.assertEqual(head.host, b"a.example")
        self.assertEqual(head.path, b"/?x")

    def test_limits(self) -> None:
        """
        Request line, head size and field count limits give 414 and 431;
        a declared body over the limit gives 413.
        """
        limits = ServerLimits(
            maxRequestLineLength=20, maxHeadBytes=60, maxHeaderCount=2, maxBodyLength=10
        )
        cases = [
            (b"GET /" + b"a" * 20 + b" HTTP/1.1\r\nHost: a", 414),
            (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"v" * 40, 431),
            (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2", 431),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11", 413),
        ]
        for raw, status in cases:
            with self.assertRaises(HTTPParseError) as caught:
                parseRequestHead(raw, limits)
            self.assertEqual(caught.exception.status, status, raw)
        parseRequestHead(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10", limits)


_tokens = st.text(TOKEN_BYTES.decode(), min_size=1, max_size=12).map(str.encode)
_values = st.binary(max_size=24).map(
    lambda b: bytes(c for c in b if c >= 0x21 and c != 0x7F)
)
_paths = st.text(
    "abcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@%/?", max_size=30
).map(lambda s: b"/" + s.encode())


@st.composite
def requestHeads(draw: st.DrawFn) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
    """
    A valid request head's parts: method, target, fields (with one Host and
    no framing fields), and the serialized head.
    """
    method = draw(_tokens)
    target = draw(_paths)
    names = draw(
        st.lists(
            _tokens.filter(
                lambda n: n.lower()
                not in (b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"connection")
            ),
            max_size=10,
        )
    )
    fields = [(b"Host", b"example.com")] + [(name, draw(_values)) for name in names]
    head = b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, serializeFields(fields))
    return method, target, fields, head


class RoundTripTests(SynchronousTestCase):
    """
    Serialized valid heads parse back to what was serialized.
    """

    @given(requestHeads())
    def test_roundTrip(self, case: tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]) -> None:
        """
        Method, target and fields survive serialize, then parse.
        """
        method, target, fields, head = case
        if method == b"CONNECT" or len(fields) > 100:
            return
        parsed = parseRequestHead(head[:-4])
        self.assertEqual(parsed.method, method)
        self.assertEqual(parsed.target, target)
        self.assertEqual(parsed.headers, Headers(fields))
        self.assertEqual(parsed.bodyLength, 0)


class IncrementalParsingTests(SynchronousTestCase):
    """
    The server parses the same bytes the same way however they are split,
    and answers anything with a request or a clean error, never an
    exception.
    """

    def _serve(self, pieces: list[bytes]) -> tuple[list[tuple], bytes]:
        """
        Feed C{pieces} to a server; return the requests seen and the output.
        """
        handler = RecordingHandler(answerOK)
        protocol, transport, clock = connectServer(handler)
        for piece in pieces:
            protocol.dataReceived(piece)
        seen = [
            (r.method, r.target, r.version, list(r.headers), r.bodyLength)
            for r in handler.requests
        ]
        return seen, transport.value()

    def test_everySplit(self) -> None:
        """
        Two pipelined requests split at every byte boundary give the same
        requests and the same output as one write.
        """
        raw = (
            b"GET /a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
            b"\r\nHEAD /b?c HTTP/1.1\r\nHost: h\r\nX-B:  2 \r\nx-b: 3\r\n\r\n"
        )
        expected = self._serve([raw])
        self.assertEqual(len(expected[0]), 2)
        for i in range(len(raw) + 1):
            self.assertEqual(self._serve([raw[:i], raw[i:]]), expected, i)

    def test_everySplitWithBodies(self) -> None:
        """
        Pipelined requests with a Content-Length body and a chunked body,
        split at every byte boundary, give the same requests and bodies.
        """
        raw = (
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
            b"PUT /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: v\r\n\r\n"
            b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
        )

        def serve(pieces: list[bytes]) -> list[tuple]:
            bodies: list[Collector] = []

            def answer(request) -> None:
                collector = Collector()
                bodies.append(collector)
                finished = collector.bodyFinished

                def respond() -> None:
                    finished()
                    request.response.respond(200, b"OK")

                collector.bodyFinished = respond  # type: ignore[method-assign]
                request.deliverBody(collector)

            handler = RecordingHandler(answer)
            protocol, transport, clock = connectServer(handler)
            for piece in pieces:
                protocol.dataReceived(piece)
            return [
                (r.method, r.path, c.data, c.finished, r.trailers and list(r.trailers))
                for r, c in zip(handler.requests, bodies)
            ]

        expected = serve([raw])
        self.assertEqual(
            expected,
            [
                (b"POST", b"/a", b"hello", True, None),
                (b"PUT", b"/b", b"abcde", True, [(b"T", b"v")]),
                (b"GET", b"/c", b"", True, None),
            ],
        )
        for i in range(len(raw) + 1):
            self.assertEqual(serve([raw[:i], raw[i:]]), expected, i)

    @settings(max_examples=300)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from(
                    [
                        b"GET / HTTP/1.1\r\n",
                        b"POST /x HTTP/1.1\r\n",
                        b"Host: a\r\n",
                        b"Content-Length: 3\r\n",
                        b"Transfer-Encoding: chunked\r\n",
                        b"\r\n",
                        b"3\r\nabc\r\n",
                        b"0\r\n\r\n",
                        b"\n",
                        b"\r",
                        b"Upgrade: x\r\nConnection: upgrade\r\n",
                    ]
                ),
            ),
            max_size=12,
        )
    )
    def test_arbitraryBytes(self, pieces: list[bytes]) -> None:
        """
        Arbitrary bytes in arbitrary pieces give requests and/or an error
        response, never an exception; every response starts with a status
        line.
        """
        handler = RecordingHandler(answerOK)
        protocol, transport, clock = connectServer(handler)
        for piece in pieces:
            protocol.dataReceived(piece)
        clock.advance(100)
        output = transport.value()
        if output:
            self.assertTrue(output.startswith(b"HTTP/1.1 "), output[:100])


class ResponseHeadTests(SynchronousTestCase):
    """
    L{parseResponseHead} and L{responseFraming} read real servers' answers
    strictly.
    """

    def test_statusLine(self) -> None:
        """
        Status, reason (possibly missing) and version.
        """
        head = parseResponseHead(b"HTTP/1.1 404 Not Found\r\nX: y")
        self.assertEqual((head.status, head.reason, head.version), (404, b"Not Found", b"HTTP/1.1"))
        self.assertEqual(parseResponseHead(b"HTTP/1.1 204").reason, b"")
        self.assertEqual(parseResponseHead(b"HTTP/1.1 204 ").reason, b"")
        self.assertFalse(parseResponseHead(b"HTTP/1.0 200 OK").keepAlive)
        self.assertTrue(parseResponseHead(b"HTTP/1.0 200 OK\r\nConnection: keep-alive").keepAlive)
        for bad in [
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 2000 OK",
            b"HTTP/2 200 OK",
            b"HTTP/1.1  200 OK",
            b"HTTP/1.1 099 x",
            b"HTTP/1.1 200 OK\nX: y",
            b"HTTP/1.1 200 OK\r\nX : y",
        ]:
            self.assertRaises(HTTPParseError, parseResponseHead, bad)

    def test_framing(self) -> None:
        """
        No body for HEAD, 1xx, 204 and 304; otherwise chunked, length or
        close-delimited; conflicting framing is an error.
        """
        def framing(raw: bytes, method: bytes = b"GET") -> tuple[int, int]:
            return responseFraming(parseResponseHead(raw), method)

        self.assertEqual(framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5", b"HEAD"), (FRAMING_NONE, 0))
        self.assertEqual(framing(b"HTTP/1.1 304 x\r\nContent-Length: 5"), (FRAMING_NONE, 0))
        self.assertEqual(framing(b"HTTP/1.1 204 x"), (FRAMING_NONE, 0))
        self.assertEqual(framing(b"HTTP/1.1 200 x\r\nContent-Length: 5"), (FRAMING_LENGTH, 5))
        self.assertEqual(framing(b"HTTP/1.1 200 x\r\nTransfer-Encoding: Chunked"), (FRAMING_CHUNKED, 0))
        self.assertEqual(framing(b"HTTP/1.1 200 x"), (FRAMING_CLOSE, 0))
        for bad in [
            b"HTTP/1.1 200 x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
            b"HTTP/1.1 200 x\r\nContent-Length: 5\r\nContent-Length: 5",
            b"HTTP/1.1 200 x\r\nContent-Length: 5x",
            b"HTTP/1.1 200 x\r\nTransfer-Encoding: gzip, chunked",
            b"HTTP/1.0 200 x\r\nTransfer-Encoding: chunked",
        ]:
            self.assertRaises(HTTPParseError, framing, bad)
