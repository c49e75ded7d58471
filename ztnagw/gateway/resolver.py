# -*- test-case-name: tests.gateway.test_resolver -*-
"""
Name resolution for the access proxy, without blocking the reactor.

Real servers of C{addr-type fqdn} and FQDN addresses in policies name hosts
by DNS name.  A lookup must never run in the reactor thread (a slow DNS
server would stall every connection), and it must not run once per
request either.  L{CachingResolver} asks Twisted's host name resolver
(C{getaddrinfo} in the reactor's thread pool), keeps answers for a short
time (successes for C{ttl}, failures for C{negativeTtl}: C{getaddrinfo}
gives no TTL), lets concurrent lookups of one name share one query, gives
up after C{timeout}, and keeps a bounded number of names.

Policies need their FQDN addresses resolved I{before} a request is
decided, and the decision is a pure function that cannot wait:
L{NameWatch} resolves a fixed set of names in the background, again every
C{interval}, and hands the decision its current answers.  A name never
answered yet is missing from them, which makes a policy that needs it fail
to match (fail closed) instead of matching by accident.
"""

from __future__ import annotations

import ipaddress
import re
from collections import OrderedDict
from typing import Iterable, Mapping

from attrs import frozen
from twisted.internet.address import IPv4Address as TwistedIPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IHostnameResolver,
    IHostResolution,
    IReactorTime,
    IResolutionReceiver,
)
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.gateway.interfaces import IResolver

__all__ = ["CachingResolver", "NameNotResolved", "NameWatch"]

_log = Logger()

Addresses = tuple[ipaddress.IPv4Address, ...]

_NAME = re.compile(r"\A[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?\Z")


class NameNotResolved(Exception):
    """
    A host name has no IPv4 address (or the lookup failed or timed out).

    @ivar name: the name.
    @ivar reason: why, for the log.
    """

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name} could not be resolved: {reason}")
        self.name = name
        self.reason = reason


def _literal(name: str) -> Addresses | None:
    try:
        return (ipaddress.IPv4Address(name),)
    except ValueError:
        return None


@frozen
class _Entry:
    addresses: Addresses
    reason: str
    expires: float


@implementer(IResolutionReceiver)
class _Receiver:
    """
    Collects the IPv4 addresses of one C{resolveHostName} call.
    """

    def __init__(self) -> None:
        self.addresses: list[ipaddress.IPv4Address] = []
        self.done: Deferred[Addresses] = Deferred()

    def resolutionBegan(self, resolutionInProgress: IHostResolution) -> None:
        """
        See L{IResolutionReceiver.resolutionBegan}.
        """

    def addressResolved(self, address: object) -> None:
        """
        See L{IResolutionReceiver.addressResolved}; IPv6 answers are left
        out (the policy model and the real servers are IPv4).
        """
        if isinstance(address, TwistedIPv4Address):
            parsed = ipaddress.IPv4Address(address.host)
            if parsed not in self.addresses:
                self.addresses.append(parsed)

    def resolutionComplete(self) -> None:
        """
        See L{IResolutionReceiver.resolutionComplete}.
        """
        self.done.callback(tuple(self.addresses))


@implementer(IResolver)
class CachingResolver:
    """
    Resolve names through an L{IHostnameResolver}, with a cache.
    """

    def __init__(
        self,
        nameResolver: IHostnameResolver,
        clock: IReactorTime,
        ttl: float = 60.0,
        negativeTtl: float = 5.0,
        timeout: float = 10.0,
        maxEntries: int = 4096,
    ) -> None:
        """
        @param nameResolver: the reactor's C{nameResolver}.
        @param clock: the reactor's clock.
        @param ttl: seconds a successful answer is kept.
        @param negativeTtl: seconds a failure is kept.
        @param timeout: seconds a lookup may take.
        @param maxEntries: names kept (least recently used go first).
        """
        self._nameResolver = nameResolver
        self._clock = clock
        self._ttl = ttl
        self._negativeTtl = negativeTtl
        self._timeout = timeout
        self._maxEntries = maxEntries
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._waiting: dict[str, list[Deferred[Addresses]]] = {}
        self._timers: dict[str, IDelayedCall] = {}

    def cached(self, name: str) -> Addresses | None:
        """
        See L{IResolver.cached}.
        """
        key = name.lower().rstrip(".")
        literal = _literal(key)
        if literal is not None:
            return literal
        entry = self._cache.get(key)
        if entry is None or entry.expires <= self._clock.seconds():
            return None
        return entry.addresses

    def resolve(self, name: str) -> Deferred[Addresses]:
        """
        See L{IResolver.resolve}.
        """
        key = name.lower().rstrip(".")
        literal = _literal(key)
        if literal is not None:
            return succeed(literal)
        d: Deferred[Addresses] = Deferred()
        if not _NAME.match(key):
            d.errback(Failure(NameNotResolved(name, "not a host name")))
            return d
        entry = self._cache.get(key)
        if entry is not None and entry.expires > self._clock.seconds():
            self._cache.move_to_end(key)
            self._answer(d, key, entry)
            return d
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.append(d)
            return d
        self._waiting[key] = [d]
        self._timers[key] = self._clock.callLater(self._timeout, self._timedOut, key)
        receiver = _Receiver()
        receiver.done.addCallbacks(
            self._resolved, self._failed, callbackArgs=(key,), errbackArgs=(key,)
        )
        try:
            self._nameResolver.resolveHostName(
                receiver, key, 0, [TwistedIPv4Address], "TCP"
            )
        except Exception as e:
            self._failed(Failure(e), key)
        return d

    def _answer(self, d: Deferred[Addresses], key: str, entry: _Entry) -> None:
        if entry.addresses:
            d.callback(entry.addresses)
        else:
            d.errback(Failure(NameNotResolved(key, entry.reason)))

    def _store(self, key: str, entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self._maxEntries:
            self._cache.popitem(last=False)
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        for d in self._waiting.pop(key, []):
            self._answer(d, key, entry)

    def _resolved(self, addresses: Addresses, key: str) -> None:
        now = self._clock.seconds()
        if addresses:
            self._store(key, _Entry(addresses, "", now + self._ttl))
        else:
            self._store(key, _Entry((), "no IPv4 address", now + self._negativeTtl))

    def _failed(self, failure: Failure, key: str) -> None:
        self._store(
            key,
            _Entry((), failure.getErrorMessage(), self._clock.seconds() + self._negativeTtl),
        )

    def _timedOut(self, key: str) -> None:
        self._timers.pop(key, None)
        # Waiters get an answer now; the cache is filled when (if) the
        # lookup still completes.
        for d in self._waiting.pop(key, []):
            d.errback(Failure(NameNotResolved(key, f"no answer within {self._timeout:g} s")))


class NameWatch:
    """
    Keep a fixed set of names resolved in the background (the FQDN
    addresses policies name) and hand out the current answers.
    """

    def __init__(
        self,
        resolver: IResolver,
        names: Iterable[str],
        clock: IReactorTime,
        interval: float = 30.0,
    ) -> None:
        """
        @param resolver: resolves the names.
        @param names: the names to keep resolved.
        @param clock: the reactor's clock.
        @param interval: seconds between two rounds of lookups.
        """
        self._resolver = resolver
        self.names = tuple(sorted(set(names)))
        self._answers: dict[str, Addresses] = {}
        self._loop = LoopingCall(self._round)
        self._loop.clock = clock
        self._interval = interval
        self._failing: set[str] = set()

    def start(self) -> None:
        """
        Resolve every name now, and again every C{interval}.
        """
        if self.names and not self._loop.running:
            self._loop.start(self._interval, now=True)

    def stop(self) -> None:
        """
        Stop the lookups.
        """
        if self._loop.running:
            self._loop.stop()

    def resolved(self) -> Mapping[str, Addresses]:
        """
        The current answers: each name answered so far with its addresses
        (empty when its last lookup failed); names never answered are
        missing.
        """
        return self._answers

    def _round(self) -> None:
        for name in self.names:
            self._resolver.resolve(name).addCallbacks(
                self._answered, self._unanswered, callbackArgs=(name,), errbackArgs=(name,)
            )

    def _answered(self, addresses: Addresses, name: str) -> None:
        self._answers = {**self._answers, name: tuple(addresses)}
        if name in self._failing:
            self._failing.discard(name)
            _log.info("Policy address {name} resolves again: {addresses}", name=name,
                      addresses=", ".join(map(str, addresses)))

    def _unanswered(self, failure: Failure, name: str) -> None:
        self._answers = {**self._answers, name: ()}
        if name not in self._failing:
            self._failing.add(name)
            _log.warn(
                "Policy address {name} does not resolve ({reason}); policies "
                "that name it match no address until it does",
                name=name,
                reason=failure.getErrorMessage(),
            )
