"""
Real-socket tests for L{ztnagw.http}: the server and the upstream pool
talking through TCP on 127.0.0.1, large streamed bodies with bounded
buffering, a lossless takeover, and curl as an independent client.
"""

from __future__ import annotations

import os
import shutil

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SkipTest, TestCase
from zope.interface import implementer

from ztnagw.http.client import UpstreamKey
from ztnagw.http.interfaces import IBodyConsumer, IBodySource
from ztnagw.http.pool import BytesBody, UpstreamPool
from ztnagw.http.server import HTTPServerFactory, Request

from tests.http.helpers import Collector, ProxyHandler, RecordingHandler

MiB = 1024 * 1024
BIG = 64 * MiB
# Generously above what loopback socket buffers can hold (a few MiB each
# way), far below the body size: buffering the whole body would fail.
MAX_IN_FLIGHT = 24 * MiB


@implementer(IBodySource, IPushProducer)
class GeneratedBody:
    """
    A body of C{size} bytes produced only while its consumer is not paused.
    """

    def __init__(self, size: int, piece: int = 65536) -> None:
        """
        Start with nothing received or produced.
        """
        self.bodyLength = size
        self._left = size
        self._piece = b"z" * piece
        self._paused = False
        self._scheduled = False
        self._consumer = None

    def deliverBody(self, consumer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodySource.deliverBody}.
        """
        self._consumer = consumer
        consumer.bodyStarted(self)
        self._schedule()

    def _schedule(self) -> None:
        """
        Produce on the next reactor turn, once.
        """
        if not self._scheduled:
            self._scheduled = True
            reactor.callLater(0, self._produce)

    def _produce(self) -> None:
        """
        Write pieces until paused or done.
        """
        self._scheduled = False
        while not self._paused and self._left and self._consumer is not None:
            piece = self._piece[: self._left]
            self._left -= len(piece)
            self._consumer.bodyDataReceived(piece)
        if not self._left and self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.bodyFinished()

    def pauseProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.pauseProducing}.
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.resumeProducing}.
        """
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        """
        See L{twisted.internet.interfaces.IPushProducer.stopProducing}.
        """
        self._consumer = None


@implementer(IBodyConsumer)
class SlowConsumer:
    """
    Counts a body, pausing for C{pause} seconds after each MiB.
    """

    def __init__(self, pause: float = 0.02) -> None:
        """
        Start with nothing received or produced.
        """
        self.received = 0
        self.done: Deferred[int] = Deferred()
        self._pause = pause
        self._producer = None

    def bodyStarted(self, producer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyStarted}.
        """
        self._producer = producer

    def bodyDataReceived(self, data: bytes) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyDataReceived}.
        """
        before = self.received
        self.received += len(data)
        if self.received // MiB != before // MiB:
            self._producer.pauseProducing()
            reactor.callLater(self._pause, self._producer.resumeProducing)

    def bodyFinished(self) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFinished}.
        """
        self.done.callback(self.received)

    def bodyFailed(self, reason) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer.bodyFailed}.
        """
        self.done.errback(reason)


class _Servers:
    """
    Listening servers and a pool, all cleaned up after the test.
    """

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        self.protocols: list = []
        self.pool = UpstreamPool(reactor)

    def listen(self, handler) -> int:
        """
        Listen with C{handler} on 127.0.0.1; return the port.
        """
        factory = HTTPServerFactory(handler, reactor)
        build = factory.buildProtocol

        def buildProtocol(addr):
            """
            Build the connection's protocol.
            """
            protocol = build(addr)
            self.protocols.append(protocol)
            return protocol

        factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def tearDown(self) -> Deferred[None]:
        """
        Close every connection left open.
        """
        self.pool.closeIdle()
        for protocol in self.protocols:
            if protocol.transport is not None and protocol.transport.connected:
                protocol.transport.abortConnection()
        return deferLater(reactor, 0.05, lambda: None)


class ProxyTests(_Servers, TestCase):
    """
    A client pool, a proxy and a backend, over real TCP.
    """

    timeout = 120

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        _Servers.setUp(self)
        self.backendPool = UpstreamPool(reactor)
        self.addCleanup(self.backendPool.closeIdle)

    def _proxy(self, backend, **counters) -> UpstreamKey:
        """
        A backend behind a proxy; return the proxy's key.
        """
        backendKey = UpstreamKey("127.0.0.1", self.listen(backend))
        return UpstreamKey(
            "127.0.0.1", self.listen(ProxyHandler(self.backendPool, backendKey, **counters))
        )

    @inlineCallbacks
    def test_keepAliveThroughProxy(self):
        """
        Requests with and without bodies go through the proxy and back, on
        reused connections.
        """
        def backend(request: Request) -> None:
            collector = SlowConsumer()
            chunks: list[bytes] = []
            collector.bodyDataReceived = chunks.append  # type: ignore[method-assign]
            request.deliverBody(collector)

            def respond(ignored: object) -> None:
                response = request.response
                response.writeHead(200, b"OK", [(b"X-Path", request.path)])
                response.write(b"".join(chunks))
                response.write(b"!")
                response.finish()

            collector.done.addCallback(respond)

        key = self._proxy(RecordingHandler(backend))
        for i in range(5):
            body = BytesBody(b"body %d" % i) if i % 2 else None
            response = yield self.pool.request(key, b"POST", b"/r/%d" % i, [(b"Host", b"app")], body)
            collector = Collector()
            response.deliverBody(collector)
            yield deferLater(reactor, 0.01, lambda: None)
            self.assertEqual(response.headers.get(b"x-path"), b"/r/%d" % i)
            self.assertEqual(collector.data, (b"body %d" % i if i % 2 else b"") + b"!")
            self.assertTrue(collector.finished)
        self.assertEqual(self.pool.idleCount(key), 1)
        self.assertEqual(len(self.protocols), 2)

    @inlineCallbacks
    def test_bigUpload(self):
        """
        A 64 MiB upload to a slow backend streams: the proxy never holds
        more than socket buffers' worth of it.
        """
        consumers: list[SlowConsumer] = []
        inFlight = {"proxy": 0, "max": 0}

        def backend(request: Request) -> None:
            consumer = SlowConsumer()
            consumers.append(consumer)
            request.deliverBody(consumer)
            consumer.done.addCallback(
                lambda n: request.response.respond(200, b"OK", (), b"%d" % n)
            )

        def proxyGot(n: int) -> None:
            inFlight["proxy"] += n
            backendGot = consumers[0].received if consumers else 0
            inFlight["max"] = max(inFlight["max"], inFlight["proxy"] - backendGot)

        key = self._proxy(RecordingHandler(backend), onRequestBody=proxyGot)
        response = yield self.pool.request(key, b"PUT", b"/up", [(b"Host", b"app")], GeneratedBody(BIG))
        collector = Collector()
        response.deliverBody(collector)
        yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(collector.data, b"%d" % BIG)
        self.assertLess(inFlight["max"], MAX_IN_FLIGHT)

    @inlineCallbacks
    def test_bigDownload(self):
        """
        A 64 MiB chunked download to a slow client streams: the proxy never
        holds more than socket buffers' worth of it.
        """
        def backend(request: Request) -> None:
            request.response.writeHead(200, b"OK")
            body = GeneratedBody(BIG)

            @implementer(IBodyConsumer)
            class Writer:
                def bodyStarted(self, producer) -> None:
                    """
                    See L{ztnagw.http.interfaces.IBodyConsumer.bodyStarted}.
                    """
                    request.response.registerProducer(producer, True)

                def bodyDataReceived(self, data: bytes) -> None:
                    """
                    See L{ztnagw.http.interfaces.IBodyConsumer.bodyDataReceived}.
                    """
                    request.response.write(data)

                def bodyFinished(self) -> None:
                    """
                    See L{ztnagw.http.interfaces.IBodyConsumer.bodyFinished}.
                    """
                    request.response.unregisterProducer()
                    request.response.finish()

            body.deliverBody(Writer())

        client = SlowConsumer()
        inFlight = {"proxy": 0, "max": 0}

        def proxyGot(n: int) -> None:
            inFlight["proxy"] += n
            inFlight["max"] = max(inFlight["max"], inFlight["proxy"] - client.received)

        key = self._proxy(RecordingHandler(backend), onResponseBody=proxyGot)
        response = yield self.pool.request(key, b"GET", b"/down", [(b"Host", b"app")])
        self.assertIsNone(response.length)
        response.deliverBody(client)
        received = yield client.done
        self.assertEqual(received, BIG)
        self.assertLess(inFlight["max"], MAX_IN_FLIGHT)


class _Echo(Protocol):
    """
    Sends back whatever it receives.
    """
    def dataReceived(self, data: bytes) -> None:
        """
        Handle received bytes.
        """
        self.transport.write(data)


class _TunnelClient(Protocol):
    """
    Sends an Upgrade request with early data in the same write, then more
    after the 101; collects what comes back.
    """

    HEAD = (
        b"GET /tcp?address=db&port=5432 HTTP/1.1\r\nHost: gw\r\n"
        b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
    )

    def __init__(self, early: bytes, later: bytes) -> None:
        """
        Start with nothing received or produced.
        """
        self.early = early
        self.later = later
        self.buffer = b""
        self.switched = False
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        """
        The connection is up: send what this side sends first.
        """
        self.transport.write(self.HEAD + self.early)

    def dataReceived(self, data: bytes) -> None:
        """
        Handle received bytes.
        """
        self.buffer += data
        if not self.switched:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            assert self.buffer.startswith(b"HTTP/1.1 101 "), self.buffer[:100]
            self.buffer = self.buffer[end + 4 :]
            self.switched = True
            self.transport.write(self.later)
        if len(self.buffer) >= len(self.early) + len(self.later):
            self.transport.loseConnection()
            self.done.callback(self.buffer)


class TakeOverSocketTests(_Servers, TestCase):
    """
    A takeover over real TCP loses no early byte.
    """

    timeout = 60

    @inlineCallbacks
    def test_earlyBytesEchoed(self):
        """
        100 KB sent in the same write as the head, then 10 MB after the
        101, come back intact through an echo tunnel taken over after a
        delay (as after connecting upstream).
        """
        def answer(request: Request) -> None:
            def switch() -> None:
                request.response.writeInformational(
                    101, b"Switching Protocols",
                    [(b"Upgrade", b"tcp-forwarding/1.0"), (b"Connection", b"Upgrade")],
                )
                request.takeOver(_Echo())

            reactor.callLater(0.05, switch)

        port = self.listen(RecordingHandler(answer))
        early, later = os.urandom(100_000), os.urandom(10_000_000)
        from twisted.internet.protocol import ClientCreator

        client = yield ClientCreator(reactor, _TunnelClient, early, later).connectTCP("127.0.0.1", port)
        echoed = yield client.done
        self.assertEqual(len(echoed), len(early) + len(later))
        self.assertEqual(echoed, early + later)


class CurlTests(_Servers, TestCase):
    """
    curl, an independent HTTP client, talks to the server.
    """

    timeout = 60

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        _Servers.setUp(self)
        if shutil.which("curl") is None:
            raise SkipTest("curl is not installed")

    @inlineCallbacks
    def test_getAndExpectContinue(self):
        """
        A GET, then a 2 MB POST (curl sends C{Expect: 100-continue}) on the
        same connection.
        """
        def answer(request: Request) -> None:
            collector = Collector()
            request.deliverBody(collector)

            def respond() -> None:
                request.response.respond(
                    200, b"OK", [(b"Content-Type", b"text/plain")],
                    b"%s %s %d\n" % (request.method, request.path, len(collector.data)),
                )

            if collector.finished:
                respond()
            else:
                # Wait for the body to end, then answer.
                poll = lambda: respond() if collector.finished else reactor.callLater(0.01, poll)
                reactor.callLater(0.01, poll)

        port = self.listen(RecordingHandler(answer))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"p" * 2_000_000)
        url = f"http://127.0.0.1:{port}"
        out, err, code = yield getProcessOutputAndValue(
            "curl",
            ["-sS", "-i", f"{url}/first", "--next", "-sS", "-i",
             "--data-binary", f"@{path}", f"{url}/second"],
            env=os.environ,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"HTTP/1.1 100 Continue\r\n", out)
        self.assertIn(b"GET /first 0\n", out)
        self.assertIn(b"POST /second 2000000\n", out)
        self.assertEqual(len(self.protocols), 1)


class TLSTests(_Servers, TestCase):
    """
    The layer over TLS (C{TLSMemoryBIOFactory} on both sides), as the
    gateway runs it: the pool's TLS keys, the client certificate visible to
    the handler, and a lossless takeover inside TLS.
    """

    timeout = 60

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        _Servers.setUp(self)
        from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS

        from tests.support.pki import makeCA, makeDevice, makeServer

        ca = makeCA()
        server = makeServer(ca, names=("gw.test",))
        device = makeDevice(ca, "0123456789ABCDEF0123456789ABCDEF")
        caCert = Certificate.loadPEM(ca.certificatePem())
        self.serverOptions = PrivateCertificate.loadPEM(server.pem()).options(caCert)
        self.clientOptions = optionsForClientTLS(
            "gw.test",
            trustRoot=caCert,
            clientCertificate=PrivateCertificate.loadPEM(device.pem()),
        )

    def listenTLS(self, handler) -> UpstreamKey:
        """
        Listen over TLS with C{handler}; return the pool key to reach it.
        """
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = HTTPServerFactory(handler, reactor)
        build = factory.buildProtocol

        def buildProtocol(addr):
            """
            Build the connection's protocol.
            """
            protocol = build(addr)
            self.protocols.append(protocol)
            return protocol

        factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        port = reactor.listenTCP(
            0, TLSMemoryBIOFactory(self.serverOptions, False, factory), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        return UpstreamKey("127.0.0.1", port.getHost().port, self.clientOptions)

    @inlineCallbacks
    def test_requestsAndPeerCertificate(self):
        """
        Keep-alive requests over mTLS; the handler reads the device
        certificate from the connection's transport; C{TCP_NODELAY} reaches
        the socket under the TLS layer.
        """
        seen = []

        def answer(request: Request) -> None:
            certificate = request.connection.transport.getPeerCertificate()
            seen.append(certificate.get_subject().CN)
            request.response.respond(200, b"OK", (), request.path)

        key = self.listenTLS(RecordingHandler(answer))
        for i in range(3):
            response = yield self.pool.request(key, b"GET", b"/%d" % i, [(b"Host", b"gw.test")])
            collector = Collector()
            response.deliverBody(collector)
            yield deferLater(reactor, 0.01, lambda: None)
            self.assertEqual(collector.data, b"/%d" % i)
        self.assertEqual(seen, ["0123456789ABCDEF0123456789ABCDEF"] * 3)
        self.assertEqual(len(self.protocols), 1)
        import socket

        # The TLS wrapper's own transport is the TCP connection.
        handle = self.protocols[0].transport.transport.getHandle()
        self.assertEqual(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1)

    @inlineCallbacks
    def test_takeOverInsideTLS(self):
        """
        100 KB sent in the same TLS write as an Upgrade head, then 1 MB after
        the 101, are echoed intact by a tunnel taken over after a delay.
        """
        from twisted.internet.protocol import ClientFactory
        from twisted.protocols.tls import TLSMemoryBIOFactory

        key = self.listenTLS(RecordingHandler(self._switchLater(_Echo)))
        early, later = os.urandom(100_000), os.urandom(1_000_000)
        client = _TunnelClient(early, later)
        factory = ClientFactory.forProtocol(lambda: client)
        reactor.connectTCP(key.host, key.port, TLSMemoryBIOFactory(self.clientOptions, True, factory))
        echoed = yield client.done
        self.assertEqual(echoed, early + later)

    @inlineCallbacks
    def test_poolSwitchInsideTLS(self):
        """
        The pool hands over a 101 with the bytes the server sent right
        behind it (a banner, as an SSH server sends first).
        """
        banner = os.urandom(50_000)

        class BannerEcho(_Echo):
            def connectionMade(self) -> None:
                """
                The connection is up: send what this side sends first.
                """
                self.transport.write(banner)

        key = self.listenTLS(RecordingHandler(self._switchLater(BannerEcho)))
        response = yield self.pool.request(
            key, b"GET", b"/tcp",
            [(b"Host", b"gw.test"), (b"Upgrade", b"tcp-forwarding/1.0"), (b"Connection", b"Upgrade")],
        )
        self.assertEqual(response.status, 101)
        later = os.urandom(1_000_000)

        class Tunnel(Protocol):
            def __init__(self) -> None:
                self.received = b""
                self.done: Deferred[bytes] = Deferred()

            def connectionMade(self) -> None:
                """
                The connection is up: send what this side sends first.
                """
                self.transport.write(later)

            def dataReceived(self, data: bytes) -> None:
                self.received += data
                if len(self.received) >= len(banner) + len(later):
                    self.transport.loseConnection()
                    self.done.callback(self.received)

        tunnel = Tunnel()
        response.takeOver(tunnel)
        received = yield tunnel.done
        self.assertEqual(received, banner + later)

    def _switchLater(self, tunnelClass):
        """
        A handler answering 101 after a delay and handing over to C{tunnelClass()}.
        """
        def answer(request: Request) -> None:
            def switch() -> None:
                request.response.writeInformational(
                    101, b"Switching Protocols",
                    [(b"Upgrade", b"tcp-forwarding/1.0"), (b"Connection", b"Upgrade")],
                )
                request.takeOver(tunnelClass())

            reactor.callLater(0.05, switch)

        return answer
