"""
Tests for L{ztnagw.forwarder.forward}: the command line, and the forwarding
service with real local connections through a stand-in gateway.
"""

from __future__ import annotations

import os
import socket
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer

from tests.forwarder.fakegateway import (
    REFUSED,
    FakeGateway,
    connectionsClosed,
    deviceCreator,
    listenFake,
    stopAll,
)
from tests.support.daemon import freePort
from ztnagw.forwarder import socks
from ztnagw.forwarder.forward import Forwarder, UsageError, _StandardIO, parseArguments, socksReplyFor
from ztnagw.forwarder.rules import ForwardRule, ListenAddress, parseForwardSpec
from ztnagw.forwarder.tunnel import Backoff, Gateway, GatewayUnreachable, TunnelOpener, TunnelRefused
from ztnagw.tunnel.wire import TunnelRefusal, TunnelTarget

IDENTITY = ["--cert", "d.crt", "--key", "d.key", "--ca", "ca.crt"]


class ArgumentTests(SynchronousTestCase):
    """
    L{parseArguments}.
    """

    def test_combined(self) -> None:
        """
        The modes combine; C{--encryption off} applies to C{-L}, C{-D} and
        C{--stdio}.
        """
        settings = parseArguments(
            IDENTITY
            + ["--gateway", "gw:443", "-L", "2222:10.0.0.5:22", "-L", "0:db:5432", "-D", "1080", "--stdio", "h:22", "--encryption", "off"]
        )
        self.assertEqual([r.listen.port for r in settings.rules], [2222, 0])
        self.assertFalse(settings.rules[0].destination.encrypted)
        self.assertEqual(settings.socks, (ListenAddress("127.0.0.1", 1080),))
        self.assertEqual(settings.stdio, TunnelTarget("h", 22, False))
        self.assertEqual(settings.gateway, ("gw", 443))

    def test_rulesFile(self) -> None:
        """
        C{--rules} reads the file.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[db]\ndestination = db:5432\nlisten = 15432\n")
        settings = parseArguments(IDENTITY + ["--rules", path])
        self.assertEqual(settings.rules[0].name, "db")
        e = self.assertRaises(UsageError, parseArguments, IDENTITY + ["--rules", path + ".missing"])
        self.assertIn("cannot read the rules file", str(e))

    def test_errors(self) -> None:
        """
        A command line that cannot be acted on says why.
        """
        for argv, words in (
            (IDENTITY, "nothing to forward"),
            (IDENTITY + ["-L", "0.0.0.0:2222:h:22"], "--allow-remote-clients"),
            (IDENTITY + ["-D", "*:1080"], "--allow-remote-clients"),
            (["--cert", "x", "-L", "1:h:2"], "go together"),
            (IDENTITY + ["--profile", "p", "-L", "1:h:2"], "not both"),
            (IDENTITY + ["--stdio", "h"], "--stdio"),
            (IDENTITY + ["-L", "1:h:2", "--grace", "-1"], "--grace"),
        ):
            e = self.assertRaises(UsageError, parseArguments, argv)
            self.assertIn(words, str(e), argv)
        parseArguments(IDENTITY + ["-L", "0.0.0.0:2222:h:22", "--allow-remote-clients"])

    def test_socksReplies(self) -> None:
        """
        Failures map to SOCKS reply codes.
        """

        def refused(code: str | None) -> Failure:
            return Failure(TunnelRefused(TunnelRefusal(403, code, "m")))

        self.assertEqual(socksReplyFor(refused("023")), socks.HOST_UNREACHABLE)
        self.assertEqual(socksReplyFor(refused("063")), socks.NOT_ALLOWED)
        self.assertEqual(socksReplyFor(refused(None)), socks.GENERAL_FAILURE)
        self.assertEqual(socksReplyFor(Failure(GatewayUnreachable("x"))), socks.NETWORK_UNREACHABLE)


@implementer(IHalfCloseableProtocol)
class Application(Protocol):
    """
    A local application: sends C{message} at once (before any tunnel can
    exist), half-closes if asked, and collects the answer.
    """

    def __init__(self, message: bytes, halfClose: bool = True, prefix: bytes = b"") -> None:
        self.message = message
        self.halfClose = halfClose
        self.prefix = prefix
        self.received = bytearray()
        self.done: Deferred[Application] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        """
        Send at once.
        """
        self.transport.write(self.prefix + self.message)
        if self.halfClose:
            self.transport.loseWriteConnection()

    def dataReceived(self, data: bytes) -> None:
        """
        Collect.
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

    def connectionLost(self, reason: Failure) -> None:
        """
        Report.
        """
        self.reason = reason
        self.done.callback(self)


class ServiceTests(TestCase):
    """
    L{Forwarder} with real local connections and the stand-in gateway.
    """

    def setUp(self) -> None:
        self.gateway = FakeGateway()
        self.gatewayPort = listenFake(self.gateway)
        self.addCleanup(stopAll)
        self.addCleanup(connectionsClosed)
        self.lines: list[str] = []

        def observe(event: dict[str, object]) -> None:
            if str(event.get("log_namespace", "")).startswith("ztnagw.forwarder"):
                self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def forwarder(self, *rules: ForwardRule, socksAt: tuple[ListenAddress, ...] = (), port: int | None = None, retryFor: float = 5, grace: float = 5) -> Forwarder:
        """
        A started forwarder to the stand-in (or to C{port}).
        """
        opener = TunnelOpener(
            reactor,
            Gateway("127.0.0.1", port or self.gatewayPort),
            deviceCreator(),  # type: ignore[arg-type]
            b"ztnagw-forward/test",
            retryFor=retryFor,
            backoff=Backoff(initial=0.05, maximum=0.1),
        )
        forwarder = Forwarder(reactor, lambda gateway: opener, rules, socksAt, grace=grace)
        forwarder.startService()
        self.addCleanup(forwarder.stopService)
        return forwarder

    def connect(self, port: int, application: Application) -> Deferred[Application]:
        """
        Connect C{application} to the forwarder's C{port}.
        """
        factory = ClientFactory.forProtocol(lambda: application)  # type: ignore[arg-type, return-value]
        reactor.connectTCP("127.0.0.1", port, factory)  # type: ignore[attr-defined]
        return application.done

    @inlineCallbacks
    def test_forward(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A C{-L} connection is tunnelled: what the application sent before
        the tunnel existed arrives, it shuts down its write side and still
        receives the whole answer; one line is logged, with the bytes.
        """
        rule = parseForwardSpec("0:10.0.0.5:22")
        forwarder = self.forwarder(rule)
        port = forwarder.boundAddress(rule).port
        message = os.urandom(300_000)
        application = yield self.connect(port, Application(message))
        self.assertEqual(bytes(application.received), message)
        self.assertTrue(application.reason.check(ConnectionDone))  # type: ignore[union-attr]
        self.assertEqual(self.gateway.targets, [TunnelTarget("10.0.0.5", 22)])
        yield _until(lambda: not forwarder.tunnels)
        (line,) = [line for line in self.lines if "closed after" in line]
        self.assertIn("tunnel 1 [-L 0:10.0.0.5:22] 127.0.0.1:", line)
        self.assertIn("-> 10.0.0.5:22 via 127.0.0.1:%d (tls)" % self.gatewayPort, line)
        self.assertIn("300000 bytes sent, 300000 bytes received", line)

    @inlineCallbacks
    def test_unencrypted(self) -> Deferred[None]:  # type: ignore[misc]
        """
        The same with C{tls=0}.
        """
        rule = parseForwardSpec("0:db:5432", encrypted=False)
        forwarder = self.forwarder(rule)
        message = os.urandom(100_000)
        application = yield self.connect(forwarder.boundAddress(rule).port, Application(message))
        self.assertEqual(bytes(application.received), message)
        self.assertFalse(self.gateway.targets[0].encrypted)

    @inlineCallbacks
    def test_refused(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A refused tunnel closes that connection only, and the log says why;
        the next connection works.
        """
        refused = parseForwardSpec(f"0:{REFUSED}:22")
        allowed = parseForwardSpec("0:10.0.0.5:22")
        forwarder = self.forwarder(refused, allowed)
        application = yield self.connect(forwarder.boundAddress(refused).port, Application(b"x", halfClose=False))
        self.assertEqual(application.received, b"")
        yield _until(lambda: any("blocked by gateway" in line for line in self.lines))
        self.assertIn(
            "blocked by gateway: 063 client certificate revoked (revoked by a test)",
            "\n".join(self.lines),
        )
        application = yield self.connect(forwarder.boundAddress(allowed).port, Application(b"ok"))
        self.assertEqual(application.received, b"ok")

    @inlineCallbacks
    def test_unreachable(self) -> Deferred[None]:  # type: ignore[misc]
        """
        With the gateway down, a connection is closed after the retries,
        the reason is logged, and the forwarder goes on accepting.
        """
        rule = parseForwardSpec("0:10.0.0.5:22")
        forwarder = self.forwarder(rule, port=freePort(), retryFor=0.5)
        port = forwarder.boundAddress(rule).port
        for _ in range(2):
            application = yield self.connect(port, Application(b"x", halfClose=False))
            self.assertEqual(application.received, b"")
        self.assertEqual(len([line for line in self.lines if "unreachable after" in line]), 2)

    @inlineCallbacks
    def test_socks(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A SOCKS client names its destination; allowed ones are tunnelled
        after a success reply, refused ones get "not allowed".
        """
        address = ListenAddress("127.0.0.1", 0)
        forwarder = self.forwarder(socksAt=(address,))
        port = forwarder.boundAddress(address).port
        request = b"\x05\x01\x00" + b"\x05\x01\x00\x03\x06db.lan" + struct.pack("!H", 5432)
        application = yield self.connect(port, Application(b"hello", prefix=request))
        self.assertEqual(bytes(application.received), b"\x05\x00" + socks.reply(0) + b"hello")
        self.assertEqual(self.gateway.targets, [TunnelTarget("db.lan", 5432)])
        name = REFUSED.encode()
        request = b"\x05\x01\x00" + b"\x05\x01\x00\x03" + bytes([len(name)]) + name + b"\x00\x16"
        application = yield self.connect(port, Application(b"", halfClose=False, prefix=request))
        self.assertEqual(bytes(application.received), b"\x05\x00" + socks.reply(socks.NOT_ALLOWED))

    @inlineCallbacks
    def test_grace(self) -> Deferred[None]:  # type: ignore[misc]
        """
        Stopping stops accepting at once, lets an open tunnel run for the
        grace period, then closes it.
        """
        rule = parseForwardSpec("0:10.0.0.5:22")
        forwarder = self.forwarder(rule, grace=1.0)
        port = forwarder.boundAddress(rule).port
        application = Application(b"still here", halfClose=False)
        self.connect(port, application)
        yield _until(lambda: bytes(application.received) == b"still here")
        stopping = forwarder.stopService()
        yield _until(lambda: True, delay=0.1)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0)
        self.assertNoResult(stopping)
        self.assertIsNone(application.reason)
        yield stopping
        yield application.done
        self.assertIn("the forwarder is stopping", "\n".join(self.lines))


def _until(condition: object, timeout: float = 10.0, delay: float = 0.0) -> Deferred[None]:
    """
    Fire once C{condition()} is true (checked after C{delay} seconds, then
    every 10 ms); fail after C{timeout} seconds.
    """
    done: Deferred[None] = Deferred()
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]

    def check() -> None:
        if condition():  # type: ignore[operator]
            done.callback(None)
        elif reactor.seconds() > deadline:  # type: ignore[attr-defined]
            done.errback(AssertionError("condition not met in time"))
        else:
            reactor.callLater(0.01, check)  # type: ignore[attr-defined]

    reactor.callLater(delay, check)  # type: ignore[attr-defined]
    return done


@implementer(IHalfCloseableProtocol)
class _HalfCloseRecorder(Protocol):
    """
    A half-closeable protocol that records how its standard I/O ends.

    @ivar writeLost: fires when the write half has closed.
    @ivar lost: fires with the exception of C{connectionLost}'s reason.
    """

    def __init__(self) -> None:
        self.writeLost: Deferred[None] = Deferred()
        self.lost: Deferred[BaseException] = Deferred()

    def readConnectionLost(self) -> None:
        """
        Standard input ended.
        """

    def writeConnectionLost(self) -> None:
        """
        Standard output was closed.
        """
        self.writeLost.callback(None)

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:
        """
        Record the reason.
        """
        self.lost.callback(reason.value)


class StandardIOTests(TestCase):
    """
    The standard I/O transport of C{--stdio}.
    """

    timeout = 10

    def standardIO(self) -> tuple[_HalfCloseRecorder, object, int]:
        """
        A C{--stdio} transport on two fresh pipes.

        @return: the protocol, the transport, and the write end of its
            standard input (the program that started the forwarder).
        """
        inRead, inWrite = os.pipe()
        outRead, outWrite = os.pipe()
        self.addCleanup(os.close, outRead)
        self.addCleanup(lambda: _closeQuietly(inWrite))
        protocol = _HalfCloseRecorder()
        transport = _StandardIO(protocol, stdin=inRead, stdout=outWrite, reactor=reactor)
        return protocol, transport, inWrite

    @inlineCallbacks
    def test_loseConnectionAfterWriteHalf(self):  # type: ignore[no-untyped-def]
        """
        Closing standard output first (the real server's end of stream),
        then the whole connection while standard input is still open,
        ends the connection: the relay learns of it and the forwarder can
        exit (Twisted's C{StandardIO} only stopped reading).
        """
        protocol, transport, _ = self.standardIO()
        transport.loseWriteConnection()
        yield protocol.writeLost
        transport.loseConnection()
        reason = yield protocol.lost
        self.assertIsInstance(reason, ConnectionDone)

    @inlineCallbacks
    def test_abortConnection(self):  # type: ignore[no-untyped-def]
        """
        C{abortConnection} (what the relay calls when a stop's grace period
        is over) ends the connection at once.
        """
        protocol, transport, _ = self.standardIO()
        transport.abortConnection()
        reason = yield protocol.lost
        self.assertIsInstance(reason, ConnectionAborted)
        transport.abortConnection()

    @inlineCallbacks
    def test_loseConnectionWithBothHalves(self):  # type: ignore[no-untyped-def]
        """
        With both halves open, C{loseConnection} still ends the connection
        once standard output is flushed (Twisted's own path).
        """
        protocol, transport, _ = self.standardIO()
        transport.write(b"last words")
        transport.loseConnection()
        reason = yield protocol.lost
        self.assertIsInstance(reason, ConnectionDone)


def _closeQuietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
