"""
Tests for L{ztnagw.tls.transport}: TLS half-close, the close timeout and
dropping TLS after a C{101}, over real loopback sockets (and in memory where
time must be controlled).
"""

from __future__ import annotations

import random

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.tls.loopback import (
    DEVICE,
    GATEWAY,
    SERVER_CA,
    Recorder,
    memoryPair,
    serverCertificate,
    verifier,
)
from ztnagw.tls.client import deviceClientCreator
from ztnagw.tls.listener import connectTLS, listenTLS
from ztnagw.tls.posture import TLSVersion
from ztnagw.tls.server import ServerConnectionCreator
from ztnagw.tls.transport import TLSDropRefused, TLSFactory, TLSProtocol

MiB = 1 << 20
UPLOAD = random.Random(1).randbytes(MiB)
REPLY = random.Random(2).randbytes(4 * MiB)
GREETING = random.Random(3).randbytes(64 << 10)
BULK = random.Random(4).randbytes(10 * MiB)
EARLY = random.Random(5).randbytes(100 << 10)
UPGRADE = b"GET /tcp?address=10.0.0.5&port=22&tls=0 HTTP/1.1\r\nUpgrade: tcp-forwarding/1.0\r\n\r\n"
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: tcp-forwarding/1.0\r\n\r\n"


class Peer(Protocol):
    """
    An application that records what it receives and tells a Deferred when
    the connection ends.

    @ivar received: the bytes received.
    @ivar reason: why the connection ended.
    @ivar done: fires with this protocol when the connection is lost.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.reason: Failure | None = None
        self.done: Deferred[Peer] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data}.
        """
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        Record C{reason} and fire L{done}.
        """
        self.reason = reason
        self.done.callback(self)


class RealSocketMixin:
    """
    Runs a TLS server and client on 127.0.0.1 with ztnagw's transport.
    """

    def serve(
        self,
        protocol: type[Protocol] | object,
        maximum: TLSVersion = TLSVersion.TLS_1_3,
    ) -> int:
        """
        Listen with the gateway certificate; each connection gets a fresh
        C{protocol()}.

        @return: the port.
        """
        creator = ServerConnectionCreator(
            serverCertificate(GATEWAY), verifier(clock=reactor), maximumVersion=maximum
        )
        factory = Factory.forProtocol(protocol)  # type: ignore[arg-type]
        port = listenTLS(reactor, 0, "127.0.0.1", creator, factory)
        self.addCleanup(port.stopListening)  # type: ignore[attr-defined]
        self.serverFactory = port.factory  # type: ignore[attr-defined]
        return port.getHost().port  # type: ignore[attr-defined]

    def connect(self, port: int, protocol: type[Protocol] | object) -> Deferred:
        """
        Connect to C{port} as the device, checking the gateway by CA and
        address.
        """
        creator = deviceClientCreator(
            "127.0.0.1", [SERVER_CA.certificate], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
        )
        return connectTLS(
            reactor, "127.0.0.1", port, creator, Factory.forProtocol(protocol)  # type: ignore[arg-type]
        )


@implementer(IHalfCloseableProtocol)
class HalfCloseServer(Peer):
    """
    Receives until the client finishes sending, then answers L{REPLY} and
    closes.

    @ivar receivedAtEOF: how much had arrived when the client finished.
    """

    receivedAtEOF: int | None = None
    instances: list[HalfCloseServer] = []

    def connectionMade(self) -> None:
        """
        Keep track of this instance.
        """
        HalfCloseServer.instances.append(self)

    def readConnectionLost(self) -> None:
        """
        The client is done: answer.
        """
        self.receivedAtEOF = len(self.received)
        self.transport.write(REPLY)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Not used.
        """


class Uploader(Peer):
    """
    Sends L{UPLOAD} and half-closes at once, before the handshake is done.
    """

    def connectionMade(self) -> None:
        """
        Send and finish sending.
        """
        self.transport.write(UPLOAD)
        self.transport.loseWriteConnection()
        # Writes after the half-close are dropped, as on TCP.
        self.transport.write(b"too late")


@implementer(IHandshakeListener)
class LateUploader(Peer):
    """
    Sends L{UPLOAD} and half-closes after the handshake.
    """

    def handshakeCompleted(self) -> None:
        """
        Send and finish sending.
        """
        self.transport.write(UPLOAD)
        self.transport.loseWriteConnection()


class TruncatingUploader(Peer):
    """
    Sends a little and then closes its TCP write side without
    C{close_notify}, as stock Twisted's C{loseWriteConnection} does.
    """

    def connectionMade(self) -> None:
        """
        Send once the handshake has had time to finish, then FIN.
        """
        self.transport.write(b"partial")
        reactor.callLater(0.2, self.transport.transport.loseWriteConnection)


class HalfCloseTests(RealSocketMixin, TestCase):
    """
    TLS half-close over real sockets.
    """

    timeout = 30

    def setUp(self) -> None:
        HalfCloseServer.instances = []

    @inlineCallbacks
    def roundTrip(self, client: type[Peer], maximum: TLSVersion):  # type: ignore[no-untyped-def]
        """
        Upload with C{client}, half-close, and receive the whole reply.
        """
        port = self.serve(HalfCloseServer, maximum)
        peer = yield self.connect(port, client)
        yield peer.done
        [server] = HalfCloseServer.instances
        yield server.done
        self.assertEqual(server.receivedAtEOF, MiB)
        self.assertEqual(bytes(server.received), UPLOAD)
        self.assertEqual(len(peer.received), len(REPLY))
        self.assertEqual(bytes(peer.received), REPLY)
        peer.reason.trap(ConnectionDone)
        server.reason.trap(ConnectionDone)

    def test_tls13(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.3: 1 MiB up, half-close (queued behind the handshake), 4 MiB
        back, all of it.
        """
        return self.roundTrip(Uploader, TLSVersion.TLS_1_3)

    def test_tls12(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.2: the same.
        """
        return self.roundTrip(Uploader, TLSVersion.TLS_1_2)

    def test_afterHandshake(self):  # type: ignore[no-untyped-def]
        """
        Half-closing once the handshake is done works the same.
        """
        return self.roundTrip(LateUploader, TLSVersion.TLS_1_3)

    @inlineCallbacks
    def test_finIsTruncation(self):  # type: ignore[no-untyped-def]
        """
        A TCP FIN without C{close_notify} is not a half-close: the
        application is not told the peer finished, it loses the connection.
        """
        port = self.serve(HalfCloseServer)
        peer = yield self.connect(port, TruncatingUploader)
        [server] = HalfCloseServer.instances
        yield server.done
        self.assertIsNone(server.receivedAtEOF)
        self.assertEqual(bytes(server.received), b"partial")
        server.reason.trap(ConnectionLost)
        yield peer.done

    @inlineCallbacks
    def test_notHalfCloseable(self):  # type: ignore[no-untyped-def]
        """
        An application that cannot half-close sees the peer's half-close as
        the end of the connection, as with stock Twisted.
        """
        port = self.serve(Peer)
        peer = yield self.connect(port, Uploader)
        yield peer.done
        peer.reason.trap(ConnectionDone)
        self.assertEqual(bytes(peer.received), b"")


class SwitchingServer(Protocol):
    """
    A stand-in for the gateway's tunnel endpoint: reads the upgrade request
    head through TLS, freezes TLS at once, writes the C{101} and drops TLS
    to an L{EchoGreeter} (at once or a little later).

    @cvar asynchronous: switch after a delay instead of at once.
    """

    asynchronous = False
    instances: list[SwitchingServer] = []

    def connectionMade(self) -> None:
        """
        Start reading the head.
        """
        self.head = b""
        self.raw = EchoGreeter()
        self.wrappersLeft: int | None = None
        SwitchingServer.instances.append(self)

    def dataReceived(self, data: bytes) -> None:
        """
        Read the head; no plaintext may follow it.
        """
        self.head += data
        if not self.head.endswith(b"\r\n\r\n"):
            assert b"\r\n\r\n" not in self.head, "plaintext after the head"
            return
        self.transport.freezeTLS()
        if self.asynchronous:
            reactor.callLater(0.05, self.switch)
        else:
            self.switch()

    def switch(self) -> None:
        """
        Answer C{101} through TLS and hand the socket to the raw protocol;
        then try to disturb it through the dropped wrapper.
        """
        tls = self.transport
        tls.write(SWITCHED)
        tls.dropTLS(self.raw)
        self.wrappersLeft = len(tls.factory.protocols)
        tls.write(b"junk through the dropped wrapper")
        tls.loseConnection()
        tls.abortConnection()


class AsyncSwitchingServer(SwitchingServer):
    """
    L{SwitchingServer} that switches after a delay.
    """

    asynchronous = True


class EchoGreeter(Peer):
    """
    The raw side on the server: greets with L{GREETING}, then echoes.
    """

    def connectionMade(self) -> None:
        """
        Greet.
        """
        self.transport.write(GREETING)

    def dataReceived(self, data: bytes) -> None:
        """
        Echo.
        """
        Peer.dataReceived(self, data)
        self.transport.write(data)


@implementer(IHandshakeListener)
class SwitchingClient(Protocol):
    """
    The forwarder side: sends the upgrade request (optionally followed at
    once by raw bytes), and on the C{101} drops TLS to a L{RawClient}.

    @cvar optimistic: send L{EARLY} right behind the request record.
    """

    optimistic = False
    instances: list[SwitchingClient] = []

    def connectionMade(self) -> None:
        """
        Prepare the raw side.
        """
        self.head = b""
        self.raw = RawClient(GREETING + (EARLY if self.optimistic else b"") + BULK)
        SwitchingClient.instances.append(self)

    def handshakeCompleted(self) -> None:
        """
        Ask for the upgrade.
        """
        self.transport.write(UPGRADE)
        if self.optimistic:
            # Unencrypted, behind the TLS record carrying the request.
            self.transport.writeRaw(EARLY)

    def dataReceived(self, data: bytes) -> None:
        """
        On the C{101} head, switch.
        """
        self.head += data
        if self.head.endswith(b"\r\n\r\n"):
            assert self.head == SWITCHED, self.head
            self.transport.freezeTLS()
            self.transport.dropTLS(self.raw)


class OptimisticSwitchingClient(SwitchingClient):
    """
    L{SwitchingClient} that does not wait for the C{101}.
    """

    optimistic = True


class RawClient(Peer):
    """
    The raw side on the client: sends L{BULK} and closes once it has
    received C{expected}.
    """

    def __init__(self, expected: bytes) -> None:
        Peer.__init__(self)
        self.expected = expected

    def connectionMade(self) -> None:
        """
        Send the bulk.
        """
        self.transport.write(BULK)

    def dataReceived(self, data: bytes) -> None:
        """
        Close when everything is back.
        """
        Peer.dataReceived(self, data)
        if len(self.received) >= len(self.expected):
            self.transport.loseConnection()


class DropTLSTests(RealSocketMixin, TestCase):
    """
    Dropping TLS after a C{101}: every byte arrives intact both ways,
    whatever the version, timing and client behaviour.
    """

    timeout = 60

    def setUp(self) -> None:
        SwitchingServer.instances = []
        SwitchingClient.instances = []

    @inlineCallbacks
    def switch(  # type: ignore[no-untyped-def]
        self,
        server: type[SwitchingServer],
        client: type[SwitchingClient],
        maximum: TLSVersion,
    ):
        """
        Run one upgrade and check both raw streams.
        """
        port = self.serve(server, maximum)
        yield self.connect(port, client)
        [serverSide] = SwitchingServer.instances
        [clientSide] = SwitchingClient.instances
        yield clientSide.raw.done
        yield serverSide.raw.done
        self.assertEqual(len(clientSide.raw.received), len(clientSide.raw.expected))
        self.assertTrue(clientSide.raw.received == clientSide.raw.expected)
        sent = (EARLY if client.optimistic else b"") + BULK
        self.assertTrue(serverSide.raw.received == sent)
        self.assertEqual(serverSide.wrappersLeft, 0)
        self.assertEqual(len(self.serverFactory.protocols), 0)

    def test_tls13Sync(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.3, switch at once, client waits for the 101.
        """
        return self.switch(SwitchingServer, SwitchingClient, TLSVersion.TLS_1_3)

    def test_tls13SyncOptimistic(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.3, switch at once, client sends raw bytes without waiting.
        """
        return self.switch(
            SwitchingServer, OptimisticSwitchingClient, TLSVersion.TLS_1_3
        )

    def test_tls13Async(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.3, switch later, client waits.
        """
        return self.switch(AsyncSwitchingServer, SwitchingClient, TLSVersion.TLS_1_3)

    def test_tls13AsyncOptimistic(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.3, switch later, optimistic client (raw bytes wait in the
        kernel while TLS is frozen).
        """
        return self.switch(
            AsyncSwitchingServer, OptimisticSwitchingClient, TLSVersion.TLS_1_3
        )

    def test_tls12Sync(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.2, switch at once, client waits.
        """
        return self.switch(SwitchingServer, SwitchingClient, TLSVersion.TLS_1_2)

    def test_tls12SyncOptimistic(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.2, switch at once, optimistic client.
        """
        return self.switch(
            SwitchingServer, OptimisticSwitchingClient, TLSVersion.TLS_1_2
        )

    def test_tls12Async(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.2, switch later, client waits.
        """
        return self.switch(AsyncSwitchingServer, SwitchingClient, TLSVersion.TLS_1_2)

    def test_tls12AsyncOptimistic(self):  # type: ignore[no-untyped-def]
        """
        TLS 1.2, switch later, optimistic client.
        """
        return self.switch(
            AsyncSwitchingServer, OptimisticSwitchingClient, TLSVersion.TLS_1_2
        )


@implementer(IHalfCloseableProtocol)
class FinishingEcho(Peer):
    """
    A raw protocol that echoes and, when the peer finishes, says C{bye} and
    closes.
    """

    def dataReceived(self, data: bytes) -> None:
        """
        Echo.
        """
        Peer.dataReceived(self, data)
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        """
        Answer the end of input.
        """
        self.transport.write(b"bye")
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Not used.
        """


class EndingSwitchingServer(AsyncSwitchingServer):
    """
    Switches (late) to a L{FinishingEcho}, and meanwhile resumes reading, as
    an HTTP layer may do behind the transport's back, so that raw bytes and
    the FIN arrive while TLS is frozen.
    """

    def connectionMade(self) -> None:
        """
        Use a finishing echo as the raw side.
        """
        SwitchingServer.connectionMade(self)
        self.raw = FinishingEcho()  # type: ignore[assignment]

    def dataReceived(self, data: bytes) -> None:
        """
        Freeze on the head, then resume reading at once.
        """
        SwitchingServer.dataReceived(self, data)
        self.transport.resumeProducing()


@implementer(IHandshakeListener)
class EndingClient(SwitchingClient):
    """
    Sends the request, raw bytes and a TCP FIN at once, then switches on
    the C{101} to a plain recorder.
    """

    def connectionMade(self) -> None:
        """
        Record the raw side.
        """
        SwitchingClient.connectionMade(self)
        self.raw = Peer()  # type: ignore[assignment]

    def handshakeCompleted(self) -> None:
        """
        Request, raw bytes, FIN.
        """
        self.transport.write(UPGRADE)
        self.transport.writeRaw(b"last words")
        self.transport.transport.loseWriteConnection()


class FrozenEndTests(RealSocketMixin, TestCase):
    """
    A peer that finishes while TLS is frozen.
    """

    timeout = 30

    def setUp(self) -> None:
        SwitchingServer.instances = []
        SwitchingClient.instances = []

    @inlineCallbacks
    def test_finWhileFrozen(self):  # type: ignore[no-untyped-def]
        """
        A FIN that arrives while TLS is frozen reaches the raw protocol
        after the raw bytes before it.
        """
        port = self.serve(EndingSwitchingServer)
        yield self.connect(port, EndingClient)
        [serverSide] = SwitchingServer.instances
        [clientSide] = SwitchingClient.instances
        yield serverSide.raw.done
        yield clientSide.raw.done
        self.assertEqual(bytes(serverSide.raw.received), b"last words")
        self.assertEqual(bytes(clientSide.raw.received), b"last wordsbye")


@implementer(IHalfCloseableProtocol)
class _Chunks(Protocol):
    """
    Records each C{dataReceived} call separately, and the order of events.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.events: list[str] = []

    def dataReceived(self, data: bytes) -> None:
        """
        Record one delivery.
        """
        self.chunks.append(data)
        if not self.events or self.events[-1] != "data":
            self.events.append("data")

    def readConnectionLost(self) -> None:
        """
        Record the peer's end of sending.
        """
        self.events.append("readConnectionLost")

    def writeConnectionLost(self) -> None:
        """
        Nothing to record.
        """

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:
        """
        Record the end.
        """
        self.events.append("connectionLost")


class Silent(Protocol):
    """
    A peer that never answers anything.
    """


class MemoryTransportTests(SynchronousTestCase):
    """
    In-memory tests of the transport where time must be controlled.
    """

    def pair(self, clock: Clock):  # type: ignore[no-untyped-def]
        """
        A ztnagw TLS pair in memory.
        """
        creator = ServerConnectionCreator(
            serverCertificate(GATEWAY), verifier(clock=clock)
        )
        client = deviceClientCreator(
            "gateway.test", [SERVER_CA.certificate], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
        )
        return memoryPair(creator, client, clock, factory=TLSFactory)

    def test_closeTimeout(self) -> None:
        """
        A peer that never answers our C{close_notify} is aborted after
        C{closeTimeout} seconds, and not before.
        """
        clock = Clock()
        pair = self.pair(clock)
        self.assertIsInstance(pair.serverTLS, TLSProtocol)
        # From now on the client's bytes go to a peer that ignores them.
        pair.pump.clientIO.protocol = Silent()
        pair.serverTLS.loseConnection()
        pair.pump.flush()
        self.assertIsNone(pair.server.lost)
        clock.advance(pair.serverTLS.closeTimeout - 1)
        pair.pump.flush()
        self.assertIsNone(pair.server.lost)
        clock.advance(1)
        pair.pump.flush()
        self.assertIsNotNone(pair.server.lost)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_answeredClose(self) -> None:
        """
        When the peer answers, the connection ends cleanly and no timer is
        left behind.
        """
        clock = Clock()
        pair = self.pair(clock)
        pair.serverTLS.loseConnection()
        pair.pump.flush()
        pair.server.lost.trap(ConnectionDone)
        pair.client.lost.trap(ConnectionDone)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_smallWritesBeforeClose(self) -> None:
        """
        Small writes still waiting for the end of the reactor turn go out
        before a half-close and before a close.
        """
        pair = self.pair(Clock())
        pair.clientTLS.write(b"request")
        pair.clientTLS.loseWriteConnection()
        pair.serverTLS.write(b"response")
        pair.serverTLS.loseConnection()
        pair.pump.flush()
        self.assertEqual(pair.server.received, b"request")
        self.assertEqual(pair.client.received, b"response")
        pair.client.lost.trap(ConnectionDone)

    def test_largeWritesInOrder(self) -> None:
        """
        A large write skips the small-write buffer but not what it holds:
        bytes arrive in the order they were written, also across writes
        larger than several TLS records and larger than one C{SSL_write}
        takes.
        """
        clock = Clock()
        pair = self.pair(clock)
        pieces = [b"a" * 10, bytes(range(256)) * 300, b"b", b"c" * 20000, b"d" * (2**18 + 2**17 + 5)]
        for piece in pieces:
            pair.serverTLS.write(piece)
        clock.advance(0)
        pair.pump.flush()
        self.assertEqual(pair.client.received, b"".join(pieces))

    def test_largeWriteOneTransportWrite(self) -> None:
        """
        The records of one large write reach TCP together, in one write,
        not one write per 16 KiB record.
        """
        clock = Clock()
        pair = self.pair(clock)
        tcp = pair.serverTLS.transport
        writes: list[bytes] = []
        original = tcp.write
        self.patch(tcp, "write", lambda data: (writes.append(data), original(data)))
        pair.serverTLS.write(b"x" * 65536)
        self.assertEqual(len(writes), 1)
        self.assertGreater(len(writes[0]), 65536)
        pair.pump.flush()
        self.assertEqual(pair.client.received, b"x" * 65536)

    def coalescingPair(self) -> tuple[object, "_Chunks"]:
        """
        A pair whose server delivers coalesced records to a L{_Chunks}.
        """
        clock = Clock()
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier(clock=clock))
        client = deviceClientCreator(
            "gateway.test", [SERVER_CA.certificate], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
        )
        pair = memoryPair(creator, client, clock, factory=TLSFactory, serverProtocol=_Chunks)
        pair.serverTLS.coalesceReceived = True
        return pair, pair.server

    def test_coalescedRecords(self) -> None:
        """
        With C{coalesceReceived}, the records decrypted from one TCP read
        reach the application in one C{dataReceived}, in order; without
        it, one call per record.
        """
        pair, chunks = self.coalescingPair()
        pieces = [bytes([i]) * 20000 for i in range(3)]
        for piece in pieces:
            pair.clientTLS.write(piece)
        pair.pump.flush()
        self.assertEqual(chunks.chunks, [b"".join(pieces)])
        pair.serverTLS.coalesceReceived = False
        for piece in pieces:
            pair.clientTLS.write(piece)
        pair.pump.flush()
        self.assertEqual(b"".join(chunks.chunks[1:]), b"".join(pieces))
        self.assertGreater(len(chunks.chunks), 3)

    def test_coalescedBeforeClose(self) -> None:
        """
        Coalesced data arrives before the peer's C{close_notify} is
        reported (C{readConnectionLost}), and before a TLS error ends the
        connection.
        """
        pair, chunks = self.coalescingPair()
        pair.clientTLS.write(b"x" * 40000)
        pair.clientTLS.loseWriteConnection()
        pair.pump.flush()
        self.assertEqual(chunks.events, ["data", "readConnectionLost"])
        self.assertEqual(chunks.chunks, [b"x" * 40000])

        pair, chunks = self.coalescingPair()
        pair.clientTLS.write(b"y" * 40000)
        pair.clientTLS.transport.write(b"\x17\x03\x03\x00\x05garbage")
        pair.pump.flush()
        self.assertEqual(chunks.events, ["data", "connectionLost"])
        self.assertEqual(chunks.chunks, [b"y" * 40000])

    def test_writeRawBeforeHandshake(self) -> None:
        """
        Raw bytes cannot be sent behind TLS data that is still waiting for
        the handshake.
        """
        creator = deviceClientCreator(
            "gateway.test", [SERVER_CA.certificate], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
        )
        factory = TLSFactory(creator, True, Factory.forProtocol(Recorder), Clock())
        tls = factory.buildProtocol(None)
        tls.makeConnection(StringTransport())
        tls.write(b"request")
        self.assertRaises(TLSDropRefused, tls.writeRaw, b"raw")

    def test_dropNeedsFreeze(self) -> None:
        """
        L{TLSProtocol.dropTLS} without L{TLSProtocol.freezeTLS} is refused,
        and the connection keeps working.
        """
        pair = self.pair(Clock())
        self.assertRaises(TLSDropRefused, pair.serverTLS.dropTLS, Recorder())
        pair.clientTLS.write(b"still TLS")
        pair.pump.flush()
        self.assertEqual(pair.server.received, b"still TLS")

    def test_freezeNeedsHandshake(self) -> None:
        """
        TLS cannot be frozen before the handshake is done.
        """
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier())
        factory = TLSFactory(creator, False, Factory.forProtocol(Recorder), Clock())
        tls = factory.buildProtocol(None)
        self.assertRaises(TLSDropRefused, tls.freezeTLS)

    def test_dropInMemory(self) -> None:
        """
        Dropping works over any transport that delivers to its C{protocol}:
        raw bytes flow both ways after the switch.
        """
        pair = self.pair(Clock())
        serverRaw, clientRaw = Recorder(), Recorder()
        pair.clientTLS.write(UPGRADE)
        pair.pump.flush()
        pair.serverTLS.freezeTLS()
        pair.serverTLS.write(SWITCHED)
        pair.serverTLS.dropTLS(serverRaw)
        pair.pump.flush()
        self.assertEqual(pair.client.received, SWITCHED)
        pair.clientTLS.freezeTLS()
        pair.clientTLS.dropTLS(clientRaw)
        serverRaw.transport.write(b"raw from server")
        clientRaw.transport.write(b"raw from client")
        pair.pump.flush()
        self.assertEqual(clientRaw.received, b"raw from server")
        self.assertEqual(serverRaw.received, b"raw from client")
        self.assertRaises(TLSDropRefused, pair.serverTLS.dropTLS, Recorder())
