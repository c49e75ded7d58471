"""
Tests for L{ztnagw.http.client}: one upstream exchange, from the request
bytes to the response body, over in-memory transports.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.http.client import READ_SIZE, PoolSettings, UpstreamKey, UpstreamResponse
from ztnagw.http.errors import (
    RequestBodyFailed,
    UpstreamError,
    ResponseTimeout,
    TruncatedBody,
    UpstreamProtocolError,
)
from ztnagw.http.headers import Headers, InvalidHeader
from ztnagw.http.pool import BytesBody, UpstreamPool

from tests.http.helpers import Collector, StreamingSource, connectUpstream

KEY = UpstreamKey("10.0.0.1", 8080)
HOST = [(b"Host", b"app.internal")]


class _Setup:
    """
    A memory reactor and a pool, with shortcuts.
    """
    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        self.reactor = MemoryReactorClock()
        self.pool = UpstreamPool(self.reactor)

    def request(self, method=b"GET", target=b"/", headers=HOST, body=None):
        """
        Send a request to L{KEY} through the pool.
        """
        return self.pool.request(KEY, method, target, headers, body)

    def respond(self, d, transport, protocol, raw: bytes) -> UpstreamResponse:
        """
        Feed C{raw} as the server's answer; return the response.
        """
        protocol.dataReceived(raw)
        return self.successResultOf(d)


class RequestTests(_Setup, SynchronousTestCase):
    """
    What is sent upstream.
    """

    def test_headAndFraming(self) -> None:
        """
        The head carries the given fields in order, minus framing and
        C{Expect}; the framing comes from the body.
        """
        d = self.request(
            b"POST",
            b"/a?b",
            Headers(
                HOST
                + [
                    (b"Content-Length", b"99"),
                    (b"Expect", b"100-continue"),
                    (b"Transfer-Encoding", b"chunked"),
                    (b"X-A", b"1"),
                ]
            ),
            BytesBody(b"hello"),
        )
        host, port, factory, timeout, bind = self.reactor.tcpClients[0]
        self.assertEqual((host, port, timeout), ("10.0.0.1", 8080, 10.0))
        protocol, transport = connectUpstream(self.reactor)
        self.assertEqual(
            transport.value(),
            b"POST /a?b HTTP/1.1\r\nHost: app.internal\r\nX-A: 1\r\n"
            b"Content-Length: 5\r\n\r\nhello",
        )
        self.assertNoResult(d)

    def test_emptyBodies(self) -> None:
        """
        No body: no framing field, except C{Content-Length: 0} for methods
        that expect a body.
        """
        for method, expected in [(b"GET", b""), (b"DELETE", b""), (b"POST", b"Content-Length: 0\r\n")]:
            self.request(method)
            protocol, transport = connectUpstream(self.reactor)
            self.assertEqual(
                transport.value(),
                method + b" / HTTP/1.1\r\nHost: app.internal\r\n" + expected + b"\r\n",
            )

    def test_chunkedWhenUnknown(self) -> None:
        """
        A body of unknown length is sent chunked, piece by piece.
        """
        source = StreamingSource(None)
        self.request(b"PUT", body=source)
        protocol, transport = connectUpstream(self.reactor)
        source.consumer.bodyDataReceived(b"abc")
        source.consumer.bodyDataReceived(b"de")
        source.consumer.bodyFinished()
        self.assertTrue(
            transport.value().endswith(
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
        )

    def test_invalidArguments(self) -> None:
        """
        Invalid methods, targets or fields, and a missing Host, raise before
        anything is sent.
        """
        self.assertRaises(ValueError, self.request, b"G ET")
        self.assertRaises(ValueError, self.request, b"GET", b"/a b")
        self.assertRaises(ValueError, self.request, b"GET", b"/\r\nX: y")
        self.assertRaises(ValueError, self.request, b"GET", b"/", [])
        self.assertRaises(InvalidHeader, self.request, b"GET", b"/", HOST + [(b"X", b"a\r\nb: c")])
        self.assertEqual(self.reactor.tcpClients, [])

    def test_bodyBackpressure(self) -> None:
        """
        A full upstream socket pauses the body source; the source is
        resumed when it drains.
        """
        source = StreamingSource(6)
        self.request(b"POST", body=source)
        protocol, transport = connectUpstream(self.reactor)
        self.assertIsNotNone(transport.producer)
        transport.producer.pauseProducing()
        self.assertTrue(source.paused)
        transport.producer.resumeProducing()
        self.assertFalse(source.paused)
        source.consumer.bodyDataReceived(b"abcdef")
        source.consumer.bodyFinished()
        self.assertIsNone(transport.producer)

    def test_bodyLengthMismatch(self) -> None:
        """
        A source delivering more or less than its declared length fails the
        request and aborts the connection.
        """
        for data in (b"toolong", b"ab"):
            source = StreamingSource(3)
            d = self.request(b"POST", body=source)
            protocol, transport = connectUpstream(self.reactor)
            source.consumer.bodyDataReceived(data)
            source.consumer.bodyFinished()
            self.failureResultOf(d, RequestBodyFailed)
            self.assertTrue(transport.aborted)

    def test_bodySourceFails(self) -> None:
        """
        The client's body failing (it went away) abandons the upstream
        request: the connection is aborted so the server sees truncation.
        """
        source = StreamingSource(10)
        d = self.request(b"POST", body=source)
        protocol, transport = connectUpstream(self.reactor)
        source.consumer.bodyDataReceived(b"abc")
        source.consumer.bodyFailed(Failure(ConnectionLost()))
        failure = self.failureResultOf(d, RequestBodyFailed)
        self.assertTrue(failure.value.requestSent)
        self.assertTrue(transport.aborted)


class ReadSizeTests(_Setup, SynchronousTestCase):
    """
    How an upstream TCP connection reads.
    """

    def test_largeReads(self) -> None:
        """
        An upstream connection over TCP reads L{READ_SIZE} bytes at a time,
        so that response bodies are relayed in large pieces.
        """
        import socket

        from twisted.internet import tcp
        from twisted.internet.testing import MemoryReactor

        d = self.request()
        host, port, factory, timeout, bind = self.reactor.tcpClients[0]
        protocol = factory.buildProtocol(None)
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        theirs = socket.create_connection(listener.getsockname())
        self.addCleanup(theirs.close)
        ours, _ = listener.accept()

        class Port:
            _realPortNumber = 1
            _type = "TCP"

        connection = tcp.Server(ours, protocol, ("10.0.0.1", 8080), Port(), 1, MemoryReactor())
        self.addCleanup(connection.connectionLost, Failure(ConnectionDone()))
        self.assertNotEqual(connection.bufferSize, READ_SIZE)
        protocol.makeConnection(connection)
        self.assertEqual(connection.bufferSize, READ_SIZE)
        self.assertNoResult(d)
        d.addErrback(lambda failure: None)


class ResponseTests(_Setup, SynchronousTestCase):
    """
    How responses are read and delivered.
    """

    def _body(self, response: UpstreamResponse) -> Collector:
        """
        Deliver C{response}'s body to a new L{Collector}.
        """
        collector = Collector()
        response.deliverBody(collector)
        return collector

    def test_contentLength(self) -> None:
        """
        A Content-Length body is delivered as it arrives, then finished; the
        connection goes back to the pool.
        """
        d = self.request()
        protocol, transport = connectUpstream(self.reactor)
        response = self.respond(
            d, transport, protocol, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nab"
        )
        self.assertEqual((response.status, response.reason, response.length), (200, b"OK", 5))
        self.assertEqual(response.headers.get(b"x"), b"y")
        collector = self._body(response)
        self.assertEqual(collector.data, b"ab")
        protocol.dataReceived(b"cde")
        self.assertEqual((collector.data, collector.finished), (b"abcde", True))
        self.assertEqual(self.pool.idleCount(KEY), 1)

    def test_chunked(self) -> None:
        """
        A chunked body is decoded, with its trailers.
        """
        d = self.request()
        protocol, transport = connectUpstream(self.reactor)
        response = self.respond(
            d, transport, protocol,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nT: 1\r\n\r\n",
        )
        self.assertIsNone(response.length)
        collector = self._body(response)
        self.assertEqual((collector.data, collector.finished), (b"ab", True))
        self.assertEqual(response.trailers, Headers([(b"T", b"1")]))
        self.assertEqual(self.pool.idleCount(KEY), 1)

    def test_closeDelimited(self) -> None:
        """
        A body without framing ends cleanly when the server closes; the
        connection is not reused.
        """
        d = self.request()
        protocol, transport = connectUpstream(self.reactor)
        response = self.respond(d, transport, protocol, b"HTTP/1.1 200 OK\r\n\r\nsome")
        collector = self._body(response)
        protocol.dataReceived(b" data")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual((collector.data, collector.finished), (b"some data", True))
        self.assertEqual(self.pool.idleCount(KEY), 0)

    def test_truncated(self) -> None:
        """
        A Content-Length or chunked body cut short fails with
        L{TruncatedBody}: never a clean end.
        """
        for head, part in [
            (b"Content-Length: 10", b"abc"),
            (b"Transfer-Encoding: chunked", b"5\r\nabc"),
        ]:
            d = self.request()
            protocol, transport = connectUpstream(self.reactor)
            response = self.respond(d, transport, protocol, b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\n" + part)
            collector = self._body(response)
            protocol.connectionLost(Failure(ConnectionDone()))
            self.assertTrue(collector.failure.check(TruncatedBody))
            self.assertFalse(collector.finished)

    def test_noBodyResponses(self) -> None:
        """
        Responses to HEAD, and 204 and 304 responses, have no body even with
        a Content-Length; interim 100 and 103 responses are skipped.
        """
        for method, raw in [
            (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"),
            (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
            (b"GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"),
            (b"GET", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 204 No\r\n\r\n"),
        ]:
            pool = UpstreamPool(self.reactor)
            d = pool.request(KEY, method, b"/", HOST)
            protocol, transport = connectUpstream(self.reactor)
            response = self.respond(d, transport, protocol, raw)
            self.assertIn(response.status, (200, 204, 304))
            self.assertEqual(response.length, 50 if b"50" in raw else 0)
            collector = self._body(response)
            self.assertEqual(collector.events, ["started", "finished"])
            self.assertEqual(pool.idleCount(KEY), 1, raw)

    def test_everySplit(self) -> None:
        """
        Two responses (an interim 100, a chunked body with trailers, then a
        Content-Length body on the reused connection) read the same however
        the bytes are split.
        """
        first = (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n4\r\nabcd\r\n1;e=1\r\ne\r\n0\r\nT: 1\r\n\r\n"
        )
        second = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nxyz"
        for i in range(len(first) + 1):
            pool = UpstreamPool(self.reactor)
            d = pool.request(KEY, b"GET", b"/", HOST)
            protocol, transport = connectUpstream(self.reactor)
            protocol.dataReceived(first[:i])
            protocol.dataReceived(first[i:])
            response = self.successResultOf(d)
            collector = self._body(response)
            self.assertEqual((response.status, collector.data, collector.finished), (200, b"abcde", True), i)
            self.assertEqual(response.trailers, Headers([(b"T", b"1")]))
            d = pool.request(KEY, b"GET", b"/", HOST)
            for j in range(len(second)):
                protocol.dataReceived(second[j : j + 1])
            collector = self._body(self.successResultOf(d))
            self.assertEqual((collector.data, collector.finished), (b"xyz", True))

    def test_bodyPauseAndBuffer(self) -> None:
        """
        A paused consumer pauses reading from upstream; so does a body
        nobody has asked for yet, beyond C{bodyBufferSize}.
        """
        pool = UpstreamPool(self.reactor, PoolSettings(bodyBufferSize=4))
        d = pool.request(KEY, b"GET", b"/", HOST)
        protocol, transport = connectUpstream(self.reactor)
        response = self.respond(d, transport, protocol, b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nab")
        self.assertFalse(transport.readingPaused)
        protocol.dataReceived(b"cdef")
        self.assertTrue(transport.readingPaused)
        collector = self._body(response)
        self.assertFalse(transport.readingPaused)
        self.assertEqual(collector.data, b"abcdef")
        collector.producer.pauseProducing()
        self.assertTrue(transport.readingPaused)
        protocol.dataReceived(b"gh")
        self.assertEqual(collector.data, b"abcdef")
        collector.producer.resumeProducing()
        self.assertEqual(collector.data, b"abcdefgh")
        self.assertFalse(transport.readingPaused)

    def test_abortResponse(self) -> None:
        """
        Aborting the response (or stopping its producer) closes the upstream
        connection at once; it is not reused.
        """
        d = self.request()
        protocol, transport = connectUpstream(self.reactor)
        response = self.respond(d, transport, protocol, b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nab")
        collector = self._body(response)
        collector.producer.stopProducing()
        self.assertTrue(transport.aborted)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(collector.events, ["started"])
        self.assertEqual(self.pool.idleCount(KEY), 0)

    def test_earlyResponse(self) -> None:
        """
        A response arriving before the request body is complete is
        delivered; the body source is stopped; the connection is closed
        after the response, never reused.
        """
        source = StreamingSource(1000)
        d = self.request(b"POST", body=source)
        protocol, transport = connectUpstream(self.reactor)
        source.consumer.bodyDataReceived(b"x" * 100)
        response = self.respond(
            d, transport, protocol, b"HTTP/1.1 413 Too Large\r\nContent-Length: 3\r\n\r\nno!"
        )
        self.assertEqual(response.status, 413)
        self.assertTrue(source.stopped)
        sent = len(transport.value())
        source.consumer.bodyDataReceived(b"y" * 100)
        self.assertEqual(len(transport.value()), sent)
        collector = self._body(response)
        self.assertEqual((collector.data, collector.finished), (b"no!", True))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.idleCount(KEY), 0)

    def test_protocolErrors(self) -> None:
        """
        Invalid responses fail with L{UpstreamProtocolError}, saying that a
        response had started; the connection is aborted.
        """
        for raw in [
            b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000,
        ]:
            d = self.request()
            protocol, transport = connectUpstream(self.reactor)
            protocol.dataReceived(raw)
            failure = self.failureResultOf(d, UpstreamProtocolError)
            self.assertTrue(failure.value.responseStarted)
            self.assertTrue(transport.aborted)

    def test_badChunk(self) -> None:
        """
        A malformed chunk fails the body.
        """
        d = self.request()
        protocol, transport = connectUpstream(self.reactor)
        response = self.respond(
            d, transport, protocol, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        collector = self._body(response)
        self.assertTrue(collector.failure.check(UpstreamProtocolError))
        self.assertTrue(transport.aborted)

    def test_responseTimeout(self) -> None:
        """
        No response head within C{responseTimeout} of the end of the
        request: L{ResponseTimeout}; the connection is aborted.  The time
        spent sending the body does not count.
        """
        source = StreamingSource(3)
        d = self.request(b"POST", body=source)
        protocol, transport = connectUpstream(self.reactor)
        self.reactor.advance(100)
        self.assertNoResult(d)
        source.consumer.bodyDataReceived(b"abc")
        source.consumer.bodyFinished()
        self.reactor.advance(59)
        self.assertNoResult(d)
        self.reactor.advance(1)
        failure = self.failureResultOf(d, ResponseTimeout)
        self.assertTrue(failure.value.requestSent)
        self.assertFalse(failure.value.responseStarted)
        self.assertTrue(transport.aborted)

    def test_cancel(self) -> None:
        """
        Cancelling the response L{Deferred} aborts the connection and stops
        the body source.
        """
        source = StreamingSource(3)
        d = self.request(b"POST", body=source)
        protocol, transport = connectUpstream(self.reactor)
        d.cancel()
        self.failureResultOf(d)
        self.assertTrue(transport.aborted)
        self.assertTrue(source.stopped)


class ArbitraryResponseTests(_Setup, SynchronousTestCase):
    """
    Whatever a real server sends, the client gives a response or an
    L{UpstreamError}, never an exception.
    """

    @settings(max_examples=200)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=30),
                st.sampled_from(
                    [
                        b"HTTP/1.1 200 OK\r\n",
                        b"HTTP/1.1 100 Continue\r\n\r\n",
                        b"HTTP/1.1 101 Switching Protocols\r\n",
                        b"Content-Length: 3\r\n",
                        b"Transfer-Encoding: chunked\r\n",
                        b"\r\n",
                        b"3\r\nabc\r\n0\r\n\r\n",
                        b"\n",
                    ]
                ),
            ),
            max_size=10,
        ),
        st.booleans(),
    )
    def test_arbitraryBytes(self, pieces: list[bytes], close: bool) -> None:
        """
        Arbitrary bytes in arbitrary pieces, then maybe a close.
        """
        d = self.request()
        protocol, transport = connectUpstream(self.reactor)
        outcome: list[object] = []
        d.addBoth(outcome.append)
        collector = Collector()
        for piece in pieces:
            protocol.dataReceived(piece)
            if outcome and isinstance(outcome[0], UpstreamResponse) and not collector.events:
                outcome[0].deliverBody(collector)
        if close:
            protocol.connectionLost(Failure(ConnectionDone()))
        self.reactor.advance(100)
        if outcome:
            result = outcome[0]
            if isinstance(result, Failure):
                self.assertTrue(result.check(UpstreamError), result)
            else:
                self.assertIsInstance(result, UpstreamResponse)


class _Tunnel(Protocol):
    """
    Records what a protocol taking over a connection receives.
    """
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data}.
        """
        self.chunks.append(data)


class SwitchTests(_Setup, SynchronousTestCase):
    """
    A C{101} gives the caller the connection and every byte after it.
    """

    def test_handoff(self) -> None:
        """
        The bytes after the 101 head in the same read, and those read before
        C{takeOver}, reach the new protocol first, in order; the connection
        leaves the pool.
        """
        d = self.request(
            headers=HOST + [(b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]
        )
        protocol, transport = connectUpstream(self.reactor)
        early = os.urandom(5000)
        response = self.respond(
            d, transport, protocol,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n" + early[:100],
        )
        self.assertEqual(response.status, 101)
        self.assertTrue(transport.readingPaused)
        protocol.dataReceived(early[100:])
        tunnel = _Tunnel()
        response.takeOver(tunnel)
        self.assertIs(tunnel.transport, transport)
        self.assertFalse(transport.readingPaused)
        protocol.dataReceived(b"later")
        self.assertEqual(b"".join(tunnel.chunks), early + b"later")
        self.assertEqual(self.pool.idleCount(KEY), 0)
        self.assertRaises(RuntimeError, response.takeOver, _Tunnel())
        self.reactor.advance(1000)
        self.assertFalse(transport.disconnecting)
