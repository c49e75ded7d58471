"""
Tests for L{ztnagw.gateway.limits}: per-source and per-device connection
limits (security finding F2: a single source could hold any number of
connections).
"""

from __future__ import annotations

import gc

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests.gateway import fakes
from tests.http.helpers import RecordingHandler, answerOK, connectServer, statusOf
from ztnagw.gateway.limits import (
    LOG_INTERVAL,
    SWEEP_INTERVAL,
    ConnectionLimits,
    DeviceLimitedHandler,
    RefusedConnection,
    tcpOf,
)
from ztnagw.gateway.proxy import VipHTTPFactory


class _TCP:
    """
    Stands for a TCP connection.
    """

    connected = True


class _Wrapper:
    """
    Stands for a TLS layer over a TCP connection (a protocol wrapper).
    """

    wrappedProtocol = None

    def __init__(self, tcp: _TCP) -> None:
        self.transport = tcp


class CountTests(SynchronousTestCase):
    """
    L{ConnectionLimits} counts connections by source and device.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.limits = ConnectionLimits(self.clock, "WEB", perSource=2, perDevice=2)
        # The reactor holds every connected TCP connection; the limits
        # refer to them weakly.
        self.connections: list[_Wrapper] = []

    def open(self, source: str = "10.0.0.1") -> _Wrapper:
        """
        A new connection from C{source}, admitted and made.
        """
        transport = _Wrapper(_TCP())
        self.connections.append(transport)
        self.assertTrue(self.limits.admitSource(source))
        self.limits.opened(transport, source)
        return transport

    def test_perSource(self) -> None:
        """
        A source holding its limit is refused until one of its
        connections ends; other sources are not affected.
        """
        first = self.open()
        self.open()
        self.assertFalse(self.limits.admitSource("10.0.0.1"))
        self.assertTrue(self.limits.admitSource("10.0.0.2"))
        first.transport.connected = False
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
        connections[0].transport.connected = False
        self.assertEqual(self.limits.deviceCount("A"), 1)
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 0)
        self.assertEqual(self.limits.refusedDevices, 1)

    def test_unknownConnection(self) -> None:
        """
        A connection the limits were not told of is not counted and not
        refused.
        """
        self.assertTrue(self.limits.admitDevice(_Wrapper(_TCP()), "B"))
        self.assertEqual(self.limits.deviceCount("B"), 0)

    def test_unlimited(self) -> None:
        """
        Limits of 0 admit everything.
        """
        limits = ConnectionLimits(self.clock, "WEB", perSource=0, perDevice=0)
        for _ in range(5):
            transport = _Wrapper(_TCP())
            self.connections.append(transport)
            self.assertTrue(limits.admitSource("10.0.0.1"))
            limits.opened(transport, "10.0.0.1")
            self.assertTrue(limits.admitDevice(transport, "A"))
        self.assertEqual(limits.sourceCount("10.0.0.1"), 5)

    def test_tcpOutlivesTLS(self) -> None:
        """
        A slot follows the TCP connection, not the TLS layer over it: a
        tunnel that dropped TLS (the wrapper gone) still counts until its
        TCP connection ends.
        """
        tcp = _TCP()
        transport = _Wrapper(tcp)
        self.limits.opened(transport, "10.0.0.1")
        self.assertTrue(self.limits.admitDevice(transport, "A"))
        del transport
        gc.collect()
        self.assertEqual((self.limits.sourceCount("10.0.0.1"), self.limits.deviceCount("A")), (1, 1))
        tcp.connected = False
        self.assertEqual((self.limits.sourceCount("10.0.0.1"), self.limits.deviceCount("A")), (0, 0))

    def test_sweep(self) -> None:
        """
        Sources and devices whose connections all ended are forgotten at
        the next sweep, though they never come back.
        """
        transports = [self.open(f"10.0.{n}.1") for n in range(50)]
        for transport in transports:
            self.limits.admitDevice(transport, "A" if transport is transports[0] else "B")
            transport.transport.connected = False
        self.clock.advance(SWEEP_INTERVAL)
        self.open("10.1.0.1")
        self.assertEqual(sorted(self.limits._bySource), ["10.1.0.1"])
        self.assertEqual(self.limits._byDevice, {})

    def test_tcpOf(self) -> None:
        """
        L{tcpOf} sees through a protocol wrapper to the TCP connection.
        """
        tcp = _TCP()
        self.assertIs(tcpOf(_Wrapper(tcp)), tcp)
        self.assertIs(tcpOf(tcp), tcp)

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
    A VIP's HTTP factory with limits refuses at accept and makes each
    connection take its slot.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.limits = ConnectionLimits(self.clock, "WEB", perSource=1, perDevice=1)
        self.factory = VipHTTPFactory(RecordingHandler(answerOK), self.clock)
        self.factory.connectionLimits = self.limits

    def connect(self, source: str) -> tuple[object, StringTransport]:
        """
        Accept a connection from C{source} (it must be admitted).
        """
        address = IPv4Address("TCP", source, 40000)
        protocol = self.factory.buildProtocol(address)
        self.assertNotIsInstance(protocol, RefusedConnection)
        transport = StringTransport(peerAddress=address)
        transport.connected = True  # type: ignore[attr-defined]
        protocol.makeConnection(transport)
        return protocol, transport

    def test_refusedAtAccept(self) -> None:
        """
        A source over its limit gets a protocol that closes the connection
        as soon as it is made, reading nothing; once the source's
        connection ends, it is accepted again.
        """
        protocol, transport = self.connect("10.0.0.1")
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 1)
        refused = self.factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 40001))
        self.assertIsInstance(refused, RefusedConnection)
        refusedTransport = StringTransport()
        refused.makeConnection(refusedTransport)
        self.assertTrue(refusedTransport.disconnecting)
        self.connect("10.0.0.2")
        transport.connected = False  # type: ignore[attr-defined]
        protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        self.assertEqual(self.limits.sourceCount("10.0.0.1"), 0)
        self.connect("10.0.0.1")

    def test_deviceOfConnection(self) -> None:
        """
        The transport a connection was made with is what the handler counts
        a device against.
        """
        _, transport = self.connect("10.0.0.1")
        _, other = self.connect("10.0.0.2")
        self.assertTrue(self.limits.admitDevice(transport, "A"))
        self.assertFalse(self.limits.admitDevice(other, "A"))
        transport.connected = False  # type: ignore[attr-defined]
        self.assertEqual(self.limits.deviceCount("A"), 0)

    def test_noLimits(self) -> None:
        """
        A factory without limits builds every protocol.
        """
        factory = VipHTTPFactory(RecordingHandler(answerOK), self.clock)
        for port in range(3):
            self.assertNotIsInstance(factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", port)), RefusedConnection)


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
        """
        A connection whose handshake presented C{presentedCertificate}.
        """
        self.judged = 0

        def facts(transport: object) -> object:
            self.judged += 1
            return fakes.handshake(presentedCertificate)

        handler = DeviceLimitedHandler(self.inner, self.limits, handshakeFactsOf=facts)
        protocol, transport, _ = connectServer(handler, clock=self.clock)
        transport.connected = True  # type: ignore[attr-defined]
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
        self.assertEqual(self.judged, 1)
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
