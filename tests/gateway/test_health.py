"""
Tests for L{ztnagw.gateway.health}: health checks decide which real
servers are up, with rise/fall counts and the hold-down.
"""

from __future__ import annotations

import ipaddress

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from ztnagw.gateway.health import (
    HealthCheck,
    HealthMonitor,
    IcmpSocket,
    ProbeFailed,
    icmpProblem,
    realServerStatus,
)
from ztnagw.gateway.pool import DOWN, HOLDDOWN, UP
from ztnagw.logs.line import parseKeyValue
from tests.gateway.test_pool import makePool


class ScriptedProbe:
    """
    A probe whose answers the test sets: C{ok} decides each check.
    """

    def __init__(self) -> None:
        self.ok = True
        self.calls = 0
        self.hang = False

    def __call__(self, member: object) -> Deferred[str]:
        self.calls += 1
        if self.hang:
            return Deferred()
        return succeed("fine") if self.ok else fail(ProbeFailed("connection refused"))


def checked(**options: object):
    """
    A member with health checks (every 10 s, rise 2, fall 3, hold-down 30
    s unless C{options} say otherwise), its probe, its check, the clock and
    the reports.
    """
    settings = {"healthCheck": True, "healthCheckProto": "tcp-connect", **options}
    pool = makePool("round-robin", [settings, {}])
    member = pool.members[0]
    probe = ScriptedProbe()
    clock = Clock()
    reports: list[tuple[str, str]] = []
    check = HealthCheck(member, probe, clock, lambda m, state, detail: reports.append((state, detail)))
    return pool, member, probe, clock, check, reports


class HealthCheckTests(SynchronousTestCase):
    """
    L{HealthCheck}'s state changes, driven by the clock.
    """

    def test_firstFailureAtStart(self) -> None:
        """
        A server is checked at the start; one failed first check marks it
        down at once (and reports it), and traffic moves to the others.
        """
        pool, member, probe, clock, check, reports = checked()
        probe.ok = False
        check.start()
        self.assertEqual(member.health.state, DOWN)
        self.assertEqual(reports, [(DOWN, "connection refused")])
        self.assertEqual([pool.choose().id for _ in range(2)], [2, 2])

    def test_fallCount(self) -> None:
        """
        A server that was up is marked down only after
        C{health-check-fall} failures in a row; a success resets the count.
        """
        pool, member, probe, clock, check, reports = checked(healthCheckFall=3)
        check.start()
        self.assertEqual(member.health.state, UP)
        probe.ok = False
        clock.advance(10)
        clock.advance(10)
        probe.ok = True
        clock.advance(10)
        probe.ok = False
        clock.advance(10)
        clock.advance(10)
        self.assertEqual(member.health.state, UP)
        clock.advance(10)
        self.assertEqual(member.health.state, DOWN)
        self.assertEqual(reports, [(DOWN, "connection refused")])
        self.assertEqual(probe.calls, 7)

    def test_riseAndHolddown(self) -> None:
        """
        A down server needs C{health-check-rise} good checks in a row, then
        serves only once C{holddown-time} has passed; a failure during the
        hold-down sends it back down without a new event.
        """
        pool, member, probe, clock, check, reports = checked(healthCheckRise=2, holddownTime=30)
        probe.ok = False
        check.start()
        probe.ok = True
        clock.advance(10)
        self.assertEqual(member.health.state, DOWN)
        clock.advance(10)
        self.assertEqual(member.health.state, HOLDDOWN)
        self.assertFalse(member.up)
        clock.advance(10)
        probe.ok = False
        clock.advance(10)
        self.assertEqual(member.health.state, DOWN)
        probe.ok = True
        clock.advance(10)
        clock.advance(10)
        self.assertEqual(member.health.state, HOLDDOWN)
        clock.advance(29)
        self.assertEqual(member.health.state, HOLDDOWN)
        clock.advance(1)
        self.assertEqual(member.health.state, UP)
        self.assertEqual([state for state, _ in reports], [DOWN, UP])

    def test_noHolddown(self) -> None:
        """
        With C{holddown-interval disable} a recovered server serves as soon
        as it has risen.
        """
        pool, member, probe, clock, check, reports = checked(holddownInterval=False, healthCheckRise=1)
        probe.ok = False
        check.start()
        probe.ok = True
        clock.advance(10)
        self.assertEqual(member.health.state, UP)

    def test_timeout(self) -> None:
        """
        A probe that does not answer within C{health-check-timeout} fails.
        """
        pool, member, probe, clock, check, reports = checked(healthCheckTimeout=2)
        probe.hang = True
        check.start()
        clock.advance(2)
        self.assertEqual(member.health.state, DOWN)
        self.assertEqual(reports, [(DOWN, "no answer in time")])

    def test_stop(self) -> None:
        """
        A stopped check schedules nothing more.
        """
        pool, member, probe, clock, check, reports = checked()
        check.start()
        check.stop()
        self.assertEqual(clock.getDelayedCalls(), [])


class MonitorTests(SynchronousTestCase):
    """
    L{HealthMonitor} checks every member with C{health-check enable} and
    logs the changes.
    """

    def test_events(self) -> None:
        """
        Each change is an event log line naming the server and saying why.
        """
        pool, member, probe, clock, check, reports = checked()
        lines = []
        monitor = HealthMonitor(
            [(m, "VIP", "AP") for m in pool.members], clock, lambda m: succeed(None), lines.append
        )
        self.assertEqual(len(monitor.checks), 1)
        monitor.checks[0]._probe = probe
        probe.ok = False
        monitor.startService()
        self.assertEqual(len(lines), 1)
        fields = dict(lines[0].logFields())
        self.assertEqual(fields["logid"], "9900069903")
        self.assertEqual(fields["realserverid"], 1)
        self.assertEqual(fields["gatewayid"], 1)
        self.assertEqual(fields["vip"], "VIP")
        self.assertIn("connection refused", fields["msg"])
        monitor.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_status(self) -> None:
        """
        L{realServerStatus} says what C{diagnose realserver list} shows.
        """
        pool, member, probe, clock, check, reports = checked()
        probe.ok = False
        check.start()
        clock.advance(5)
        entries = realServerStatus([(m, "VIP", "AP") for m in pool.members], clock.seconds())
        self.assertEqual(
            [(e["realServer"], e["state"], e["serving"], e["healthCheck"]) for e in entries],
            [(1, DOWN, False, "tcp-connect"), (2, UP, True, None)],
        )
        self.assertEqual(entries[0]["since"], 5)
        self.assertEqual(entries[0]["detail"], "connection refused")


class _Route:
    def __init__(self, port: int) -> None:
        self.address = ipaddress.IPv4Address("127.0.0.1")
        self.port = port


class RealProbeTests(TestCase):
    """
    The probes against real sockets on 127.0.0.1.
    """

    def _member(self, proto: str, port: int):
        pool = makePool("round-robin", [{"healthCheck": True, "healthCheckProto": proto, "port": port}])
        return pool.members[0]

    @defer.inlineCallbacks
    def test_tcpConnect(self):
        """
        C{tcp-connect} passes while something listens and fails once it is
        gone.
        """
        from ztnagw.gateway.health import probeFor

        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        member = self._member("tcp-connect", number)
        probe = probeFor(member, reactor, lambda m: succeed(_Route(number)), None)
        detail = yield probe(member)
        self.assertEqual(detail, "TCP connection accepted")
        yield port.stopListening()
        failure = yield self.assertFailure(probe(member), Exception)
        self.assertIn("refused", str(failure).lower())

    @defer.inlineCallbacks
    def test_ping(self):
        """
        C{ping} gets an ICMP echo reply from 127.0.0.1 (where the machine
        allows ICMP sockets).
        """
        if icmpProblem() is not None:
            raise self.skipTest(icmpProblem())
        icmp = IcmpSocket(reactor)
        self.addCleanup(icmp.close)
        yield icmp.ping(ipaddress.IPv4Address("127.0.0.1"))
        yield icmp.ping(ipaddress.IPv4Address("127.0.0.1"))
