"""
A stand-in gateway for forwarder tests: a real TLS listener on 127.0.0.1
with ztnagw's HTTP layer, answering tunnel requests from a script (echo
inside TLS or after dropping it, refuse with a block page, stay silent),
so that the forwarder is tested without the whole gateway.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.tls.loopback import DEVICE, GATEWAY, SERVER_CA, serverCertificate, verifier
from ztnagw import errors
from ztnagw.blockpage import BlockFacts, renderBlockPage
from ztnagw.http.interfaces import IRequestHandler
from ztnagw.http.server import HTTPServerFactory, Request
from ztnagw.tls.client import deviceClientCreator
from ztnagw.tls.listener import listenTLS
from ztnagw.tls.server import ServerConnectionCreator
from ztnagw.tunnel.wire import UPGRADE_TOKEN, TunnelTarget, parseTunnelTarget

#: The destination the stand-in refuses with 063.
REFUSED = "refused.example"


@implementer(IHalfCloseableProtocol)
class Echo(Protocol):
    """
    A tunnel's far end: sends a greeting, echoes what it receives, finishes
    sending when its client does, and counts.
    """

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.received = bytearray()
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        """
        Greet.
        """
        if self.greeting:
            self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        """
        Echo.
        """
        self.received += data
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        """
        The client is done: so are we.
        """
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing.
        """

    def connectionLost(self, reason: Failure) -> None:
        """
        Remember.
        """
        self.lost = reason


@implementer(IRequestHandler)
class FakeGateway:
    """
    Answers tunnel requests: refuses L{REFUSED}, stays silent when
    L{silent} is set, else switches to an L{Echo} (inside TLS, or after
    dropping it for C{tls=0}) that first sends L{greeting}.

    @ivar targets: the targets asked for, in order.
    @ivar headers: the request headers, in order.
    @ivar echoes: the echo protocols, in order.
    @ivar unanswered: the requests left unanswered because L{silent} was
        set (their connections are aborted by L{stopAll}).
    """

    def __init__(self) -> None:
        self.targets: list[TunnelTarget] = []
        self.headers: list[object] = []
        self.echoes: list[Echo] = []
        self.greeting = b""
        self.silent = False
        self.unanswered: list[Request] = []

    def requestReceived(self, request: Request) -> None:
        """
        Answer one request.
        """
        target = parseTunnelTarget(request.path)
        self.targets.append(target)
        self.headers.append(request.headers)
        if self.silent:
            self.unanswered.append(request)
            return
        if target.host == REFUSED:
            status, headers, body = renderBlockPage(
                BlockFacts(errors.CERTIFICATE_REVOKED, 0, detail="revoked by a test"),
                request.headers.get(b"accept"),
            )
            request.response.respond(status, b"Forbidden", headers, body)
            return
        tls = request.connection.transport  # type: ignore[union-attr]
        echo = Echo(self.greeting)
        self.echoes.append(echo)
        switching = [(b"Upgrade", UPGRADE_TOKEN), (b"Connection", b"Upgrade")]
        if target.encrypted:
            request.response.writeInformational(101, b"Switching Protocols", switching)
            request.takeOver(echo)
            # So that close_notify reaches the echo as a half-close.
            tls.wrappedProtocol = echo  # type: ignore[attr-defined]
        else:
            tls.freezeTLS()  # type: ignore[attr-defined]
            request.response.writeInformational(101, b"Switching Protocols", switching)
            request.takeOver(Protocol())
            tls.dropTLS(echo)  # type: ignore[attr-defined]


def listenFake(handler: FakeGateway) -> int:
    """
    Run C{handler} behind a TLS listener on 127.0.0.1 with the test
    gateway certificate; return the port (the caller stops it with
    L{stopAll}).
    """
    creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier(clock=reactor))
    port = listenTLS(reactor, 0, "127.0.0.1", creator, HTTPServerFactory(handler, reactor))
    _listening.append((port, handler))
    return port.getHost().port  # type: ignore[no-any-return]


_listening: list[tuple[object, FakeGateway]] = []


def stopAll() -> object:
    """
    Stop the listeners L{listenFake} started and abort the connections
    they left unanswered; fire once their connections are gone.
    """
    from twisted.internet.defer import gatherResults, maybeDeferred

    listening, _listening[:] = list(_listening), []
    for port, handler in listening:
        for request in handler.unanswered:
            request.connection.transport.abortConnection()  # type: ignore[union-attr]
    stopped = gatherResults([maybeDeferred(p.stopListening) for p, _ in listening])  # type: ignore[attr-defined]
    return stopped.addCallback(lambda _: connectionsClosed())


def connectionsClosed(timeout: float = 10.0) -> object:
    """
    A Deferred that fires once no TCP connection is left in the reactor
    (listening ports aside), so that a test ends with everything it opened
    closed; it fails after C{timeout} seconds.
    """
    from twisted.internet import tcp
    from twisted.internet.defer import Deferred

    done: Deferred[None] = Deferred()
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]

    def check() -> None:
        selectables = set(reactor.getReaders()) | set(reactor.getWriters())  # type: ignore[attr-defined]
        open = [s for s in selectables if isinstance(s, tcp.Connection)]
        if not open:
            done.callback(None)
        elif reactor.seconds() > deadline:  # type: ignore[attr-defined]
            done.errback(AssertionError(f"connections still open: {open}"))
        else:
            reactor.callLater(0.01, check)  # type: ignore[attr-defined]

    check()
    return done


def deviceCreator(name: str = "127.0.0.1") -> object:
    """
    The forwarder's TLS client side for the stand-in: the test device, the
    test server CA, and C{name} as the gateway's expected name.
    """
    return deviceClientCreator(
        name, [SERVER_CA.certificate], DEVICE.certificate, DEVICE.key  # type: ignore[arg-type]
    )
