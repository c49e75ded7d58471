"""
Tests for L{ztnagw.gateway.tunnel} over real loopback sockets: the
gateway's TLS listener with the real HTTP layer and tunnel handler, a real
server, and real clients (the forwarder's opener, a stdlib TLS client that
replays FortiClient byte for byte, an optimistic C{tls=0} client).  What
needs real TLS is checked here: half-close through C{close_notify}, TLS
frozen and dropped for C{tls=0}, early data, a refused C{tls=0} connection
that closes promptly.
"""

from __future__ import annotations

import os
import socket
import ssl
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.forwarder.fakegateway import Echo, connectionsClosed, deviceCreator
from tests.gateway.fakes import (
    MemoryIndex,
    TableResolver,
    handshake,
    makeContext,
    makeGate,
    makeSite,
    presented,
    record,
)
from tests.tls.loopback import DEVICE, GATEWAY, serverCertificate, verifier
from ztnagw.config import loads
from ztnagw.forwarder.tunnel import Backoff, Gateway, TunnelOpener, TunnelRefused
from ztnagw.gateway.tunnel import LINGER, TunnelHandler
from ztnagw.http.interfaces import IRequestHandler
from ztnagw.http.server import HTTPServerFactory
from ztnagw.tls.listener import listenTLS
from ztnagw.tls.server import ServerConnectionCreator
from ztnagw.tunnel.relay import RelayEnd
from ztnagw.tunnel.wire import TunnelTarget

MiB = 1 << 20
UPLOAD = os.urandom(2 * MiB)
REPLY = os.urandom(3 * MiB)
EARLY = os.urandom(100 << 10)

CONFIG = """
config vpn certificate local
    edit "gw"
        set certificate-file "gw.crt"
        set private-key-file "gw.key"
        set auto-generate enable
    next
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set https-port 18013
        set serial-number "FCTEMS8825007278"
    next
end
config firewall vip
    edit "vip"
        set type access-proxy
        set server-type https
        set extip 127.0.0.1
        set extintf "any"
        set extport 443
        set ssl-certificate "gw"
    next
end
config firewall access-proxy
    edit "proxy"
        set vip "vip"
        config api-gateway
            edit 1
                set service tcp-forwarding
                config realservers
                    edit 1
                        set ip 127.0.0.1
                        set mappedport %(answer)d %(echo)d
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 1
        set srcintf "any"
        set dstintf "any"
        set srcaddr "all"
        set dstaddr "vip"
        set action accept
        set schedule "always"
        set logtraffic all
    next
end
"""

FORTICLIENT = (
    b"GET /tcp?address=127.0.0.1&port=%d&tls=1 HTTP/1.1\r\n"
    b"Host: 127.0.0.1:%d\r\n"
    b"User-Agent: Forticlient\r\n"
    b"Accept: */*\r\n"
    b"Upgrade: tcp-forwarding/1.0\r\n"
    b"Connection: Upgrade\r\n"
    b"Cookie:\r\n"
    b"Authorization: Basic\r\n"
    b"\r\n"
)


@implementer(IHalfCloseableProtocol)
class AnswerAtEOF(Protocol):
    """
    A real server that reads until its client finishes sending, then
    answers L{REPLY} and closes.
    """

    def __init__(self, uploads: list[bytes]) -> None:
        self.uploads = uploads
        self.received = bytearray()

    def dataReceived(self, data: bytes) -> None:
        """
        Keep.
        """
        self.received += data

    def readConnectionLost(self) -> None:
        """
        Answer and close.
        """
        self.uploads.append(bytes(self.received))
        self.transport.write(REPLY)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing.
        """


@implementer(IRequestHandler)
class Dispatcher:
    """
    Hands each request to the tunnel handler with a context of the test
    device.
    """

    def __init__(self, test: SocketTests) -> None:
        self.test = test

    def requestReceived(self, request: object) -> None:
        """
        See L{IRequestHandler}.
        """
        test = self.test
        context = makeContext(test.gate, test.site, handshake(presented()))
        test.handler.handleTunnelRequest(request, context)


def _gone(protocols: dict[object, object], timeout: float) -> Deferred[None]:
    done: Deferred[None] = Deferred()
    deadline = reactor.seconds() + timeout  # type: ignore[attr-defined]

    def check() -> None:
        if not protocols:
            done.callback(None)
        elif reactor.seconds() > deadline:  # type: ignore[attr-defined]
            done.errback(AssertionError(f"still open: {list(protocols)}"))
        else:
            reactor.callLater(0.02, check)  # type: ignore[attr-defined]

    check()
    return done


class SocketTests(TestCase):
    """
    The tunnel handler behind a real TLS listener.
    """

    def setUp(self) -> None:
        self.uploads: list[bytes] = []
        answer = reactor.listenTCP(0, Factory.forProtocol(lambda: AnswerAtEOF(self.uploads)), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(answer.stopListening)
        echo = reactor.listenTCP(0, Factory.forProtocol(Echo), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(echo.stopListening)
        self.answerPort = answer.getHost().port
        self.echoPort = echo.getHost().port
        config = loads(CONFIG % {"answer": self.answerPort, "echo": self.echoPort})
        self.index = MemoryIndex([record()])
        self.gate, self.logs = makeGate(config, self.index, reactor)
        self.gate.sessions.start()
        self.addCleanup(self.gate.sessions.stop)
        self.site = makeSite(config)
        self.handler = TunnelHandler(reactor, TableResolver())
        creator = ServerConnectionCreator(serverCertificate(GATEWAY), verifier(clock=reactor))
        self.listening = listenTLS(reactor, 0, "127.0.0.1", creator, HTTPServerFactory(Dispatcher(self), reactor))
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port
        self.addCleanup(connectionsClosed)

    def opener(self) -> TunnelOpener:
        """
        The forwarder's way to this gateway.
        """
        return TunnelOpener(
            reactor,
            Gateway("127.0.0.1", self.port),
            deviceCreator(),  # type: ignore[arg-type]
            b"ztnagw-forward/test",
            retryFor=0,
            backoff=Backoff(),
            # The tests read what the end keeps; it must not pause.
            bufferLimit=64 * MiB,
        )

    @inlineCallbacks
    def halfClose(self, encrypted: bool) -> Deferred[None]:  # type: ignore[misc]
        """
        Upload, shut down the write side, read the whole answer.
        """
        end = yield self.opener().open(TunnelTarget("127.0.0.1", self.answerPort, encrypted))
        lost = end.notifyLost()
        end.transport.write(UPLOAD)  # type: ignore[union-attr]
        end.transport.loseWriteConnection()  # type: ignore[union-attr]
        while not end.readClosed and end.lostReason is None:
            yield _sleep(0.01)
        self.assertEqual(b"".join(end._pending), REPLY)
        self.assertEqual(self.uploads, [UPLOAD])
        end.transport.loseConnection()  # type: ignore[union-attr]
        yield lost
        yield _gone(self.handler.tunnels, 5)  # type: ignore[arg-type]
        (line,) = [line.keyValue() for line in self.logs.lines]
        self.assertIn(f'service="tcp/{self.answerPort}"', line)
        self.assertIn(f"lanin={len(UPLOAD)} ", line)
        self.assertIn(f"wanin={len(REPLY)} ", line)
        self.assertIn('action="accept"', line)

    def test_halfCloseEncrypted(self) -> Deferred[None]:
        """
        Through a C{tls=1} tunnel, a client that shuts down its write side
        (TLS C{close_notify}) still receives the real server's whole
        answer.
        """
        return self.halfClose(True)

    def test_halfCloseUnencrypted(self) -> Deferred[None]:
        """
        The same through a C{tls=0} tunnel (TCP half-close after TLS was
        dropped).
        """
        return self.halfClose(False)

    @inlineCallbacks
    def test_forticlient(self) -> Deferred[None]:  # type: ignore[misc]
        """
        FortiClient's request, byte for byte, from a stdlib TLS client that
        sends 100 KiB right behind it in the same write: the C{101} comes
        back and every early byte reaches the real server (echoed back).
        """
        request = FORTICLIENT % (self.echoPort, self.port)
        head, echoed = yield deferToThread(_forticlient, self.port, request + EARLY, len(EARLY))
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head)
        self.assertIn(b"Upgrade: tcp-forwarding/1.0", head)
        self.assertEqual(echoed, EARLY)

    @inlineCallbacks
    def test_optimisticUnencrypted(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A C{tls=0} client that sends raw bytes right behind its TLS request
        record, without waiting for the C{101}: the gateway freezes TLS at
        the end of the request head, so the raw bytes reach the real server
        intact.
        """
        request = (
            b"GET /tcp?address=127.0.0.1&port=%d&tls=0 HTTP/1.1\r\nHost: gw\r\n"
            b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n" % self.echoPort
        )
        head, echoed = yield deferToThread(_optimistic, self.port, request, EARLY)
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        self.assertEqual(echoed, EARLY)

    @inlineCallbacks
    def test_refusedUnencrypted(self) -> Deferred[None]:  # type: ignore[misc]
        """
        A refused C{tls=0} request gets its block page and the connection
        closes promptly (TLS frozen for raw bytes is dropped, not left to
        a close timeout).
        """
        opening = self.opener().open(TunnelTarget("127.0.0.1", 1, False))
        error = yield self.assertFailure(opening, TunnelRefused)
        self.assertEqual(error.refusal.code, "022")
        yield _gone(self.listening.factory.protocols, LINGER + 3)


def _sleep(seconds: float) -> Deferred[None]:
    waiting: Deferred[None] = Deferred()
    reactor.callLater(seconds, waiting.callback, None)  # type: ignore[attr-defined]
    return waiting


def _clientContext() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with tempfile.TemporaryDirectory() as directory:
        certificate, key = DEVICE.writeTo(directory, "device")
        context.load_cert_chain(certificate, key)
    return context


def _readHead(read: object) -> tuple[bytes, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = read()  # type: ignore[operator]
        if not chunk:
            raise AssertionError(f"closed before the head: {buffer!r}")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _forticlient(port: int, data: bytes, expected: int) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with _clientContext().wrap_socket(raw, server_hostname="gateway.test") as tls:
            tls.sendall(data)
            head, rest = _readHead(lambda: tls.recv(65536))
            echoed = rest
            while len(echoed) < expected:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                echoed += chunk
            return head, echoed


def _optimistic(port: int, request: bytes, early: bytes) -> tuple[bytes, bytes]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _clientContext().wrap_bio(incoming, outgoing, server_hostname="gateway.test")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                raw.sendall(outgoing.read())
                incoming.write(raw.recv(65536))
        raw.sendall(outgoing.read())
        tls.write(request)
        raw.sendall(outgoing.read() + early)

        def readTLS() -> bytes:
            while True:
                try:
                    return tls.read(65536)
                except ssl.SSLWantReadError:
                    incoming.write(raw.recv(65536))

        head, rest = _readHead(readTLS)
        assert rest == b"", rest
        echoed = incoming.read()
        while len(echoed) < len(early):
            chunk = raw.recv(65536)
            if not chunk:
                break
            echoed += chunk
        return head, echoed
