# -*- test-case-name: tests.security -*-
"""
The real servers of the attack tests, run as one process of their own:
C{python -m tests.security.backends}.

An attack test must show that nothing it sent reached a real server.  The
HTTPS integration backend counts connections and answers requests it could
parse; here every real server I{records every byte and every connection it
receives, before any parsing}, so that a smuggled request that a backend
would refuse to parse still shows up.  The process serves:

  - C{http} (127.0.0.2): an HTTP/1.1 real server; any request is answered
    with its method, target and fields as JSON, C{/big?n=N} with N bytes
    (streamed with backpressure: a client that stops reading stops it),
    C{/never} never;
  - C{raw} (127.0.0.2): a TCP real server for tunnels that echoes;
  - C{silent} (127.0.0.2): accepts TCP connections and never sends;
  - C{blackhole} (127.0.0.2): a listener whose accept queue is full, so
    that connection attempts get no answer at all (a destination that
    never answers a SYN);
  - C{dns} (127.0.0.1, UDP): a DNS server for the zone L{ZONE}, so that
    the daemon (pointed at it by L{tests.security.resolving}) resolves
    names the tests control, without touching C{/etc/hosts};
  - C{control} (127.0.0.1): a line protocol for the tests, C{stats} (what
    each server received, as one JSON line) and C{reset}.

It prints C{NAME PORT} for each, then C{ready}, and serves until killed.
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.names import dns, server
from twisted.names.common import ResolverBase
from twisted.names.error import DomainError
from twisted.internet import defer
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from ztnagw.http.server import HTTPServerFactory, HTTPServerProtocol, Request

#: The names the test DNS server answers, and their IPv4 address.  The
#: real servers listen on 127.0.0.2; the gateway's own ports on 127.0.0.1.
ZONE = {
    "good.tunnel.test": "127.0.0.2",
    "evil.tunnel.test": "127.0.0.1",
}

#: How many bytes of each connection a record keeps.
RAW_LIMIT = 1 << 20

#: The address the real servers listen on.
REAL_SERVER_ADDRESS = "127.0.0.2"


class Record:
    """
    What one real server received.

    @ivar connections: connections accepted.
    @ivar received: bytes received, over all connections.
    @ivar requests: C{"METHOD target"} of each request the HTTP real
        server parsed.
    @ivar raw: the bytes of each connection (the first L{RAW_LIMIT}).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """
        Forget everything.
        """
        self.connections = 0
        self.received = 0
        self.requests: list[str] = []
        self.raw: list[bytes] = []

    def connected(self) -> int:
        """
        Count a new connection; its index in L{raw}.
        """
        self.connections += 1
        self.raw.append(b"")
        return len(self.raw) - 1

    def data(self, index: int, data: bytes) -> None:
        """
        Count bytes received on connection C{index}.
        """
        self.received += len(data)
        if index < len(self.raw) and len(self.raw[index]) < RAW_LIMIT:
            self.raw[index] = (self.raw[index] + data)[:RAW_LIMIT]

    def asJson(self) -> dict[str, Any]:
        """
        The record as JSON values.
        """
        return {
            "connections": self.connections,
            "received": self.received,
            "requests": list(self.requests),
            "raw": [r.decode("latin-1") for r in self.raw],
        }


RECORDS = {name: Record() for name in ("http", "raw", "silent")}


class _Recording:
    """
    Mixed into the real servers' protocols: every connection and byte is
    recorded before the protocol sees it.
    """

    record: Record
    _index = -1

    def connectionMade(self) -> None:
        self._index = self.record.connected()
        super().connectionMade()  # type: ignore[misc]

    def dataReceived(self, data: bytes) -> None:
        # The record may have been reset since this connection was made.
        if self._index >= len(self.record.raw):
            self._index = self.record.connected()
        self.record.data(self._index, data)
        super().dataReceived(data)  # type: ignore[misc]


@implementer(IPushProducer)
class _Pattern:
    """
    Writes C{n} bytes to a response as fast as the client takes them.
    """

    def __init__(self, reactor: Any, response: Any, n: int) -> None:
        self.reactor = reactor
        self.response = response
        self.remaining = n
        self.paused = False
        self.stopped = False

    def start(self) -> None:
        self.response.registerProducer(self, True)
        self._pump()

    def _pump(self) -> None:
        block = b"x" * 65536
        while not self.paused and not self.stopped and self.remaining > 0:
            piece = block[: min(self.remaining, len(block))]
            self.remaining -= len(piece)
            self.response.write(piece)
        if self.remaining == 0 and not self.stopped:
            self.stopped = True
            self.response.unregisterProducer()
            self.response.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.reactor.callLater(0, self._pump)

    def stopProducing(self) -> None:
        self.stopped = True


class _Discard:
    """
    Reads a request body, then answers with the request as JSON.
    """

    def __init__(self, request: Request, answer: bytes) -> None:
        self.request = request
        self.answer = answer
        self.length = 0

    def bodyStarted(self, producer: object) -> None:
        pass

    def bodyDataReceived(self, data: bytes) -> None:
        self.length += len(data)

    def bodyFinished(self) -> None:
        self.request.response.respond(200, b"OK", [(b"Content-Type", b"application/json")], self.answer)

    def bodyFailed(self, reason: object) -> None:
        self.request.response.abort()


class _HTTPHandler:
    """
    The HTTP real server's answers (see the module docstring).
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def requestReceived(self, request: Request) -> None:
        RECORDS["http"].requests.append(f"{request.method.decode('latin-1')} {request.target.decode('latin-1')}")
        path, _, query = request.path.partition(b"?")
        answer = json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "target": request.target.decode("latin-1"),
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.pairs()],
            }
        ).encode()
        if path == b"/never":
            return
        if path == b"/big":
            n = int(parse_qs(query.decode("latin-1")).get("n", ["0"])[0])
            request.response.writeHead(200, b"OK", [(b"Content-Type", b"application/octet-stream")], n)
            _Pattern(self.reactor, request.response, n).start()
            return
        if request.bodyLength != 0:
            request.deliverBody(_Discard(request, answer))
            return
        request.response.respond(200, b"OK", [(b"Content-Type", b"application/json")], answer)


class _RecordingHTTP(_Recording, HTTPServerProtocol):
    record = RECORDS["http"]


class _RecordingHTTPFactory(HTTPServerFactory):
    def buildProtocol(self, addr: object) -> HTTPServerProtocol:
        protocol = _RecordingHTTP(self.handler, self.clock, self.limits, self.errorPages)
        protocol.factory = self
        return protocol


class _Echo(_Recording, Protocol):
    record = RECORDS["raw"]

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        self.transport.write(data)


class _Silent(_Recording, Protocol):
    record = RECORDS["silent"]


class _Control(LineOnlyReceiver):
    """
    C{stats}: the records as one JSON line; C{reset}: forget them.
    """

    delimiter = b"\n"

    def lineReceived(self, line: bytes) -> None:
        command = line.strip()
        if command == b"stats":
            self.sendLine(json.dumps({name: r.asJson() for name, r in RECORDS.items()}).encode())
        elif command == b"reset":
            for record in RECORDS.values():
                record.reset()
            self.sendLine(b"ok")
        else:
            self.sendLine(b"unknown command")


class Zone(ResolverBase):
    """
    Answers A queries for L{ZONE}; any other name does not exist.
    """

    def _lookup(self, name: bytes, cls: int, type: int, timeout: object) -> defer.Deferred:
        text = name.decode("ascii", "replace").lower().rstrip(".")
        address = ZONE.get(text)
        if address is None or type not in (dns.A, dns.ALL_RECORDS) or cls != dns.IN:
            return defer.fail(DomainError(name))
        answer = dns.RRHeader(name, dns.A, dns.IN, 5, dns.Record_A(address, 5), auth=True)
        return defer.succeed(([answer], [], []))


def blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """
    A listening socket on 127.0.0.2 that answers no further SYN: its
    accept queue (of length 0) is filled by a connection nobody accepts.
    """
    listener = socket.socket()
    listener.bind((REAL_SERVER_ADDRESS, 0))
    listener.listen(0)
    fillers = []
    for _ in range(2):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(listener.getsockname())
        except BlockingIOError:
            pass
        fillers.append(filler)
    return listener, fillers


def main() -> None:
    """
    Serve (see the module docstring).
    """
    from twisted.internet import reactor

    ports: list[tuple[str, int]] = []
    http = reactor.listenTCP(0, _RecordingHTTPFactory(_HTTPHandler(reactor), reactor), interface=REAL_SERVER_ADDRESS)
    ports.append(("http", http.getHost().port))
    raw = reactor.listenTCP(0, Factory.forProtocol(_Echo), backlog=1024, interface=REAL_SERVER_ADDRESS)
    ports.append(("raw", raw.getHost().port))
    silent = reactor.listenTCP(0, Factory.forProtocol(_Silent), backlog=1024, interface=REAL_SERVER_ADDRESS)
    ports.append(("silent", silent.getHost().port))
    hole, fillers = blackhole()
    ports.append(("blackhole", hole.getsockname()[1]))
    control = reactor.listenTCP(0, Factory.forProtocol(_Control), interface="127.0.0.1")
    ports.append(("control", control.getHost().port))
    factory = server.DNSServerFactory(clients=[Zone()])
    dnsPort = reactor.listenUDP(0, dns.DNSDatagramProtocol(controller=factory), interface="127.0.0.1")
    ports.append(("dns", dnsPort.getHost().port))
    for name, port in ports:
        sys.stdout.write(f"{name} {port}\n")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    # Kept referenced for the life of the process.
    main.keep = (hole, fillers)  # type: ignore[attr-defined]
    reactor.run()


if __name__ == "__main__":
    main()
