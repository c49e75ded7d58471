# -*- test-case-name: tests.gateway.test_realservers -*-
"""
Which real server a proxied request goes to, and how to reach it.

Every api-gateway's real servers form a pool (L{ztnagw.gateway.pool}: the
load-balancing method, C{active}/C{standby}/C{disable}, the health each
member's checks concluded, persistence); L{RealServerRouter.chooseRealServer}
is where a request gets its member.  A real server is a member when it
names exactly one host: C{addr-type ip} with C{ip}, or with C{address}
naming a single address (a /32 subnet or a one-address range);
C{addr-type fqdn} with C{address} naming an FQDN address, resolved when a
request needs it (without blocking; failure is error 023).  None that may
serve: error 022.

The pools of tcp-forwarding api-gateways are made here too, by the same
rule, so that their members are health-checked and shown like the others;
the tunnel handler (L{ztnagw.gateway.tunnel}) chooses among them for a
destination name, and checks the health of a real server named directly.

Everything that can be prepared is prepared once, at start-up: the TLS
client connection creator of each C{service https} real server (verified
against the C{vpn certificate ca} anchors when C{verify-cert enable}, so a
missing CA stops the gateway from starting instead of failing requests),
and the C{Host} header each one gets (C{http-host}, else with
C{translate-host enable} the real server's own name, else the client's).
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Iterable, Iterator, Sequence

from attrs import frozen
from cryptography import x509
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.logger import Logger

from ztnagw.config.model import ApiGateway, Config, RealServer
from ztnagw.gateway.identity import IdentityHeaders, IdentityKeys
from ztnagw.gateway.interfaces import IResolver
from ztnagw.gateway.persistence import CookiePersistence
from ztnagw.gateway.pool import Member, MemberHealth, RealServerPool
from ztnagw.http.client import UpstreamKey
from ztnagw.tls.client import ClientCreatorCache, RealServerTrust
from ztnagw.tls.posture import TLSConfigurationError

__all__ = [
    "NoUsableRealServer",
    "RealServerConfigurationError",
    "RealServerRoute",
    "RealServerRouter",
]

_log = Logger()

_DEFAULT_PORTS = {"http": 80, "https": 443}


class NoUsableRealServer(Exception):
    """
    An api-gateway has no usable real server (error 022).
    """


class RealServerConfigurationError(ValueError):
    """
    A real server cannot be used as configured (a C{service https} one with
    C{verify-cert enable} and no CA, a malformed C{http-host}); the message
    names it and says what to change.
    """


@frozen
class RealServerRoute:
    """
    Where one request goes.

    @ivar apiGateway: the api-gateway that matched.
    @ivar realServer: the real server chosen.
    @ivar address: its address (resolved for an FQDN).
    @ivar port: its port.
    @ivar key: the upstream connection pool's key for it.
    @ivar hostHeader: the C{Host} to send, or C{None} to send the client's.
    @ivar name: how logs and messages name it (FQDN or address).
    @ivar member: its pool member (a retry avoids it; persistence names
        it).
    """

    apiGateway: ApiGateway
    realServer: RealServer
    address: ipaddress.IPv4Address
    port: int
    key: UpstreamKey
    hostHeader: bytes | None
    name: str
    member: Member | None = None


@frozen
class _Target:
    realServer: RealServer
    ip: ipaddress.IPv4Address | None
    fqdn: str | None
    tls: IOpenSSLClientConnectionCreator | None
    hostHeader: bytes | None

    @property
    def name(self) -> str:
        return self.fqdn if self.fqdn is not None else str(self.ip)


def _hostPart(value: str) -> str:
    # http-host may carry a port; the certificate names the host.
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    host, colon, port = value.rpartition(":")
    return host if colon and port.isdigit() else value


class RealServerRouter:
    """
    Chooses the real server of each request (see the module docstring).
    """

    def __init__(
        self,
        config: Config,
        resolver: IResolver,
        creators: ClientCreatorCache,
        caCertificates: Sequence[x509.Certificate],
        services: Iterable[str] = ("https", "http", "tcp-forwarding"),
    ) -> None:
        """
        Prepare the pool of every api-gateway of C{config} (a
        tcp-forwarding one's members are its real servers that name one
        host: L{ztnagw.gateway.tunnelmatch} says which tunnels go to them).

        @param resolver: resolves FQDN real servers.
        @param creators: the process's TLS client creators.
        @param caCertificates: the anchors of every C{vpn certificate ca}.
        @param services: the services of the api-gateways to prepare (the
            others have no pool here).
        @raise RealServerConfigurationError: a real server cannot be used as
            configured.
        """
        self._resolver = resolver
        #: Cookie persistence, once the gateway's key is known (without
        #: it, api-gateways with persistence http-cookie use their method).
        self.persistence: CookiePersistence | None = None
        #: The identity rules toward real servers.
        self.identity = IdentityHeaders(config, None, f"ztnagw:{config.systemGlobal.hostname}")
        self._config = config
        self._pools: dict[int, tuple[RealServerPool, ApiGateway]] = {}
        self._labels: list[tuple[Member, str, str | None]] = []
        services = frozenset(services)
        for accessProxy in config.accessProxies.values():
            for apiGateway in accessProxy.apiGateways.values():
                if apiGateway.service not in services:
                    continue
                tcp = apiGateway.service not in _DEFAULT_PORTS
                members: list[Member] = []
                for realServer in apiGateway.realServers.values():
                    if realServer.status == "disable":
                        continue
                    where = (
                        f"access-proxy {accessProxy.name!r} api-gateway "
                        f"{apiGateway.id} real server {realServer.id}"
                    )
                    target = self._compile(
                        config, apiGateway, realServer, creators, tuple(caCertificates), where, quiet=tcp
                    )
                    if target is None:
                        continue
                    member = Member(apiGateway, realServer, target.name, MemberHealth(), target)
                    members.append(member)
                    self._labels.append((member, accessProxy.vip or "", accessProxy.name))
                self._pools[id(apiGateway)] = (RealServerPool(apiGateway, members), apiGateway)
    def _compile(
        self,
        config: Config,
        apiGateway: ApiGateway,
        realServer: RealServer,
        creators: ClientCreatorCache,
        caCertificates: tuple[x509.Certificate, ...],
        where: str,
        quiet: bool = False,
    ) -> _Target | None:
        ip = config.realServerAddress(realServer)
        fqdn: str | None = None
        if realServer.addrType != "ip" and realServer.address is not None:
            address = config.addresses.get(realServer.address)
            if address is not None and address.fqdn is not None:
                fqdn = address.fqdn.lower().rstrip(".")
        if ip is None and fqdn is None:
            # A tunnel real server may stand for many hosts (a subnet, a
            # domain): it is matched by destination instead.
            if not quiet:
                _log.warn(
                    "{where} names no single host (addr-type ip needs ip or a "
                    "one-address address; addr-type fqdn an fqdn address): it "
                    "is never used",
                    where=where,
                )
            return None
        name = fqdn if fqdn is not None else str(ip)
        scheme = apiGateway.service
        if scheme not in _DEFAULT_PORTS:
            return _Target(realServer, ip, fqdn, None, None)
        if realServer.httpHost:
            hostHeader: bytes | None = realServer.httpHost.encode("ascii", "replace")
        elif realServer.translateHost:
            default = _DEFAULT_PORTS[scheme]
            hostHeader = (name if realServer.port == default else f"{name}:{realServer.port}").encode("ascii")
        else:
            hostHeader = None
        tls = None
        if scheme == "https":
            certificateName = _hostPart(realServer.httpHost) if realServer.httpHost else name
            trust = RealServerTrust(verify=realServer.verifyCert, caCertificates=caCertificates)
            try:
                tls = creators.realServer(certificateName, trust)
            except TLSConfigurationError as e:
                hint = (
                    " (add a 'config vpn certificate ca' entry with the CA that "
                    "issued the real server's certificate, or set verify-cert "
                    "disable)"
                    if realServer.verifyCert and not caCertificates
                    else ""
                )
                raise RealServerConfigurationError(f"{where}: {e}{hint}") from e
        return _Target(realServer, ip, fqdn, tls, hostHeader)

    def useKeys(self, persistenceKey: bytes, identityKeys: IdentityKeys, clock: object) -> None:
        """
        Give the router the gateway's keys (from the state directory):
        cookie persistence and identity assertions work from now on.
        """
        self.persistence = CookiePersistence(persistenceKey, clock)
        self.identity = IdentityHeaders(
            self._config, identityKeys, f"ztnagw:{self._config.systemGlobal.hostname}"
        )

    def pool(self, apiGateway: ApiGateway) -> RealServerPool | None:
        """
        The pool of C{apiGateway}, if it is one of the configuration's.
        """
        found = self._pools.get(id(apiGateway))
        if found is None or found[1] is not apiGateway:
            return None
        return found[0]

    def members(self) -> Iterator[tuple[Member, str, str | None]]:
        """
        Every pool member, with the names of its VIP and access proxy, in
        configuration order.
        """
        return iter(self._labels)

    def chooseRealServer(
        self,
        apiGateway: ApiGateway,
        request: object = None,
        *,
        sourceIp: ipaddress.IPv4Address | None = None,
        exclude: Iterable[Member] = (),
        bound: Callable[[Sequence[Member]], Member | None] | None = None,
    ) -> Deferred[RealServerRoute]:
        """
        The real server for a request matched to C{apiGateway}.

        @param request: the request (its C{Host} for C{ldb-method
            http-host}).
        @param sourceIp: the client's address (C{ldb-method static}).
        @param exclude: members not to choose (a retry).
        @param bound: finds the member a persistence cookie binds the
            client to (see L{RealServerPool.choose}).
        @return: a Deferred firing with the route, or failing with
            L{NoUsableRealServer} (022) or
            L{NameNotResolved<ztnagw.gateway.resolver.NameNotResolved>}
            (023).
        """
        pool = self.pool(apiGateway)
        if pool is None:
            return fail(NoUsableRealServer(f"api-gateway {apiGateway.id} serves no proxied requests"))
        host = getattr(request, "host", None)
        member = pool.choose(sourceIp=sourceIp, host=host, exclude=exclude, bound=bound)
        if member is None:
            down = [m for m in pool.members if not m.up]
            why = "has no usable real server"
            if down:
                why = f"has no usable real server ({len(down)} down by health check)"
            if exclude:
                why = "has no other usable real server"
            return fail(NoUsableRealServer(f"api-gateway {apiGateway.id} {why}"))
        return self.routeOf(member)

    def routeOf(self, member: Member) -> Deferred[RealServerRoute]:
        """
        The route to C{member} now (its name resolved, for an FQDN).
        """
        target = member.target
        assert isinstance(target, _Target)
        if target.ip is not None:
            return succeed(self._route(member, target.ip))
        assert target.fqdn is not None
        return self._resolver.resolve(target.fqdn).addCallback(
            lambda addresses: self._route(member, addresses[0])
        )

    def _route(self, member: Member, address: ipaddress.IPv4Address) -> RealServerRoute:
        target = member.target
        assert isinstance(target, _Target)
        realServer = member.realServer
        return RealServerRoute(
            apiGateway=member.apiGateway,
            realServer=realServer,
            address=address,
            port=realServer.port,
            key=UpstreamKey(str(address), realServer.port, target.tls),
            hostHeader=target.hostHeader,
            name=target.name,
            member=member,
        )
