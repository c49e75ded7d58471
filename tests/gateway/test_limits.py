"""
Tests for L{ztnagw.gateway.limits}: per-source and per-device connection
limits (security finding F2: a single source could hold any number of
connections).
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.gateway import fakes
from tests.http.helpers import RecordingHandler, answerOK, connectServer, statusOf
from tests.tls.loopback import GATEWAY
from ztnagw.gateway.limits import (
    LOG_INTERVAL,
    ConnectionLimits,
    DeviceLimitedHandler,
    LimitedTLSFactory,
    limitedListener,
)


class _Connection:
    """
    Stands for a TLS connection (only its identity matters).
    """


class _TCP:
    """
    Stands for a TCP transport that outlives TLS.
    """

    connected = True


class CountTests(SynchronousTestCase):
    """
    L{ConnectionLimits} counts connections by source and device.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = ConnectionLimits(self.clock, "WEB", perSource=2, perDevice=2)

    def open(self, source: str = "10.0.0.1") -> _Connection:
        connection = _Connection()
        self.assertTrue(self.limits.admitSource(source))
        self.limits.opened(connection, source)
        return connection

    def test_perSource(self) -> None:
        """
        A source holding its limit is refused until one of its
        connections ends; other sources are not affected.
        """
        first = self.open()
        self.open()
        self.assertFalse(self.limits.admitSource("10.0.0.1"))
        self.assertTrue(self.limits.admitSource("10.0.0.2"))
        self.limits.released(first, None)
        self.assertTrue(self.limits.admitSource("10.0.0.1"))
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 1)
        self.assertEqual(self.limits.refusedSources, 1)

    def test_perDevice(self) -> None:
        """
        A device is counted once per connection, from any source; beyond
        its limit a connection is refused, and an ended connection gives
        its slot back.
        """
        connections = [self.open(f"10.0.0.{n}") for n in range(1, 4)]
        self.assertTrue(self.limits.admitDevice(connections[0], "A"))
        self.assertTrue(self.limits.admitDevice(connections[0], "A"))
        self.assertTrue(self.limits.admitDevice(connections[1], "A"))
        self.assertFalse(self.limits.admitDevice(connections[2], "A"))
        self.assertTrue(self.limits.admitDevice(connections[2], "B"))
        self.assertEqual(self.limits.deviceCount("A"), 2)
        self.limits.released(connections[0], None)
        self.assertEqual(self.limits.deviceCount("A"), 1)
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 0)
        self.assertEqual(self.limits.refusedDevices, 1)

    def test_unknownConnection(self) -> None:
        """
        A connection the limits did not see opened (not made by a
        L{LimitedTLSFactory}) is not counted and not refused.
        """
        self.assertTrue(self.limits.admitDevice(_Connection(), "A"))
        self.assertEqual(self.limits.deviceCount("A"), 0)

    def test_unlimited(self) -> None:
        """
        Limits of 0 admit everything.
        """
        limits = ConnectionLimits(self.clock, "WEB", perSource=0, perDevice=0)
        for _ in range(5):
            connection = _Connection()
            self.assertTrue(limits.admitSource("10.0.0.1"))
            limits.opened(connection, "10.0.0.1")
            self.assertTrue(limits.admitDevice(connection, "A"))
        self.assertEqual(limits.sourceCount("10.0.0.1"), 5)

    def test_droppedTLS(self) -> None:
        """
        A connection released while its TCP connection lives on (TLS
        dropped for a raw tunnel) keeps its slots until the TCP connection
        ends; the next sweep (at most once a second) frees them.
        """
        connection = self.open()
        self.assertTrue(self.limits.admitDevice(connection, "A"))
        tcp = _TCP()
        self.limits.released(connection, tcp)
        self.assertEqual((self.limits.sourceCount("10.0.0.1"), self.limits.deviceCount("A")), (1, 1))
        tcp.connected = False
        self.clock.advance(1.0)
        self.assertEqual((self.limits.sourceCount("10.0.0.1"), self.limits.deviceCount("A")), (0, 0))

    def test_logPaced(self) -> None:
        """
        Refusals of one source are logged once per L{LOG_INTERVAL}, not
        once per connection.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.open()
        self.open()
        for _ in range(10):
            self.limits.admitSource("10.0.0.1")
        warnings = [e for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["source"], "10.0.0.1")
        self.clock.advance(LOG_INTERVAL)
        self.limits.admitSource("10.0.0.1")
        self.assertEqual(len([e for e in events if e.get("log_level") == LogLevel.warn]), 2)


class FactoryTests(SynchronousTestCase):
    """
    L{LimitedTLSFactory} refuses at accept and holds a slot per
    connection.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limits = ConnectionLimits(self.clock, "WEB", perSource=1, perDevice=1)
        creator = CertificateOptions(
            privateKey=GATEWAY.key, certificate=GATEWAY.certificate  # type: ignore[arg-type]
        )
        self.factory = LimitedTLSFactory(creator, Factory.forProtocol(Protocol), self.clock, self.limits)

    def connect(self, source: str) -> tuple[object, StringTransport]:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", source, 40000))
        self.assertIsNotNone(protocol)
        transport = StringTransport(peerAddress=IPv4Address("TCP", source, 40000))
        transport.connected = True  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return protocol, transport

    def disconnect(self, protocol: object, transport: StringTransport) -> None:
        """
        End a connection as TCP does: not connected any more, then the
        protocol told.
        """
        transport.connected = False  # type: ignore[attr-defined]
        protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]

    def test_refusedAtAccept(self) -> None:
        """
        No protocol is built for a source over its limit (Twisted closes
        the socket); once its connection ends, the source is accepted
        again.
        """
        protocol, transport = self.connect("10.0.0.1")
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 1)
        self.assertIsNone(self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40001)))
        self.connect("10.0.0.2")
        self.disconnect(protocol, transport)
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 0)
        self.connect("10.0.0.1")

    def test_deviceOfConnection(self) -> None:
        """
        The protocol the factory built is the connection the handler
        counts a device against; its end frees the device's slot.
        """
        protocol, transport = self.connect("10.0.0.1")
        other, _ = self.connect("10.0.0.2")
        self.assertTrue(self.limits.admitDevice(protocol, "A"))
        self.assertFalse(self.limits.admitDevice(other, "A"))
        self.disconnect(protocol, transport)
        self.assertEqual(self.limits.deviceCount("A"), 0)

    def test_listener(self) -> None:
        """
        L{limitedListener} listens with a L{LimitedTLSFactory}.
        """
        listen = limitedListener(self.limits)
        creator = CertificateOptions(privateKey=GATEWAY.key, certificate=GATEWAY.certificate)  # type: ignore[arg-type]
        listen(self.clock, 8443, "127.0.0.1", creator, Factory.forProtocol(Protocol))
        port, factory, backlog, interface = self.clock.tcpServers[0]
        self.assertEqual((port, interface), (8443, "127.0.0.1"))
        self.assertIsInstance(factory, LimitedTLSFactory)
        self.assertIs(factory.limits, self.limits)


class DeviceHandlerTests(SynchronousTestCase):
    """
    L{DeviceLimitedHandler} counts a connection against its device at its
    first request and answers 429 beyond the limit.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limits = ConnectionLimits(self.clock, "WEB", perSource=0, perDevice=1)
        self.inner = RecordingHandler(answerOK)

    def connect(self, presentedCertificate: object) -> tuple[object, StringTransport]:
        handler = DeviceLimitedHandler(
            self.inner, self.limits, handshakeFactsOf=lambda transport: fakes.handshake(presentedCertificate)
        )
        protocol, transport, _ = connectServer(handler, clock=self.clock)
        self.limits.opened(transport, "10.0.0.1")
        return protocol, transport

    def test_overLimit(self) -> None:
        """
        A second connection of a device holding its one allowed connection
        gets 429 with C{Connection: close} and never reaches the access
        proxy's handler; further requests on the first connection are not
        counted again.
        """
        first, firstTransport = self.connect(fakes.presented())
        first.dataReceived(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(firstTransport.value().count(b"HTTP/1.1 200"), 2)
        second, secondTransport = self.connect(fakes.presented())
        second.dataReceived(b"GET /c HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n")
        answer = secondTransport.value()
        self.assertEqual(statusOf(answer), 429)
        self.assertIn(b"Connection: close", answer)
        self.assertIn(b"holds 1 connections", answer)
        self.assertEqual([r.path for r in self.inner.requests], [b"/a", b"/b"])

    def test_notCounted(self) -> None:
        """
        Connections without a certificate, or with one that does not chain
        to an EMS CA (a forged certificate naming the device's UID), are
        not counted: they cannot use up a device's allowance.
        """
        for certificate in (None, fakes.presented(problem="not issued by an EMS CA"), fakes.presented(problem="expired")):
            protocol, transport = self.connect(certificate)
            protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(statusOf(transport.value()), 200)
        self.assertEqual(self.limits.deviceCount(fakes.DEVICE_UID), 0)
        protocol, transport = self.connect(fakes.presented())
        protocol.dataReceived(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(statusOf(transport.value()), 200)
