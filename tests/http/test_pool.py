"""
Tests for L{ztnagw.http.pool}: connection reuse, idle expiry, connection
failures and the stale-connection retry rules.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone, ConnectionRefusedError, ConnectionLost, TimeoutError
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.http.client import PoolSettings, UpstreamKey
from ztnagw.http.errors import (
    ConnectFailed,
    ConnectRefused,
    ConnectTimeout,
    UpstreamConnectionLost,
)
from ztnagw.http.pool import BytesBody, UpstreamPool

from tests.http.helpers import (
    Collector,
    StreamingSource,
    TrackingTransport,
    connectUpstream,
)

KEY = UpstreamKey("10.0.0.1", 8080)
OTHER = UpstreamKey("10.0.0.2", 8080)
HOST = [(b"Host", b"app.internal")]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class ReuseTests(SynchronousTestCase):
    """
    Keep-alive connections are reused per key, for a while.
    """

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        self.reactor = MemoryReactorClock()
        self.pool = UpstreamPool(self.reactor, PoolSettings(maxIdlePerKey=2))

    def _complete(self, d, protocol, raw: bytes = OK) -> None:
        """
        Answer the request behind C{d} with C{raw} and read the whole body.
        """
        protocol.dataReceived(raw)
        response = self.successResultOf(d)
        collector = Collector()
        response.deliverBody(collector)
        self.assertTrue(collector.finished)

    def test_reusedPerKey(self) -> None:
        """
        A second request to the same key uses the idle connection; another
        key gets its own.
        """
        d = self.pool.request(KEY, b"GET", b"/1", HOST)
        protocol, transport = connectUpstream(self.reactor)
        self._complete(d, protocol)
        self.assertEqual(self.pool.idleCount(KEY), 1)
        d = self.pool.request(KEY, b"GET", b"/2", HOST)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.pool.idleCount(KEY), 0)
        self.assertTrue(transport.value().endswith(b"GET /2 HTTP/1.1\r\nHost: app.internal\r\n\r\n"))
        self._complete(d, protocol)
        self.pool.request(OTHER, b"GET", b"/3", HOST)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(protocol.requestCount, 2)

    def test_notReusedWhenClosing(self) -> None:
        """
        C{Connection: close} from either side, or an HTTP/1.0 response,
        means no reuse.
        """
        for headers, raw in [
            (HOST, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"),
            (HOST, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            (HOST + [(b"Connection", b"close")], OK),
        ]:
            d = self.pool.request(KEY, b"GET", b"/", headers)
            protocol, transport = connectUpstream(self.reactor)
            self._complete(d, protocol, raw)
            self.assertEqual(self.pool.idleCount(KEY), 0)
            self.assertTrue(transport.disconnecting)

    def test_idleExpiry(self) -> None:
        """
        An idle connection is closed after C{idleTimeout}.
        """
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        protocol, transport = connectUpstream(self.reactor)
        self._complete(d, protocol)
        self.reactor.advance(49)
        self.assertEqual(self.pool.idleCount(KEY), 1)
        self.reactor.advance(1)
        self.assertEqual(self.pool.idleCount(KEY), 0)
        self.assertTrue(transport.disconnecting)

    def test_idleTimerRestartsOnReuse(self) -> None:
        """
        Reuse restarts the idle period.
        """
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        protocol, transport = connectUpstream(self.reactor)
        self._complete(d, protocol)
        self.reactor.advance(40)
        self._complete(self.pool.request(KEY, b"GET", b"/", HOST), protocol)
        self.reactor.advance(40)
        self.assertEqual(self.pool.idleCount(KEY), 1)
        self.reactor.advance(10)
        self.assertEqual(self.pool.idleCount(KEY), 0)

    def test_maxIdle(self) -> None:
        """
        At most C{maxIdlePerKey} connections are kept; the others close.
        """
        ds = [self.pool.request(KEY, b"GET", b"/", HOST) for i in range(3)]
        protocols = [connectUpstream(self.reactor, i) for i in range(3)]
        for d, (protocol, transport) in zip(ds, protocols):
            self._complete(d, protocol)
        self.assertEqual(self.pool.idleCount(KEY), 2)
        self.assertTrue(protocols[2][1].disconnecting)

    def test_closedWhileIdle(self) -> None:
        """
        A connection the server closes (or talks on) while idle leaves the
        pool.
        """
        for event in ("lost", "data"):
            d = self.pool.request(KEY, b"GET", b"/", HOST)
            protocol, transport = connectUpstream(self.reactor)
            self._complete(d, protocol)
            if event == "lost":
                protocol.connectionLost(Failure(ConnectionDone()))
            else:
                protocol.dataReceived(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
                self.assertTrue(transport.aborted)
            self.assertEqual(self.pool.idleCount(KEY), 0)

    def test_closeIdle(self) -> None:
        """
        C{closeIdle} closes every idle connection.
        """
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        protocol, transport = connectUpstream(self.reactor)
        self._complete(d, protocol)
        self.pool.closeIdle()
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.idleCount(KEY), 0)


class StaleRetryTests(SynchronousTestCase):
    """
    A reused connection that fails before any response byte is retried
    once on a fresh connection, when that is safe.
    """

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        self.reactor = MemoryReactorClock()
        self.pool = UpstreamPool(self.reactor)
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        self.protocol, self.transport = connectUpstream(self.reactor)
        self.protocol.dataReceived(OK)
        self.successResultOf(d).deliverBody(Collector())
        self.assertEqual(self.pool.idleCount(KEY), 1)

    def _stale(self):
        """
        The server closed the idle connection.
        """
        self.protocol.connectionLost(Failure(ConnectionLost()))

    def test_idempotentRetried(self) -> None:
        """
        A GET on a stale connection is re-sent on a new one.
        """
        d = self.pool.request(KEY, b"GET", b"/again", HOST)
        self._stale()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol, transport = connectUpstream(self.reactor)
        self.assertEqual(transport.value(), b"GET /again HTTP/1.1\r\nHost: app.internal\r\n\r\n")
        protocol.dataReceived(OK)
        self.assertEqual(self.successResultOf(d).status, 200)

    def test_bodyNotStartedRetried(self) -> None:
        """
        A PUT whose body has sent nothing yet is re-sent, and its body then
        goes to the new connection.
        """
        source = StreamingSource(3)
        d = self.pool.request(KEY, b"PUT", b"/", HOST, source)
        self._stale()
        protocol, transport = connectUpstream(self.reactor)
        source.consumer.bodyDataReceived(b"abc")
        source.consumer.bodyFinished()
        self.assertTrue(transport.value().endswith(b"Content-Length: 3\r\n\r\nabc"))
        self.assertFalse(source.stopped)
        protocol.dataReceived(OK)
        self.successResultOf(d)

    def test_onlyOnce(self) -> None:
        """
        If the fresh connection fails too, the request fails.
        """
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        self._stale()
        protocol, transport = connectUpstream(self.reactor)
        protocol.connectionLost(Failure(ConnectionLost()))
        failure = self.failureResultOf(d, UpstreamConnectionLost)
        self.assertTrue(failure.value.requestSent)
        self.assertFalse(failure.value.responseStarted)
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_notRetried(self) -> None:
        """
        A non-idempotent request, one whose body bytes were sent, or one
        that received response bytes, fails with the facts the gateway
        needs.
        """
        d = self.pool.request(KEY, b"POST", b"/", HOST, BytesBody(b"abc"))
        self._stale()
        failure = self.failureResultOf(d, UpstreamConnectionLost)
        self.assertEqual((failure.value.requestSent, failure.value.responseStarted), (True, False))
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_notRetriedAfterBodyBytes(self) -> None:
        """
        A PUT that already sent body bytes is not re-sent.
        """
        source = StreamingSource(6)
        d = self.pool.request(KEY, b"PUT", b"/", HOST, source)
        source.consumer.bodyDataReceived(b"abc")
        self._stale()
        self.failureResultOf(d, UpstreamConnectionLost)
        self.assertTrue(source.stopped)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_notRetriedAfterResponseBytes(self) -> None:
        """
        A request that received part of a response head is not re-sent.
        """
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        self.protocol.dataReceived(b"HTTP/1.1 2")
        self._stale()
        failure = self.failureResultOf(d, UpstreamConnectionLost)
        self.assertTrue(failure.value.responseStarted)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_freshNotRetried(self) -> None:
        """
        A fresh connection failing is not retried: the server really failed.
        """
        d = self.pool.request(OTHER, b"GET", b"/", HOST)
        protocol, transport = connectUpstream(self.reactor)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.failureResultOf(d, UpstreamConnectionLost)
        self.assertEqual(len(self.reactor.tcpClients), 2)


class ConnectTests(SynchronousTestCase):
    """
    Connection failures are specific errors saying nothing was sent.
    """

    def setUp(self) -> None:
        """
        Prepare the objects the tests use.
        """
        self.reactor = MemoryReactorClock()
        self.pool = UpstreamPool(self.reactor)

    def test_failures(self) -> None:
        """
        Refused, timed out and other failures map to their classes.
        """
        for reason, error in [
            (ConnectionRefusedError(), ConnectRefused),
            (TimeoutError(), ConnectTimeout),
            (OSError("no route"), ConnectFailed),
        ]:
            d = self.pool.request(KEY, b"GET", b"/", HOST)
            host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
            factory.clientConnectionFailed(None, Failure(reason))
            failure = self.failureResultOf(d, error)
            self.assertFalse(failure.value.requestSent)
            self.assertFalse(failure.value.responseStarted)

    def test_tls(self) -> None:
        """
        With TLS, the request waits for the handshake, which must finish
        within C{connectTimeout}.
        """
        creator = optionsForClientTLS("app.internal")
        key = UpstreamKey("10.0.0.1", 443, creator)
        self.assertEqual(key, UpstreamKey("10.0.0.1", 443, creator))
        self.assertNotEqual(key, UpstreamKey("10.0.0.1", 443, optionsForClientTLS("app.internal")))
        for complete in (True, False):
            d = self.pool.request(key, b"GET", b"/", HOST)
            host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
            self.assertIsInstance(factory, TLSMemoryBIOFactory)

            protocol = factory.wrappedFactory.buildProtocol(None)
            transport = TrackingTransport()
            protocol.makeConnection(transport)
            self.assertEqual(transport.value(), b"")
            if complete:
                protocol.handshakeCompleted()
                self.assertTrue(transport.value().startswith(b"GET / HTTP/1.1"))
                self.assertNoResult(d)
            else:
                self.reactor.advance(10)
                failure = self.failureResultOf(d, ConnectTimeout)
                self.assertFalse(failure.value.requestSent)
                self.assertTrue(transport.aborted)

    def test_tlsHandshakeFailure(self) -> None:
        """
        A connection lost before the handshake completes is a connect
        failure.
        """
        key = UpstreamKey("10.0.0.1", 443, optionsForClientTLS("app.internal"))
        d = self.pool.request(key, b"GET", b"/", HOST)
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        protocol = factory.wrappedFactory.buildProtocol(None)
        protocol.makeConnection(TrackingTransport())
        protocol.connectionLost(Failure(ConnectionLost("certificate verify failed")))
        failure = self.failureResultOf(d, ConnectFailed)
        self.assertIn("certificate verify failed", str(failure.value))
        self.assertFalse(failure.value.requestSent)

    def test_cancelWhileConnecting(self) -> None:
        """
        Cancelling while connecting stops the connection attempt.
        """
        d = self.pool.request(KEY, b"GET", b"/", HOST)
        connector = self.reactor.connectors[-1]
        d.cancel()
        self.failureResultOf(d)
        self.assertTrue(connector._disconnected)
