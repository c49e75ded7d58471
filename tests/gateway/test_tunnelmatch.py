"""
Tests for L{ztnagw.gateway.tunnelmatch}: which destinations a tunnel may
lead to.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.model import Address, AddressGroup, ApiGateway, Config, RealServer
from ztnagw.config.schema import FrozenMap, PortRange
from ztnagw.gateway.tunnelmatch import TunnelDestinations, domainMatches
from ztnagw.tunnel.wire import TunnelTarget

IP = ipaddress.IPv4Address


def config() -> Config:
    """
    A configuration with the addresses real servers below refer to.
    """
    addresses = {
        "lab": Address(name="lab", type="ipmask", subnet=ipaddress.IPv4Network("10.1.0.0/24")),
        "range": Address(name="range", type="iprange", startIp=IP("10.2.0.10"), endIp=IP("10.2.0.20")),
        "db-name": Address(name="db-name", type="fqdn", fqdn="DB.corp.example"),
    }
    groups = {
        "both": AddressGroup(name="both", member=("lab", "range")),
        "lab-but-1": AddressGroup(name="lab-but-1", member=("lab",), exclude=True, excludeMember=("one",)),
    }
    addresses["one"] = Address(name="one", type="ipmask", subnet=ipaddress.IPv4Network("10.1.0.1/32"))
    return Config(addresses=FrozenMap(addresses), addressGroups=FrozenMap(groups))


def gateway(id: int, *servers: RealServer, service: str = "tcp-forwarding") -> ApiGateway:
    """
    An api-gateway with C{servers}, numbered from 1.
    """
    return ApiGateway(
        id=id,
        service=service,
        realServers=FrozenMap({i + 1: s for i, s in enumerate(servers)}),
    )


def server(**options: Any) -> RealServer:
    """
    A real server (id 1 unless given).
    """
    options.setdefault("id", 1)
    return RealServer(**options)


def destinations(*gateways: ApiGateway) -> TunnelDestinations:
    """
    The destinations of C{gateways} under L{config}.
    """
    return TunnelDestinations.fromApiGateways(config(), gateways)


def routeOf(
    dests: TunnelDestinations, host: str, port: int, resolved: dict[str, list[IP]] | None = None
) -> object:
    """
    The route for C{host:port}, trying its candidate addresses in order.
    """
    target = TunnelTarget(host, port)
    answers = resolved or {}
    for address in dests.candidates(target, answers):
        route = dests.route(target, address, answers)
        if route is not None:
            return route
    return None


class KindTests(SynchronousTestCase):
    """
    The four ways a real server admits a destination.
    """

    def test_ip(self) -> None:
        """
        C{ip}: that address, on C{port}.
        """
        dests = destinations(gateway(2, server(ip=IP("10.88.0.5"), port=3389)))
        route = routeOf(dests, "10.88.0.5", 3389)
        self.assertEqual((route.apiGatewayId, route.realServer.id, route.address, route.port), (2, 1, IP("10.88.0.5"), 3389))  # type: ignore[attr-defined]
        self.assertIsNone(routeOf(dests, "10.88.0.6", 3389))
        self.assertIsNone(routeOf(dests, "10.88.0.5", 3390))

    def test_address(self) -> None:
        """
        C{address}: any address of the subnet, range or group, minus
        exclusions.
        """
        dests = destinations(gateway(1, server(address="both", port=22)))
        for host in ("10.1.0.200", "10.2.0.10", "10.2.0.20"):
            self.assertIsNotNone(routeOf(dests, host, 22), host)
        for host in ("10.2.0.21", "10.1.1.1"):
            self.assertIsNone(routeOf(dests, host, 22), host)
        dests = destinations(gateway(1, server(address="lab-but-1", port=22)))
        self.assertIsNone(routeOf(dests, "10.1.0.1", 22))
        self.assertIsNotNone(routeOf(dests, "10.1.0.2", 22))

    def test_fqdn(self) -> None:
        """
        C{addr-type fqdn} with an fqdn address: the addresses the name
        resolves to, asked for by name or by address.
        """
        dests = destinations(gateway(1, server(addrType="fqdn", address="db-name", port=5432)))
        target = TunnelTarget("10.3.0.7", 5432)
        self.assertEqual(dests.namesToResolve(target), {"db.corp.example"})
        answers = {"db.corp.example": [IP("10.3.0.7")]}
        self.assertIsNotNone(routeOf(dests, "10.3.0.7", 5432, answers))
        self.assertIsNotNone(routeOf(dests, "db.corp.example", 5432, answers))
        self.assertIsNone(routeOf(dests, "10.3.0.8", 5432, answers))
        self.assertIsNone(routeOf(dests, "10.3.0.7", 5432, {}))

    def test_domain(self) -> None:
        """
        C{domain}: destination names under it (by name only), on the mapped
        ports; the route leads to the address the name resolved to.
        """
        dests = destinations(
            gateway(
                1,
                server(addrType="fqdn", domain="*.corp.example", mappedport=(PortRange(22, 22), PortRange(8000, 8080))),
            )
        )
        answers = {"git.corp.example": [IP("10.4.0.1")], "corp.example": [IP("10.4.0.2")]}
        route = routeOf(dests, "git.corp.example", 8080, answers)
        self.assertEqual(route.address, IP("10.4.0.1"))  # type: ignore[attr-defined]
        self.assertIsNone(routeOf(dests, "git.corp.example", 443, answers))
        self.assertIsNone(routeOf(dests, "corp.example", 22, answers))
        self.assertIsNone(routeOf(dests, "10.4.0.1", 22, answers))
        self.assertIsNone(routeOf(dests, "git.corp.example", 22, {}))

    def test_pooled(self) -> None:
        """
        A C{domain} with one host (C{ip}, an address of one host, an fqdn
        address) makes a pooled server: a name under the domain goes to the
        pool of those servers (never resolved, never an address-based
        route); the server's own address named directly is an ordinary
        route to it.
        """
        dests = destinations(
            gateway(
                1,
                server(ip=IP("10.5.0.1"), domain="*.svc.example", port=7000),
                server(id=2, address="one", domain="api.svc.example", port=7000),
                server(id=3, addrType="fqdn", address="db-name", domain="*.svc.example", port=7000),
                server(id=4, addrType="fqdn", domain="*.svc.example", port=7000),
            )
        )
        pool = dests.pool(TunnelTarget("api.svc.example", 7000))
        assert pool is not None
        self.assertEqual((pool.apiGatewayId, [r.id for r in pool.realServers]), (1, [1, 2, 3]))
        pool = dests.pool(TunnelTarget("web.svc.example", 7000))
        assert pool is not None
        self.assertEqual([r.id for r in pool.realServers], [1, 3])
        self.assertIsNone(dests.pool(TunnelTarget("web.svc.example", 7001)))
        self.assertIsNone(dests.pool(TunnelTarget("10.5.0.1", 7000)))
        self.assertEqual(routeOf(dests, "10.5.0.1", 7000).realServer.id, 1)  # type: ignore[attr-defined]
        self.assertEqual(routeOf(dests, "10.1.0.1", 7000).realServer.id, 2)  # type: ignore[attr-defined]
        self.assertEqual([s.pooled for s in dests.servers], [True, True, True, False])

    def test_poolFirstGateway(self) -> None:
        """
        Of several api-gateways with pooled servers for a name, the first
        in configuration order has the pool, even when a domain-only server
        of an earlier api-gateway admits the name too.
        """
        dests = destinations(
            gateway(1, server(addrType="fqdn", domain="*.svc.example", port=7000)),
            gateway(2, server(ip=IP("10.5.0.2"), domain="a.svc.example", port=7000)),
            gateway(3, server(ip=IP("10.5.0.3"), domain="*.svc.example", port=7000)),
        )
        pool = dests.pool(TunnelTarget("a.svc.example", 7000))
        assert pool is not None
        self.assertEqual(pool.apiGatewayId, 2)
        pool = dests.pool(TunnelTarget("b.svc.example", 7000))
        assert pool is not None
        self.assertEqual(pool.apiGatewayId, 3)

    def test_nameToIp(self) -> None:
        """
        A name is as good as the address it resolves to, and no better.
        """
        dests = destinations(gateway(1, server(ip=IP("10.88.0.5"), port=22)))
        self.assertIsNotNone(routeOf(dests, "jump", 22, {"jump": [IP("10.88.0.5")]}))
        self.assertIsNone(routeOf(dests, "jump", 22, {"jump": [IP("127.0.0.1")]}))

    def test_candidatesOrder(self) -> None:
        """
        Of several addresses, those a real server admits come first.
        """
        dests = destinations(gateway(1, server(ip=IP("10.0.0.2"), port=22)))
        target = TunnelTarget("multi", 22)
        answers = {"multi": [IP("10.0.0.1"), IP("10.0.0.2"), IP("10.0.0.3")]}
        self.assertEqual(
            dests.candidates(target, answers), [IP("10.0.0.2"), IP("10.0.0.1"), IP("10.0.0.3")]
        )

    def test_ipv6(self) -> None:
        """
        An IPv6 destination matches nothing: tunnels are IPv4.
        """
        dests = destinations(gateway(1, server(address="lab", port=22)))
        self.assertEqual(dests.candidates(TunnelTarget("::1", 22), {}), [])
        self.assertEqual(dests.candidates(TunnelTarget("v6only", 22), {"v6only": [ipaddress.IPv6Address("::1")]}), [])  # type: ignore[list-item]

    def test_disabled(self) -> None:
        """
        A disabled real server admits nothing: an enabled one that admits
        the destination is preferred, even after it; when none does, the
        route names the disabled one (for the refusal).  A standby one is a
        destination like an active one.
        """
        dests = destinations(
            gateway(
                1,
                server(ip=IP("10.0.0.1"), port=22, status="disable"),
                server(id=2, ip=IP("10.0.0.2"), port=22, status="standby"),
                server(id=3, ip=IP("10.0.0.2"), port=22, status="disable"),
                server(id=4, address="one", port=22, status="disable"),
                server(id=5, address="lab", port=22),
            )
        )
        self.assertEqual(routeOf(dests, "10.0.0.1", 22).realServer.status, "disable")  # type: ignore[attr-defined]
        self.assertEqual(routeOf(dests, "10.0.0.2", 22).realServer.id, 2)  # type: ignore[attr-defined]
        self.assertEqual(routeOf(dests, "10.1.0.1", 22).realServer.id, 5)  # type: ignore[attr-defined]

    def test_otherServices(self) -> None:
        """
        Real servers of https and http api-gateways are never tunnel
        destinations.
        """
        dests = destinations(gateway(1, server(ip=IP("10.0.0.1"), port=443), service="https"))
        self.assertEqual(dests.servers, ())

    def test_firstMatch(self) -> None:
        """
        Api-gateways and real servers are tried in configuration order.
        """
        dests = destinations(
            gateway(3, server(address="lab", port=22)),
            gateway(4, server(ip=IP("10.1.0.9"), port=22)),
        )
        self.assertEqual(routeOf(dests, "10.1.0.9", 22).apiGatewayId, 3)  # type: ignore[attr-defined]

    def test_domainMatches(self) -> None:
        """
        A wildcard needs at least one label before its suffix; a plain
        domain matches itself; case and a final dot do not matter.
        """
        self.assertTrue(domainMatches("a.b.corp.example", "*.corp.example"))
        self.assertTrue(domainMatches("A.Corp.Example.", "*.corp.example"))
        self.assertFalse(domainMatches("corp.example", "*.corp.example"))
        self.assertFalse(domainMatches("evilcorp.example", "*.corp.example"))
        self.assertTrue(domainMatches("corp.example", "corp.example"))
        self.assertFalse(domainMatches("a.corp.example", "corp.example"))


# A real-server set described independently of the model: (kind, value,
# ports, enabled) per server.
_SERVER_IPS = [IP(f"10.9.0.{i}") for i in range(1, 6)]
_NAMES = ["a.corp.example", "b.corp.example", "x.other.example"]
_PORTS = st.lists(st.integers(20, 25), min_size=1, max_size=3, unique=True)
_SPECS = st.tuples(
    st.sampled_from(["ip", "lab", "fqdn", "domain", "exact", "pooled", "pooled-exact"]),
    st.sampled_from(_SERVER_IPS),
    _PORTS,
    st.booleans(),
)


def _build(spec: tuple[str, IP, list[int], bool], id: int) -> RealServer:
    kind, ip, ports, enabled = spec
    options: dict[str, Any] = dict(id=id, status="active" if enabled else "disable")
    options["mappedport"] = tuple(PortRange(p, p) for p in ports)
    if kind == "ip":
        options.update(ip=ip)
    elif kind == "lab":
        options.update(address="lab")
    elif kind == "fqdn":
        options.update(addrType="fqdn", address="db-name")
    elif kind == "domain":
        options.update(addrType="fqdn", domain="*.corp.example")
    elif kind == "exact":
        options.update(addrType="fqdn", domain="a.corp.example")
    elif kind == "pooled":
        options.update(ip=ip, domain="*.corp.example")
    else:
        options.update(ip=ip, domain="a.corp.example")
    return RealServer(**options)


def _admits(
    spec: tuple[str, IP, list[int], bool], host: str, address: IP, port: int, answers: dict[str, list[IP]]
) -> bool:
    kind, ip, ports, enabled = spec
    if port not in ports:
        return False
    isName = host in _NAMES
    if kind in ("ip", "pooled", "pooled-exact"):
        # A pooled server is a destination named directly by its address.
        return address == ip
    if kind == "lab":
        return address in ipaddress.IPv4Network("10.1.0.0/24")
    if kind == "fqdn":
        return address in answers.get("db.corp.example", [])
    if kind == "domain":
        return isName and host.endswith(".corp.example")
    return host == "a.corp.example"


class PropertyTests(SynchronousTestCase):
    """
    Over any set of real servers, the route is the first server that admits
    the destination, and never one that does not.
    """

    @given(
        st.lists(_SPECS, max_size=6),
        st.sampled_from(_NAMES + [str(ip) for ip in _SERVER_IPS] + ["10.1.0.77"]),
        st.integers(20, 25),
        st.dictionaries(
            st.sampled_from(_NAMES + ["db.corp.example"]),
            st.lists(st.sampled_from(_SERVER_IPS + [IP("10.1.0.77")]), max_size=3),
        ),
    )
    def test_firstAdmitting(
        self,
        specs: list[tuple[str, IP, list[int], bool]],
        host: str,
        port: int,
        answers: dict[str, list[IP]],
    ) -> None:
        """
        L{TunnelDestinations.route} returns the first server (in order) that
        admits the destination, with the address it stands for.
        """
        servers = [_build(spec, i + 1) for i, spec in enumerate(specs)]
        dests = destinations(gateway(1, *servers))
        target = TunnelTarget(host, port)
        self.assertLessEqual(
            {n for n in dests.namesToResolve(target)}, set(_NAMES) | {"db.corp.example"}
        )
        addresses = [IP(host)] if host not in _NAMES else answers.get(host, [])
        for address in addresses:
            route = dests.route(target, address, answers)
            admitting = [
                (i + 1, spec[3]) for i, spec in enumerate(specs) if _admits(spec, host, address, port, answers)
            ]
            expected = [i for i, enabled in admitting if enabled] + [i for i, enabled in admitting if not enabled]
            if not expected:
                self.assertIsNone(route)
            else:
                assert route is not None
                self.assertEqual(route.realServer.id, expected[0])
                self.assertEqual((route.address, route.port), (address, port))
        candidates = dests.candidates(target, answers)
        self.assertEqual(sorted(candidates), sorted(addresses))

    @given(
        st.lists(_SPECS, max_size=6),
        st.lists(_SPECS, max_size=4),
        st.sampled_from(_NAMES + [str(ip) for ip in _SERVER_IPS]),
        st.integers(20, 25),
    )
    def test_pool(
        self,
        first: list[tuple[str, IP, list[int], bool]],
        second: list[tuple[str, IP, list[int], bool]],
        host: str,
        port: int,
    ) -> None:
        """
        L{TunnelDestinations.pool} is, for a name, the pooled servers (a
        domain and an address) that admit the name and port, enabled or
        not, of the first api-gateway that has one; never a pool for an
        address.
        """
        gateways = [
            gateway(1, *[_build(spec, i + 1) for i, spec in enumerate(first)]),
            gateway(2, *[_build(spec, i + 1) for i, spec in enumerate(second)]),
        ]
        dests = destinations(*gateways)
        pool = dests.pool(TunnelTarget(host, port))

        def members(specs: list[tuple[str, IP, list[int], bool]]) -> list[int]:
            wanted = {"pooled": host.endswith(".corp.example"), "pooled-exact": host == "a.corp.example"}
            return [
                i + 1
                for i, (kind, _, ports, _) in enumerate(specs)
                if host in _NAMES and wanted.get(kind, False) and port in ports
            ]

        expected = [(1, members(first)), (2, members(second))]
        expected = [(g, m) for g, m in expected if m]
        if not expected:
            self.assertIsNone(pool)
        else:
            assert pool is not None
            self.assertEqual(
                (pool.apiGatewayId, [r.id for r in pool.realServers]), expected[0]
            )
