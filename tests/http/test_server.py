"""
Tests for L{ztnagw.http.server}.
"""

from __future__ import annotations

import os

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol, IPushProducer, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from ztnagw.http.errors import HTTPParseError
from ztnagw.http.headers import Headers, InvalidHeader
from ztnagw.http.limits import ServerLimits
from ztnagw.http.server import BodyRelay, HTTPServerFactory, HTTPServerProtocol, Request

from tests.http.helpers import (
    Collector,
    RecordingHandler,
    TrackingTransport,
    answerOK,
    connectServer,
    statusOf,
)

GET = b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n"


def _get(path: bytes) -> bytes:
    """
    A GET request head for C{/path}.
    """
    return GET % path


class KeepAliveTests(SynchronousTestCase):
    """
    Persistent connections follow the version and C{Connection}.
    """

    def test_http11Persistent(self) -> None:
        """
        HTTP/1.1 connections stay open across requests.
        """
        handler = RecordingHandler(answerOK)
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b"a"))
        protocol.dataReceived(_get(b"b"))
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n/a"
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n/b",
        )
        self.assertFalse(transport.disconnecting)
        self.assertEqual(protocol.connection.requestsServed, 2)

    def test_connectionClose(self) -> None:
        """
        C{Connection: close} is answered with C{Connection: close} and a
        close; bytes after it are not parsed.
        """
        handler = RecordingHandler(answerOK)
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(
            b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" + _get(b"b")
        )
        self.assertEqual(len(handler.requests), 1)
        self.assertIn(b"\r\nConnection: close\r\n", transport.value())
        clock.advance(2)
        self.assertTrue(transport.disconnecting)

    def test_http10(self) -> None:
        """
        HTTP/1.0 closes unless the client asked for keep-alive, which is
        then confirmed.
        """
        handler = RecordingHandler(answerOK)
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertIn(b"\r\nConnection: keep-alive\r\n", transport.value())
        self.assertFalse(transport.disconnecting)
        transport.clear()
        protocol.dataReceived(b"GET /b HTTP/1.0\r\n\r\n")
        self.assertIn(b"\r\nConnection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_handlerAsksClose(self) -> None:
        """
        A handler's C{Connection: close} is honoured (and written once).
        """
        handler = RecordingHandler(
            lambda r: r.response.respond(200, b"OK", [(b"Connection", b"Close")], b"x")
        )
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b"a"))
        self.assertEqual(transport.value().count(b"Connection"), 1)
        self.assertIn(b"\r\nConnection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_nodelay(self) -> None:
        """
        C{TCP_NODELAY} is set on TCP transports.
        """
        @implementer(ITCPTransport)
        class TCPTransport(TrackingTransport):
            noDelay = False

            def setTcpNoDelay(self, enabled: bool) -> None:
                """
                Record the setting.
                """
                self.noDelay = enabled

        transport = TCPTransport()
        protocol = HTTPServerFactory(RecordingHandler(), Clock()).buildProtocol(None)
        protocol.makeConnection(transport)
        self.assertTrue(transport.noDelay)


class PipeliningTests(SynchronousTestCase):
    """
    Pipelined requests are served one at a time, in order.
    """

    def test_twoAndThreeInOneWrite(self) -> None:
        """
        Requests arriving together are answered in order, each only after
        the previous response finished.
        """
        for count in (2, 3):
            handler = RecordingHandler()
            protocol, transport, clock = connectServer(handler)
            protocol.dataReceived(b"".join(_get(b"%d" % i) for i in range(count)))
            for i in range(count):
                self.assertEqual(len(handler.requests), i + 1)
                self.assertEqual(handler.requests[i].path, b"/%d" % i)
                handler.requests[i].response.respond(200, b"OK", (), b"%d" % i)
            self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), count)
            self.assertTrue(transport.value().endswith(b"%d" % (count - 1)))

    def test_synchronousManyRequests(self) -> None:
        """
        Many pipelined requests answered synchronously do not recurse.
        """
        handler = RecordingHandler(answerOK)
        protocol, transport, clock = connectServer(
            handler, ServerLimits(maxPipelineBuffer=10_000_000)
        )
        protocol.dataReceived(_get(b"x") * 3000)
        self.assertEqual(len(handler.requests), 3000)
        self.assertEqual(transport.value().count(b"200 OK"), 3000)

    def test_pipelineBufferBounded(self) -> None:
        """
        Beyond C{maxPipelineBuffer}, reading pauses until the response is
        finished.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler, ServerLimits(maxPipelineBuffer=100))
        protocol.dataReceived(_get(b"a") + _get(b"b") * 2)
        self.assertFalse(transport.readingPaused)
        protocol.dataReceived(_get(b"c") * 3)
        self.assertTrue(transport.readingPaused)
        handler.requests[0].response.respond(200, b"OK")
        self.assertEqual(len(handler.requests), 2)
        # Four requests (about 120 bytes) still wait behind the second.
        self.assertTrue(transport.readingPaused)
        handler.requests[1].response.respond(200, b"OK")
        handler.requests[2].response.respond(200, b"OK")
        self.assertEqual(len(handler.requests), 4)
        self.assertFalse(transport.readingPaused)


class FramingTests(SynchronousTestCase):
    """
    The response framing is chosen by the layer.
    """

    def _one(self, request: bytes, answer) -> bytes:
        """
        Serve one request with C{answer}; return the output.
        """
        protocol, transport, clock = connectServer(RecordingHandler(answer))
        protocol.dataReceived(request)
        return transport.value()

    def test_head(self) -> None:
        """
        A response to HEAD has a Content-Length but never a body.
        """
        def answer(r: Request) -> None:
            r.response.writeHead(200, b"OK", [], length=10)
            r.response.write(b"0123456789")
            r.response.finish()

        self.assertEqual(
            self._one(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", answer),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
        )

    def test_noBodyStatuses(self) -> None:
        """
        204 gets neither length nor body; 304 keeps a given length only.
        """
        def answer(status: int):
            def a(r: Request) -> None:
                r.response.writeHead(status, b"X", [], length=0 if status == 204 else 5)
                r.response.write(b"hello")
                r.response.finish()
            return a

        self.assertEqual(self._one(_get(b""), answer(204)), b"HTTP/1.1 204 X\r\n\r\n")
        self.assertEqual(
            self._one(_get(b""), answer(304)), b"HTTP/1.1 304 X\r\nContent-Length: 5\r\n\r\n"
        )

    def test_chunkedAndCloseDelimited(self) -> None:
        """
        Unknown length: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
        """
        def answer(r: Request) -> None:
            r.response.writeHead(200, b"OK", [(b"Content-Length", b"99"), (b"X", b"y")])
            r.response.write(b"abc")
            r.response.write(b"")
            r.response.write(b"de")
            r.response.finish()

        self.assertEqual(
            self._one(_get(b""), answer),
            b"HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        self.assertEqual(
            self._one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", answer),
            b"HTTP/1.1 200 OK\r\nX: y\r\nConnection: close\r\n\r\nabcde",
        )

    def test_lengthEnforced(self) -> None:
        """
        Writing more or less than the declared length aborts the connection
        (the client sees truncation) and raises.
        """
        for body in (b"toolong", b"ab"):
            protocol, transport, clock = connectServer(RecordingHandler())
            protocol.dataReceived(_get(b""))
            [request] = protocol._handler.requests
            request.response.writeHead(200, b"OK", [], length=3)
            if len(body) > 3:
                self.assertRaises(ValueError, request.response.write, body)
            else:
                request.response.write(body)
                self.assertRaises(ValueError, request.response.finish)
            self.assertTrue(transport.aborted)

    def test_injectionRefused(self) -> None:
        """
        Invalid fields or reason phrases raise before anything is written.
        """
        protocol, transport, clock = connectServer(RecordingHandler())
        protocol.dataReceived(_get(b""))
        [request] = protocol._handler.requests
        for args in [
            (200, b"OK", [(b"X", b"a\r\nSet-Cookie: evil")]),
            (200, b"OK", [(b"X\r\n", b"a")]),
            (200, b"OK\r\nX: y", []),
            (99, b"OK", []),
            (101, b"Switching", []),
        ]:
            self.assertRaises((ValueError, InvalidHeader), request.response.writeHead, *args)
        self.assertEqual(transport.value(), b"")
        request.response.writeHead(200, b"OK", Headers([(b"A", b"b")]), length=0)
        request.response.finish()
        self.assertRaises(RuntimeError, request.response.finish)
        self.assertEqual(
            transport.value(), b"HTTP/1.1 200 OK\r\nA: b\r\nContent-Length: 0\r\n\r\n"
        )


class BodyTests(SynchronousTestCase):
    """
    Request bodies stream to the handler's consumer with backpressure.
    """

    def test_streamingWithPause(self) -> None:
        """
        The consumer gets the body as it arrives; pausing it pauses reading
        from the client, resuming resumes it and delivers what was read
        meanwhile.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        [request] = handler.requests
        self.assertEqual(request.bodyLength, 10)
        collector = Collector()
        request.deliverBody(collector)
        self.assertEqual(collector.data, b"ab")
        collector.producer.pauseProducing()
        self.assertTrue(transport.readingPaused)
        protocol.dataReceived(b"cd")  # a TLS record already decrypted
        self.assertEqual(collector.data, b"ab")
        collector.producer.resumeProducing()
        self.assertFalse(transport.readingPaused)
        self.assertEqual(collector.data, b"abcd")
        protocol.dataReceived(b"efghij" + _get(b"next"))
        self.assertEqual(collector.data, b"abcdefghij")
        self.assertTrue(collector.finished)
        self.assertEqual(len(handler.requests), 1)
        request.response.respond(200, b"OK")
        self.assertEqual(len(handler.requests), 2)

    def test_chunkedBodyAndTrailers(self) -> None:
        """
        A chunked body is decoded; its trailers are kept on the request.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
        )
        [request] = handler.requests
        self.assertIsNone(request.bodyLength)
        collector = Collector()
        request.deliverBody(collector)
        self.assertEqual((collector.data, collector.finished), (b"abcde", True))
        self.assertEqual(request.trailers, Headers([(b"X-Sum", b"5")]))

    def test_bufferedBeforeDelivery(self) -> None:
        """
        Body bytes arriving before C{deliverBody} are kept, up to
        C{bodyBufferSize}; then reading pauses until the handler takes them.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler, ServerLimits(bodyBufferSize=8))
        protocol.dataReceived(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\n")
        protocol.dataReceived(b"0123")
        self.assertFalse(transport.readingPaused)
        protocol.dataReceived(b"4567")
        self.assertTrue(transport.readingPaused)
        collector = Collector()
        handler.requests[0].deliverBody(collector)
        self.assertFalse(transport.readingPaused)
        self.assertEqual(collector.data, b"01234567")

    def test_emptyBody(self) -> None:
        """
        A request without a body delivers an empty, finished body.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b""))
        collector = Collector()
        handler.requests[0].deliverBody(collector)
        self.assertEqual(collector.events, ["started", "finished"])
        self.assertRaises(RuntimeError, handler.requests[0].deliverBody, Collector())

    def test_disconnectMidBody(self) -> None:
        """
        The client going away mid-body fails the body and the response's
        C{notifyFinish}.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        [request] = handler.requests
        collector = Collector()
        request.deliverBody(collector)
        finished = request.response.notifyFinish()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(collector.failure.check(ConnectionDone))
        self.failureResultOf(finished, ConnectionDone)
        request.response.writeHead(200, b"OK")  # does nothing once gone
        request.response.finish()

    def test_badChunkFailsBody(self) -> None:
        """
        A malformed chunk fails the body and is answered with 400.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX"
        )
        collector = Collector()
        handler.requests[0].deliverBody(collector)
        self.assertTrue(collector.failure.check(HTTPParseError))
        self.assertEqual(statusOf(transport.value()), 400)

    def test_chunkedBodyLimit(self) -> None:
        """
        A chunked body beyond C{maxBodyLength} is refused with 413.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler, ServerLimits(maxBodyLength=4))
        protocol.dataReceived(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n"
        )
        self.assertEqual(statusOf(transport.value()), 413)

    def test_smallUnreadBodyDiscarded(self) -> None:
        """
        A response sent without reading a small body keeps the connection:
        the rest of the body is read and discarded, then the next request
        is served.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc")
        handler.requests[0].response.respond(403, b"Forbidden")
        self.assertNotIn(b"Connection: close", transport.value())
        protocol.dataReceived(b"def" + _get(b"n"))
        self.assertEqual(len(handler.requests), 2)
        self.assertEqual(handler.requests[1].path, b"/n")

    def test_largeUnreadBodyCloses(self) -> None:
        """
        A response sent without reading a large or chunked body closes the
        connection (after lingering).
        """
        for head in [
            b"Content-Length: 100000",
            b"Transfer-Encoding: chunked",
        ]:
            handler = RecordingHandler()
            protocol, transport, clock = connectServer(handler)
            protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\n" + head + b"\r\n\r\n")
            handler.requests[0].response.respond(413, b"Too Large")
            self.assertIn(b"Connection: close", transport.value())
            protocol.dataReceived(b"x" * 1000)
            self.assertFalse(transport.disconnecting)
            clock.advance(ServerLimits().lingerTimeout)
            self.assertTrue(transport.disconnecting)


class ContinueTests(SynchronousTestCase):
    """
    C{100 Continue} is sent only when the handler starts reading the body.
    """

    REQUEST = b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"

    def test_sentOnDeliverBody(self) -> None:
        """
        C{deliverBody} sends C{100 Continue}.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(self.REQUEST)
        self.assertEqual(transport.value(), b"")
        collector = Collector()
        handler.requests[0].deliverBody(collector)
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        protocol.dataReceived(b"abc")
        self.assertTrue(collector.finished)

    def test_notSentWhenAnsweredFirst(self) -> None:
        """
        A handler that answers without reading the body sends no 100, and
        the connection closes after the response.
        """
        handler = RecordingHandler(lambda r: r.response.respond(401, b"Unauthorized"))
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(self.REQUEST)
        self.assertNotIn(b"100 Continue", transport.value())
        self.assertIn(b"Connection: close", transport.value())
        clock.advance(ServerLimits().lingerTimeout)
        self.assertTrue(transport.disconnecting)

    def test_noBodyTimeoutBeforeContinue(self) -> None:
        """
        The body timer does not run while the client waits for the 100.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(self.REQUEST)
        clock.advance(ServerLimits().bodyTimeout * 3)
        self.assertFalse(transport.disconnecting)


class TimeoutTests(SynchronousTestCase):
    """
    Timeouts run on the injected clock.
    """

    def test_idle(self) -> None:
        """
        An idle connection closes quietly, before and between requests.
        """
        for requests in (0, 1):
            protocol, transport, clock = connectServer(RecordingHandler(answerOK))
            if requests:
                protocol.dataReceived(_get(b""))
            clock.advance(59)
            self.assertFalse(transport.disconnecting)
            clock.advance(1)
            self.assertTrue(transport.disconnecting)
            self.assertNotIn(b"408", transport.value())

    def test_slowHead(self) -> None:
        """
        A head not complete within C{headTimeout} of its first byte gets 408,
        however steadily its bytes trickle in.
        """
        protocol, transport, clock = connectServer(RecordingHandler(answerOK))
        clock.advance(30)
        protocol.dataReceived(b"GET / HT")
        for i in range(19):
            clock.advance(1)
            protocol.dataReceived(b"T")
        self.assertEqual(transport.value(), b"")
        clock.advance(1)
        self.assertEqual(statusOf(transport.value()), 408)

    def test_slowBody(self) -> None:
        """
        No body byte for C{bodyTimeout}: 408 (or an abort once the response
        started); time paused by the consumer does not count.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nab")
        collector = Collector()
        handler.requests[0].deliverBody(collector)
        collector.producer.pauseProducing()
        clock.advance(100)
        self.assertFalse(transport.disconnecting)
        collector.producer.resumeProducing()
        clock.advance(29)
        protocol.dataReceived(b"c")
        clock.advance(29)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertEqual(statusOf(transport.value()), 408)
        self.assertTrue(collector.failure.check(HTTPParseError))

        protocol, transport, clock = connectServer(RecordingHandler())
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n")
        protocol._handler.requests[0].response.writeHead(200, b"OK")
        clock.advance(30)
        self.assertTrue(transport.aborted)

    def test_closeTimeout(self) -> None:
        """
        A closing connection whose client does not read is aborted after
        C{closeTimeout}.
        """
        protocol, transport, clock = connectServer(RecordingHandler(answerOK))
        protocol.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertTrue(transport.disconnecting)
        clock.advance(15)
        self.assertTrue(transport.aborted)


class ErrorTests(SynchronousTestCase):
    """
    Errors are answered cleanly and close the connection.
    """

    def test_handlerException(self) -> None:
        """
        A handler that raises gets a 500 (logged), then a close.
        """
        def answer(r: Request) -> None:
            raise ZeroDivisionError()

        protocol, transport, clock = connectServer(RecordingHandler(answer))
        protocol.dataReceived(_get(b""))
        self.assertEqual(statusOf(transport.value()), 500)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_customErrorPages(self) -> None:
        """
        The error page renderer is injectable.
        """
        class Pages:
            def renderError(self, status: int, reason: bytes, detail: str) -> tuple[bytes, bytes]:
                """
                See L{ztnagw.http.interfaces.IErrorPageRenderer.renderError}.
                """
                return b"text/html", b"<p>%d</p>" % status

        protocol = HTTPServerProtocol(RecordingHandler(), Clock(), errorPages=Pages())
        transport = TrackingTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertEqual(
            transport.value(),
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n"
            b"Content-Length: 10\r\nX-Content-Type-Options: nosniff\r\n"
            b"Connection: close\r\n\r\n<p>400</p>",
        )

    def test_abort(self) -> None:
        """
        C{abort} closes at once and fails C{notifyFinish}.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b""))
        response = handler.requests[0].response
        finished = response.notifyFinish()
        response.writeHead(200, b"OK")
        response.write(b"partial")
        response.abort()
        self.assertTrue(transport.aborted)
        self.failureResultOf(finished)

    def test_notifyFinish(self) -> None:
        """
        C{notifyFinish} fires when the response is finished.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b""))
        response = handler.requests[0].response
        finished = response.notifyFinish()
        self.assertNoResult(finished)
        response.respond(200, b"OK")
        self.assertIsNone(self.successResultOf(finished))
        self.assertIsNone(self.successResultOf(response.notifyFinish()))


class _Tunnel(Protocol):
    """
    Records what a protocol taking over a connection receives.
    """
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data}.
        """
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """
        Record the end.
        """
        self.lost = True


class TakeOverTests(SynchronousTestCase):
    """
    An Upgrade request's connection is handed over with every byte the
    client sent after the head, in order.
    """

    HEAD = (
        b"GET /tcp?address=10.0.0.1&port=22 HTTP/1.1\r\nHost: gw\r\n"
        b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
    )

    def _check(self, early: bytes, later: bytes, asynchronous: bool) -> None:
        """
        Check one takeover with C{early} bytes behind the head and C{later} after it.
        """
        tunnel = _Tunnel()

        def answer(r: Request) -> None:
            r.response.writeInformational(
                101, b"Switching Protocols",
                [(b"Upgrade", b"tcp-forwarding/1.0"), (b"Connection", b"Upgrade")],
            )
            r.takeOver(tunnel)

        handler = RecordingHandler(None if asynchronous else answer)
        protocol, transport, clock = connectServer(handler)
        data = self.HEAD + early
        # The head and the early bytes arrive in arbitrary reads.
        for i in range(0, len(data), 7919):
            protocol.dataReceived(data[i : i + 7919])
        self.assertEqual(len(handler.requests), 1)
        if asynchronous:
            self.assertTrue(transport.readingPaused)
            clock.advance(5)
            answer(handler.requests[0])
        self.assertFalse(transport.readingPaused)
        self.assertIs(tunnel.transport, transport)
        for i in range(0, len(later), 65536):
            protocol.dataReceived(later[i : i + 65536])
        received = b"".join(tunnel.chunks)
        self.assertEqual(len(received), len(early) + len(later))
        self.assertEqual(received, early + later)
        self.assertTrue(
            transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        )
        clock.advance(1000)
        self.assertFalse(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(tunnel.lost)

    def test_earlyBytes(self) -> None:
        """
        10 B, 100 KB, and 100 KB then 10 MB, with a synchronous and an
        asynchronous takeover: nothing lost, nothing duplicated.
        """
        for early, later in [
            (os.urandom(10), b""),
            (os.urandom(100_000), b""),
            (os.urandom(100_000), os.urandom(10_000_000)),
        ]:
            for asynchronous in (False, True):
                self._check(early, later, asynchronous)

    def test_refusedUpgradeCloses(self) -> None:
        """
        An Upgrade answered with a final response closes the connection:
        what followed the head is never parsed as a request.
        """
        handler = RecordingHandler(lambda r: r.response.respond(403, b"Forbidden", (), b"no"))
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(self.HEAD + _get(b"smuggled"))
        self.assertEqual(len(handler.requests), 1)
        self.assertIn(b"Connection: close", transport.value())
        clock.advance(2)
        self.assertTrue(transport.disconnecting)

    def test_halfCloseReachesTunnel(self) -> None:
        """
        After a takeover, the peer's half-close (and ours) reach a
        half-closeable protocol as such, and the connection stays open for
        the other direction; a protocol that is not half-closeable gets the
        connection closed instead.
        """

        @implementer(IHalfCloseableProtocol)
        class HalfCloseable(_Tunnel):
            readLost = writeLost = False

            def readConnectionLost(self) -> None:
                self.readLost = True

            def writeConnectionLost(self) -> None:
                self.writeLost = True

        for tunnel, halfCloseable in ((HalfCloseable(), True), (_Tunnel(), False)):
            handler = RecordingHandler(lambda r, t=tunnel: r.takeOver(t))
            protocol, transport, clock = connectServer(handler)
            protocol.dataReceived(self.HEAD)
            protocol.readConnectionLost()
            protocol.writeConnectionLost()
            if halfCloseable:
                self.assertTrue(tunnel.readLost)
                self.assertTrue(tunnel.writeLost)
                self.assertFalse(transport.disconnecting)
            else:
                self.assertTrue(transport.disconnecting)

    def test_halfCloseBeforeTakeOver(self) -> None:
        """
        A half-close by an HTTP client ends the connection once what was
        written has been sent.
        """
        handler = RecordingHandler(lambda r: r.response.respond(200, b"OK", (), b"hi"))
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b""))
        protocol.readConnectionLost()
        self.assertIn(b"hi", transport.value())
        self.assertTrue(transport.disconnecting)

    def test_takeOverRules(self) -> None:
        """
        Only the current Upgrade request can take over, and not after a
        final response head.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b""))
        self.assertRaises(RuntimeError, handler.requests[0].takeOver, _Tunnel())
        self.assertRaises(ValueError, handler.requests[0].response.writeInformational, 101, b"S")


class BodyRelayTests(SynchronousTestCase):
    """
    L{BodyRelay} relays a body into a response with backpressure.
    """

    def _relay(self):
        """
        A request answered through a L{BodyRelay}: its transport, the relay and the body producer.
        """
        handler = RecordingHandler()
        protocol, transport, clock = connectServer(handler)
        protocol.dataReceived(_get(b""))
        response = handler.requests[0].response
        response.writeHead(200, b"OK", [], length=6)
        producer = _Producer()
        relay = BodyRelay(response)
        relay.bodyStarted(producer)
        return transport, relay, producer

    def test_relay(self) -> None:
        """
        The body's producer is registered with the client transport while
        the body flows, and unregistered when it ends.
        """
        transport, relay, producer = self._relay()
        self.assertIs(transport.producer, producer)
        relay.bodyDataReceived(b"abc")
        relay.bodyDataReceived(b"def")
        relay.bodyFinished()
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.value().endswith(b"\r\n\r\nabcdef"))
        self.assertFalse(transport.aborted)

    def test_failure(self) -> None:
        """
        A failed body aborts the response: the client sees truncation.
        """
        transport, relay, producer = self._relay()
        relay.bodyDataReceived(b"abc")
        relay.bodyFailed(Failure(ConnectionDone()))
        self.assertTrue(transport.aborted)


@implementer(IPushProducer)
class _Producer:
    """
    A push producer that does nothing.
    """
    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        pass

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        pass

    def stopProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        pass
