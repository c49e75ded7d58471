"""
Tests for L{ztnagw.forwarder.tunnel}: opening tunnels through a stand-in
gateway on 127.0.0.1 (encrypted and not, refusals, unreachable and silent
gateways, a wrong certificate), and the shared backoff.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.forwarder.fakegateway import (
    REFUSED,
    FakeGateway,
    connectionsClosed,
    deviceCreator,
    listenFake,
    stopAll,
)
from tests.support.daemon import freePort
from ztnagw.forwarder.tunnel import (
    Backoff,
    Gateway,
    GatewayUnreachable,
    TunnelFailed,
    TunnelOpener,
    TunnelRefused,
)
from ztnagw.tunnel.relay import SERVER, RelayEnd
from ztnagw.tunnel.wire import TunnelTarget


class BackoffTests(SynchronousTestCase):
    """
    L{Backoff}: no wait while the gateway answers, doubling waits after
    failures, reset by a success.
    """

    def test_schedule(self) -> None:
        """
        0, then the initial delay doubling up to the maximum, with jitter
        of at most 20%.
        """
        backoff = Backoff(initial=0.5, maximum=4, randomness=lambda: 0.5)
        self.assertEqual(backoff.delay(), 0)
        delays = []
        for _ in range(6):
            backoff.failed()
            delays.append(backoff.delay())
        self.assertEqual(delays, [0.5, 1, 2, 4, 4, 4])
        backoff.succeeded()
        self.assertEqual(backoff.delay(), 0)

    def test_jitter(self) -> None:
        """
        The jitter stays within 20% either way.
        """
        low = Backoff(initial=1, randomness=lambda: 0.0)
        high = Backoff(initial=1, randomness=lambda: 0.999999)
        low.failed()
        high.failed()
        self.assertEqual(low.delay(), 0.8)
        self.assertAlmostEqual(high.delay(), 1.2, places=4)


class Collector(Protocol):
    """
    Collects what a relay end would receive, for tests that use the end's
    transport directly.
    """


def readEnd(end: RelayEnd, size: int) -> Deferred[bytes]:
    """
    Wait until C{end} has received C{size} bytes (it is not joined to a
    relay, so it keeps them); fire with them.
    """
    result: Deferred[bytes] = Deferred()

    def check() -> None:
        data = b"".join(end._pending)
        if len(data) >= size:
            result.callback(data)
        else:
            reactor.callLater(0.01, check)  # type: ignore[attr-defined]

    check()
    return result


class OpenTests(TestCase):
    """
    L{TunnelOpener.open} against the stand-in gateway.
    """

    def setUp(self) -> None:
        self.gateway = FakeGateway()
        self.port = listenFake(self.gateway)
        self.addCleanup(stopAll)
        self.addCleanup(connectionsClosed)

    def opener(self, **kwargs: object) -> TunnelOpener:
        """
        An opener for the stand-in.
        """
        kwargs.setdefault("backoff", Backoff(initial=0.05, maximum=0.1))
        return TunnelOpener(
            reactor,
            Gateway("127.0.0.1", kwargs.pop("port", self.port)),  # type: ignore[arg-type]
            deviceCreator(kwargs.pop("name", "127.0.0.1")),  # type: ignore[arg-type]
            b"ztnagw-forward/test",
            **kwargs,  # type: ignore[arg-type]
        )

    @inlineCallbacks
    def test_encrypted(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A C{tls=1} tunnel: the request names the target, the forwarder's
        User-Agent and JSON; the end carries bytes both ways inside TLS,
        including what the gateway sent right behind the C{101}.
        """
        self.gateway.greeting = b"SSH-2.0-test\r\n"
        end = yield self.opener().open(TunnelTarget("10.0.0.5", 22))
        self.assertEqual(end.side, SERVER)
        self.assertEqual(self.gateway.targets, [TunnelTarget("10.0.0.5", 22, True)])
        headers = self.gateway.headers[0]
        self.assertEqual(headers.get(b"user-agent"), b"ztnagw-forward/test")  # type: ignore[attr-defined]
        self.assertEqual(headers.get(b"accept"), b"application/json")  # type: ignore[attr-defined]
        self.assertEqual(headers.get(b"host"), b"127.0.0.1:%d" % self.port)  # type: ignore[attr-defined]
        greeting = yield readEnd(end, 14)
        self.assertEqual(greeting, b"SSH-2.0-test\r\n")
        end._takePending()
        end.transport.write(b"ping")  # type: ignore[union-attr]
        echoed = yield readEnd(end, 4)
        self.assertEqual(echoed, b"ping")
        self.assertEqual(type(end.transport).__name__, "TLSProtocol")
        end.transport.loseConnection()  # type: ignore[union-attr]

    @inlineCallbacks
    def test_unencrypted(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A C{tls=0} tunnel: after the C{101} the end talks plain TCP, and
        bytes the gateway sent raw right behind the C{101} arrive intact.
        """
        self.gateway.greeting = b"RAW GREETING" * 1000
        end = yield self.opener().open(TunnelTarget("db", 5432, False))
        self.assertEqual(self.gateway.targets[0].encrypted, False)
        greeting = yield readEnd(end, 12000)
        self.assertEqual(greeting, b"RAW GREETING" * 1000)
        end._takePending()
        self.assertEqual(type(end.transport).__name__, "Client")
        end.transport.write(b"plain")  # type: ignore[union-attr]
        echoed = yield readEnd(end, 5)
        self.assertEqual(echoed, b"plain")
        end.transport.loseConnection()  # type: ignore[union-attr]

    @inlineCallbacks
    def test_refused(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A refusal fails the opening with the code and its meaning, at once
        (no retry).
        """
        opener = self.opener()
        error = yield self.assertFailure(opener.open(TunnelTarget(REFUSED, 22)), TunnelRefused)
        self.assertEqual(
            str(error), "blocked by gateway: 063 client certificate revoked (revoked by a test)"
        )
        self.assertEqual(len(self.gateway.targets), 1)
        self.assertEqual(opener.backoff.failures, 0)

    @inlineCallbacks
    def test_unreachable(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A gateway that refuses connections is retried with backoff until the
        retry time is over; the error says how many attempts were made.
        """
        opener = self.opener(port=freePort(), retryFor=1.5)
        error = yield self.assertFailure(opener.open(TunnelTarget("h", 1)), GatewayUnreachable)
        self.assertIn("unreachable after", str(error))
        self.assertIn("refused", str(error))
        self.assertGreater(opener.backoff.failures, 1)

    @inlineCallbacks
    def test_recovers(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A gateway that comes back while a tunnel waits is used, and the
        backoff is reset.
        """
        port = freePort()
        opener = self.opener(port=port, retryFor=10)
        opening = opener.open(TunnelTarget("h", 1))

        def start() -> None:
            from ztnagw.http.server import HTTPServerFactory
            from ztnagw.tls.listener import listenTLS
            from ztnagw.tls.server import ServerConnectionCreator

            from tests.tls.loopback import GATEWAY, serverCertificate, verifier

            creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier(clock=reactor))
            listening = listenTLS(reactor, port, "127.0.0.1", creator, HTTPServerFactory(self.gateway, reactor))
            self.addCleanup(listening.stopListening)

        reactor.callLater(0.2, start)  # type: ignore[attr-defined]
        end = yield opening
        self.assertEqual(opener.backoff.failures, 0)
        end.transport.loseConnection()  # type: ignore[union-attr]

    @inlineCallbacks
    def test_wrongCertificate(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A gateway whose certificate does not name the gateway is refused
        without retrying.
        """
        opener = self.opener(name="other.example", retryFor=10)
        error = yield self.assertFailure(opener.open(TunnelTarget("h", 1)), TunnelFailed)
        self.assertIn("other.example", str(error))
        self.assertEqual(self.gateway.targets, [])

    @inlineCallbacks
    def test_silent(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A gateway that never answers fails the opening after the answer
        timeout.
        """
        self.gateway.silent = True
        opener = self.opener(answerTimeout=0.2)
        error = yield self.assertFailure(opener.open(TunnelTarget("h", 1)), TunnelFailed)
        self.assertIn("did not answer within 0.2 s", str(error))

    @inlineCallbacks
    def test_cancel(self) -> Deferred[None]:  # type: ignore[misc]
        """
        Cancelling an opening (the application left) gives up its
        connection.
        """
        self.gateway.silent = True
        opening = self.opener().open(TunnelTarget("h", 1))
        while not self.gateway.targets:
            yield _sleep(0.01)
        opening.cancel()
        yield self.assertFailure(opening, CancelledError)

    @inlineCallbacks
    def test_cancelWhileWaiting(self) -> Deferred[None]:  # type: ignore[misc]
        """
        Cancelling while waiting to retry stops the retries.
        """
        opener = self.opener(port=freePort(), retryFor=60)
        opening = opener.open(TunnelTarget("h", 1))
        yield _sleep(0.1)
        opening.cancel()
        yield self.assertFailure(opening, CancelledError)
        failures = opener.backoff.failures
        yield _sleep(0.3)
        self.assertEqual(opener.backoff.failures, failures)


def _sleep(seconds: float) -> Deferred[None]:
    waiting: Deferred[None] = Deferred()
    reactor.callLater(seconds, waiting.callback, None)  # type: ignore[attr-defined]
    return waiting
