# -*- test-case-name: tests.gateway.test_tunnel,tests.gateway.test_tunnel_pools -*-
"""
The TCP forwarding access proxy (TFACP): the gateway's side of
FortiClient's tunnels.

The HTTPS request handler hands every C{GET /tcp?address=HOST&port=N&tls=1}
with C{Upgrade: tcp-forwarding/1.0} to L{TunnelHandler}, with the request's
L{RequestContext<ztnagw.gateway.context.RequestContext>} (the shared
authorize path).  One tunnel is answered in this order, and the first step
that fails gives the answer (C{docs/tfacp.md}):

  1. the query (C{400} with a sentence when malformed);
  2. the api-gateways with C{service tcp-forwarding} that serve the
     request's virtual host (none: 021), and the SNI/C{Host} rule (421);
  3. the device (001, 002, 003, 063, 064 for quarantine, 066, 067): an
     unidentified device learns nothing about the protected network, not
     even whether a name resolves there;
  4. the destination's name, resolved by the gateway without blocking
     (023);
  5. the policies, with the resolved address as destination (061, 062,
     064, 065);
  6. the real servers: the address and port must be one of them (022;
     L{ztnagw.gateway.tunnelmatch}), enabled and not marked down by its
     health check (022, at once), and C{tls=0} is refused for a real
     server with C{tunnel-encryption enable} (022);
  7. the connection to the real server, with the api-gateway's
     C{connect-timeout} (022 when it fails).

A destination I{name} that a pooled real server admits (a C{domain} with
one host to connect to; see L{ztnagw.gateway.tunnelmatch}) goes to a pool
instead of steps 4 to 6: a member is chosen as for a proxied request
(L{RealServerPool.choose<ztnagw.gateway.pool.RealServerPool.choose>}: the
api-gateway's C{ldb-method} by the client's address, C{active} before
C{standby}, members down by their health checks left out; none: 022), its
address resolved if it is an fqdn one (023), then the policies see that
address, then C{tls=0} and C{tunnel-encryption}.  When the connection to
the member fails (or its name does not resolve), one other member is
tried the same way (nothing has been relayed yet); when that is
impossible or fails too, the first failure is the answer.

Every refusal is the block page of its code instead of the C{101}.  When
all pass, the gateway answers C{101 Switching Protocols} and relays
(L{ztnagw.tunnel.relay}): inside TLS for C{tls=1}; for C{tls=0} TLS is
frozen the moment the request head is complete (the client may send raw
bytes right behind its request) and dropped right after the C{101}.  The
tunnel registers as a live session, so a device revoked, quarantined or
untagged mid-session loses it at once, and writes one traffic log line
when it ends.

The address the name resolved to is what the policy sees, what is matched
against the real servers and what is connected to: the name is resolved
once, so a second lookup cannot lead elsewhere.

A tunnel lives until one side ends it, or the api-gateway's limits: no
byte either way for C{idle-timeout} (none by default for tcp-forwarding:
SSH and database sessions idle for hours) ends it with action C{timeout};
C{max-lifetime} seconds in all (none by default, as for upgraded HTTP
connections, L{ztnagw.gateway.upgrade}) end it with action C{close}.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IDelayedCall, IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw import errors
from ztnagw.blockpage import renderErrorPage
from ztnagw.config.model import ApiGateway, Config, RealServer
from ztnagw.gateway.context import Authorization, RequestContext
from ztnagw.gateway.interfaces import IResolver, ITunnelHandler
from ztnagw.gateway.pool import Member, RealServerPool
from ztnagw.gateway.realservers import RealServerRouter
from ztnagw.gateway.resolver import NameNotResolved
from ztnagw.gateway.tunnelmatch import TunnelDestinations, TunnelPool, TunnelRoute
from ztnagw.logs import (
    ACCEPT,
    CLIENT_RST,
    CLOSE,
    DNS,
    IP_CONN,
    SERVER_RST,
    TIMEOUT,
    tunnelService,
)
from ztnagw.tls.client import ClientCreatorCache
from ztnagw.tls.transport import TLSDropRefused, TLSProtocol
from ztnagw.tunnel.relay import (
    CLIENT,
    CLOSED,
    COMPLETED,
    IDLE_TIMEOUT,
    SERVER,
    Relay,
    RelayEnd,
    RelayResult,
    failed,
)
from ztnagw.tunnel.wire import UPGRADE_TOKEN, TunnelQueryError, TunnelTarget, parseTunnelTarget

__all__ = ["TunnelHandler", "isDeviceDenial"]

_log = Logger()

#: The C{101} fields.
SWITCHING = ((b"Upgrade", UPGRADE_TOKEN), (b"Connection", b"Upgrade"))

#: The traffic log's C{action} for each way a relay ends.
_ACTIONS = {
    COMPLETED: ACCEPT,
    CLOSED: CLOSE,
    IDLE_TIMEOUT: TIMEOUT,
    failed(CLIENT): CLIENT_RST,
    failed(SERVER): SERVER_RST,
}


def isDeviceDenial(authorization: Authorization) -> bool:
    """
    Whether a denial was made at the device step of the decision (the
    certificate, C{empty-cert-action}, the device verdict) rather than by
    the policies: no policy decided it, and it is not "no policy matched".
    """
    decision = authorization.decision
    return (
        not decision.allowed
        and decision.policy is None
        and decision.error is not errors.NO_POLICY
    )


class _Collector(RelayEnd):
    """
    Takes the decrypted bytes the client sent behind its request (before a
    C{tls=0} switch) from the HTTP layer, for the raw end to send first.
    """

    def __init__(self) -> None:
        super().__init__(CLIENT)

    def connectionMade(self) -> None:
        """
        Nothing to tune: the TCP connection goes to the raw end.
        """


#: Seconds a refused C{tls=0} client gets to close its side before the
#: gateway closes the connection.
LINGER = 2.0


@implementer(IHalfCloseableProtocol)
class _Linger(Protocol):
    """
    What a refused C{tls=0} connection becomes once its answer is sent: TLS
    was frozen for the raw bytes the client might send, so it is dropped
    rather than closed (a C{close_notify} would wait for an answer nobody
    reads), and whatever the client still sends is read and discarded until
    it closes, or L{LINGER} seconds pass.  The client reads the answer
    before anything closes under it.
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._timer: Any = None

    def connectionMade(self) -> None:
        """
        Start the clock.
        """
        self._timer = self._clock.callLater(LINGER, self.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        """
        Discard.
        """

    def readConnectionLost(self) -> None:
        """
        The client is done: close.
        """
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        Nothing.
        """

    def connectionLost(self, reason: Failure) -> None:
        """
        Stop the clock.
        """
        if self._timer is not None and self._timer.active():
            self._timer.cancel()


def _cancel(result: RelayResult, timer: IDelayedCall | None) -> RelayResult:
    # A tunnel that ended stops its max-lifetime timer.
    if timer is not None and timer.active():
        timer.cancel()
    return result


@implementer(ITunnelHandler)
class TunnelHandler:
    """
    Serves tunnel requests (see the module docstring).

    @ivar tunnels: the tunnels relaying now.
    """

    def __init__(
        self, reactor: Any, resolver: IResolver, router: RealServerRouter | None = None
    ) -> None:
        """
        @param reactor: an C{IReactorTCP} and C{IReactorTime} provider.
        @param resolver: resolves destination and real-server names without
            blocking.
        @param router: the real-server pools of the gateway, whose members
            the health checks keep current; without one (tests), the
            handler makes pools of its own whose members are never checked
            (always up).
        """
        self.reactor = reactor
        self.resolver = resolver
        self.tunnels: set[Relay] = set()
        self._router = router
        self._ownRouter: tuple[Config, RealServerRouter] | None = None
        self._destinations: dict[tuple[str, str | None], TunnelDestinations] = {}
        self._pools: dict[tuple[int, tuple[int, ...]], RealServerPool] = {}

    def handleTunnelRequest(self, request: Any, context: RequestContext) -> None:
        """
        Answer one tunnel request (see L{ITunnelHandler}).
        """
        _TunnelRequest(self, request, context).start()

    def destinations(
        self, context: RequestContext, virtualHost: str | None
    ) -> tuple[tuple[ApiGateway, ...], TunnelDestinations]:
        """
        The tcp-forwarding api-gateways serving C{virtualHost} on the
        context's VIP, and their real servers as tunnel destinations
        (compiled once per VIP and virtual host).
        """
        apiGateways = tuple(
            apiGateway
            for apiGateway in context.matcher.apiGateways(("tcp-forwarding",))
            if apiGateway.virtualHost == virtualHost
        )
        key = (context.vip.name, virtualHost)
        destinations = self._destinations.get(key)
        if destinations is None:
            destinations = TunnelDestinations.fromApiGateways(
                context.gate.config, apiGateways
            )
            self._destinations[key] = destinations
        return apiGateways, destinations

    def router(self, config: Config) -> RealServerRouter:
        """
        The real-server pools of C{config}'s tcp-forwarding api-gateways.
        """
        if self._router is not None:
            return self._router
        own = self._ownRouter
        if own is None or own[0] is not config:
            # Tunnels need no TLS client creators: nothing here can fail.
            router = RealServerRouter(config, self.resolver, ClientCreatorCache(), (), services=("tcp-forwarding",))
            own = self._ownRouter = (config, router)
        return own[1]

    def member(self, config: Config, apiGateway: ApiGateway, realServer: RealServer) -> Member | None:
        """
        The pool member of C{realServer} (its health), if it is one: a real
        server naming one host.
        """
        pool = self.router(config).pool(apiGateway)
        return None if pool is None else pool.member(realServer.id)

    def poolFor(self, config: Config, apiGateway: ApiGateway, pool: TunnelPool) -> RealServerPool:
        """
        The pool of members for a destination name: the members of
        C{apiGateway}'s pool that are among C{pool}'s real servers, in
        configuration order, made once per set (so that round-robin and
        weighted turns carry on from one tunnel to the next).
        """
        members = [self.member(config, apiGateway, realServer) for realServer in pool.realServers]
        found = tuple(m for m in members if m is not None)
        key = (id(apiGateway), tuple(m.id for m in found))
        pooled = self._pools.get(key)
        if pooled is None or pooled.apiGateway is not apiGateway:
            pooled = self._pools[key] = RealServerPool(apiGateway, found)
        return pooled

    def closeAll(self, reason: str) -> None:
        """
        End every tunnel now (the daemon is stopping).
        """
        for relay in list(self.tunnels):
            relay.close(reason)


class _TunnelRequest:
    """
    The answering of one tunnel request, step by step.
    """

    def __init__(self, handler: TunnelHandler, request: Any, context: RequestContext) -> None:
        self.handler = handler
        self.request = request
        self.context = context
        self.target: TunnelTarget | None = None
        self.service = "tcp/0"
        self.virtualHost: str | None = None
        self.userAgents: tuple[bytes, ...] = tuple(request.headers.getAll(b"user-agent"))
        self.clientGone = False
        self._connecting: Deferred[object] | None = None
        self._pool: RealServerPool | None = None
        self._poolServers: tuple[RealServer, ...] = ()
        #: The member that failed first, and how (a retry answers with it
        #: when it cannot do better).
        self._firstFailure: tuple[Member, Any] | None = None
        request.response.notifyFinish().addErrback(self._clientLeft)

    # The steps.

    def start(self) -> None:
        request = self.request
        try:
            target = parseTunnelTarget(request.path)
        except TunnelQueryError as e:
            self._error(400, b"Bad Request", str(e))
            return
        self.target = target
        self.service = tunnelService(target.port)
        if not target.encrypted:
            # The client may send raw bytes right behind its request; from
            # here on, whatever arrives stays raw until the 101 is sent.
            transport = request.connection.transport
            if isinstance(transport, TLSProtocol):
                try:
                    transport.freezeTLS()
                except TLSDropRefused:
                    transport.abortConnection()
                    return
        context = self.context
        virtualHost = context.matcher.virtualHostFor(request.host)
        self.virtualHost = None if virtualHost is None else virtualHost.name
        if context.misdirected(self.virtualHost):
            self._error(
                421,
                b"Misdirected Request",
                "the Host names a virtual host with other certificate rules "
                "than the TLS server name",
            )
            return
        apiGateways, destinations = self.handler.destinations(context, self.virtualHost)
        if not apiGateways:
            self._deny(
                errors.NO_APPLICATION,
                None,
                logDetail="no api-gateway with service tcp-forwarding serves "
                f"virtual host {self.virtualHost or '(default)'}",
            )
            return
        # The device first: the placeholder destination (the VIP) only
        # serves to run the device step; its policy answer is not used.
        authorization = context.authorize(self.virtualHost, self.userAgents)
        if isDeviceDenial(authorization):
            self._deny(authorization.decision.error, authorization)  # type: ignore[arg-type]
            return
        self.destinations = destinations
        pool = destinations.pool(target)
        if pool is not None:
            apiGateway = context.accessProxy.apiGateways[pool.apiGatewayId]  # type: ignore[union-attr]
            self._pool = self.handler.poolFor(context.gate.config, apiGateway, pool)
            self._poolServers = pool.realServers
            self._tryMember()
            return
        names = sorted(destinations.namesToResolve(target))
        lookups = [self._resolve(name) for name in names]
        gatherResults(lookups).addCallback(
            lambda answers: self._resolved(dict(zip(names, answers)))
        ).addErrback(self._unexpected)

    def _resolve(self, name: str) -> Deferred[tuple[ipaddress.IPv4Address, ...] | None]:
        resolver = self.handler.resolver
        cached = resolver.cached(name)
        if cached is not None:
            answer: Deferred[tuple[ipaddress.IPv4Address, ...] | None] = Deferred()
            answer.callback(cached)
            return answer
        # A failure is an answer (None), not an error: a real server whose
        # name does not resolve just admits nothing.
        return resolver.resolve(name).addErrback(lambda f: None)

    def _resolved(self, answers: dict[str, tuple[ipaddress.IPv4Address, ...] | None]) -> None:
        if self.clientGone:
            return
        target = self.target
        assert target is not None
        resolved = {name: tuple(addresses or ()) for name, addresses in answers.items()}
        candidates = self.destinations.candidates(target, resolved)
        if not candidates:
            if target.address is None:
                self._deny(
                    errors.DNS_FAILURE,
                    None,
                    action=DNS,
                    logDetail=f"{target.host} has no IPv4 address",
                    detail=f"The name {target.host} could not be resolved.",
                )
            else:
                self._deny(
                    errors.NO_REAL_SERVER,
                    None,
                    logDetail=f"{target.hostPort()}: IPv6 destinations are not supported",
                    detail="Tunnels to IPv6 addresses are not supported.",
                )
            return
        address = candidates[0]
        authorization = self.context.authorize(self.virtualHost, self.userAgents, address)
        if not authorization.allowed:
            self._deny(authorization.decision.error, authorization, dstIp=address, dstPort=target.port)  # type: ignore[arg-type]
            return
        route = self.destinations.route(target, address, resolved)
        if route is None:
            self._deny(
                errors.NO_REAL_SERVER,
                authorization,
                logDetail=f"{target.hostPort()} ({address}) is not a real server of "
                "a tcp-forwarding api-gateway",
                detail=f"{target.hostPort()} is not a destination of this gateway.",
                dstIp=address,
                dstPort=target.port,
            )
            return
        realServer = route.realServer
        if realServer.status == "disable":
            self._deny(
                errors.NO_REAL_SERVER,
                authorization,
                logDetail=f"real server {realServer.id} ({route.address}:{route.port}) "
                "is disabled (status disable)",
                detail=f"The destination {target.hostPort()} is disabled on this gateway.",
                **self._routeFields(route),
            )
            return
        apiGateway = self.context.accessProxy.apiGateways[route.apiGatewayId]  # type: ignore[union-attr]
        member = self.handler.member(self.context.gate.config, apiGateway, realServer)
        if member is not None and not member.up:
            # Its health check says it is down: refuse now rather than
            # after a connect timeout.
            self._deny(
                errors.NO_REAL_SERVER,
                authorization,
                logDetail=f"real server {realServer.id} ({route.address}:{route.port}) "
                f"is down by its health check: {member.health.detail}",
                detail=f"The destination {target.hostPort()} is down (its health check fails).",
                **self._routeFields(route),
            )
            return
        if self._refusedUnencrypted(authorization, route):
            return
        self._connect(authorization, route)

    def _refusedUnencrypted(self, authorization: Authorization, route: TunnelRoute) -> bool:
        # tls=0 to a real server with tunnel-encryption enable: refused.
        target = self.target
        assert target is not None
        if target.encrypted or not route.realServer.tunnelEncryption:
            return False
        self._deny(
            errors.NO_REAL_SERVER,
            authorization,
            logDetail=f"real server {route.realServer.id} has tunnel-encryption "
            "enable; the client asked for tls=0",
            detail="This destination requires an encrypted tunnel: turn "
            "encryption on for it (tls=1).",
            **self._routeFields(route),
        )
        return True

    # Pools.

    def _tryMember(self) -> None:
        """
        Choose a member of the destination's pool (another one than the
        one that failed, on a retry), resolve it, authorize its address,
        connect.
        """
        pool = self._pool
        assert pool is not None
        failed = () if self._firstFailure is None else (self._firstFailure[0],)
        member = pool.choose(sourceIp=self.context.sourceIp, exclude=failed)
        if member is None:
            if self._firstFailure is not None:
                self._answerFirstFailure()
                return
            self._noMember(pool)
            return
        self.handler.router(self.context.gate.config).routeOf(member).addCallbacks(
            lambda route: self._memberResolved(member, route.address),
            lambda reason: self._memberFailed(member, reason),
        ).addErrback(self._unexpected)

    def _noMember(self, pool: RealServerPool) -> None:
        target = self.target
        assert target is not None
        refusal = self._refusedEverywhere()
        if refusal is not None:
            # The policies would refuse every server of the pool: that is
            # the answer, not the pool's health, which a device that may
            # not reach the servers has no business learning.
            self._deny(
                refusal.decision.error,  # type: ignore[arg-type]
                refusal,
                apiGatewayId=pool.apiGateway.id,
                dstPort=target.port,
            )
            return
        down = sum(1 for m in pool.members if not m.up)
        disabled = sum(1 for r in self._poolServers if r.status == "disable")
        counts = [f"{n} {what}" for n, what in ((down, "down by health check"), (disabled, "disabled")) if n]
        why = f" ({', '.join(counts)})" if counts else ""
        self._deny(
            errors.NO_REAL_SERVER,
            None,
            logDetail=f"api-gateway {pool.apiGateway.id} has no usable real server "
            f"for {target.hostPort()}{why}",
            detail=f"No server for {target.hostPort()} is available now.",
            apiGatewayId=pool.apiGateway.id,
            dstPort=target.port,
        )

    def _refusedEverywhere(self) -> Authorization | None:
        """
        The policies' refusal of the device for every server of the
        destination's pool, judged on their configured addresses; C{None}
        when some server would be allowed, or when one has only a name (its
        address is unknown without resolving it).
        """
        config = self.context.gate.config
        refusal: Authorization | None = None
        for realServer in self._poolServers:
            address = config.realServerAddress(realServer)
            if address is None:
                return None
            authorization = self.context.authorize(self.virtualHost, self.userAgents, address)
            if authorization.allowed:
                return None
            refusal = refusal or authorization
        return refusal

    def _memberResolved(self, member: Member, address: ipaddress.IPv4Address) -> None:
        if self.clientGone:
            return
        target = self.target
        assert target is not None
        route = TunnelRoute(
            apiGatewayId=member.apiGateway.id,
            realServer=member.realServer,
            address=address,
            port=target.port,
        )
        authorization = self.context.authorize(self.virtualHost, self.userAgents, address)
        if self._firstFailure is not None:
            # A retry goes only where the first attempt could have gone.
            if not authorization.allowed or (not target.encrypted and member.realServer.tunnelEncryption):
                self._answerFirstFailure()
                return
        elif not authorization.allowed:
            self._deny(authorization.decision.error, authorization, **self._routeFields(route))  # type: ignore[arg-type]
            return
        elif self._refusedUnencrypted(authorization, route):
            return
        self._connect(authorization, route, member)

    def _memberFailed(self, member: Member, reason: Failure) -> None:
        # The member's name did not resolve: like a failed connection, it
        # may be retried on another member.
        if self.clientGone:
            return
        reason.trap(NameNotResolved)
        self._retryOrAnswer(member, (None, reason))

    def _retryOrAnswer(self, member: Member, failure: Any) -> None:
        if self._firstFailure is None:
            self._firstFailure = (member, failure)
            self._tryMember()
        else:
            self._answerFirstFailure()

    def _answerFirstFailure(self) -> None:
        assert self._firstFailure is not None
        member, (attempt, reason) = self._firstFailure
        if attempt is None:
            target = self.target
            assert target is not None
            self._deny(
                errors.DNS_FAILURE,
                None,
                action=DNS,
                logDetail=f"real server {member.realServer.id} ({member.name}) of "
                f"{target.hostPort()}: {reason.getErrorMessage()}",
                detail=f"The server for {target.hostPort()} could not be resolved.",
                apiGatewayId=member.apiGateway.id,
                realServerId=member.realServer.id,
                dstPort=target.port,
            )
            return
        authorization, route, apiGateway = attempt
        self._answerConnectFailure(authorization, route, apiGateway, reason)

    def _connect(self, authorization: Authorization, route: TunnelRoute, member: Member | None = None) -> None:
        apiGateway = self.context.accessProxy.apiGateways[route.apiGatewayId]  # type: ignore[union-attr]
        server = RelayEnd(SERVER)
        endpoint = TCP4ClientEndpoint(
            self.handler.reactor,
            str(route.address),
            route.port,
            timeout=apiGateway.connectTimeout,
        )
        connecting = connectProtocol(endpoint, server)
        self._connecting = connecting
        connecting.addCallbacks(
            lambda _: self._connected(authorization, route, apiGateway, server),
            lambda reason: self._connectFailed(authorization, route, apiGateway, reason, member),
        ).addErrback(self._unexpected)

    def _connectFailed(
        self,
        authorization: Authorization,
        route: TunnelRoute,
        apiGateway: ApiGateway,
        reason: Failure,
        member: Member | None,
    ) -> None:
        self._connecting = None
        if self.clientGone:
            return
        if member is not None:
            # Nothing was relayed yet: another member may take it.
            self._retryOrAnswer(member, ((authorization, route, apiGateway), reason))
            return
        self._answerConnectFailure(authorization, route, apiGateway, reason)

    def _answerConnectFailure(
        self,
        authorization: Authorization,
        route: TunnelRoute,
        apiGateway: ApiGateway,
        reason: Failure,
    ) -> None:
        if reason.check(TimeoutError):
            why = f"did not answer within {apiGateway.connectTimeout} s"
        elif reason.check(ConnectionRefusedError):
            why = "refused the connection"
        else:
            why = f"could not be reached: {reason.getErrorMessage()}"
        self._deny(
            errors.NO_REAL_SERVER,
            authorization,
            action=IP_CONN,
            logDetail=f"real server {route.address}:{route.port} {why}",
            detail=f"The destination {why}.",
            **self._routeFields(route),
        )

    def _connected(
        self,
        authorization: Authorization,
        route: TunnelRoute,
        apiGateway: ApiGateway,
        server: RelayEnd,
    ) -> None:
        self._connecting = None
        if self.clientGone:
            server.abort()
            return
        request = self.request
        target = self.target
        assert target is not None
        transport = request.connection.transport
        request.response.writeInformational(101, b"Switching Protocols", SWITCHING)
        client = RelayEnd(CLIENT)
        if target.encrypted or not isinstance(transport, TLSProtocol):
            request.takeOver(client)
        else:
            collector = _Collector()
            request.takeOver(collector)
            for data in collector._takePending():
                client.dataReceived(data)
            try:
                transport.dropTLS(client)
            except TLSDropRefused as e:
                _log.warn(
                    "tunnel {session}: cannot switch to raw TCP: {why}",
                    session=self.context.sessionId,
                    why=str(e),
                )
                transport.abortConnection()
                server.abort()
                return
        idleTimeout = apiGateway.idleTimeoutInEffect or None
        relay = Relay(self.handler.reactor, client, server, idleTimeout=idleTimeout)
        self.handler.tunnels.add(relay)
        relay.start()
        lifetime: IDelayedCall | None = None
        if apiGateway.maxLifetime > 0:
            lifetime = self.handler.reactor.callLater(
                apiGateway.maxLifetime,
                relay.close,
                f"open for {apiGateway.maxLifetime} s (max-lifetime)",
            )
        relay.whenDone().addCallback(_cancel, lifetime)
        session = self.context.openSession(
            authorization,
            lambda denial: relay.close(
                f"device no longer allowed: {denial.decision.error or denial.decision.reason}"
            ),
            service=self.service,
            **self._routeFields(route),
        )
        relay.whenDone().addCallback(self._ended, relay, authorization, route, session)

    def _ended(
        self,
        result: RelayResult,
        relay: Relay,
        authorization: Authorization,
        route: TunnelRoute,
        session: Any,
    ) -> None:
        self.handler.tunnels.discard(relay)
        if session is not None:
            session.end()
        self.context.logTraffic(
            authorization,
            action=_ACTIONS.get(result.outcome, CLOSE),
            service=self.service,
            detail=None if result.outcome == COMPLETED else result.reason,
            hostname=self.request.host,
            url=self.request.target,
            lanIn=result.clientIn,
            lanOut=result.clientOut,
            wanIn=result.serverIn,
            wanOut=result.serverOut,
            userAgents=self.userAgents,
            **self._routeFields(route),
        )

    # Helpers.

    @staticmethod
    def _routeFields(route: TunnelRoute) -> dict[str, object]:
        return {
            "apiGatewayId": route.apiGatewayId,
            "realServerId": route.realServer.id,
            "dstIp": route.address,
            "dstPort": route.port,
        }

    def _deny(
        self,
        error: errors.ZtnaError,
        authorization: Authorization | None,
        **fields: Any,
    ) -> None:
        target = self.target
        self.context.deny(
            self.request,
            error,
            authorization,
            destination=target.hostPort() if target is not None else None,
            service=self.service,
            hostname=self.request.host,
            url=self.request.target,
            **fields,
        )
        self._unfreeze()

    def _error(self, status: int, reason: bytes, detail: str) -> None:
        status, headers, body = renderErrorPage(
            status, reason, detail, self.request.headers.get(b"accept")
        )
        response = self.request.response
        if not response.headWritten and not response.finished:
            response.respond(status, reason, headers, body)
        self._unfreeze()

    def _unfreeze(self) -> None:
        # A refused tls=0 request left TLS frozen: drop it and linger.
        target = self.target
        transport = self.request.connection.transport
        if (
            target is None
            or target.encrypted
            or not isinstance(transport, TLSProtocol)
            or self.clientGone
        ):
            return
        application = transport.wrappedProtocol
        try:
            transport.dropTLS(_Linger(self.handler.reactor))
        except TLSDropRefused:
            transport.abortConnection()
            return
        # The HTTP layer gets no event from the dropped TLS wrapper: finish
        # it, or its close timer would outlive the connection.
        application.connectionLost(Failure(ConnectionDone("TLS dropped after a refusal")))

    def _clientLeft(self, reason: Failure) -> None:
        self.clientGone = True
        connecting = self._connecting
        if connecting is not None and not connecting.called:
            connecting.cancel()

    def _unexpected(self, reason: Failure) -> None:
        _log.failure(
            "tunnel request {session} failed unexpectedly",
            reason,
            session=self.context.sessionId,
        )
        response = self.request.response
        if not response.headWritten and not response.finished:
            self._error(500, b"Internal Server Error", "the tunnel request could not be handled")
