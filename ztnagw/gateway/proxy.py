# -*- test-case-name: tests.gateway.test_proxy -*-
"""
The HTTPS access proxy's request handler: every request on a VIP is
matched, authorized, and then relayed to its real server or refused with a
block page.

For each request (never only once per connection) the handler:

  1. hands a TCP forwarding tunnel request (C{GET /tcp} with C{Upgrade:
     tcp-forwarding/1.0}) to the tunnel handler with the request's context,
     and stops;
  2. normalises the path (L{ztnagw.gateway.paths}: what the url-map
     judges is what the real server gets; an ambiguous path: 400), then
     matches an api-gateway by virtual host, url-map and service
     (L{ztnagw.gateway.matching}); none: 021;
  3. refuses with 421 a request whose C{Host} names a virtual host with
     other client-certificate rules than the TLS server name chose;
  4. authorizes: the device judged again, the access decision made
     (L{ztnagw.gateway.context}); a denial is the block page of its code;
  5. registers the connection as a live session of the device (a revoked
     device's keep-alive connection is closed by the session tracker);
  6. chooses the real server (022, 023) and relays: the request head with
     hop-by-hop fields removed and the gateway's own C{X-Forwarded-*}
     fields set (client copies removed first), the body streamed upstream
     as the real server accepts it, the response streamed back as the
     client reads it (a slow client pauses the real server, never fills
     the gateway's memory);
  7. writes one traffic log line when the exchange ends, however it ends.

Failures keep the HTTP contract: a real server that refuses or cannot be
reached gives 502, one that does not answer in time 504; once the response
has started, any failure aborts the client connection so that the client
sees a truncated response, never a clean end; a client that goes away
aborts the upstream request.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw import errors
from ztnagw.blockpage import GATEWAY_ERRORS, renderErrorPage
from ztnagw.config.model import ApiGateway
from ztnagw.errors import ZtnaError
from ztnagw.gateway.context import AccessGate, Authorization, RequestContext, VipSite
from ztnagw.gateway.interfaces import ITunnelHandler
from ztnagw.gateway.limits import RefusedConnection
from ztnagw.gateway.matching import HTTP_SERVICES, TCP_FORWARDING, Match
from ztnagw.gateway.paths import AmbiguousPath, normalizePath
from ztnagw.gateway.identity import IdentityUnavailable, RequestIdentity, isJwksRequest
from ztnagw.gateway.realservers import NoUsableRealServer, RealServerRoute, RealServerRouter
from ztnagw.gateway.resolver import NameNotResolved
from ztnagw.gateway.sessions import LiveSession
from ztnagw.gateway.upgrade import ACTIONS as UPGRADE_ACTIONS
from ztnagw.gateway.upgrade import UpgradedConnection, acceptedUpgrade, switchingPairs, upgradePairs
from ztnagw.http.client import PoolSettings, UpstreamResponse
from ztnagw.http.errors import (
    REASONS,
    ConnectFailed,
    ConnectTimeout,
    RequestBodyFailed,
    ResponseTimeout,
    UpstreamError,
)
from ztnagw.http.headers import Headers, withoutHopByHop
from ztnagw.http.interfaces import IBodyConsumer, IBodySource, IErrorPageRenderer, IRequestHandler
from ztnagw.http.limits import ServerLimits
from ztnagw.http.parser import IDEMPOTENT_METHODS
from ztnagw.http.pool import UpstreamPool
from ztnagw.http.server import HTTPServerFactory, HTTPServerProtocol, Request
from ztnagw.logs import (
    ACCEPT,
    PROXY_POLICY,
    CLIENT_RST,
    CLOSE,
    DNS,
    HTTP,
    HTTPS,
    IP_CONN,
    SERVER_RST,
    TIMEOUT,
)
from ztnagw.tls.server import HandshakeFacts, HandshakeIncomplete, NotVerifiedHere, handshakeFacts
from ztnagw.tunnel.relay import CLOSED, RelayResult

__all__ = [
    "AccessProxyHandler",
    "GatewayErrorPages",
    "UpstreamPools",
    "VipHTTPFactory",
    "isTunnelRequest",
    "upstreamHeaders",
]

_log = Logger()

#: The Upgrade token of FortiClient's TCP forwarding requests.
TUNNEL_UPGRADE = b"tcp-forwarding/1.0"

#: Fields that carry the client's identity to real servers.  The gateway
#: sets the first three itself; client copies of all of them are removed
#: (after hop-by-hop processing, so that naming one in Connection cannot
#: smuggle it through), because a real server may trust any of them.
FORWARDING_FIELDS = (
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
    b"x-real-ip",
)


def isTunnelRequest(request: Request) -> bool:
    """
    Whether C{request} is a TCP forwarding tunnel request: C{GET /tcp}
    (with any query) asking to upgrade to C{tcp-forwarding/1.0}.
    """
    upgrade = request.upgrade
    if upgrade is None or request.method != b"GET":
        return False
    path = request.path
    return upgrade.strip().lower() == TUNNEL_UPGRADE and (
        path == b"/tcp" or path.startswith(b"/tcp?")
    )


def upstreamHeaders(
    headers: Headers,
    clientIp: str,
    clientHost: bytes | None,
    hostHeader: bytes | None,
    scheme: bytes = b"https",
) -> list[tuple[bytes, bytes]]:
    """
    The fields a real server gets for a client request.

    Hop-by-hop fields (and those named in C{Connection}) are removed first;
    then every client copy of L{FORWARDING_FIELDS}; then the gateway sets
    C{X-Forwarded-For} to the client's address (a chain sent by the client
    is not trusted, so it is replaced, not appended to),
    C{X-Forwarded-Proto} and C{X-Forwarded-Host} (the client's C{Host}).
    C{Host} becomes C{hostHeader} when given, else stays the client's.
    Repeated fields are kept, in order.

    @param headers: the client request's fields.
    @param clientIp: the client's address.
    @param clientHost: the client's C{Host}, if any.
    @param hostHeader: the C{Host} for the real server, or C{None} to keep
        the client's.
    @param scheme: how the client reached the gateway.
    @return: C{(name, value)} pairs, C{Host} first.
    """
    host = hostHeader if hostHeader is not None else clientHost
    pairs: list[tuple[bytes, bytes]] = []
    if host is not None:
        pairs.append((b"Host", host))
    for name, value in withoutHopByHop(headers).pairs():
        lower = name.lower()
        if lower == b"host" or lower in FORWARDING_FIELDS:
            continue
        pairs.append((name, value))
    pairs.append((b"X-Forwarded-For", clientIp.encode("ascii")))
    pairs.append((b"X-Forwarded-Proto", scheme))
    if clientHost is not None:
        pairs.append((b"X-Forwarded-Host", clientHost))
    return pairs


@implementer(IErrorPageRenderer)
class GatewayErrorPages:
    """
    The HTTP layer's own error responses (400, 408, 413, 414, 431...) in
    the look of the block pages.
    """

    def renderError(self, status: int, reason: bytes, detail: str) -> tuple[bytes, bytes]:
        """
        @see: L{IErrorPageRenderer.renderError}
        """
        known = GATEWAY_ERRORS.get(status)
        title = known.title if known is not None else reason.decode("ascii", "replace")
        _, headers, body = renderErrorPage(status, title, detail, None)
        contentType = dict((n.lower(), v) for n, v in headers)[b"content-type"]
        return contentType, body


def _errorPage(request: Request, status: int, detail: str | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    known = GATEWAY_ERRORS.get(status)
    title = known.title if known is not None else REASONS.get(status, b"Error").decode()
    text = detail if detail is not None else (known.detail if known is not None else title)
    return renderErrorPage(status, title, text, request.headers.get(b"accept"))


def _send(request: Request, page: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
    status, headers, body = page
    response = request.response
    if not response.headWritten and not response.finished:
        response.respond(status, REASONS.get(status, b"Error"), headers, body)


def _errorResponse(request: Request, status: int, detail: str | None = None) -> None:
    _send(request, _errorPage(request, status, detail))


class UpstreamPools:
    """
    The process's upstream connection pools: one per distinct pair of
    api-gateway timeouts (C{connect-timeout}, C{response-timeout}), which
    is one pool in the common case.  Per-key limits are raised above the
    HTTP layer's default, as a gateway talks to few real servers a lot.
    """

    def __init__(self, reactor: Any, maxIdlePerKey: int = 64) -> None:
        """
        @param reactor: the reactor (TCP connections and timers).
        @param maxIdlePerKey: idle keep-alive connections kept per real
            server.
        """
        self._reactor = reactor
        self._maxIdlePerKey = maxIdlePerKey
        self._pools: dict[tuple[float, float], UpstreamPool] = {}

    def forApiGateway(self, apiGateway: ApiGateway) -> UpstreamPool:
        """
        The pool with C{apiGateway}'s timeouts.
        """
        key = (float(apiGateway.connectTimeout), float(apiGateway.responseTimeout))
        pool = self._pools.get(key)
        if pool is None:
            pool = UpstreamPool(
                self._reactor,
                PoolSettings(
                    connectTimeout=key[0],
                    responseTimeout=key[1],
                    maxIdlePerKey=self._maxIdlePerKey,
                ),
            )
            self._pools[key] = pool
        return pool

    def closeIdle(self) -> None:
        """
        Close every idle connection (at shutdown).
        """
        for pool in self._pools.values():
            pool.closeIdle()


@implementer(ITunnelHandler)
class _ConnectionState:
    """
    What the handler keeps about one client connection: its handshake, the
    live session of its device, the exchange in progress.
    """

    def __init__(self, connection: Any, handshake: HandshakeFacts, sourceIp: ipaddress.IPv4Address,
                 sourcePort: int, localIp: ipaddress.IPv4Address, localPort: int) -> None:
        self.connection = connection
        self.handshake = handshake
        self.sourceIp = sourceIp
        # Spelled once per connection: real servers get it in every request.
        self.sourceIpText = str(sourceIp)
        self.sourcePort = sourcePort
        self.localIp = localIp
        self.localPort = localPort
        self.session: LiveSession | None = None
        self.active: _Exchange | None = None
        self.lost = False

    def track(self, context: RequestContext, authorization: Authorization, apiGatewayId: int) -> None:
        """
        The connection served (or is serving) the device behind
        C{authorization}: register it as a live session, or tell its
        session of the new decision.
        """
        if self.lost:
            return
        if self.session is not None and not self.session.ended:
            self.session.update(authorization)
            return
        self.session = context.openSession(
            authorization, self.closeForSession, service=HTTPS, apiGatewayId=apiGatewayId
        )

    def closeForSession(self, authorization: Authorization) -> None:
        """
        The session tracker ends this connection: its device is no longer
        allowed.  A response in progress is cut off (the client sees the
        truncation); an idle connection is closed.
        """
        self.session = None
        active = self.active
        if active is not None:
            active.endedBySession(authorization)
        else:
            self.connection.transport.loseConnection()

    def connectionLost(self) -> None:
        """
        The client connection is gone.
        """
        self.lost = True
        session, self.session = self.session, None
        if session is not None:
            session.end()


class _VipProtocol(HTTPServerProtocol):
    """
    The HTTP server protocol of a VIP: tells the handler's connection state
    when the connection is gone (the HTTP layer tells only a request in
    progress).
    """

    def makeConnection(self, transport: Any) -> None:
        """
        See L{HTTPServerProtocol.makeConnection}; the connection also takes
        its slot in the VIP's connection limits.
        """
        HTTPServerProtocol.makeConnection(self, transport)
        limits = self.factory.connectionLimits
        if limits is not None:
            limits.opened(transport, transport.getPeer().host)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        See L{HTTPServerProtocol.connectionLost}.
        """
        HTTPServerProtocol.connectionLost(self, reason)
        connection = self.connection
        state = connection.state if connection is not None else None
        if isinstance(state, _ConnectionState):
            state.connectionLost()


class VipHTTPFactory(HTTPServerFactory):
    """
    Builds the HTTP server protocols of one VIP.

    @ivar connectionLimits: the VIP's per-source and per-device limits
        (L{ztnagw.gateway.limits.ConnectionLimits}), or C{None}.
    """

    connectionLimits: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        """
        A new connection's protocol; one that closes it at once when its
        source holds its limit of connections.
        """
        limits = self.connectionLimits
        if limits is not None and not limits.admitSource(addr.host):
            return RefusedConnection()
        protocol = _VipProtocol(self.handler, self.clock, self.limits, self.errorPages)
        protocol.factory = self
        return protocol


def serverLimits(accessProxy: Any) -> ServerLimits:
    """
    The HTTP server limits an access proxy configures (its C{http-*}
    options); the defaults for a VIP without one.
    """
    if accessProxy is None:
        return ServerLimits()
    return ServerLimits(
        # The request line holds the method and version around the URL.
        maxRequestLineLength=accessProxy.httpMaxUrlLength + 32,
        maxHeadBytes=accessProxy.httpMaxHeaderSize,
        maxHeaderCount=accessProxy.httpMaxHeaderCount,
        headTimeout=float(accessProxy.httpHeaderTimeout),
        idleTimeout=float(accessProxy.httpKeepaliveTimeout),
    )


def _ipv4(host: str) -> ipaddress.IPv4Address:
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is None:
            raise ValueError(f"{host} is not an IPv4 client")
        return address.ipv4_mapped
    return address


@implementer(IRequestHandler)
class AccessProxyHandler:
    """
    The request handler of one VIP (see the module docstring).
    """

    def __init__(
        self,
        site: VipSite,
        gate: AccessGate,
        router: RealServerRouter,
        pools: UpstreamPools,
        clock: IReactorTime,
        tunnels: ITunnelHandler,
        handshakeFactsOf: Callable[[object], HandshakeFacts] = handshakeFacts,
    ) -> None:
        """
        @param site: what the VIP serves.
        @param gate: the authorize path.
        @param router: chooses real servers.
        @param pools: the upstream connection pools.
        @param clock: the reactor's clock.
        @param tunnels: serves tunnel requests (C{GET /tcp} with C{Upgrade:
            tcp-forwarding/1.0}).
        @param handshakeFactsOf: what the TLS handshake of a connection
            captured, from its transport (tests replace it).
        """
        self.site = site
        self.gate = gate
        self.router = router
        self.pools = pools
        self.clock = clock
        self.tunnels = tunnels
        self._handshakeFactsOf = handshakeFactsOf

    def _state(self, request: Request) -> _ConnectionState:
        connection = request.connection
        state = connection.state
        if isinstance(state, _ConnectionState):
            return state
        facts = self._handshakeFactsOf(connection.transport)
        vip = self.site.vip
        localIp = vip.extip
        if localIp is None or localIp == ipaddress.IPv4Address(0):
            localIp = _ipv4(connection.host.host)
        state = _ConnectionState(
            connection,
            facts,
            _ipv4(connection.peer.host),
            connection.peer.port,
            localIp,
            connection.host.port,
        )
        connection.state = state
        return state

    def requestReceived(self, request: Request) -> None:
        """
        @see: L{IRequestHandler.requestReceived}
        """
        if isJwksRequest(request.method, request.path):
            # Public keys, for real servers to verify identity assertions:
            # answered by the gateway itself, before any matching.
            keys = self.router.identity.keys
            body = keys.jwks() if keys is not None else b'{"keys":[]}'
            request.response.respond(
                200,
                b"OK",
                [(b"Content-Type", b"application/jwk-set+json"), (b"Cache-Control", b"max-age=300")],
                body,
            )
            return
        try:
            state = self._state(request)
        except (NotVerifiedHere, HandshakeIncomplete, ValueError, AttributeError):
            # No handshake record (or not an IPv4 client): nothing can be
            # judged, so nothing is admitted.
            _log.failure("cannot authorize a request on VIP {vip}", vip=self.site.vip.name)
            _errorResponse(request, 500, "The gateway cannot check this connection.")
            return
        context = RequestContext(
            site=self.site,
            handshake=state.handshake,
            sourceIp=state.sourceIp,
            sourcePort=state.sourcePort,
            localIp=state.localIp,
            localPort=state.localPort,
            sessionId=self.gate.newSessionId(),
            received=self.clock.seconds(),
            gate=self.gate,
        )
        if isTunnelRequest(request):
            try:
                self.tunnels.handleTunnelRequest(request, context)
            except Exception:
                _log.failure("tunnel handler failed for {request!r}", request=request)
                if not request.response.headWritten:
                    _errorResponse(request, 500, "The tunnel request could not be handled.")
                else:
                    request.response.abort()
            return
        try:
            # The url-map judges, and the real server receives, one
            # normalised path: see ztnagw.gateway.paths.
            request.path = normalizePath(request.path)
        except AmbiguousPath as e:
            _log.info(
                "Refused a request with an ambiguous path from {client} on VIP {vip}: "
                "{target!r} has {why}",
                client=context.sourceIp,
                vip=self.site.vip.name,
                target=request.target,
                why=str(e),
            )
            _errorResponse(request, 400, f"The request path is ambiguous: it has {e}.")
            return
        _Exchange(self, request, context, state).start()


@implementer(IBodySource)
class _CountingBody:
    """
    The client's request body on its way upstream, counted.
    """

    def __init__(self, request: Request, exchange: _Exchange) -> None:
        self._request = request
        self._exchange = exchange
        self.bodyLength = request.bodyLength

    def deliverBody(self, consumer: IBodyConsumer) -> None:
        """
        @see: L{IBodySource.deliverBody}
        """
        self._request.deliverBody(_CountingConsumer(consumer, self._exchange))


@implementer(IBodyConsumer)
class _CountingConsumer:
    """
    Passes a request body on, counting it and keeping the exchange's idle
    timer alive.
    """

    __slots__ = ("_consumer", "_exchange")

    def __init__(self, consumer: IBodyConsumer, exchange: _Exchange) -> None:
        self._consumer = consumer
        self._exchange = exchange

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        @see: L{IBodyConsumer.bodyStarted}
        """
        self._consumer.bodyStarted(producer)

    def bodyDataReceived(self, data: bytes) -> None:
        """
        @see: L{IBodyConsumer.bodyDataReceived}
        """
        exchange = self._exchange
        exchange.lanIn += len(data)
        exchange.lastActivity = exchange.clock.seconds()
        self._consumer.bodyDataReceived(data)

    def bodyFinished(self) -> None:
        """
        @see: L{IBodyConsumer.bodyFinished}
        """
        self._consumer.bodyFinished()

    def bodyFailed(self, reason: Failure) -> None:
        """
        @see: L{IBodyConsumer.bodyFailed}
        """
        self._consumer.bodyFailed(reason)


@implementer(IBodyConsumer)
class _ResponseRelay:
    """
    Relays the real server's response body to the client with
    backpressure, counting it; a failed body aborts the client response.
    """

    __slots__ = ("_exchange",)

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def bodyStarted(self, producer: IPushProducer) -> None:
        """
        @see: L{IBodyConsumer.bodyStarted}
        """
        self._exchange.request.response.registerProducer(producer, True)

    def bodyDataReceived(self, data: bytes) -> None:
        """
        @see: L{IBodyConsumer.bodyDataReceived}
        """
        exchange = self._exchange
        exchange.wanIn += len(data)
        exchange.lastActivity = exchange.clock.seconds()
        exchange.request.response.write(data)

    def bodyFinished(self) -> None:
        """
        @see: L{IBodyConsumer.bodyFinished}
        """
        response = self._exchange.request.response
        response.unregisterProducer()
        if not response.finished:
            response.finish()

    def bodyFailed(self, reason: Failure) -> None:
        """
        @see: L{IBodyConsumer.bodyFailed}
        """
        self._exchange.upstreamBodyFailed(reason)


class _Exchange:
    """
    One proxied request, from its head to its traffic log line.
    """

    def __init__(self, handler: AccessProxyHandler, request: Request, context: RequestContext,
                 state: _ConnectionState) -> None:
        self.handler = handler
        self.request = request
        self.context = context
        self.state = state
        self.clock = handler.clock
        self.match: Match | None = None
        self.authorization: Authorization | None = None
        self.route: RealServerRoute | None = None
        self.pending: Deferred[Any] | None = None
        self.upstream: UpstreamResponse | None = None
        self.gone = False
        self.logged = False
        self.lanIn = 0
        self.wanIn = 0
        self.lastActivity = self.clock.seconds()
        self.idleTimeout = 0.0
        self._timer: IDelayedCall | None = None
        self.tried: list[Any] = []
        self.persistence: Any = None
        self.profile: Any = None
        self.upgraded: UpgradedConnection | None = None
        self._firstFailure: Failure | None = None
        self._switching = False
        self._sessionError: ZtnaError | None = None

    # The steps.

    def start(self) -> None:
        request = self.request
        context = self.context
        self.state.active = self
        request.response.notifyFinish().addCallbacks(self._responseFinished, self._clientGone)
        match = context.matcher.match(request.host, request.path, HTTP_SERVICES)
        if match is None:
            accessProxy = context.accessProxy
            self._deny(
                errors.NO_APPLICATION,
                None,
                f"no api-gateway of access proxy "
                f"{accessProxy.name if accessProxy else '(none)'} matches host "
                f"{request.host!r} path {request.path!r}",
            )
            return
        self.match = match
        if context.misdirected(match.virtualHostName):
            _errorResponse(request, 421)
            return
        authorization = context.authorize(match.virtualHostName, request.headers.getAll(b"user-agent"))
        self.authorization = authorization
        if not authorization.allowed:
            assert authorization.decision.error is not None
            self._deny(authorization.decision.error, authorization)
            return
        self.state.track(context, authorization, match.apiGateway.id)
        self.idleTimeout = float(match.apiGateway.idleTimeoutInEffect)
        router = self.handler.router
        if router.persistence is not None:
            self.persistence = router.persistence.forApiGateway(match.apiGateway, context.vip.name)
        policy = authorization.decision.policy
        self.profile = router.identity.profileOf(
            policy.kind if policy is not None else None, policy.id if policy is not None else None
        )
        self._choose()

    def _choose(self) -> None:
        match = self.match
        assert match is not None
        persistence = self.persistence
        self.pending = self.handler.router.chooseRealServer(
            match.apiGateway,
            self.request,
            sourceIp=self.context.sourceIp,
            exclude=self.tried,
            bound=persistence.bound(self.request.headers) if persistence is not None else None,
        )
        self.pending.addCallbacks(self._routed, self._unrouted)

    def _identity(self) -> RequestIdentity:
        authorization = self.authorization
        context = self.context
        presented = context.handshake.presented
        verified = authorization is not None and authorization.verdict is not None and authorization.verdict.valid
        policy = authorization.decision.policy if authorization is not None else None
        record = authorization.record if authorization is not None else None
        return RequestIdentity(
            clientIp=self.state.sourceIpText,
            uid=authorization.uid if verified and authorization is not None else None,
            certSerial=presented.certSerial if verified and presented is not None else None,
            certificate=presented.leaf if verified and presented is not None else None,
            tags=authorization.tagNames if authorization is not None else (),
            deviceUser=record.user if verified and record is not None else None,
            policyId=policy.id if policy is not None else None,
            apiGatewayId=self.match.apiGateway.id if self.match is not None else None,
        )

    def _service(self) -> str:
        match = self.match
        return HTTP if match is not None and match.apiGateway.service == "http" else HTTPS

    def _destination(self) -> bytes:
        return b"https://" + (self.request.host or b"") + self.request.path

    def _deny(self, error: ZtnaError, authorization: Authorization | None, logDetail: str | None = None,
              action: str = "deny") -> None:
        self.logged = True
        self._stop()
        match = self.match
        route = self.route
        request = self.request
        self.context.deny(
            request,
            error,
            authorization,
            logDetail=logDetail,
            destination=self._destination(),
            service=self._service(),
            action=action,
            hostname=request.host,
            url=request.path,
            apiGatewayId=match.apiGateway.id if match is not None else None,
            realServerId=route.realServer.id if route is not None else None,
            dstIp=route.address if route is not None else None,
            dstPort=route.port if route is not None else None,
            lanIn=self.lanIn,
        )

    def _routed(self, route: RealServerRoute) -> None:
        self.pending = None
        if self.gone:
            return
        self.route = route
        request = self.request
        context = self.context
        scheme = b"https"
        headers = upstreamHeaders(
            request.headers, self.state.sourceIpText, request.host, route.hostHeader, scheme
        )
        if not any(name == b"Host" for name, _ in headers[:1]):
            headers.insert(0, (b"Host", route.name.encode("ascii")))
        try:
            headers = self.handler.router.identity.requestPairs(
                headers, self.profile, self._identity(), request.host, self.clock.seconds()
            )
        except IdentityUnavailable as e:
            self._failed(502, SERVER_RST, str(e))
            return
        if self.persistence is not None:
            headers = self.persistence.strip(headers)
        if request.upgrade is not None:
            headers.extend(upgradePairs(request.upgrade))
        body = _CountingBody(request, self) if request.bodyLength != 0 else None
        pool = self.handler.pools.forApiGateway(route.apiGateway)
        try:
            self.pending = pool.request(route.key, request.method, request.path, headers, body)
        except ValueError as e:
            self._failed(502, SERVER_RST, f"cannot send the request upstream: {e}")
            return
        self.pending.addCallbacks(self._responded, self._upstreamFailed)
        self.lastActivity = self.clock.seconds()
        self._arm()

    def _unrouted(self, failure: Failure) -> None:
        self.pending = None
        if self.gone:
            return
        if self.tried and failure.check(NoUsableRealServer, NameNotResolved):
            # The retry found no other server: the first failure stands.
            first = self._firstFailure
            self.tried.append(None)
            self._upstreamFailed(first)
            return
        if failure.check(NoUsableRealServer):
            self._deny(errors.NO_REAL_SERVER, self.authorization, failure.getErrorMessage())
        elif failure.check(NameNotResolved):
            self._deny(errors.DNS_FAILURE, self.authorization, failure.getErrorMessage(), action=DNS)
        else:
            _log.failure("while choosing a real server", failure)
            self._deny(errors.NO_REAL_SERVER, self.authorization, "internal error choosing a real server")

    def _responded(self, upstream: UpstreamResponse) -> None:
        self.pending = None
        self.upstream = upstream
        if self.gone:
            upstream.abort()
            return
        self.lastActivity = self.clock.seconds()
        response = self.request.response
        if upstream.status == 101 and self.request.upgrade is not None:
            self._switch(upstream)
            return
        if upstream.status < 200:
            # Nothing asked the real server to switch protocols.
            upstream.abort()
            self._failed(502, SERVER_RST, f"the real server answered {upstream.status}")
            return
        headers: Any = withoutHopByHop(upstream.headers)
        if self.profile is not None and self.profile.headers:
            headers = self.handler.router.identity.responsePairs(
                list(headers.pairs()), self.profile, self._identity()
            )
        route = self.route
        persistence = self.persistence
        if persistence is not None and route is not None and route.member is not None:
            if not persistence.isValidFor(self.request.headers, route.member):
                if not isinstance(headers, list):
                    headers = list(headers.pairs())
                headers.append((b"Set-Cookie", persistence.setCookie(route.member, self.request.host)))
        try:
            response.writeHead(upstream.status, upstream.reason, headers, upstream.length)
        except ValueError:
            try:
                response.writeHead(
                    upstream.status, REASONS.get(upstream.status, b"Unknown"), headers, upstream.length
                )
            except ValueError as e:
                upstream.abort()
                self._failed(502, SERVER_RST, f"unusable response from the real server: {e}")
                return
        upstream.deliverBody(_ResponseRelay(self))

    def _upstreamFailed(self, failure: Failure) -> None:
        self.pending = None
        if self.gone or failure.check(CancelledError):
            return
        reason = failure.getErrorMessage()
        error = failure.value
        route = self.route
        if (
            isinstance(error, UpstreamError)
            and not error.requestSent
            and not self.tried
            and route is not None
            and route.member is not None
            and self.request.method in IDEMPOTENT_METHODS
            and not self.request.response.headWritten
        ):
            # Nothing reached the real server: the request goes once to
            # another one that may serve.
            _log.info(
                "Request {sessionId}: real server {name}:{port} failed ({reason}); trying another",
                sessionId=self.context.sessionId,
                name=route.name,
                port=route.port,
                reason=reason,
            )
            self.tried.append(route.member)
            self._firstFailure = failure
            self._choose()
            return
        if self.request.response.headWritten:
            self._abort(SERVER_RST, reason)
        elif failure.check(ConnectTimeout):
            self._failed(504, IP_CONN, reason)
        elif failure.check(ConnectFailed):
            self._failed(502, IP_CONN, reason)
        elif failure.check(ResponseTimeout):
            self._failed(504, TIMEOUT, reason)
        elif failure.check(RequestBodyFailed):
            # The client's body failed (it went away, or broke framing):
            # the HTTP layer answers or has closed; log it as the client's.
            self._finish(CLIENT_RST, reason)
        else:
            self._failed(502, SERVER_RST, reason)

    def upstreamBodyFailed(self, reason: Failure) -> None:
        """
        The response body broke off (the real server reset or closed too
        early): the client must see a truncated response.
        """
        self._abort(SERVER_RST, reason.getErrorMessage())

    def endedBySession(self, authorization: Authorization) -> None:
        """
        The session tracker ended the connection while this exchange ran.
        """
        decision = authorization.decision
        if self.upgraded is not None:
            self._sessionError = decision.error
            self.upgraded.close(f"device no longer allowed: {decision.reason}")
            return
        self._finish(CLOSE, decision.reason, decision.error)
        self._cancelUpstream()
        self.request.response.abort()
        self.request.connection.transport.abortConnection()

    # Endings.

    def _failed(self, status: int, action: str, detail: str) -> None:
        route = self.route
        where = f" ({route.name}:{route.port})" if route is not None else ""
        _log.info("Request {sessionId} failed upstream{where}: {detail}",
                  sessionId=self.context.sessionId, where=where, detail=detail)
        page = _errorPage(self.request, status)
        # Logged before the answer is sent: sending finishes the response,
        # which would log it as accepted.
        self._finish(action, detail, lanOut=len(page[2]))
        _send(self.request, page)

    def _abort(self, action: str, detail: str) -> None:
        self._finish(action, detail)
        self._cancelUpstream()
        self.request.response.abort()

    def _responseFinished(self, ignored: object) -> None:
        if self.upgraded is not None or self._switching:
            # Taken over after a 101: the relay's end is logged instead.
            return
        self._finish(ACCEPT, None)

    # Upgrades.

    def _switch(self, upstream: UpstreamResponse) -> None:
        request = self.request
        assert request.upgrade is not None
        protocol = acceptedUpgrade(request.upgrade, upstream.headers)
        if protocol is None:
            upstream.abort()
            self._failed(502, SERVER_RST, "the real server switched to a protocol the client did not offer")
            return
        self._stopTimer()
        match = self.match
        assert match is not None
        apiGateway = match.apiGateway
        self._switching = True
        try:
            request.response.writeInformational(101, upstream.reason or b"Switching Protocols",
                                                switchingPairs(upstream.headers, protocol))
        except (ValueError, RuntimeError) as e:
            self._switching = False
            upstream.abort()
            self._failed(502, SERVER_RST, f"cannot relay the 101: {e}")
            return
        self.upstream = None
        self.upgraded = UpgradedConnection(
            self.clock,
            request,
            upstream,
            float(apiGateway.idleTimeoutInEffect),
            float(apiGateway.maxLifetime),
            self._upgradeEnded,
        )

    def _upgradeEnded(self, result: RelayResult) -> None:
        action = UPGRADE_ACTIONS.get(result.outcome, CLOSE)
        if result.outcome == CLOSED and "max-lifetime" in result.reason:
            action = TIMEOUT
        self.lanIn += result.clientIn
        self.wanIn += result.serverIn
        error = self._sessionError
        self.upgraded = None
        self._switching = False
        self._finish(action, None if action == ACCEPT else result.reason, error)

    def _clientGone(self, failure: Failure) -> None:
        self.gone = True
        self._cancelUpstream()
        self._finish(CLIENT_RST, failure.getErrorMessage())

    def _cancelUpstream(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.abort()

    def _stop(self) -> None:
        if self.state.active is self:
            self.state.active = None
        self._stopTimer()

    def _stopTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _finish(self, action: str, detail: str | None, error: ZtnaError | None = None, lanOut: int | None = None) -> None:
        self._stop()
        if self.logged:
            return
        self.logged = True
        route = self.route
        match = self.match
        request = self.request
        self.context.logTraffic(
            self.authorization,
            action=action,
            service=self._service(),
            error=error,
            detail=detail,
            hostname=request.host,
            url=request.path,
            apiGatewayId=match.apiGateway.id if match is not None else None,
            realServerId=route.realServer.id if route is not None else None,
            dstIp=route.address if route is not None else None,
            dstPort=route.port if route is not None else None,
            lanIn=self.lanIn,
            lanOut=self.wanIn if lanOut is None else lanOut,
            wanIn=self.wanIn,
            wanOut=self.lanIn,
            userAgents=request.headers.getAll(b"user-agent"),
        )

    # The idle timeout.

    def _arm(self) -> None:
        self._stopTimer()
        if self.idleTimeout <= 0 or self.logged:
            return
        delay = max(0.0, self.lastActivity + self.idleTimeout - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._idleCheck)

    def _idleCheck(self) -> None:
        self._timer = None
        if self.logged:
            return
        if self.clock.seconds() - self.lastActivity < self.idleTimeout:
            self._arm()
            return
        detail = f"no byte in either direction for {self.idleTimeout:g} s (idle-timeout)"
        if self.request.response.headWritten:
            self._abort(TIMEOUT, detail)
        else:
            self._cancelUpstream()
            self._failed(504, TIMEOUT, detail)
