"""
Tests for L{ztnagw.gateway.pool}: which member of a real-server pool takes
the next request.
"""

from __future__ import annotations

import collections
import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.model import ApiGateway, RealServer
from ztnagw.gateway.pool import DOWN, HOLDDOWN, UP, Member, MemberHealth, RealServerPool, hostOf


def makePool(
    method: str,
    servers: list[dict],
    apiGatewayId: int = 1,
) -> RealServerPool:
    """
    A pool of real servers 10.0.0.<id> with the given options.
    """
    realServers = {
        i + 1: RealServer(id=i + 1, ip=ipaddress.IPv4Address(f"10.0.0.{i + 1}"), **options)
        for i, options in enumerate(servers)
    }
    apiGateway = ApiGateway(id=apiGatewayId, ldbMethod=method, realServers=realServers)
    members = [
        Member(apiGateway, realServer, str(realServer.ip), MemberHealth())
        for realServer in realServers.values()
    ]
    return RealServerPool(apiGateway, members)


def ids(members: list[Member | None]) -> list[int | None]:
    """
    The real server ids of C{members}.
    """
    return [m.id if m is not None else None for m in members]


_checked = {"healthCheck": True, "healthCheckProto": "tcp-connect"}


class MethodTests(SynchronousTestCase):
    """
    The load-balancing methods.
    """

    def test_roundRobin(self) -> None:
        """
        C{round-robin} takes each member in turn, in configuration order.
        """
        pool = makePool("round-robin", [{}, {}, {}])
        self.assertEqual(ids([pool.choose() for _ in range(7)]), [1, 2, 3, 1, 2, 3, 1])

    def test_roundRobinRejoinsInPlace(self) -> None:
        """
        A member that goes down is skipped; when it is back it takes its
        turn again at its place in the cycle.
        """
        pool = makePool("round-robin", [_checked, _checked, _checked])
        pool.members[1].health.state = DOWN
        self.assertEqual(ids([pool.choose() for _ in range(4)]), [1, 3, 1, 3])
        pool.members[1].health.state = UP
        self.assertEqual(ids([pool.choose() for _ in range(3)]), [1, 2, 3])

    @given(st.lists(st.integers(1, 255), min_size=1, max_size=6), st.integers(1, 3))
    def test_weightedDistribution(self, weights: list[int], cycles: int) -> None:
        """
        C{weighted} gives each member exactly its weight's share of every
        cycle of C{sum(weights)} requests.
        """
        pool = makePool("weighted", [{"weight": w} for w in weights])
        counts = collections.Counter(ids([pool.choose() for _ in range(sum(weights) * cycles)]))
        self.assertEqual(counts, {i + 1: w * cycles for i, w in enumerate(weights)})

    def test_weightedSpread(self) -> None:
        """
        C{weighted} spreads a heavy member's turns instead of serving them
        in a row (smooth weighted round robin).
        """
        pool = makePool("weighted", [{"weight": 5}, {"weight": 1}, {"weight": 1}])
        self.assertEqual(ids([pool.choose() for _ in range(7)]), [1, 1, 2, 1, 3, 1, 1])

    @given(st.lists(st.integers(0, 2**32 - 1), min_size=50, max_size=200, unique=True))
    def test_staticStable(self, addresses: list[int]) -> None:
        """
        C{static} gives an address the same member every time, and when a
        member goes down only its own clients move.
        """
        pool = makePool("static", [_checked, _checked, _checked, _checked])
        clients = [ipaddress.IPv4Address(a) for a in addresses]
        first = {c: pool.choose(sourceIp=c) for c in clients}
        self.assertEqual(first, {c: pool.choose(sourceIp=c) for c in clients})
        gone = pool.members[2]
        gone.health.state = DOWN
        after = {c: pool.choose(sourceIp=c) for c in clients}
        for client in clients:
            if first[client] is not gone:
                self.assertIs(after[client], first[client])
            else:
                self.assertIsNot(after[client], gone)

    def test_staticSpreads(self) -> None:
        """
        C{static} spreads many client addresses over every member.
        """
        pool = makePool("static", [{}, {}, {}, {}])
        counts = collections.Counter(
            ids([pool.choose(sourceIp=ipaddress.IPv4Address(0x0A000000 + i)) for i in range(4000)])
        )
        self.assertEqual(set(counts), {1, 2, 3, 4})
        for count in counts.values():
            self.assertTrue(700 < count < 1300, counts)

    def test_firstAlive(self) -> None:
        """
        C{first-alive} always takes the first member that is up.
        """
        pool = makePool("first-alive", [_checked, _checked, _checked])
        self.assertEqual(ids([pool.choose() for _ in range(3)]), [1, 1, 1])
        pool.members[0].health.state = DOWN
        self.assertEqual(ids([pool.choose() for _ in range(3)]), [2, 2, 2])

    def test_httpHost(self) -> None:
        """
        C{http-host} sends a request to the members whose C{http-host}
        names its host (case and port ignored), in turn; a host no member
        names goes to the members without an C{http-host}.
        """
        pool = makePool(
            "http-host",
            [{"httpHost": "a.test"}, {"httpHost": "B.test:8443"}, {"httpHost": "a.test"}, {}],
        )
        self.assertEqual(ids([pool.choose(host=b"A.TEST:443") for _ in range(3)]), [1, 3, 1])
        self.assertEqual(ids([pool.choose(host=b"b.test") for _ in range(2)]), [2, 2])
        self.assertEqual(ids([pool.choose(host=b"other.test"), pool.choose(host=None)]), [4, 4])

    def test_httpHostNoDefault(self) -> None:
        """
        With C{http-host}, a host no member names and no member without an
        C{http-host}: nothing serves (022).
        """
        pool = makePool("http-host", [{"httpHost": "a.test"}])
        self.assertIsNone(pool.choose(host=b"b.test"))

    def test_hostOf(self) -> None:
        """
        L{hostOf} keeps the host name of a Host value, in lower case.
        """
        self.assertEqual(hostOf(b"Example.TEST:8443"), "example.test")
        self.assertEqual(hostOf("example.test."), "example.test")
        self.assertEqual(hostOf(b"[::1]:443"), "::1")
        self.assertIsNone(hostOf(None))


class ServingTests(SynchronousTestCase):
    """
    Which members may serve: status, health, exclusion, binding.
    """

    def test_standbyOnlyWithoutActive(self) -> None:
        """
        Standby members serve only while no active member is up, and stop
        as soon as one is back; disabled ones never serve.
        """
        pool = makePool(
            "round-robin",
            [_checked, {**_checked, "status": "standby"}, {"status": "disable"}],
        )
        self.assertEqual(ids([pool.choose() for _ in range(3)]), [1, 1, 1])
        pool.members[0].health.state = DOWN
        self.assertEqual(ids([pool.choose() for _ in range(2)]), [2, 2])
        pool.members[0].health.state = HOLDDOWN
        self.assertEqual(ids([pool.choose()]), [2])
        pool.members[0].health.state = UP
        self.assertEqual(ids([pool.choose()]), [1])
        pool.members[1].health.state = DOWN
        pool.members[0].health.state = DOWN
        self.assertIsNone(pool.choose())

    def test_uncheckedAlwaysUp(self) -> None:
        """
        A member without health checks serves whatever its health record
        says.
        """
        pool = makePool("first-alive", [{}])
        pool.members[0].health.state = DOWN
        self.assertEqual(ids([pool.choose()]), [1])

    def test_exclude(self) -> None:
        """
        An excluded member (the one a retry avoids) is not chosen; with no
        other one, nothing is.
        """
        pool = makePool("first-alive", [{}, {}])
        self.assertEqual(ids([pool.choose(exclude=[pool.members[0]])]), [2])
        self.assertIsNone(pool.choose(exclude=pool.members))

    def test_bound(self) -> None:
        """
        A member the client is bound to wins when it may serve; the binding
        function only sees members that may serve.
        """
        pool = makePool("first-alive", [_checked, _checked])
        seen = []

        def bound(candidates):
            seen.append(ids(list(candidates)))
            return pool.members[1] if pool.members[1] in candidates else None

        self.assertEqual(ids([pool.choose(bound=bound)]), [2])
        pool.members[1].health.state = DOWN
        self.assertEqual(ids([pool.choose(bound=bound)]), [1])
        self.assertEqual(seen, [[1, 2], [1]])
