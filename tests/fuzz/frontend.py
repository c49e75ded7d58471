"""
The HTTP front end of one VIP, assembled in memory as the daemon assembles
it (the real L{ztnagw.http.server.HTTPServerProtocol}, the gateway's
L{ztnagw.gateway.proxy.AccessProxyHandler}, its L{TunnelHandler}, its error
pages and the limits of the access proxy), for fuzz tests and the atheris
harnesses alike.

Only the network and the registry are stand-ins: a memory reactor (upstream
connection attempts are recorded, never made), a registry index in memory
and a resolver that answers from a table.  What a fuzz input can reach is
exactly what a client on the VIP's port can reach once TLS is done.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from ztnagw.config import loads
from ztnagw.gateway.proxy import (
    AccessProxyHandler,
    GatewayErrorPages,
    UpstreamPools,
    VipHTTPFactory,
    serverLimits,
)
from ztnagw.gateway.realservers import RealServerRouter
from ztnagw.gateway.tunnel import TunnelHandler
from ztnagw.tls.client import ClientCreatorCache
from tests.gateway.fakes import (
    MemoryIndex,
    TableResolver,
    handshake,
    makeGate,
    makeSite,
    presented,
    record,
)
from tests.gateway.test_tunnel import ALLOW, CONFIG
from tests.tunnel.fakes import HalfCloseTransport

#: Seconds of reactor time that end every connection the fuzz leaves open:
#: longer than every timeout of the HTTP layer (head, idle, body, linger,
#: close) and of the tunnel handler's connect and resolve steps.
QUIESCE = 600.0

#: Statuses the front end may answer a hostile client with: the HTTP
#: layer's refusals, the gateway's ZTNA denials (403/421 and friends), and
#: the gateway statuses for a real server that could not be reached (the
#: fuzz fails every upstream connection).  A 200 or 101 would mean a
#: connection to a real server was made, which never happens here; a 500
#: would mean a bug.
ALLOWED_STATUSES = frozenset({100} | set(range(400, 432)) | {501, 502, 503, 504, 505})

_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


class LoggedFailures:
    """
    Collects the log events that carry a failure or an error level while
    it is installed, so that a fuzz test can assert that hostile input was
    refused without anything failing inside the gateway.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        """
        Keep C{event} if it reports a failure.
        """
        level = getattr(event.get("log_level"), "name", "")
        if "log_failure" in event or level in ("error", "critical") or event.get("isError"):
            self.events.append(event)

    def __enter__(self) -> "LoggedFailures":
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self)

    def describe(self) -> str:
        """
        The collected events, readable.
        """
        from twisted.logger import formatEvent

        parts = []
        for event in self.events:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            parts.append(text)
        return "\n".join(parts)


def splitResponses(output: bytes) -> list[int]:
    """
    The statuses of the responses in C{output}, in order.

    The gateway's own answers always carry a C{Content-Length}, which is
    how the responses are told apart; a response that does not parse is a
    failure of the test.

    @raise AssertionError: C{output} is not a sequence of responses.
    """
    statuses = []
    rest = output
    while rest:
        match = _STATUS_LINE.match(rest)
        if match is None:
            raise AssertionError(f"not a status line: {rest[:80]!r}")
        head, separator, after = rest.partition(b"\r\n\r\n")
        if not separator:
            raise AssertionError(f"incomplete response head: {head[:200]!r}")
        status = int(match.group(1))
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if status in (100, 101, 204, 304):
            length = 0
        statuses.append(status)
        rest = after[length:]
    return statuses


class FrontEnd:
    """
    One VIP's HTTP front end over the tunnel tests' configuration (an
    C{http} api-gateway and a C{tcp-forwarding} one), with the test device
    registered and its certificate presented (or not).

    @ivar reactor: the memory reactor every timer and connection attempt
        goes to.
    @ivar attempts: the C{(host, port)} of every connection the gateway
        tried to make to a real server (each was refused).
    """

    def __init__(self, withCertificate: bool = True) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.attempts: list[tuple[str, int]] = []
        self.index = MemoryIndex([record()])
        self.config = loads(CONFIG.replace("#IDLE#", "") + ALLOW)
        self.gate, self.logs = makeGate(self.config, self.index, self.reactor)
        self.gate.sessions.start()
        self.site = makeSite(self.config)
        self.resolver = TableResolver(
            {"db.corp.example": ["10.66.0.3"], "ssh.corp.example": ["10.88.0.5"], "x.corp.example": ["10.66.0.3"]}
        )
        self.router = RealServerRouter(self.config, self.resolver, ClientCreatorCache(), ())
        self.pools = UpstreamPools(self.reactor)
        self.facts = handshake(presented() if withCertificate else None)
        self.handler = AccessProxyHandler(
            self.site,
            self.gate,
            self.router,
            self.pools,
            self.reactor,
            TunnelHandler(self.reactor, self.resolver),
            handshakeFactsOf=lambda transport: self.facts,
        )
        self.factory = VipHTTPFactory(
            self.handler, self.reactor, serverLimits(self.site.accessProxy), GatewayErrorPages()
        )

    def exchange(self, pieces: list[bytes], clientCloses: bool) -> tuple[bytes, HalfCloseTransport]:
        """
        Open a connection, send C{pieces} one C{dataReceived} each, fail
        every upstream connection attempt as it is made, then (when
        C{clientCloses}) close the client's side, and let reactor time pass
        until every timeout has run.

        @return: everything written to the client, and its transport.
        """
        protocol = self.factory.buildProtocol(None)
        transport = HalfCloseTransport()
        protocol.makeConnection(transport)
        for piece in pieces:
            if transport.disconnecting:
                break
            protocol.dataReceived(piece)
            self._failUpstreams()
        if clientCloses and not transport.disconnecting:
            protocol.connectionLost(Failure(ConnectionRefusedError("client went away")))
        # Time passes in steps so that every timer chain runs to its end.
        for _ in range(60):
            self.reactor.advance(QUIESCE / 60)
            self._failUpstreams()
        if transport.disconnecting and not clientCloses:
            protocol.connectionLost(Failure(ConnectionRefusedError("closed")))
        return transport.value(), transport

    def _failUpstreams(self) -> None:
        while self.reactor.tcpClients:
            host, port, factory, timeout, bind = self.reactor.tcpClients.pop(0)
            self.attempts.append((host, port))
            connector = self.reactor.connectors.pop(0) if self.reactor.connectors else None
            factory.clientConnectionFailed(connector, Failure(ConnectionRefusedError(host)))


def feed(
    frontEnd: FrontEnd, data: bytes, cuts: list[int], clientCloses: bool
) -> tuple[list[int], HalfCloseTransport, LoggedFailures]:
    """
    Send C{data} cut at C{cuts} through C{frontEnd}.

    @return: the statuses answered, the client's transport and the failures
        logged meanwhile.
    """
    pieces = []
    previous = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        pieces.append(data[previous:cut])
        previous = cut
    pieces.append(data[previous:])
    pieces = [p for p in pieces if p]
    with LoggedFailures() as failures:
        output, transport = frontEnd.exchange(pieces, clientCloses)
    return splitResponses(output), transport, failures


#: Pieces of requests, valid and hostile, that fuzz inputs are built from:
#: random bytes alone almost never get past the request line.
REQUEST_PIECES: list[bytes] = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /tcp?address=10.88.0.5&port=22&tls=1 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n"
    b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n",
    b"GET /tcp?address=db.corp.example&port=5432 HTTP/1.1\r\nHost: h\r\nUpgrade: tcp-forwarding/1.0\r\n"
    b"Connection: Upgrade\r\n\r\n",
    b"GET /tcp?address=127.0.0.1&port=8080&tls=0 HTTP/1.1\r\nHost: h\r\nUpgrade: tcp-forwarding/1.0\r\n"
    b"Connection: Upgrade\r\n\r\n",
    b"GET ", b"POST ", b"CONNECT ", b"HEAD ", b"OPTIONS * ", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"/", b"/tcp?", b"address=", b"&port=", b"&tls=0", b"&address=10.1.0.66", b"port=65536", b"%00", b"%2e%2e/",
    b"http://other.example/", b"//", b";", b"..", b"\xc0\xae",
    b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", b" HTTP/2\r\n", b" HTTP/1.1\n",
    b"Host: 127.0.0.1\r\n", b"Host: other\r\n", b"Host:\r\n",
    b"Content-Length: 4\r\n", b"Content-Length: -1\r\n", b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: 1, 2\r\n", b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: xchunked\r\n", b"Transfer-Encoding:\tchunked\r\n", b" chunked\r\n",
    b"Expect: 100-continue\r\n", b"Upgrade: tcp-forwarding/1.0\r\n", b"Upgrade: websocket\r\n",
    b"Connection: Upgrade\r\n", b"Connection: close\r\n", b"Connection: keep-alive, te\r\n",
    b"X-Forwarded-For: 1.2.3.4\r\n", b"Cookie:\r\n", b"Authorization: Basic\r\n", b"Accept: application/json\r\n",
    b"X: a\r\n b\r\n", b"Bad Name: x\r\n", b": x\r\n", b"X: \x00\r\n", b"X: \x7f\xff\r\n",
    b"\r\n", b"\n", b"\r", b"\r\n\r\n",
    b"0\r\n\r\n", b"5\r\nhello\r\n", b"ffffffffffffffffffff\r\n", b"5;ext=1\r\n", b"5 \r\n", b"0x5\r\n",
    b"Trailer: x\r\n",
]

#: Where the test configuration lets a connection go: the C{http}
#: api-gateway's real server and every destination its C{tcp-forwarding}
#: api-gateway admits (an address of C{rdp-hosts} other than the denied
#: one, C{*.corp.example} names on their mapped ports, C{db.corp.example}).
def allowedDestination(host: str, port: int) -> bool:
    """
    Whether the test configuration lets the gateway connect to
    C{host}:C{port}.
    """
    import ipaddress

    if (host, port) in {("127.0.0.1", 8080), ("10.88.0.5", 22), ("10.66.0.3", 1521)}:
        return True
    if host == "10.66.0.3" and port in (5432, 6379):
        return True
    address = ipaddress.ip_address(host)
    return port == 3389 and address in ipaddress.ip_network("10.1.0.0/24") and host != "10.1.0.66"
