"""
Tests for L{ztnagw.gateway.tunnel} with real-server pools: destination
names balanced across the pooled real servers of an api-gateway (C{domain}
with an address), health and C{status} honoured, a failed connection
retried once on another member, servers named directly refused at once
while down, and the api-gateway's C{max-lifetime} and C{idle-timeout}
applied to tunnels.  In memory: real HTTP layer, memory reactor.
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, TimeoutError
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

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
from tests.gateway.test_tunnel import ALLOW, CONFIG, fields
from tests.tunnel.fakes import HalfCloseTransport
from ztnagw.config import loads
from ztnagw.gateway.health import realServerStatus
from ztnagw.gateway.pool import DOWN, HOLDDOWN, UP
from ztnagw.gateway.realservers import RealServerRouter
from ztnagw.gateway.tunnel import TunnelHandler
from ztnagw.http.interfaces import IRequestHandler
from ztnagw.http.server import HTTPServerProtocol
from ztnagw.tls.client import ClientCreatorCache

#: The pool api-gateway (8), put before the test configuration's
#: tcp-forwarding api-gateway 7: svc.corp.example on port 6000 is served by
#: real servers 1 and 2 (health-checked) and 3 (standby); 4 is disabled;
#: 5 serves db.pool.example through an fqdn address.
POOL = """
            edit 8
                set service tcp-forwarding
                set ldb-method #METHOD#
#LIMITS#
                config realservers
                    edit 1
                        set ip 10.50.0.1
                        set domain "svc.corp.example"
                        set port 6000
                        set weight #W1#
                        set health-check enable
                        set health-check-proto tcp-connect
                    next
                    edit 2
                        set ip 10.50.0.2
                        set domain "svc.corp.example"
                        set port 6000
                        set weight #W2#
                        set health-check enable
                        set health-check-proto tcp-connect
                    next
                    edit 3
                        set ip 10.50.0.3
                        set domain "*.corp.example"
                        set port 6000
                        set status standby
                    next
                    edit 4
                        set ip 10.50.0.4
                        set domain "svc.corp.example"
                        set port 6000
                        set status disable
                    next
                    edit 5
                        set addr-type fqdn
                        set address "pool-member"
                        set domain "db.pool.example"
                        set port 5432
                    next
                end
            next
            edit 7
                set service tcp-forwarding"""

MEMBER = """
config firewall address
    edit "pool-member"
        set type fqdn
        set fqdn "member.pool.example"
    next
end
"""


def poolConfig(method: str = "round-robin", limits: str = "", weights: tuple[int, int] = (1, 1)) -> str:
    """
    The test configuration of L{tests.gateway.test_tunnel} with the pool
    api-gateway L{POOL}.
    """
    pool = (
        POOL.replace("#METHOD#", method)
        .replace("#LIMITS#", limits)
        .replace("#W1#", str(weights[0]))
        .replace("#W2#", str(weights[1]))
    )
    text = CONFIG.replace("#IDLE#", "").replace(
        "            edit 7\n                set service tcp-forwarding", pool, 1
    )
    return MEMBER + text + ALLOW


@implementer(IRequestHandler)
class Dispatcher:
    """
    What the HTTPS proxy does for a tunnel request from the test's current
    source address.
    """

    def __init__(self, test: PoolTestCase) -> None:
        self.test = test

    def requestReceived(self, request: object) -> None:
        """
        Hand C{request} to the tunnel handler.
        """
        test = self.test
        context = makeContext(test.gate, test.site, handshake(presented()), source=test.source)
        test.handler.handleTunnelRequest(request, context)


class PoolTestCase(SynchronousTestCase):
    """
    A tunnel handler whose pools are a real-server router's (as in the
    daemon), and a way to send tunnel requests on fresh connections.
    """

    method = "round-robin"
    limits = ""
    weights = (1, 1)

    def setUp(self) -> None:
        self.build(poolConfig(self.method, self.limits, self.weights))

    def build(self, text: str) -> None:
        """
        Make the handler and its collaborators over configuration C{text}.
        """
        self.reactor = MemoryReactorClock()
        self.reactor.advance(1_700_000_000)
        self.config = loads(text)
        self.gate, self.logs = makeGate(self.config, MemoryIndex([record()]), self.reactor)
        self.gate.sessions.start()
        self.site = makeSite(self.config)
        self.resolver = TableResolver(
            {"member.pool.example": ["10.60.0.9"], "svc.corp.example": ["192.0.2.99"]}
        )
        self.router = RealServerRouter(self.config, self.resolver, ClientCreatorCache(), ())
        self.handler = TunnelHandler(self.reactor, self.resolver, self.router)
        self.source = "127.0.0.1"
        self.transports: list[HalfCloseTransport] = []

    def ask(self, query: bytes, source: str | None = None) -> HalfCloseTransport:
        """
        Send a tunnel request for C{query} on a new client connection (from
        C{source}); its transport.
        """
        if source is not None:
            self.source = source
        http = HTTPServerProtocol(Dispatcher(self), self.reactor)
        transport = HalfCloseTransport()
        http.makeConnection(transport)
        http.dataReceived(
            b"GET /tcp?" + query + b" HTTP/1.1\r\nHost: 127.0.0.1:443\r\n"
            b"User-Agent: ztnagw-forward/1\r\nAccept: application/json\r\n"
            b"Upgrade: tcp-forwarding/1.0\r\nConnection: Upgrade\r\n\r\n"
        )
        self.transports.append(transport)
        return transport

    def connected(self) -> list[tuple[str, int]]:
        """
        Every address and port the gateway tried to connect to, in order.
        """
        return [(host, port) for host, port, *_ in self.reactor.tcpClients]

    def member(self, realServerId: int) -> object:
        """
        The pool member of real server C{realServerId} of api-gateway 8.
        """
        apiGateway = self.config.accessProxies["proxy"].apiGateways[8]
        pool = self.router.pool(apiGateway)
        assert pool is not None
        return pool.member(realServerId)

    def markDown(self, *realServerIds: int) -> None:
        """
        Mark members down, as their health checks would.
        """
        for realServerId in realServerIds:
            health = self.member(realServerId).health  # type: ignore[attr-defined]
            health.state = DOWN
            health.detail = "connection refused"

    def fail(self, index: int, reason: Exception) -> None:
        """
        Make connection attempt C{index} fail with C{reason}.
        """
        factory = self.reactor.tcpClients[index][2]
        factory.clientConnectionFailed(None, Failure(reason))

    def complete(self, index: int) -> tuple[object, HalfCloseTransport]:
        """
        Complete connection attempt C{index}.
        """
        host, port, factory, timeout, bind = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = HalfCloseTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def code(self, transport: HalfCloseTransport) -> tuple[int, bytes]:
        """
        The status and C{X-ZTNA-Error} of the answer on C{transport}.
        """
        response = transport.value()
        code = b""
        for line in response.split(b"\r\n"):
            if line.lower().startswith(b"x-ztna-error:"):
                code = line.split(b":", 1)[1].strip()
        return int(response[9:12]), code

    def lastLog(self) -> dict[str, str]:
        """
        The last log line's fields.
        """
        return fields(self.logs.lines[-1])


class PoolTests(PoolTestCase):
    """
    A destination name admitted by pooled real servers goes to a member of
    its pool.
    """

    def test_roundRobin(self) -> None:
        """
        With C{ldb-method round-robin}, tunnels to the name take the active
        members in turn; the standby and the disabled ones get none; the
        name itself is never resolved (the member's address is connected
        to, on the port asked for).
        """
        for _ in range(4):
            self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(
            self.connected(),
            [("10.50.0.1", 6000), ("10.50.0.2", 6000), ("10.50.0.1", 6000), ("10.50.0.2", 6000)],
        )
        self.assertNotIn("svc.corp.example", self.resolver.asked)

    def test_logged(self) -> None:
        """
        The tunnel's log line names the member: api-gateway, real server,
        the address connected.
        """
        transport = self.ask(b"address=svc.corp.example&port=6000")
        server, serverTransport = self.complete(0)
        self.assertIn(b"101 Switching Protocols", transport.value())
        (relay,) = self.handler.tunnels
        relay.client.connectionLost(Failure(ConnectionDone()))
        server.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        log = self.lastLog()
        self.assertEqual(
            (log["gatewayid"], log["realserverid"], log["dstip"], log["dstport"], log["action"]),
            ("8", "1", "10.50.0.1", "6000", "accept"),
        )

    def test_downLeftOut(self) -> None:
        """
        A member its health check marks down gets no tunnel; one in
        hold-down neither.
        """
        self.markDown(1)
        self.ask(b"address=svc.corp.example&port=6000")
        self.member(2).health.state = HOLDDOWN  # type: ignore[attr-defined]
        self.member(1).health.state = DOWN  # type: ignore[attr-defined]
        self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(self.connected(), [("10.50.0.2", 6000), ("10.50.0.3", 6000)])

    def test_standby(self) -> None:
        """
        The standby member serves only while no active member is up, and
        stops as soon as one is back.
        """
        self.markDown(1, 2)
        self.ask(b"address=svc.corp.example&port=6000")
        self.member(2).health.state = UP  # type: ignore[attr-defined]
        self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(self.connected(), [("10.50.0.3", 6000), ("10.50.0.2", 6000)])

    def test_noneUsable(self) -> None:
        """
        No member that may serve: 022 at once, and the log says how many
        are down and disabled.
        """
        self.markDown(1, 2)
        self.member(3).health.state = DOWN  # type: ignore[attr-defined]
        # The standby member has no health check: it is always up.
        self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(self.connected(), [("10.50.0.3", 6000)])
        self.build(poolConfig().replace("set status standby", "set status disable"))
        self.markDown(1, 2)
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(self.connected(), [])
        self.assertEqual(self.code(transport), (502, b"022"))
        log = self.lastLog()
        self.assertEqual((log["action"], log["ztnaerror"], log["gatewayid"]), ("deny", "022", "8"))
        self.assertIn("(2 down by health check, 2 disabled)", log["ztnadetail"])

    def test_noneUsableNorAllowed(self) -> None:
        """
        When the policies allow the device none of the pool's servers, it
        gets their refusal (061 here), not 022: the pool's health is no
        business of a device that may not reach it.
        """
        elsewhere = poolConfig().replace("set status standby", "set status disable").replace(
            'set dstaddr "all"\n        set action accept',
            'set dstaddr "rdp-one"\n        set action accept',
        )
        self.assertNotEqual(elsewhere, poolConfig().replace("set status standby", "set status disable"))
        self.build(elsewhere)
        self.markDown(1, 2)
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(self.connected(), [])
        self.assertEqual(self.code(transport)[1], b"061")
        self.assertNotIn("down by health check", self.lastLog().get("ztnadetail", ""))

    def test_otherPort(self) -> None:
        """
        A port no pooled server admits is not the pool's: the name is then
        resolved and matched like any destination (here: refused, 022).
        """
        transport = self.ask(b"address=svc.corp.example&port=6001")
        self.assertEqual(self.code(transport), (502, b"022"))
        self.assertIn("(192.0.2.99) is not a real server", self.lastLog()["ztnadetail"])

    def test_addressNamedDirectly(self) -> None:
        """
        A pooled server's address named directly is that server, not the
        pool: refused at once while it is down, never moved to another
        member.
        """
        self.ask(b"address=10.50.0.2&port=6000")
        self.assertEqual(self.connected(), [("10.50.0.2", 6000)])
        self.markDown(2)
        transport = self.ask(b"address=10.50.0.2&port=6000")
        self.assertEqual(self.connected(), [("10.50.0.2", 6000)])
        self.assertEqual(self.code(transport), (502, b"022"))
        self.assertIn(b"is down", transport.value())
        self.assertIn("down by its health check: connection refused", self.lastLog()["ztnadetail"])

    def test_disabledNamedDirectly(self) -> None:
        """
        A disabled real server named directly is refused with a sentence
        saying so, without a connection attempt.
        """
        transport = self.ask(b"address=10.50.0.4&port=6000")
        self.assertEqual(self.connected(), [])
        self.assertEqual(self.code(transport), (502, b"022"))
        self.assertIn(b"disabled", transport.value())
        self.assertIn("status disable", self.lastLog()["ztnadetail"])

    def test_fqdnMember(self) -> None:
        """
        A pooled server given by an fqdn address is connected to at the
        address its name resolves to; the policies see that address.
        """
        self.ask(b"address=db.pool.example&port=5432")
        self.assertEqual(self.connected(), [("10.60.0.9", 5432)])
        self.assertIn("member.pool.example", self.resolver.asked)

    def test_fqdnMemberUnresolved(self) -> None:
        """
        A pooled server whose name does not resolve (and no other member):
        023.
        """
        del self.resolver.table["member.pool.example"]
        transport = self.ask(b"address=db.pool.example&port=5432")
        self.assertEqual(self.code(transport), (502, b"023"))
        self.assertEqual(self.connected(), [])
        log = self.lastLog()
        self.assertEqual((log["action"], log["realserverid"]), ("dns", "5"))

    def test_policySeesMember(self) -> None:
        """
        The policies judge the member's address: a deny policy on it gives
        its code, with the member in the log.
        """
        self.build(poolConfig().replace('set subnet 10.1.0.66 255.255.255.255', 'set subnet 10.50.0.1 255.255.255.255'))
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual(self.code(transport), (403, b"062"))
        self.assertEqual(self.lastLog()["dstip"], "10.50.0.1")


class StatusTests(PoolTestCase):
    """
    What C{diagnose realserver list} shows of tunnel pools.
    """

    def test_members(self) -> None:
        """
        The pooled real servers are pool members of the router, shown with
        their domain and health; the disabled one is not a member.
        """
        self.markDown(2)
        entries = [
            (e["realServer"], e["address"], e["domain"], e["state"], e["serving"])
            for e in realServerStatus(self.router.members(), self.reactor.seconds())
            if e["apiGateway"] == 8
        ]
        self.assertEqual(
            entries,
            [
                (1, "10.50.0.1", "svc.corp.example", UP, True),
                (2, "10.50.0.2", "svc.corp.example", DOWN, False),
                (3, "10.50.0.3", "*.corp.example", UP, True),
                (5, "member.pool.example", "db.pool.example", UP, True),
            ],
        )


class RetryTests(PoolTestCase):
    """
    A connection to a member that fails is tried once on another member:
    nothing has been relayed before the connection is made.
    """

    def test_retried(self) -> None:
        """
        The first member refuses: the next one is connected and the client
        gets its C{101}.
        """
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.fail(0, ConnectionRefusedError())
        self.assertEqual(self.connected(), [("10.50.0.1", 6000), ("10.50.0.2", 6000)])
        self.assertEqual(transport.value(), b"")
        self.complete(1)
        self.assertIn(b"101 Switching Protocols", transport.value())

    def test_once(self) -> None:
        """
        When the second member fails too, the client gets the first
        failure (022, C{ip-conn}); no third attempt, though the standby
        member is left.
        """
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.fail(0, TimeoutError())
        self.fail(1, ConnectionRefusedError())
        self.assertEqual(len(self.connected()), 2)
        self.assertEqual(self.code(transport), (502, b"022"))
        self.assertIn(b"did not answer within 10 s", transport.value())
        log = self.lastLog()
        self.assertEqual((log["action"], log["realserverid"], log["dstip"]), ("ip-conn", "1", "10.50.0.1"))

    def test_noOther(self) -> None:
        """
        With no other member that may serve, the failure is the answer at
        once.
        """
        self.build(poolConfig().replace("set status standby", "set status disable"))
        self.markDown(2)
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.fail(0, ConnectionRefusedError())
        self.assertEqual(self.connected(), [("10.50.0.1", 6000)])
        self.assertEqual(self.code(transport), (502, b"022"))
        self.assertIn(b"refused the connection", transport.value())

    def test_retryStandby(self) -> None:
        """
        The retry chooses among the members that may serve without the one
        that failed: with the other active member down, the standby one.
        """
        self.markDown(2)
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.fail(0, ConnectionRefusedError())
        self.assertEqual(self.connected(), [("10.50.0.1", 6000), ("10.50.0.3", 6000)])
        self.complete(1)
        self.assertIn(b"101 Switching Protocols", transport.value())

    def test_retryPolicy(self) -> None:
        """
        A retry goes only to a member the policies allow: otherwise the
        first failure is the answer, not the policy's code.
        """
        self.build(poolConfig().replace('set subnet 10.1.0.66 255.255.255.255', 'set subnet 10.50.0.2 255.255.255.255'))
        transport = self.ask(b"address=svc.corp.example&port=6000")
        self.fail(0, ConnectionRefusedError())
        self.assertEqual(len(self.connected()), 1)
        self.assertEqual(self.code(transport), (502, b"022"))

    def test_directNotRetried(self) -> None:
        """
        A server named directly is not retried elsewhere: the client asked
        for it.
        """
        transport = self.ask(b"address=10.50.0.1&port=6000")
        self.fail(0, ConnectionRefusedError())
        self.assertEqual(len(self.connected()), 1)
        self.assertEqual(self.code(transport), (502, b"022"))


class MethodTests(SynchronousTestCase):
    """
    Each C{ldb-method} over tunnels to a pooled name.
    """

    def case(self, method: str, weights: tuple[int, int] = (1, 1)) -> PoolTestCase:
        """
        A pool test case with C{method} and C{weights}, set up.
        """
        case = PoolTestCase()
        case.build(poolConfig(method, weights=weights))
        return case

    @given(st.lists(st.ip_addresses(v=4), min_size=1, max_size=20))
    def test_static(self, sources: list[ipaddress.IPv4Address]) -> None:
        """
        C{static}: a client address keeps its member; and when that member
        goes down, only its clients move.
        """
        case = self.case("static")
        for source in sources:
            case.ask(b"address=svc.corp.example&port=6000", str(source))
        first = dict(zip(sources, case.connected()))
        for source in sources:
            case.ask(b"address=svc.corp.example&port=6000", str(source))
        self.assertEqual(dict(zip(sources, case.connected()[len(sources):])), first)
        case.markDown(1)
        start = len(case.connected())
        for source in sources:
            case.ask(b"address=svc.corp.example&port=6000", str(source))
        after = dict(zip(sources, case.connected()[start:]))
        for source in sources:
            if first[source][0] == "10.50.0.2":
                self.assertEqual(after[source], first[source])
            else:
                self.assertEqual(after[source], ("10.50.0.2", 6000))

    @given(st.integers(1, 5), st.integers(1, 5), st.integers(1, 3))
    def test_weighted(self, first: int, second: int, rounds: int) -> None:
        """
        C{weighted}: over whole cycles, each member gets tunnels in
        proportion to its C{weight}.
        """
        case = self.case("weighted", (first, second))
        for _ in range(rounds * (first + second)):
            case.ask(b"address=svc.corp.example&port=6000")
        counts = Counter(host for host, _ in case.connected())
        self.assertEqual(counts, Counter({"10.50.0.1": rounds * first, "10.50.0.2": rounds * second}))

    def test_firstAlive(self) -> None:
        """
        C{first-alive}: the first member while it is up, then the next.
        """
        case = self.case("first-alive")
        case.ask(b"address=svc.corp.example&port=6000")
        case.ask(b"address=svc.corp.example&port=6000")
        case.markDown(1)
        case.ask(b"address=svc.corp.example&port=6000")
        self.assertEqual([h for h, _ in case.connected()], ["10.50.0.1", "10.50.0.1", "10.50.0.2"])


class LifetimeTests(PoolTestCase):
    """
    The api-gateway's C{max-lifetime} and C{idle-timeout} apply to tunnels.
    """

    limits = "                set max-lifetime 3600\n                set idle-timeout 600"

    def open(self) -> tuple[object, HalfCloseTransport, HalfCloseTransport]:
        """
        Open a tunnel through the pool; the real server's protocol, its
        transport and the client's.
        """
        client = self.ask(b"address=svc.corp.example&port=6000")
        server, serverTransport = self.complete(len(self.connected()) - 1)
        return server, serverTransport, client

    def end(self, server: object) -> None:
        """
        Let both connections of the only tunnel go.
        """
        (relay,) = self.handler.tunnels
        relay.client.connectionLost(Failure(ConnectionDone()))
        server.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]

    def test_maxLifetime(self) -> None:
        """
        A tunnel in use is closed after C{max-lifetime} seconds in all, and
        logged with action C{close} and the reason.
        """
        server, serverTransport, client = self.open()
        for _ in range(7):
            self.reactor.advance(500)
            server.dataReceived(b"still busy")  # type: ignore[attr-defined]
        self.assertFalse(serverTransport.aborted)
        self.reactor.advance(101)
        self.assertTrue(serverTransport.aborted)
        self.assertTrue(client.aborted)
        self.end(server)
        log = self.lastLog()
        self.assertEqual(log["action"], "close")
        self.assertIn("max-lifetime", log["ztnadetail"])

    def test_idle(self) -> None:
        """
        One idle for C{idle-timeout} seconds is closed with action
        C{timeout}.
        """
        server, serverTransport, client = self.open()
        self.reactor.advance(599)
        self.assertFalse(serverTransport.aborted)
        self.reactor.advance(2)
        self.assertTrue(serverTransport.aborted)
        self.end(server)
        self.assertEqual(self.lastLog()["action"], "timeout")

    def test_endedStopsTimer(self) -> None:
        """
        A tunnel that ends first leaves no max-lifetime timer behind.
        """

        def timers() -> list[object]:
            return [
                call
                for call in self.reactor.getDelayedCalls()
                if call.args and "max-lifetime" in str(call.args[0])
            ]

        server, serverTransport, client = self.open()
        self.assertEqual(len(timers()), 1)
        self.end(server)
        self.assertEqual(timers(), [])


class DefaultLifetimeTests(PoolTestCase):
    """
    Without C{idle-timeout} and C{max-lifetime}, a tunnel lives as long as
    its sides keep it: an SSH session idle for a day is not cut.
    """

    def test_dayIdle(self) -> None:
        """
        A tunnel idle for 24 hours is still open.
        """
        client = self.ask(b"address=svc.corp.example&port=6000")
        server, serverTransport = self.complete(0)
        self.reactor.advance(86400)
        self.assertFalse(serverTransport.aborted)
        self.assertFalse(client.aborted)
