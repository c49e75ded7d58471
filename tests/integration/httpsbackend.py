"""
The real server of the HTTPS integration tests, run as its own process:
C{python -m tests.integration.httpsbackend PORT}.

It answers what the tests need to see from behind the gateway, streaming
everything (a 1 GiB body never sits in its memory either):

  - C{GET /headers}: the request as JSON (method, target, fields in order,
    repeated ones kept);
  - C{GET|HEAD /bytes?n=N}: N bytes of a fixed pattern with Content-Length;
    C{/chunked?n=N} the same, chunked;
  - C{POST|PUT /sink}: reads the body, answers its length and SHA-256;
  - C{GET /reset?n=N}: announces 2N bytes, sends N and resets;
  - C{GET /never}: never answers;
  - C{GET /cookies}: two Set-Cookie fields;
  - C{GET /close}: a response with C{Connection: close};
  - C{GET /stats}: connections accepted and bytes of /bytes bodies written
    to sockets so far (what a slow client lets through).

It prints C{ready} when it listens; given a certificate and a key after
the port, it serves HTTPS.
"""

from __future__ import annotations

import hashlib
import json
import sys
from urllib.parse import parse_qs

from twisted.internet.interfaces import IOpenSSLContextFactory, IPushProducer
from zope.interface import implementer

from ztnagw.http.server import HTTPServerFactory, Request

#: The download pattern: 64 KiB of bytes that differ by position.
PATTERN = bytes(range(256)) * 256


def patternBytes(n: int) -> bytes:
    """
    The first C{n} bytes of the repeated pattern (for small checks).
    """
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class Stats:
    """
    What the backend has done so far.
    """

    connections = 0
    sent = 0


@implementer(IPushProducer)
class PatternProducer:
    """
    Writes C{n} pattern bytes to a response as fast as the connection
    takes them, pausing when it is full.
    """

    def __init__(self, reactor, response, n: int, chunked: bool) -> None:
        """
        @param response: where the bytes go (its head is written).
        @param n: how many.
        @param chunked: whether the response is chunked (framing is the
            HTTP layer's; kept for the record).
        """
        self.reactor = reactor
        self.response = response
        self.remaining = n
        self.paused = False
        self.stopped = False

    def start(self) -> None:
        """
        Register with the response and start writing.
        """
        self.response.registerProducer(self, True)
        self._pump()

    def _pump(self) -> None:
        while not self.paused and not self.stopped and self.remaining > 0:
            piece = PATTERN if self.remaining >= len(PATTERN) else PATTERN[: self.remaining]
            self.remaining -= len(piece)
            Stats.sent += len(piece)
            self.response.write(piece)
        if self.remaining == 0 and not self.stopped:
            self.stopped = True
            self.response.unregisterProducer()
            self.response.finish()

    def pauseProducing(self) -> None:
        """
        The connection is full.
        """
        self.paused = True

    def resumeProducing(self) -> None:
        """
        The connection takes more.
        """
        if self.paused:
            self.paused = False
            self.reactor.callLater(0, self._pump)

    def stopProducing(self) -> None:
        """
        The client went away.
        """
        self.stopped = True


class Sink:
    """
    Consumes a request body, hashing it.
    """

    def __init__(self, request: Request) -> None:
        """
        @param request: the request whose body to consume.
        """
        self.request = request
        self.hash = hashlib.sha256()
        self.length = 0

    def bodyStarted(self, producer) -> None:
        """
        See L{ztnagw.http.interfaces.IBodyConsumer}.
        """

    def bodyDataReceived(self, data: bytes) -> None:
        """
        Count and hash.
        """
        self.length += len(data)
        self.hash.update(data)

    def bodyFinished(self) -> None:
        """
        Answer the length and hash.
        """
        body = json.dumps({"length": self.length, "sha256": self.hash.hexdigest()}).encode()
        self.request.response.respond(200, b"OK", [(b"Content-Type", b"application/json")], body)

    def bodyFailed(self, reason) -> None:
        """
        Give up.
        """
        self.request.response.abort()


class Backend:
    """
    The request handler.
    """

    def __init__(self, reactor) -> None:
        """
        @param reactor: for timers.
        """
        self.reactor = reactor

    def requestReceived(self, request: Request) -> None:
        """
        Answer by path (see the module docstring).
        """
        path, _, query = request.path.partition(b"?")
        arguments = parse_qs(query.decode())
        n = int(arguments.get("n", ["0"])[0])
        response = request.response
        if path == b"/headers":
            body = json.dumps(
                {
                    "method": request.method.decode(),
                    "target": request.target.decode(),
                    "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.pairs()],
                }
            ).encode()
            response.respond(200, b"OK", [(b"Content-Type", b"application/json")], body)
        elif path in (b"/bytes", b"/chunked"):
            response.writeHead(200, b"OK", [(b"Content-Type", b"application/octet-stream")],
                               n if path == b"/bytes" else None)
            if request.method == b"HEAD":
                response.finish()
                return
            PatternProducer(self.reactor, response, n, path == b"/chunked").start()
        elif path == b"/sink":
            request.deliverBody(Sink(request))
        elif path == b"/reset":
            response.writeHead(200, b"OK", [], 2 * n)
            response.write(patternBytes(n))
            self.reactor.callLater(0.05, request.connection.transport.abortConnection)
        elif path == b"/never":
            pass
        elif path == b"/close":
            response.respond(200, b"OK", [(b"Connection", b"close")], b"closing")
        elif path == b"/cookies":
            response.respond(200, b"OK", [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")], b"cookies")
        elif path == b"/stats":
            body = json.dumps({"connections": Stats.connections, "sent": Stats.sent}).encode()
            response.respond(200, b"OK", [(b"Content-Type", b"application/json")], body)
        else:
            response.respond(404, b"Not Found", [], b"not found")


class CountingFactory(HTTPServerFactory):
    """
    Counts the connections it accepts.
    """

    def buildProtocol(self, addr):
        """
        Count, then build.
        """
        Stats.connections += 1
        return HTTPServerFactory.buildProtocol(self, addr)


@implementer(IOpenSSLContextFactory)
class _Contexts:
    """
    Gives Twisted's C{listenSSL} one ready-made context.
    """

    def __init__(self, context) -> None:
        """
        @param context: the context to give.
        """
        self._context = context

    def getContext(self):
        """
        The context.
        """
        return self._context


def main(port: int, certificate: str | None = None, key: str | None = None) -> None:
    """
    Serve on 127.0.0.1:C{port}, in TLS with C{certificate} and C{key} when
    given.
    """
    from OpenSSL import SSL
    from twisted.internet import reactor

    factory = CountingFactory(Backend(reactor), reactor)
    if certificate is None:
        reactor.listenTCP(port, factory, interface="127.0.0.1")
    else:
        # A plain context: Twisted 26.10's CertificateOptions answers a
        # client that offers ALPN with an "internal error" alert under
        # pyOpenSSL 26.4, and the gateway offers http/1.1.
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.use_certificate_file(certificate)
        context.use_privatekey_file(key)
        reactor.listenSSL(port, factory, _Contexts(context), interface="127.0.0.1")
    reactor.callWhenRunning(lambda: (sys.stdout.write("ready\n"), sys.stdout.flush()))
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), *sys.argv[2:4])
