# -*- test-case-name: tests.gateway.test_health -*-
"""
Health checks of real servers: which members of a pool are up.

A real server with C{health-check enable} is probed every
C{health-check-interval} seconds, each probe given C{health-check-timeout}
seconds, by the protocol of C{health-check-proto}:

  - C{tcp-connect}: a TCP connection to its address and port is accepted;
  - C{http}: C{GET health-check-http-path} (over TLS for C{service https},
    with the C{Host} and certificate checks its requests get) is answered
    with a status of C{health-check-http-status};
  - C{ping}: an ICMP echo request to its address is answered.  ICMP needs
    an unprivileged ICMP socket (Linux's C{net.ipv4.ping_group_range}
    including the gateway's group) or the raw-socket privilege (root,
    C{CAP_NET_RAW}); the socket is opened once, when the gateway starts, and
    a machine that allows neither refuses C{ping} in the configuration
    (L{icmpProblem}), so that a check that can never succeed is not
    mistaken for servers that are all down.

A server starts up and is checked at once; C{health-check-fall} failed
checks in a row mark it down (the first check after the start needs only
one), C{health-check-rise} good ones in a row bring it back, after the
hold-down of C{holddown-interval enable} (C{holddown-time} seconds during
which any failed check sends it back down).  Each change is an event log
line (C{LOG_ID_ZTNAGW_REALSERVER_UP} / C{_DOWN}) and is shown by C{ztnagw
diagnose realserver list}.  Probes never block: every one is a Deferred
with its own timeout, on the injected reactor.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any, Callable, Iterable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IReadDescriptor
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.gateway.pool import DOWN, HOLDDOWN, UP, Member
from ztnagw.http.client import PoolSettings
from ztnagw.http.errors import UpstreamError
from ztnagw.http.pool import UpstreamPool
from ztnagw.logs import REAL_SERVER_DOWN, REAL_SERVER_UP, EventLog

__all__ = [
    "HealthCheck",
    "HealthMonitor",
    "IcmpSocket",
    "ProbeFailed",
    "icmpProblem",
    "probeFor",
    "realServerStatus",
    "statusAccepted",
]

_log = Logger()


class ProbeFailed(Exception):
    """
    A health check failed; the message says how (for the event's C{msg}).
    """


# ------------------------------------------------------------------ ICMP

_ICMP_ECHO_REQUEST = 8
_ICMP_ECHO_REPLY = 0


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _openIcmp() -> tuple[socket.socket, bool]:
    # An unprivileged ICMP socket first (the kernel fills in the identifier
    # and hands back only our own replies); a raw socket otherwise.
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False
    except OSError as first:
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True
        except OSError as second:
            raise OSError(
                f"no unprivileged ICMP socket ({first.strerror or first}; see "
                f"net.ipv4.ping_group_range) and no raw socket "
                f"({second.strerror or second}; needs root or CAP_NET_RAW)"
            ) from second


_icmpProblem: list[str | None] = []


def icmpProblem() -> str | None:
    """
    Why this process cannot send ICMP echo requests, or C{None} when it
    can (checked once: opening and closing a socket).
    """
    if not _icmpProblem:
        try:
            sock, _ = _openIcmp()
        except OSError as e:
            _icmpProblem.append(str(e))
        else:
            sock.close()
            _icmpProblem.append(None)
    return _icmpProblem[0]


@implementer(IReadDescriptor)
class IcmpSocket:
    """
    Sends ICMP echo requests and matches their replies, for every C{ping}
    health check of the process (one socket, read by the reactor only while
    a reply is awaited).
    """

    def __init__(self, reactor: Any) -> None:
        """
        @param reactor: an C{IReactorFDSet} and C{IReactorTime} provider.
        @raise OSError: no ICMP socket can be opened (see L{icmpProblem}).
        """
        self._reactor = reactor
        self._socket, self._raw = _openIcmp()
        self._socket.setblocking(False)
        self._identifier = os.getpid() & 0xFFFF
        self._sequence = 0
        self._waiting: dict[tuple[str, int], Deferred[None]] = {}
        self._reading = False

    def fileno(self) -> int:
        """
        See L{IReadDescriptor}.
        """
        return self._socket.fileno()

    def logPrefix(self) -> str:
        """
        See L{IReadDescriptor}.
        """
        return "IcmpSocket"

    def ping(self, address: ipaddress.IPv4Address) -> Deferred[None]:
        """
        Send one echo request to C{address}.

        @return: fires when the reply arrives (cancel it to give up), or
            fails with L{ProbeFailed} when it cannot be sent.
        """
        self._sequence = (self._sequence + 1) & 0xFFFF
        sequence = self._sequence
        payload = b"ztnagw health check"
        header = struct.pack("!BBHHH", _ICMP_ECHO_REQUEST, 0, 0, self._identifier, sequence)
        packet = struct.pack(
            "!BBHHH",
            _ICMP_ECHO_REQUEST,
            0,
            _checksum(header + payload),
            self._identifier,
            sequence,
        ) + payload
        key = (str(address), sequence)
        waiter: Deferred[None] = Deferred(lambda d: self._forget(key))
        try:
            self._socket.sendto(packet, (str(address), 0))
        except OSError as e:
            return fail(ProbeFailed(f"cannot send an ICMP echo request: {e.strerror or e}"))
        self._waiting[key] = waiter
        if not self._reading:
            self._reading = True
            self._reactor.addReader(self)
        return waiter

    def _forget(self, key: tuple[str, int]) -> None:
        self._waiting.pop(key, None)
        if not self._waiting and self._reading:
            self._reading = False
            self._reactor.removeReader(self)

    def doRead(self) -> None:
        """
        Read the waiting packets; fire the pings they answer.
        """
        for _ in range(64):
            try:
                data, (host, _) = self._socket.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self._raw:
                if len(data) < 20:
                    continue
                data = data[(data[0] & 0x0F) * 4 :]
            if len(data) < 8:
                continue
            kind, _, _, identifier, sequence = struct.unpack("!BBHHH", data[:8])
            # A raw socket sees every echo reply of the machine; the
            # unprivileged one only ours, with an identifier of the
            # kernel's choosing.
            if kind != _ICMP_ECHO_REPLY or (self._raw and identifier != self._identifier):
                continue
            key = (host, sequence)
            waiter = self._waiting.get(key)
            if waiter is not None:
                self._forget(key)
                waiter.callback(None)

    def connectionLost(self, reason: Failure) -> None:
        """
        See L{IReadDescriptor}.
        """
        self._reading = False

    def close(self) -> None:
        """
        Stop reading and close the socket; pending pings fail.
        """
        waiting, self._waiting = self._waiting, {}
        if self._reading:
            self._reading = False
            self._reactor.removeReader(self)
        for waiter in waiting.values():
            waiter.errback(Failure(ProbeFailed("the gateway is stopping")))
        self._socket.close()


# ---------------------------------------------------------------- probes

#: What a probe needs of a member: its address now (an FQDN is resolved),
#: and the route requests use (key, Host).
RouteOf = Callable[[Member], Deferred[Any]]


class _Connected(Protocol):
    def connectionMade(self) -> None:
        self.transport.abortConnection()


def _tcpProbe(reactor: Any, routeOf: RouteOf) -> Callable[[Member], Deferred[str]]:
    def probe(member: Member) -> Deferred[str]:
        timeout = member.realServer.healthCheckTimeout

        def connect(route: Any) -> Deferred[str]:
            endpoint = TCP4ClientEndpoint(reactor, str(route.address), route.port, timeout=timeout)
            return connectProtocol(endpoint, _Connected()).addCallback(
                lambda _: "TCP connection accepted"
            )

        return routeOf(member).addCallback(connect)

    return probe


def statusAccepted(status: int, accepted: str) -> bool:
    """
    Whether C{status} is one of C{accepted} (C{health-check-http-status}:
    statuses or ranges C{N-M}, comma-separated).
    """
    for part in accepted.split(","):
        low, _, high = part.partition("-")
        bounds = sorted((int(low), int(high or low)))
        if bounds[0] <= status <= bounds[1]:
            return True
    return False


def _httpProbe(reactor: Any, routeOf: RouteOf) -> Callable[[Member], Deferred[str]]:
    pools: dict[int, UpstreamPool] = {}

    def poolFor(timeout: int) -> UpstreamPool:
        pool = pools.get(timeout)
        if pool is None:
            pool = UpstreamPool(
                reactor,
                PoolSettings(connectTimeout=timeout, responseTimeout=timeout, maxIdlePerKey=1),
            )
            pools[timeout] = pool
        return pool

    def probe(member: Member) -> Deferred[str]:
        realServer = member.realServer

        def send(route: Any) -> Deferred[str]:
            host = route.hostHeader if route.hostHeader is not None else route.name.encode("ascii")
            headers = [
                (b"Host", host),
                (b"User-Agent", b"ztnagw-health-check"),
                (b"Connection", b"close"),
            ]
            path = realServer.healthCheckHttpPath.encode("ascii")
            pool = poolFor(realServer.healthCheckTimeout)
            return pool.request(route.key, b"GET", path, headers).addCallback(judge)

        def judge(response: Any) -> str:
            response.abort()
            status = response.status
            if statusAccepted(status, realServer.healthCheckHttpStatus):
                return f"HTTP {status}"
            raise ProbeFailed(f"HTTP {status} for {realServer.healthCheckHttpPath}")

        return routeOf(member).addCallback(send)

    return probe


def _pingProbe(icmp: IcmpSocket, routeOf: RouteOf) -> Callable[[Member], Deferred[str]]:
    def probe(member: Member) -> Deferred[str]:
        return routeOf(member).addCallback(
            lambda route: icmp.ping(route.address).addCallback(lambda _: "ICMP echo reply")
        )

    return probe


def probeFor(
    member: Member, reactor: Any, routeOf: RouteOf, icmp: IcmpSocket | None
) -> Callable[[Member], Deferred[str]]:
    """
    The probe of C{member}'s C{health-check-proto}.

    @param icmp: the process's ICMP socket (needed for C{ping}).
    @raise ValueError: C{ping} without an ICMP socket.
    """
    proto = member.realServer.healthCheckProto
    if proto == "tcp-connect":
        return _tcpProbe(reactor, routeOf)
    if proto == "http":
        return _httpProbe(reactor, routeOf)
    if icmp is None:
        raise ValueError("ping health checks need an ICMP socket")
    return _pingProbe(icmp, routeOf)


def _describe(failure: Failure) -> str:
    if failure.check(CancelledError):
        return "no answer in time"
    value = failure.value
    if isinstance(value, UpstreamError):
        return str(value.args[0])
    text = str(value).strip() or type(value).__name__
    return text.splitlines()[0][:200]


# ------------------------------------------------------------ the checks


class HealthCheck:
    """
    The health checks of one member (see the module docstring).
    """

    def __init__(
        self,
        member: Member,
        probe: Callable[[Member], Deferred[str]],
        clock: Any,
        report: Callable[[Member, str, str], None],
    ) -> None:
        """
        @param member: the member; its L{MemberHealth} is what changes.
        @param probe: one check: fires with a detail, or fails saying how.
        @param clock: the reactor's clock.
        @param report: called with the member, its new state and the
            detail whenever it goes up or down.
        """
        self.member = member
        self._probe = probe
        self._clock = clock
        self._report = report
        self._timer: IDelayedCall | None = None
        self._holddown: IDelayedCall | None = None
        self._running: Deferred[str] | None = None
        self._successes = 0
        self._failures = 0
        self._stopped = True

    def start(self) -> None:
        """
        Check now, then every interval.
        """
        self._stopped = False
        self.member.health.since = self._clock.seconds()
        self._check()

    def stop(self) -> None:
        """
        Stop checking (a check in progress is abandoned).
        """
        self._stopped = True
        for name in ("_timer", "_holddown"):
            timer = getattr(self, name)
            setattr(self, name, None)
            if timer is not None and timer.active():
                timer.cancel()
        running, self._running = self._running, None
        if running is not None:
            running.cancel()

    def _check(self) -> None:
        self._timer = None
        if self._stopped:
            return
        realServer = self.member.realServer
        try:
            running = self._probe(self.member)
        except Exception as e:
            running = fail(ProbeFailed(str(e)))
        self._running = running
        deadline = self._clock.callLater(realServer.healthCheckTimeout, running.cancel)

        def done(result: object) -> None:
            if deadline.active():
                deadline.cancel()
            if self._running is running:
                self._running = None
            if self._stopped:
                return
            if isinstance(result, Failure):
                self._failed(_describe(result))
            else:
                self._passed(str(result))
            self._timer = self._clock.callLater(realServer.healthCheckInterval, self._check)

        running.addBoth(done)

    def _passed(self, detail: str) -> None:
        health = self.member.health
        realServer = self.member.realServer
        health.checks += 1
        health.detail = detail
        health.lastCheck = self._clock.seconds()
        self._failures = 0
        self._successes += 1
        if health.state == DOWN and self._successes >= realServer.healthCheckRise:
            if realServer.holddownInterval:
                self._enter(HOLDDOWN)
                self._holddown = self._clock.callLater(realServer.holddownTime, self._holddownOver)
            else:
                self._enter(UP)

    def _holddownOver(self) -> None:
        self._holddown = None
        if self.member.health.state == HOLDDOWN and not self._stopped:
            self._enter(UP)

    def _failed(self, detail: str) -> None:
        health = self.member.health
        first = health.checks == 0
        health.checks += 1
        health.failures += 1
        health.detail = detail
        health.lastCheck = self._clock.seconds()
        self._successes = 0
        self._failures += 1
        if health.state == HOLDDOWN:
            timer, self._holddown = self._holddown, None
            if timer is not None and timer.active():
                timer.cancel()
            # It was reported down and never came back: no new event.
            health.state = DOWN
            health.since = self._clock.seconds()
        elif health.state == UP and (first or self._failures >= self.member.realServer.healthCheckFall):
            self._enter(DOWN)

    def _enter(self, state: str) -> None:
        health = self.member.health
        health.state = state
        health.since = self._clock.seconds()
        if state in (UP, DOWN):
            self._report(self.member, state, health.detail)


class HealthMonitor(Service):
    """
    Runs the health checks of every member with C{health-check enable}
    while the gateway runs, and logs their changes.

    @ivar checks: one per checked member.
    """

    def __init__(
        self,
        members: list[tuple[Member, str, str | None]],
        reactor: Any,
        routeOf: RouteOf,
        writeLog: Callable[[EventLog], None],
        icmp: Callable[[Any], IcmpSocket] = IcmpSocket,
    ) -> None:
        """
        @param members: every pool member, with its VIP's and access proxy's
            names (for the events).
        @param reactor: the reactor.
        @param routeOf: resolves a member to the route requests use.
        @param writeLog: writes an event log line.
        @param icmp: opens the ICMP socket (only when a C{ping} check is
            configured).
        @raise OSError: a C{ping} check is configured and no ICMP socket can
            be opened.
        """
        self.setName("health-checks")
        self._writeLog = writeLog
        self._labels: dict[int, tuple[str, str | None]] = {}
        self._icmp: IcmpSocket | None = None
        checked = [(m, vip, ap) for m, vip, ap in members if m.realServer.healthCheck]
        if any(m.realServer.healthCheckProto == "ping" for m, _, _ in checked):
            self._icmp = icmp(reactor)
        self.checks: list[HealthCheck] = []
        for member, vip, accessProxy in checked:
            self._labels[id(member)] = (vip, accessProxy)
            probe = probeFor(member, reactor, routeOf, self._icmp)
            self.checks.append(HealthCheck(member, probe, reactor, self._report))

    def startService(self) -> None:
        """
        Start every check.
        """
        Service.startService(self)
        for check in self.checks:
            check.start()

    def stopService(self) -> None:
        """
        Stop every check; close the ICMP socket.
        """
        Service.stopService(self)
        for check in self.checks:
            check.stop()
        if self._icmp is not None:
            self._icmp.close()
            self._icmp = None

    def _report(self, member: Member, state: str, detail: str) -> None:
        vip, accessProxy = self._labels.get(id(member), ("", None))
        realServer = member.realServer
        address: str | None = None
        try:
            address = str(ipaddress.IPv4Address(member.name))
        except ValueError:
            pass
        up = state == UP
        self._writeLog(
            EventLog(
                kind=REAL_SERVER_UP if up else REAL_SERVER_DOWN,
                dstIp=address,
                dstPort=realServer.port,
                apiGatewayId=member.apiGateway.id,
                realServerId=realServer.id,
                vip=vip or None,
                accessProxy=accessProxy,
                msg=f"real server {member.name}:{realServer.port} is "
                f"{'up' if up else 'down'}: {detail}",
            )
        )
        _log.info(
            "Real server {name}:{port} (api-gateway {gateway}, real server {id}) is {state}: {detail}",
            name=member.name,
            port=realServer.port,
            gateway=member.apiGateway.id,
            id=realServer.id,
            state="up" if up else "down",
            detail=detail,
        )


def realServerStatus(members: Iterable[tuple[Member, str, str | None]], now: float) -> list[dict[str, Any]]:
    """
    The state of every pool member, as the control channel's C{realserver
    list} answers it (JSON-able, in configuration order).

    @param members: the members with their VIP's and access proxy's names
        (L{RealServerRouter.members<ztnagw.gateway.realservers.RealServerRouter.members>}).
    @param now: the clock's seconds.
    """
    out = []
    for member, vip, accessProxy in members:
        realServer = member.realServer
        apiGateway = member.apiGateway
        health = member.health
        checked = realServer.healthCheck
        out.append(
            {
                "vip": vip,
                "accessProxy": accessProxy,
                "apiGateway": apiGateway.id,
                "service": apiGateway.service,
                "ldbMethod": apiGateway.ldbMethod,
                "persistence": apiGateway.persistence,
                "realServer": realServer.id,
                "address": member.name,
                "port": realServer.port,
                # A tunnel pool member serves the names under its domain.
                "domain": realServer.domain,
                "status": realServer.status,
                "weight": realServer.weight,
                "healthCheck": realServer.healthCheckProto if checked else None,
                "state": health.state if checked else UP,
                "serving": member.up,
                "since": max(0.0, now - health.since) if checked else None,
                "detail": health.detail if checked else None,
                "checks": health.checks,
                "failures": health.failures,
                "holddown": realServer.holddownTime if checked and realServer.holddownInterval else 0,
            }
        )
    return out
