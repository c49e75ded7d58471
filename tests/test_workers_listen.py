"""
Tests for how listeners bind: the C{SO_REUSEPORT} sockets and adoption of
L{ztnagw.tls.listener}, and the VIP and EMS services listening in
C{privilegedStartService} (before twistd drops privileges).
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.ems.fixtures import RunningEms
from tests.tls.test_listener import creator
from ztnagw.ems.service import EmsService
from ztnagw.gateway.vip import VipService
from ztnagw.tls.listener import addressFamily, adoptTLS, checkPortFree, reusePortSocket
from ztnagw.tls.transport import TLSFactory


class FakePort:
    """
    A listening port as a fake C{listen} returns it.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.stopped = False

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.port)

    def stopListening(self) -> None:
        self.stopped = True


class Listens:
    """
    A C{listen} function that records its calls.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, reactor: Any, port: int, interface: str, creator: Any, factory: Any) -> FakePort:
        self.calls.append((port, interface))
        return FakePort(port)


class ReusePortTests(TestCase):
    """
    L{reusePortSocket}, L{checkPortFree}, L{adoptTLS}.
    """

    def test_shared(self) -> None:
        """
        Sockets made by L{reusePortSocket} share a port, each with its own
        queue: new connections are spread over them.
        """
        first = reusePortSocket("127.0.0.1", 0)
        self.addCleanup(first.close)
        port = first.getsockname()[1]
        second = reusePortSocket("127.0.0.1", port)
        self.addCleanup(second.close)
        self.assertFalse(first.getblocking())
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        for client in clients:
            self.addCleanup(client.close)
        counts = []
        for sock in (first, second):
            count = 0
            while True:
                try:
                    accepted, _ = sock.accept()
                except BlockingIOError:
                    break
                accepted.close()
                count += 1
            counts.append(count)
        self.assertEqual(sum(counts), 40)
        self.assertTrue(all(counts), counts)

    def test_ipv6(self) -> None:
        """
        An IPv6 literal makes an C{AF_INET6} socket.
        """
        self.assertEqual(addressFamily("::1"), socket.AF_INET6)
        self.assertEqual(addressFamily("0.0.0.0"), socket.AF_INET)
        sock = reusePortSocket("::1", 0)
        self.addCleanup(sock.close)
        self.assertEqual(sock.family, socket.AF_INET6)

    def test_checkPortFree(self) -> None:
        """
        L{checkPortFree} refuses an address something listens on,
        C{SO_REUSEPORT} or not, and accepts a free one.
        """
        group = reusePortSocket("127.0.0.1", 0)
        self.addCleanup(group.close)
        error = self.assertRaises(OSError, checkPortFree, "127.0.0.1", group.getsockname()[1])
        self.assertEqual(error.errno, errno.EADDRINUSE)
        plain = socket.socket()
        self.addCleanup(plain.close)
        plain.bind(("127.0.0.1", 0))
        free = plain.getsockname()[1]
        plain.close()
        checkPortFree("127.0.0.1", free)

    def test_adoptWraps(self) -> None:
        """
        L{adoptTLS} adopts the descriptor with the reactor, wrapping the
        factory as L{listenTLS<ztnagw.tls.listener.listenTLS>} does, and
        closes the descriptor it was given.
        """
        memory = MemoryReactorClock()
        sock = reusePortSocket("127.0.0.1", 0)
        self.addCleanup(sock.close)
        fd = os.dup(sock.fileno())
        application = Factory.forProtocol(Protocol)
        adoptTLS(memory, fd, socket.AF_INET, creator(), application)
        [(adopted, family, factory)] = memory.adoptedPorts
        self.assertEqual((adopted, family), (fd, socket.AF_INET))
        self.assertIsInstance(factory, TLSFactory)
        self.assertIs(factory.wrappedFactory, application)
        self.assertIs(factory.clock, memory)
        self.assertTrue(factory.tuneTCP)
        self.assertRaises(OSError, os.fstat, fd)

    @inlineCallbacks
    def test_stopLeavesShared(self) -> None:
        """
        Stopping an adopted port closes only its own descriptor: the
        socket keeps listening for the other holders (the supervisor's
        copy keeps a dead worker's queue for its successor).
        """
        held = reusePortSocket("127.0.0.1", 0)
        self.addCleanup(held.close)
        port = held.getsockname()[1]
        adopted = adoptTLS(reactor, os.dup(held.fileno()), socket.AF_INET, creator(), Factory.forProtocol(Protocol))
        self.assertEqual(adopted.getHost().port, port)
        yield adopted.stopListening()
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.addCleanup(client.close)
        held.settimeout(5)
        accepted, _ = held.accept()
        accepted.close()


class Site:
    """
    What L{VipService} needs of a VIP site.
    """

    class vip:
        name = "V"
        extport = 10443
        extip = "127.0.0.1"

    accessProxy = None


class VipServiceListenTests(SynchronousTestCase):
    """
    L{VipService} listens before privileges are dropped.
    """

    def test_privileged(self) -> None:
        """
        C{privilegedStartService} listens; C{startService} after it does
        not listen again; stopping stops the port.
        """
        listens = Listens()
        service = VipService(MemoryReactorClock(), Site(), None, None, listen=listens)  # type: ignore[arg-type]
        service.privilegedStartService()
        self.assertEqual(listens.calls, [(10443, "127.0.0.1")])
        service.startService()
        self.assertEqual(listens.calls, [(10443, "127.0.0.1")])
        self.assertTrue(service.running)
        port = service.port
        self.successResultOf(service.stopService())
        self.assertTrue(port.stopped)  # type: ignore[union-attr]

    def test_startAlone(self) -> None:
        """
        Started without C{privilegedStartService} (tests, services added
        later), it listens in C{startService}.
        """
        listens = Listens()
        service = VipService(MemoryReactorClock(), Site(), None, None, listen=listens)  # type: ignore[arg-type]
        service.startService()
        self.assertEqual(listens.calls, [(10443, "127.0.0.1")])

    def test_cannotListen(self) -> None:
        """
        A port that cannot be bound fails C{privilegedStartService}, so
        twistd stops before it drops privileges.
        """

        def refuse(*args: Any) -> Any:
            raise OSError(errno.EACCES, "Permission denied")

        service = VipService(MemoryReactorClock(), Site(), None, None, listen=refuse)  # type: ignore[arg-type]
        self.assertRaises(OSError, service.privilegedStartService)
        self.assertFalse(service.running)


class SubscribeCounter:
    """
    An index wrapper that counts subscriptions (the presence monitor
    subscribes when it starts).
    """

    def __init__(self, index: Any) -> None:
        self._index = index
        self.subscriptions = 0

    def subscribe(self, callback: Any) -> Any:
        self.subscriptions += 1
        return self._index.subscribe(callback)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


class EmsServiceListenTests(TestCase):
    """
    L{EmsService} listens before privileges are dropped, through the
    C{listen} it is given.
    """

    @inlineCallbacks
    def test_privileged(self) -> None:
        """
        C{privilegedStartService} listens on the listener's address and
        port; C{startService} does not listen again; a worker other than
        the first does not monitor presence.
        """
        ems = RunningEms(os.path.abspath(self.mktemp()))
        yield ems.index.start()
        self.addCleanup(ems.store.close)
        self.addCleanup(ems.index.stop)
        listens = Listens()
        index = SubscribeCounter(ems.index)
        service = EmsService(
            reactor, ems.settings, ems.ca, ems.listener, index, ems.verifier, ems.shared.acquire,
            lambda address: True, ems.events.append, (), port=18013, listen=listens, monitorPresence=False,
        )
        service.privilegedStartService()
        self.assertEqual(listens.calls, [(18013, "127.0.0.1")])
        service.startService()
        self.assertEqual(listens.calls, [(18013, "127.0.0.1")])
        self.assertEqual(index.subscriptions, 0)
        yield service.stopService()
        monitoring = EmsService(
            reactor, ems.settings, ems.ca, ems.listener, index, ems.verifier, ems.shared.acquire,
            lambda address: True, ems.events.append, (), port=18013, listen=listens,
        )
        monitoring.startService()
        self.assertEqual(index.subscriptions, 1)
        self.assertEqual(len(listens.calls), 2)
        yield monitoring.stopService()
