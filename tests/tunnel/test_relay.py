"""
Tests for L{ztnagw.tunnel.relay}: forwarding, backpressure, half-close,
failures, idle timeout; in memory, then over real loopback sockets.
"""

from __future__ import annotations

import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.tunnel.fakes import HalfCloseTransport
from ztnagw.tunnel.relay import (
    CLIENT,
    CLOSED,
    COMPLETED,
    IDLE_TIMEOUT,
    READ_SIZE,
    SERVER,
    Relay,
    RelayEnd,
    failed,
    tuneReading,
)

DONE = Failure(ConnectionDone())
RESET = Failure(ConnectionLost("Connection reset by peer"))


def connectedEnd(side: str, bufferLimit: int = 1024) -> RelayEnd:
    """
    A L{RelayEnd} connected to a L{HalfCloseTransport}.
    """
    end = RelayEnd(side, bufferLimit=bufferLimit)
    end.makeConnection(HalfCloseTransport())
    return end


class RelayTestCase(SynchronousTestCase):
    """
    A client and a server end over in-memory transports, and a relay that
    joins them.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.client = connectedEnd(CLIENT)
        self.server = connectedEnd(SERVER)
        self.clientTransport: HalfCloseTransport = self.client.transport  # type: ignore[assignment]
        self.serverTransport: HalfCloseTransport = self.server.transport  # type: ignore[assignment]

    def relay(self, idleTimeout: float | None = None) -> Relay:
        """
        Start a relay between the two ends.
        """
        relay = Relay(self.clock, self.client, self.server, idleTimeout=idleTimeout)
        relay.start()
        return relay

    def lose(self, end: RelayEnd, reason: Failure = DONE) -> None:
        """
        Lose C{end}'s connection as a transport would.
        """
        end.transport.disconnected = True  # type: ignore[union-attr]
        end.connectionLost(reason)


class ForwardingTests(RelayTestCase):
    """
    Bytes go through unchanged and are counted.
    """

    def test_bothWays(self) -> None:
        """
        What one end receives is written to the other, in order.
        """
        self.relay()
        self.client.dataReceived(b"request ")
        self.client.dataReceived(b"body")
        self.server.dataReceived(b"reply")
        self.assertEqual(self.serverTransport.value(), b"request body")
        self.assertEqual(self.clientTransport.value(), b"reply")

    def test_counted(self) -> None:
        """
        The result counts bytes in and out of each end.
        """
        relay = self.relay()
        self.client.dataReceived(b"12345")
        self.server.dataReceived(b"123")
        self.client.readConnectionLost()
        self.server.readConnectionLost()
        self.lose(self.client)
        self.lose(self.server)
        result = self.successResultOf(relay.whenDone())
        self.assertEqual(
            (result.clientIn, result.serverOut, result.serverIn, result.clientOut),
            (5, 5, 3, 3),
        )

    def test_producersRegistered(self) -> None:
        """
        Each transport is the streaming producer of the other: a full
        buffer on one side pauses reading on the other.
        """
        self.relay()
        self.assertIs(self.serverTransport.producer, self.clientTransport)
        self.assertIs(self.clientTransport.producer, self.serverTransport)
        self.assertTrue(self.serverTransport.streaming)
        self.assertTrue(self.clientTransport.streaming)

    def test_sidesChecked(self) -> None:
        """
        A relay joins a client end and a server end, in that order.
        """
        self.assertRaises(ValueError, Relay, self.clock, self.server, self.client)
        self.assertRaises(ValueError, RelayEnd, "middle")

    def test_startOnce(self) -> None:
        """
        A relay starts once, and an end belongs to one relay.
        """
        relay = self.relay()
        self.assertRaises(RuntimeError, relay.start)
        other = Relay(self.clock, self.client, connectedEnd(SERVER))
        self.assertRaises(RuntimeError, other.start)


class BeforeStartTests(RelayTestCase):
    """
    An end connected before the relay starts keeps what it receives, up to
    a bound.
    """

    def test_pendingDelivered(self) -> None:
        """
        Data received before the start reaches the peer at the start, before
        anything received later.
        """
        self.client.dataReceived(b"early ")
        self.relay()
        self.client.dataReceived(b"late")
        self.assertEqual(self.serverTransport.value(), b"early late")

    def test_bounded(self) -> None:
        """
        Beyond the bound, reading pauses; it resumes at the start.
        """
        self.client.dataReceived(b"x" * 1000)
        self.assertFalse(self.clientTransport.paused)
        self.client.dataReceived(b"x" * 100)
        self.assertTrue(self.clientTransport.paused)
        self.relay()
        self.assertFalse(self.clientTransport.paused)
        self.assertEqual(len(self.serverTransport.value()), 1100)

    def test_endOfInputBeforeStart(self) -> None:
        """
        An end of input received before the start is passed on after the
        data.
        """
        self.client.dataReceived(b"all of it")
        self.client.readConnectionLost()
        self.relay()
        self.assertEqual(self.serverTransport.value(), b"all of it")
        self.assertTrue(self.serverTransport.writeClosed)
        self.assertFalse(self.serverTransport.closedWithProducer)

    def test_lostBeforeStart(self) -> None:
        """
        A connection lost before the start closes the peer at the start.
        """
        self.lose(self.client, RESET)
        relay = self.relay()
        self.assertTrue(self.serverTransport.aborted)
        self.lose(self.server)
        self.assertEqual(self.successResultOf(relay.whenDone()).outcome, failed(CLIENT))

    def test_notifyLost(self) -> None:
        """
        L{RelayEnd.notifyLost} tells the owner of an end that is not joined
        yet that its connection is gone, even afterwards.
        """
        waiting = self.client.notifyLost()
        self.assertNoResult(waiting)
        self.lose(self.client, RESET)
        self.successResultOf(waiting)
        self.successResultOf(self.client.notifyLost())
        self.assertIs(self.client.lostReason, RESET)


class HalfCloseTests(RelayTestCase):
    """
    One side finishing its sending does not end the other direction.
    """

    def test_clientFinishesFirst(self) -> None:
        """
        The client's end of input half-closes the server's write side (with
        the producer unregistered first); the reply still reaches the
        client; when the server finishes too, both connections close.
        """
        relay = self.relay()
        self.client.dataReceived(b"question")
        self.client.readConnectionLost()
        self.assertTrue(self.serverTransport.writeClosed)
        self.assertIsNone(self.serverTransport.producer)
        self.assertFalse(self.serverTransport.closedWithProducer)
        self.assertFalse(self.serverTransport.disconnecting)

        self.server.dataReceived(b"the whole answer")
        self.assertEqual(self.clientTransport.value(), b"the whole answer")
        self.server.readConnectionLost()
        self.assertTrue(self.clientTransport.writeClosed)
        self.assertTrue(self.clientTransport.disconnecting)
        self.assertTrue(self.serverTransport.disconnecting)
        self.assertFalse(self.clientTransport.closedWithProducer)
        self.assertFalse(self.serverTransport.closedWithProducer)

        self.lose(self.client)
        self.assertNoResult(relay.whenDone())
        self.lose(self.server)
        result = self.successResultOf(relay.whenDone())
        self.assertEqual(result.outcome, COMPLETED)
        self.assertEqual(result.reason, "client finished first")

    def test_serverFinishesFirst(self) -> None:
        """
        The same the other way round.
        """
        relay = self.relay()
        self.server.dataReceived(b"banner")
        self.server.readConnectionLost()
        self.assertTrue(self.clientTransport.writeClosed)
        self.client.dataReceived(b"late words")
        self.assertEqual(self.serverTransport.value(), b"late words")
        self.client.readConnectionLost()
        self.lose(self.client)
        self.lose(self.server)
        self.assertEqual(
            self.successResultOf(relay.whenDone()).reason, "server finished first"
        )

    def test_closedWithoutHalfClose(self) -> None:
        """
        A connection closed cleanly as a whole (a TLS peer that answered our
        C{close_notify} with its own) ends its direction; the peer is closed
        after what it was sent.
        """
        relay = self.relay()
        self.server.readConnectionLost()
        self.lose(self.client)
        self.assertTrue(self.serverTransport.disconnecting)
        self.assertFalse(self.serverTransport.aborted)
        self.lose(self.server)
        self.assertEqual(self.successResultOf(relay.whenDone()).outcome, COMPLETED)


class FailureTests(RelayTestCase):
    """
    A connection lost with an error aborts the other.
    """

    def test_serverReset(self) -> None:
        """
        A reset on the server side aborts the client's connection, so the
        client sees truncation rather than a clean end.
        """
        relay = self.relay()
        self.lose(self.server, RESET)
        self.assertTrue(self.clientTransport.aborted)
        self.lose(self.client, RESET)
        result = self.successResultOf(relay.whenDone())
        self.assertEqual(result.outcome, failed(SERVER))
        self.assertIn("server connection lost", result.reason)
        self.assertIn("reset", result.reason)

    def test_clientReset(self) -> None:
        """
        A reset on the client side aborts the server's connection.
        """
        relay = self.relay()
        self.lose(self.client, RESET)
        self.assertTrue(self.serverTransport.aborted)
        self.lose(self.server)
        self.assertEqual(self.successResultOf(relay.whenDone()).outcome, failed(CLIENT))

    def test_failureAfterBothDone(self) -> None:
        """
        A connection whose two directions were both finished is not failed
        by an error at its very end (a reader that closed its pipe, a reset
        after the FINs): the relay completed.
        """
        relay = self.relay()
        self.client.readConnectionLost()
        self.server.readConnectionLost()
        self.lose(self.client, RESET)
        self.assertFalse(self.serverTransport.aborted)
        self.lose(self.server)
        self.assertEqual(self.successResultOf(relay.whenDone()).outcome, COMPLETED)

    def test_noWriteAfterLoss(self) -> None:
        """
        Data for a connection that is gone is dropped, not written.
        """
        self.relay()
        self.lose(self.client, RESET)
        self.server.dataReceived(b"too late")
        self.assertEqual(self.clientTransport.value(), b"")


class CloseTests(RelayTestCase):
    """
    The owner can end a relay, and an idle one ends by itself.
    """

    def test_close(self) -> None:
        """
        L{Relay.close} aborts both connections at once; the result says why.
        """
        relay = self.relay()
        relay.close("device revoked")
        self.assertTrue(self.clientTransport.aborted)
        self.assertTrue(self.serverTransport.aborted)
        self.assertIsNone(self.clientTransport.producer)
        self.lose(self.client, RESET)
        self.lose(self.server, RESET)
        result = self.successResultOf(relay.whenDone())
        self.assertEqual((result.outcome, result.reason), (CLOSED, "device revoked"))
        self.assertIs(relay.result, result)

    def test_finish(self) -> None:
        """
        L{Relay.finish} closes both connections after what they hold, with
        their producers unregistered first; the relay completes normally.
        """
        relay = self.relay()
        self.server.dataReceived(b"last words")
        relay.finish()
        self.assertEqual(self.clientTransport.value(), b"last words")
        self.assertTrue(self.clientTransport.disconnecting)
        self.assertTrue(self.serverTransport.disconnecting)
        self.assertFalse(self.clientTransport.aborted)
        self.assertFalse(self.clientTransport.closedWithProducer)
        self.assertFalse(self.serverTransport.closedWithProducer)
        self.lose(self.client)
        self.lose(self.server)
        self.assertEqual(self.successResultOf(relay.whenDone()).outcome, COMPLETED)

    def test_idleTimeout(self) -> None:
        """
        With an idle timeout, a relay through which nothing moved for that
        long is aborted; traffic in either direction restarts the count.
        """
        relay = self.relay(idleTimeout=10)
        self.clock.advance(9)
        self.server.dataReceived(b"keep")
        self.clock.advance(9)
        self.client.dataReceived(b"alive")
        self.clock.advance(9)
        self.assertFalse(self.clientTransport.aborted)
        self.clock.advance(1.5)
        self.assertTrue(self.clientTransport.aborted)
        self.assertTrue(self.serverTransport.aborted)
        self.lose(self.client, RESET)
        self.lose(self.server, RESET)
        result = self.successResultOf(relay.whenDone())
        self.assertEqual(result.outcome, IDLE_TIMEOUT)
        self.assertEqual(result.duration, 28.5)

    def test_noIdleTimeout(self) -> None:
        """
        Without an idle timeout a tunnel may stay quiet for days.
        """
        self.relay()
        self.clock.advance(7 * 86400)
        self.assertFalse(self.clientTransport.aborted)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timerCancelled(self) -> None:
        """
        A relay that ends leaves no timer behind.
        """
        self.relay(idleTimeout=60)
        self.client.readConnectionLost()
        self.server.readConnectionLost()
        self.lose(self.client)
        self.lose(self.server)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_badTimeout(self) -> None:
        """
        An idle timeout is a positive number of seconds.
        """
        self.assertRaises(
            ValueError, Relay, self.clock, self.client, self.server, idleTimeout=0
        )


MiB = 1 << 20
UPLOAD = random.Random(11).randbytes(4 * MiB)
REPLY = random.Random(12).randbytes(4 * MiB)


@implementer(IHalfCloseableProtocol)
class AnswerAtEOF(Protocol):
    """
    A real server that reads until the client finishes sending, then
    answers L{REPLY} and closes.
    """

    def __init__(self) -> None:
        self.received = bytearray()

    def dataReceived(self, data: bytes) -> None:
        """
        Keep C{data}.
        """
        self.received += data

    def readConnectionLost(self) -> None:
        """
        Answer and close.
        """
        self.factory.uploads.append(bytes(self.received))  # type: ignore[attr-defined]
        self.transport.write(REPLY)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing.
        """


@implementer(IHalfCloseableProtocol)
class HalfClosingClient(Protocol):
    """
    Sends L{UPLOAD}, shuts down its write side and reads the answer to the
    end.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.done: Deferred[HalfClosingClient] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        """
        Send and half-close.
        """
        self.transport.write(UPLOAD)
        self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        """
        Keep C{data}.
        """
        self.received += data

    def readConnectionLost(self) -> None:
        """
        The answer is complete.
        """
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing.
        """

    def connectionLost(self, reason: Failure = DONE) -> None:
        """
        Report.
        """
        self.reason = reason
        self.done.callback(self)


class RelayListener(Factory):
    """
    Accepts clients and relays each to the real server at C{port}.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.relays: list[Relay] = []

    def buildProtocol(self, addr: object) -> RelayEnd:
        """
        A client end that connects its server end at once.
        """
        client = RelayEnd(CLIENT)
        server = RelayEnd(SERVER)

        def connected(_: object) -> None:
            relay = Relay(reactor, client, server)  # type: ignore[arg-type]
            self.relays.append(relay)
            relay.start()

        factory = ClientFactory.forProtocol(lambda: server)  # type: ignore[arg-type, return-value]
        factory.clientConnectionFailed = lambda c, r: client.abort()  # type: ignore[method-assign]
        original = server.connectionMade

        def made() -> None:
            original()
            connected(None)

        server.connectionMade = made  # type: ignore[method-assign]
        reactor.connectTCP("127.0.0.1", self.port, factory)  # type: ignore[attr-defined]
        return client


class TuneReadingTests(SynchronousTestCase):
    """
    Tests for L{tuneReading}.
    """

    def test_tcp(self) -> None:
        """
        A relay end on a TCP connection makes it read L{READ_SIZE} bytes
        at a time.
        """
        import socket

        from twisted.internet import tcp

        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.addCleanup(theirs.close)

        class Port:
            _realPortNumber = 1
            _type = "TCP"

        end = RelayEnd(CLIENT)
        connection = tcp.Server(ours, end, ("127.0.0.1", 1), Port(), 1, MemoryReactor())
        self.assertNotEqual(connection.bufferSize, READ_SIZE)
        end.makeConnection(connection)
        self.assertEqual(connection.bufferSize, READ_SIZE)

    def test_tls(self) -> None:
        """
        A relay end on a TLS transport makes it deliver the records of one
        read together; other transports are left alone.
        """
        from tests.tls.loopback import GATEWAY, serverCertificate, verifier
        from ztnagw.tls.server import ServerConnectionCreator
        from ztnagw.tls.transport import TLSFactory

        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        tls = TLSFactory(creator, False, Factory.forProtocol(Protocol), Clock()).buildProtocol(None)
        tls.makeConnection(HalfCloseTransport())
        self.assertFalse(tls.coalesceReceived)
        tuneReading(tls)
        self.assertTrue(tls.coalesceReceived)
        plain = HalfCloseTransport()
        tuneReading(plain)
        self.assertFalse(hasattr(plain, "bufferSize"))


class RealSocketTests(TestCase):
    """
    The relay between real TCP connections on 127.0.0.1.
    """

    def listen(self, factory: Factory) -> int:
        """
        Listen on a free port; stop at the end of the test.
        """
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @inlineCallbacks
    def test_halfCloseEndToEnd(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A client that shuts down its write side after 4 MiB still receives
        the server's whole 4 MiB answer through the relay, and both
        connections then close cleanly.
        """
        backend = Factory.forProtocol(AnswerAtEOF)
        backend.uploads = []  # type: ignore[attr-defined]
        listener = RelayListener(self.listen(backend))
        relayPort = self.listen(listener)
        client = HalfClosingClient()
        factory = ClientFactory.forProtocol(lambda: client)  # type: ignore[arg-type, return-value]
        reactor.connectTCP("127.0.0.1", relayPort, factory)  # type: ignore[attr-defined]
        yield client.done
        self.assertEqual(backend.uploads, [UPLOAD])  # type: ignore[attr-defined]
        self.assertEqual(bytes(client.received), REPLY)
        self.assertTrue(client.reason.check(ConnectionDone))  # type: ignore[union-attr]
        result = yield listener.relays[0].whenDone()
        self.assertEqual(result.outcome, COMPLETED)
        self.assertEqual(result.reason, "client finished first")
        self.assertEqual(
            (result.clientIn, result.serverOut, result.serverIn, result.clientOut),
            (len(UPLOAD), len(UPLOAD), len(REPLY), len(REPLY)),
        )
