# -*- test-case-name: tests.gateway.test_tunnelmatch,tests.gateway.test_tunnel_pools -*-
"""
Which tunnel destinations an access proxy allows, and which of them are
pools: a tunnel may lead only to a real server of one of its C{service
tcp-forwarding} api-gateways.

FortiClient names the destination itself (C{address} and C{port} of
C{GET /tcp}), so this is the gateway's one guard against a tunnel into any
host of the protected network: the destination must be a configured real
server, by address and by port.

A real server of a tcp-forwarding api-gateway admits a destination in one
of four ways:

  - C{addr-type ip} with C{ip}: that address;
  - C{addr-type ip} with C{address}: any address of that firewall address
    or group (subnets and ranges);
  - C{addr-type fqdn} with C{address} naming an fqdn address: the
    addresses that name resolves to;
  - C{addr-type fqdn} with C{domain} alone: a destination I{name} equal to
    the domain, or under it for a wildcard (C{*.corp.example} admits
    C{db.corp.example} and C{a.b.corp.example}, not C{corp.example}),
    connected to at the address the gateway resolves it to;

and the port must be in C{mappedport} when it is set, else equal to
C{port}.  A disabled real server admits nothing (L{TunnelDestinations.route}
still finds it, so that the refusal can say so).

B{Pools.}  A real server with a C{domain} I{and} one host to connect to
(C{ip}, an C{address} of one host, or an fqdn C{address}) is a I{pooled}
server: it admits the names under its domain, and the pooled servers of
one api-gateway that admit a name (and port) form that name's pool
(L{TunnelDestinations.pool}).  A name a pooled server admits goes to a
pool, before anything else is looked at: the first api-gateway, in
configuration order, with a pooled server admitting it.  The gateway then
chooses a member with the api-gateway's C{ldb-method}, C{status} and
health checks (L{ztnagw.gateway.pool}), and connects to I{the member's}
address on the requested port: the name itself is not resolved.  A pooled
server is also an ordinary destination by its address (a client that names
C{10.0.0.11} asks for that server, not for the pool).

B{Servers named directly.}  Every other destination names its server: it
goes to the first enabled real server that admits it.  C{standby} ones are
destinations like active ones (the client named that server: there is no
pool to fall back on); a server its health check marks down is refused by
the tunnel handler at once, rather than after a connect timeout.

The rule that keeps names honest: outside pools, a destination name is
resolved once, by the gateway, and the address it resolved to is what is
checked against address-based real servers, what the policy's C{dstaddr}
sees, and what the gateway connects to.  A name under an admitted domain
that resolves to an address no policy allows is refused by the policy; a
name that resolves to a real server's address is as good as the address.
In a pool, the policy sees the chosen member's address.  Tunnels are IPv4,
like the rest of the policy model: an IPv6 destination matches no real
server.

Everything here is pure: the caller resolves the names
L{TunnelDestinations.namesToResolve} lists (without blocking) and passes
the answers in.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Mapping, Sequence

from attrs import frozen

from ztnagw.config.addresses import AddressSet, UnresolvedAddress
from ztnagw.config.model import ApiGateway, Config, RealServer
from ztnagw.config.schema import PortRange
from ztnagw.tunnel.wire import TunnelTarget

__all__ = [
    "TunnelDestinations",
    "TunnelPool",
    "TunnelRoute",
    "TunnelServer",
    "domainMatches",
]

#: DNS answers: each name's IPv4 addresses, in the resolver's order
#: (empty when it did not resolve).
Resolved = Mapping[str, Sequence[ipaddress.IPv4Address]]

_IP = "ip"
_ADDRESS = "address"
_FQDN = "fqdn"
_DOMAIN = "domain"


def domainMatches(name: str, domain: str) -> bool:
    """
    Whether host name C{name} is admitted by a real server's C{domain}:
    equal to it, or, for C{*.suffix}, ending with C{.suffix} (one label or
    more before it).  Case and a final dot do not matter.
    """
    name = name.lower().rstrip(".")
    domain = domain.lower().rstrip(".")
    if domain.startswith("*."):
        suffix = domain[1:]
        return len(name) > len(suffix) and name.endswith(suffix)
    return name == domain


@frozen
class TunnelServer:
    """
    One real server of a tcp-forwarding api-gateway, ready for matching.

    @ivar apiGatewayId: its api-gateway's id.
    @ivar realServer: the real server.
    @ivar kind: how it admits addresses (C{ip}, C{address}, C{fqdn}), or
        C{domain} for a server that admits names only.
    @ivar addresses: the firewall address or group, for kind C{address}.
    @ivar ports: the ports it admits.
    @ivar fqdn: the name to resolve, for kind C{fqdn} (lower case).
    @ivar pooled: whether it is a member of the pool of the names under
        its C{domain} (a domain and one host to connect to).
    """

    apiGatewayId: int
    realServer: RealServer
    kind: str
    addresses: AddressSet | None
    ports: tuple[PortRange, ...]
    fqdn: str | None = None
    pooled: bool = False

    @property
    def enabled(self) -> bool:
        """
        Whether it admits anything (it is not C{status disable}).
        """
        return self.realServer.status != "disable"

    def admitsPort(self, port: int) -> bool:
        """
        Whether C{port} is one of its ports.
        """
        return any(port in portRange for portRange in self.ports)

    def admitsName(self, target: TunnelTarget) -> bool:
        """
        Whether C{target} is a name (and port) of the pool this server is a
        member of.
        """
        domain = self.realServer.domain
        return (
            self.pooled
            and target.address is None
            and domain is not None
            and self.admitsPort(target.port)
            and domainMatches(target.host, domain)
        )

    def admits(
        self, target: TunnelTarget, address: ipaddress.IPv4Address, resolved: Resolved
    ) -> bool:
        """
        Whether a tunnel to C{target}, which stands for C{address}, may lead
        here as a destination named directly (pools aside).
        """
        if not self.admitsPort(target.port):
            return False
        kind = self.kind
        if kind == _IP:
            return address == self.realServer.ip
        if kind == _ADDRESS:
            assert self.addresses is not None
            try:
                return self.addresses.contains(address, {})
            except UnresolvedAddress:
                # A loaded configuration has no fqdn address here; if one
                # slipped in, it admits nothing rather than guessing.
                return False
        if kind == _FQDN:
            assert self.fqdn is not None
            return address in resolved.get(self.fqdn, ())
        domain = self.realServer.domain
        assert domain is not None
        return target.address is None and domainMatches(target.host, domain)


@frozen
class TunnelRoute:
    """
    A destination named directly that a real server admits: where the
    tunnel leads.

    @ivar apiGatewayId: the api-gateway it belongs to (C{gatewayid}).
    @ivar realServer: the real server that admitted it (C{realserverid},
        C{tunnel-encryption}); it may be disabled (see
        L{TunnelDestinations.route}).
    @ivar address: the address to connect to.
    @ivar port: the port to connect to.
    """

    apiGatewayId: int
    realServer: RealServer
    address: ipaddress.IPv4Address
    port: int


@frozen
class TunnelPool:
    """
    The pool a destination name goes to.

    @ivar apiGatewayId: the api-gateway whose pooled servers admit the
        name.
    @ivar realServers: those servers (disabled ones too), in configuration
        order.
    """

    apiGatewayId: int
    realServers: tuple[RealServer, ...]


def _ipv4(addresses: Iterable[object]) -> list[ipaddress.IPv4Address]:
    return [a for a in addresses if isinstance(a, ipaddress.IPv4Address)]


@frozen
class TunnelDestinations:
    """
    The real servers tunnels on one access proxy may lead to, in
    configuration order (api-gateways, then their real servers), disabled
    ones included.
    """

    servers: tuple[TunnelServer, ...]

    @classmethod
    def fromApiGateways(
        cls, config: Config, apiGateways: Iterable[ApiGateway]
    ) -> TunnelDestinations:
        """
        Compile the real servers of the C{service tcp-forwarding} ones among
        C{apiGateways} (others are skipped).
        """
        servers = []
        for apiGateway in apiGateways:
            if apiGateway.service != "tcp-forwarding":
                continue
            for realServer in apiGateway.realServers.values():
                server = _compile(config, apiGateway.id, realServer)
                if server is not None:
                    servers.append(server)
        return cls(tuple(servers))

    def pool(self, target: TunnelTarget) -> TunnelPool | None:
        """
        The pool destination C{target} goes to: the pooled servers that
        admit its name and port, of the first api-gateway (in
        configuration order) that has one; C{None} when C{target} is an
        address or no pooled server admits it.
        """
        members: list[RealServer] = []
        apiGatewayId: int | None = None
        for server in self.servers:
            if apiGatewayId is not None and server.apiGatewayId != apiGatewayId:
                break
            if server.admitsName(target):
                apiGatewayId = server.apiGatewayId
                members.append(server.realServer)
        if apiGatewayId is None:
            return None
        return TunnelPool(apiGatewayId, tuple(members))

    def namesToResolve(self, target: TunnelTarget) -> frozenset[str]:
        """
        The names whose addresses L{candidates} and L{route} need for
        C{target} (outside pools): the destination itself if it is a name,
        and the fqdn real servers with the right port.
        """
        names = set()
        if target.address is None:
            names.add(target.host)
        for server in self.servers:
            if server.kind == _FQDN and server.enabled and server.admitsPort(target.port):
                assert server.fqdn is not None
                names.add(server.fqdn)
        return frozenset(names)

    def candidates(
        self, target: TunnelTarget, resolved: Resolved
    ) -> list[ipaddress.IPv4Address]:
        """
        The addresses C{target} stands for, best first: the address itself,
        or the IPv4 addresses its name resolved to, those that a real server
        admits first (in the resolver's order within each group).  Empty
        when the name did not resolve to an IPv4 address, or the target is
        an IPv6 address.
        """
        literal = target.address
        if literal is not None:
            return _ipv4([literal])
        addresses = _ipv4(resolved.get(target.host, ()))
        admitted = [a for a in addresses if self._admitting(target, a, resolved, True) is not None]
        return admitted + [a for a in addresses if a not in admitted]

    def route(
        self, target: TunnelTarget, address: ipaddress.IPv4Address, resolved: Resolved
    ) -> TunnelRoute | None:
        """
        The first enabled real server that admits a tunnel to C{target}
        standing for C{address}; when none does, the first disabled one
        that would (so that the refusal can name it: check
        C{route.realServer.status}); else C{None}.

        @param resolved: the answers for L{namesToResolve}; a missing name
            admits nothing.
        """
        server = self._admitting(target, address, resolved, True)
        if server is None:
            server = self._admitting(target, address, resolved, False)
        if server is None:
            return None
        return TunnelRoute(
            apiGatewayId=server.apiGatewayId,
            realServer=server.realServer,
            address=address,
            port=target.port,
        )

    def _admitting(
        self,
        target: TunnelTarget,
        address: ipaddress.IPv4Address,
        resolved: Resolved,
        enabled: bool,
    ) -> TunnelServer | None:
        for server in self.servers:
            if server.enabled == enabled and server.admits(target, address, resolved):
                return server
        return None


def _compile(config: Config, apiGatewayId: int, realServer: RealServer) -> TunnelServer | None:
    if realServer.mappedport:
        ports = tuple(realServer.mappedport)
    else:
        ports = (PortRange(realServer.port, realServer.port),)
    fqdn: str | None = None
    addresses: AddressSet | None = None
    if realServer.addrType == "ip":
        if realServer.address is not None:
            kind = _ADDRESS
            addresses = config.addressSet([realServer.address])
        elif realServer.ip != ipaddress.IPv4Address(0):
            kind = _IP
        else:
            return None
    elif realServer.address is not None:
        kind = _FQDN
        address = config.addresses.get(realServer.address)
        if address is None or address.fqdn is None:
            return None
        fqdn = address.fqdn.lower().rstrip(".")
    elif realServer.domain is not None:
        kind = _DOMAIN
    else:
        return None
    # A domain with one host to connect to makes a pool member; a domain
    # with a subnet is refused by the configuration (which host?).
    pooled = realServer.domain is not None and (
        kind in (_IP, _FQDN)
        or (realServer.address is not None and config.singleAddress(realServer.address) is not None)
    )
    return TunnelServer(
        apiGatewayId=apiGatewayId,
        realServer=realServer,
        kind=kind,
        addresses=addresses,
        ports=ports,
        fqdn=fqdn,
        pooled=pooled,
    )
