"""
Tests for L{ztnagw.tls.listener}.
"""

from __future__ import annotations

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.tls.loopback import (
    DEVICE,
    GATEWAY,
    SERVER_CA,
    Recorder,
    serverCertificate,
    verifier,
)
from ztnagw.tls.client import deviceClientCreator
from ztnagw.tls.listener import connectTLS, listenTLS
from ztnagw.tls.server import ServerConnectionCreator
from ztnagw.tls.transport import TLSFactory


def creator() -> ServerConnectionCreator:
    """
    The gateway's server side.
    """
    return ServerConnectionCreator(serverCertificate(GATEWAY), verifier(clock=reactor))


def device():  # type: ignore[no-untyped-def]
    """
    The device's client side, checking the gateway by address.
    """
    return deviceClientCreator(
        "127.0.0.1", [SERVER_CA.certificate], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
    )


class ListenTLSMemoryTests(SynchronousTestCase):
    """
    L{listenTLS} against a memory reactor.
    """

    def test_wrapsFactory(self) -> None:
        """
        The application factory is wrapped in a server-side L{TLSFactory}
        using the reactor as its clock, on the given port, interface and
        backlog.
        """
        memory = MemoryReactorClock()
        application = Factory.forProtocol(Recorder)
        listenTLS(memory, 8443, "::1", creator(), application, backlog=7)
        [(port, factory, backlog, interface)] = memory.tcpServers
        self.assertEqual((port, backlog, interface), (8443, 7, "::1"))
        self.assertIsInstance(factory, TLSFactory)
        self.assertIs(factory.wrappedFactory, application)
        self.assertIs(factory.clock, memory)
        self.assertTrue(factory.tuneTCP)


class SocketOptionsProbe(Protocol):
    """
    Records the socket options of the TCP connection under its TLS
    transport.
    """

    seen: Deferred[dict[str, int]]

    def connectionMade(self) -> None:
        """
        Read TCP_NODELAY and SO_KEEPALIVE.
        """
        handle = self.transport.transport.getHandle()
        SocketOptionsProbe.seen.callback(
            {
                "nodelay": handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                "keepalive": handle.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            }
        )
        self.transport.loseConnection()


class ListenTLSTests(TestCase):
    """
    L{listenTLS} and L{connectTLS} over real sockets.
    """

    timeout = 30

    @inlineCallbacks
    def test_acceptedSocketOptions(self):  # type: ignore[no-untyped-def]
        """
        Accepted connections have C{TCP_NODELAY} and C{SO_KEEPALIVE} set.
        """
        SocketOptionsProbe.seen = Deferred()
        port = listenTLS(
            reactor, 0, "127.0.0.1", creator(), Factory.forProtocol(SocketOptionsProbe)
        )
        self.addCleanup(port.stopListening)
        closed: Deferred[None] = Deferred()

        class Client(Recorder):
            def connectionLost(self, reason: object = None) -> None:
                closed.callback(None)

        yield connectTLS(
            reactor,
            "127.0.0.1",
            port.getHost().port,
            device(),
            Factory.forProtocol(Client),
        )
        options = yield SocketOptionsProbe.seen
        self.assertTrue(options["nodelay"])
        self.assertTrue(options["keepalive"])
        yield closed

    @inlineCallbacks
    def test_connectGivesTheApplication(self):  # type: ignore[no-untyped-def]
        """
        L{connectTLS} fires with the application protocol, whose transport
        is TLS; data then flows.
        """
        received: Deferred[bytes] = Deferred()

        class Echo(Protocol):
            def dataReceived(self, data: bytes) -> None:
                self.transport.write(data)

        closed: Deferred[None] = Deferred()

        class Reader(Recorder):
            def dataReceived(self, data: bytes) -> None:
                Recorder.dataReceived(self, data)
                if self.received == b"hello":
                    received.callback(self.received)

            def connectionLost(self, reason: object = None) -> None:
                closed.callback(None)

        port = listenTLS(reactor, 0, "127.0.0.1", creator(), Factory.forProtocol(Echo))
        self.addCleanup(port.stopListening)
        client = yield connectTLS(
            reactor,
            "127.0.0.1",
            port.getHost().port,
            device(),
            Factory.forProtocol(Reader),
        )
        self.assertIsInstance(client, Reader)
        client.transport.write(b"hello")
        self.assertEqual((yield received), b"hello")
        client.transport.loseConnection()
        yield closed

    @inlineCallbacks
    def test_connectFailure(self):  # type: ignore[no-untyped-def]
        """
        A refused connection fails the Deferred.
        """
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        unused = probe.getsockname()[1]
        probe.close()
        with self.assertRaises(ConnectionRefusedError):
            yield connectTLS(
                reactor, "127.0.0.1", unused, device(), Factory.forProtocol(Recorder)
            )
