# -*- test-case-name: tests.gateway.test_pool -*-
"""
Real-server pools: which of an api-gateway's real servers takes the next
request or tunnel.

Every api-gateway's C{config realservers} is a pool, and this module is the
one place a member is chosen, for the HTTPS access proxy and for TCP
forwarding tunnels alike.  A choice is made in three steps:

  1. B{Who may serve}: members that are not C{status disable} and are up
     (a member without C{health-check enable} is always up; one with it is
     up as its health checks last said, L{MemberHealth}).  Among them the
     C{active} ones; only when none of those is up, the C{standby} ones
     (FortiOS: standby servers take over while no active server is
     healthy).  Members a retry must avoid are left out.
  2. B{A member the client is bound to}: a persistence cookie (see
     L{ztnagw.gateway.persistence}) that names one of the members of step 1
     wins; one that names a member that is down or not allowed now is
     ignored, and the method chooses.
  3. B{The method} (C{ldb-method}, FortiOS semantics):
       - C{static}: by the client's address, stable: the same address gets
         the same member for as long as the set of members that may serve
         does not change, and when it changes only the clients of the
         members that came or went move (rendezvous hashing);
       - C{round-robin}: each member in turn, in configuration order;
       - C{weighted}: each member in proportion to its C{weight}, spread
         evenly (smooth weighted round robin: with weights 5, 1, 1 the
         order is a a b a c a a, never five a's in a row);
       - C{first-alive}: the first member, in configuration order;
       - C{http-host}: the members whose C{http-host} names the request's
         host (case and port ignored), in turn; when none does, the members
         without an C{http-host}, in turn.

The selection is pure and deterministic for given state, so it is tested
with many requests and arbitrary pools; the health state each member
carries is changed only by L{ztnagw.gateway.health}.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Callable, Iterable, Sequence

from attrs import frozen

from ztnagw.config.model import ApiGateway, RealServer

__all__ = [
    "DOWN",
    "HOLDDOWN",
    "UP",
    "Member",
    "MemberHealth",
    "RealServerPool",
    "hostOf",
]

#: A member that serves.
UP = "up"
#: A member whose health check failed: it serves nothing.
DOWN = "down"
#: A member that recovered and waits out its hold-down: it serves nothing
#: yet.
HOLDDOWN = "holddown"


class MemberHealth:
    """
    What the health checks of one member concluded, and when.

    @ivar state: L{UP}, L{DOWN} or L{HOLDDOWN}.
    @ivar since: when the state began (the clock's seconds).
    @ivar detail: what the last check said (C{"connection refused"},
        C{"HTTP 200"}).
    @ivar checks: checks done.
    @ivar failures: checks failed.
    @ivar lastCheck: when the last check ended, or C{None}.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.state = UP
        self.since = now
        self.detail = "not checked yet"
        self.checks = 0
        self.failures = 0
        self.lastCheck: float | None = None

    @property
    def up(self) -> bool:
        """
        Whether the member may serve.
        """
        return self.state == UP


@frozen(eq=False)
class Member:
    """
    One real server of a pool.

    @ivar apiGateway: the api-gateway it belongs to.
    @ivar realServer: its configuration.
    @ivar name: how logs name it (its address or FQDN).
    @ivar health: its health (always up without C{health-check enable}).
    @ivar target: what the owner of the pool needs to reach it (opaque
        here).
    """

    apiGateway: ApiGateway
    realServer: RealServer
    name: str
    health: MemberHealth
    target: object = None

    @property
    def id(self) -> int:
        """
        The real server's id.
        """
        return self.realServer.id

    @property
    def up(self) -> bool:
        """
        Whether it may serve now.
        """
        return not self.realServer.healthCheck or self.health.up

    def __repr__(self) -> str:
        return f"<Member {self.apiGateway.id}/{self.realServer.id} {self.name}:{self.realServer.port}>"


def hostOf(value: bytes | str | None) -> str | None:
    """
    The host name in a C{Host} header or an C{http-host} option: lower
    case, without port or final dot; C{None} for nothing.
    """
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else text[1:]
    else:
        host, colon, port = text.rpartition(":")
        if colon and port.isdigit():
            text = host
    return text.rstrip(".") or None


def _score(address: bytes, member: Member) -> bytes:
    # Rendezvous (highest random weight) hashing: each (client, member)
    # pair gets a pseudo-random score; the highest wins.  Only clients of a
    # member that comes or goes change members.
    key = b"%s|%d|%d" % (address, member.apiGateway.id, member.realServer.id)
    return hashlib.blake2b(key, digest_size=8).digest()


class RealServerPool:
    """
    The pool of one api-gateway (see the module docstring).

    @ivar apiGateway: the api-gateway.
    @ivar members: its members, in configuration order (disabled real
        servers and those that name no usable host are not members).
    """

    def __init__(self, apiGateway: ApiGateway, members: Sequence[Member]) -> None:
        """
        @param members: the members, in configuration order.
        """
        self.apiGateway = apiGateway
        self.members = tuple(members)
        self._next = 0
        # Smooth weighted round robin: each member's current weight.
        self._current: dict[int, int] = {}
        self._hostTurns: dict[str | None, int] = {}

    def serving(self, exclude: Iterable[Member] = ()) -> list[Member]:
        """
        The members that may serve now (step 1 of the module docstring):
        the active members that are up, else the standby ones that are up;
        never one of C{exclude}.
        """
        excluded = set(map(id, exclude))
        usable = [m for m in self.members if m.up and id(m) not in excluded]
        active = [m for m in usable if m.realServer.status == "active"]
        if active:
            return active
        return [m for m in usable if m.realServer.status == "standby"]

    def choose(
        self,
        sourceIp: ipaddress.IPv4Address | None = None,
        host: bytes | str | None = None,
        exclude: Iterable[Member] = (),
        bound: Callable[[Sequence[Member]], Member | None] | None = None,
    ) -> Member | None:
        """
        The member for the next request or tunnel.

        @param sourceIp: the client's address (C{static}).
        @param host: the request's C{Host} (C{http-host}).
        @param exclude: members not to choose (a retry avoids the one that
            failed).
        @param bound: finds the member a client is bound to (persistence)
            among those that may serve, or C{None}.
        @return: the member, or C{None} when none may serve (error 022).
        """
        candidates = self.serving(exclude)
        if not candidates:
            return None
        if bound is not None:
            member = bound(candidates)
            if member is not None:
                return member
        method = self.apiGateway.ldbMethod
        if method == "static":
            address = (sourceIp.packed if sourceIp is not None else b"")
            return max(candidates, key=lambda m: _score(address, m))
        if method == "round-robin":
            return self._turn(candidates)
        if method == "weighted":
            return self._weighted(candidates)
        if method == "http-host":
            wanted = hostOf(host)
            named = [m for m in candidates if hostOf(m.realServer.httpHost) == wanted and wanted is not None]
            if not named:
                named = [m for m in candidates if m.realServer.httpHost is None]
            if not named:
                return None
            return self._turnFor(wanted if named[0].realServer.httpHost else None, named)
        return candidates[0]

    def _turn(self, candidates: list[Member]) -> Member:
        # The next member at or after the turn, in configuration order, so
        # that a member coming back rejoins at its place in the cycle.
        order = {id(m): i for i, m in enumerate(self.members)}
        positions = [order[id(m)] for m in candidates]
        start = self._next % len(self.members)
        for member, position in sorted(zip(candidates, positions), key=lambda p: (p[1] < start, p[1])):
            self._next = position + 1
            return member
        raise AssertionError("no candidates")  # pragma: no cover

    def _turnFor(self, key: str | None, candidates: list[Member]) -> Member:
        turn = self._hostTurns.get(key, 0)
        self._hostTurns[key] = turn + 1
        return candidates[turn % len(candidates)]

    def _weighted(self, candidates: list[Member]) -> Member:
        current = self._current
        total = 0
        best: Member | None = None
        for member in candidates:
            weight = member.realServer.weight
            total += weight
            value = current.get(member.id, 0) + weight
            current[member.id] = value
            if best is None or value > current[best.id]:
                best = member
        assert best is not None
        current[best.id] -= total
        return best

    def member(self, realServerId: int) -> Member | None:
        """
        The member of real server C{realServerId}, if it is one.
        """
        for member in self.members:
            if member.id == realServerId:
                return member
        return None
