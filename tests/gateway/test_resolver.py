"""
Tests for L{ztnagw.gateway.resolver}: cached, shared, bounded lookups that
never block, and the background watch of policy names.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHostnameResolver
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from ztnagw.gateway.resolver import CachingResolver, NameNotResolved, NameWatch
from tests.gateway.fakes import TableResolver


@implementer(IHostnameResolver)
class FakeNameResolver:
    """
    Keeps every lookup for the test to answer.
    """

    def __init__(self) -> None:
        self.lookups: list[tuple[Any, str]] = []

    def resolveHostName(self, receiver: Any, hostName: str, portNumber: int = 0,
                        addressTypes: Any = None, transportSemantics: str = "TCP") -> Any:
        """
        See L{IHostnameResolver.resolveHostName}.
        """
        self.lookups.append((receiver, hostName))
        receiver.resolutionBegan(None)
        return None

    def answer(self, index: int, *addresses: str) -> None:
        """
        Answer lookup C{index} with C{addresses}.
        """
        receiver, name = self.lookups[index]
        for address in addresses:
            if ":" in address:
                receiver.addressResolved(IPv6Address("TCP", address, 0))
            else:
                receiver.addressResolved(IPv4Address("TCP", address, 0))
        receiver.resolutionComplete()


def _ip(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


class CachingResolverTests(SynchronousTestCase):
    """
    Tests for L{CachingResolver}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.names = FakeNameResolver()
        self.resolver = CachingResolver(self.names, self.clock, ttl=60, negativeTtl=5, timeout=10, maxEntries=3)

    def test_resolves(self) -> None:
        """
        A lookup answers with the IPv4 addresses in order, duplicates and
        IPv6 ones left out.
        """
        d = self.resolver.resolve("WS1.Example.com.")
        self.assertNoResult(d)
        self.assertEqual(self.names.lookups[0][1], "ws1.example.com")
        self.names.answer(0, "10.0.0.2", "2001:db8::1", "10.0.0.1", "10.0.0.2")
        self.assertEqual(self.successResultOf(d), (_ip("10.0.0.2"), _ip("10.0.0.1")))

    def test_literal(self) -> None:
        """
        An IPv4 literal needs no lookup.
        """
        self.assertEqual(self.successResultOf(self.resolver.resolve("10.1.2.3")), (_ip("10.1.2.3"),))
        self.assertEqual(self.names.lookups, [])

    def test_cachedAndShared(self) -> None:
        """
        Concurrent lookups share one query; a fresh answer is reused
        without asking; an old one is asked again.
        """
        first, second = self.resolver.resolve("a.test"), self.resolver.resolve("a.test")
        self.assertEqual(len(self.names.lookups), 1)
        self.names.answer(0, "10.0.0.1")
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(self.resolver.cached("a.test"), (_ip("10.0.0.1"),))
        self.clock.advance(59)
        self.successResultOf(self.resolver.resolve("a.test"))
        self.assertEqual(len(self.names.lookups), 1)
        self.clock.advance(2)
        self.assertIsNone(self.resolver.cached("a.test"))
        self.assertNoResult(self.resolver.resolve("a.test"))
        self.assertEqual(len(self.names.lookups), 2)

    def test_noAddress(self) -> None:
        """
        A name without an IPv4 address fails, and the failure is kept for
        the negative TTL.
        """
        d = self.resolver.resolve("v6only.test")
        self.names.answer(0, "2001:db8::1")
        failure = self.failureResultOf(d, NameNotResolved)
        self.assertIn("no IPv4 address", str(failure.value))
        self.assertEqual(self.resolver.cached("v6only.test"), ())
        self.failureResultOf(self.resolver.resolve("v6only.test"), NameNotResolved)
        self.clock.advance(6)
        self.assertNoResult(self.resolver.resolve("v6only.test"))

    def test_timeout(self) -> None:
        """
        A lookup that does not complete in time fails; a late answer still
        fills the cache.
        """
        d = self.resolver.resolve("slow.test")
        self.clock.advance(10)
        self.assertIn("no answer", str(self.failureResultOf(d, NameNotResolved).value))
        self.names.answer(0, "10.0.0.9")
        self.assertEqual(self.resolver.cached("slow.test"), (_ip("10.0.0.9"),))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bounded(self) -> None:
        """
        Only C{maxEntries} names are kept, the least recently used leaving
        first.
        """
        for i, name in enumerate(["a.test", "b.test", "c.test", "d.test"]):
            self.resolver.resolve(name)
            self.names.answer(i, f"10.0.0.{i + 1}")
        self.assertIsNone(self.resolver.cached("a.test"))
        self.assertIsNotNone(self.resolver.cached("d.test"))

    @given(st.text(max_size=80))
    def test_anyName(self, name: str) -> None:
        """
        Any text gives a Deferred: a name is looked up, anything else fails
        at once; nothing raises.
        """
        names = FakeNameResolver()
        resolver = CachingResolver(names, Clock())
        d = resolver.resolve(name)
        if names.lookups:
            self.assertNoResult(d)
            return
        try:
            literal = ipaddress.IPv4Address(name.lower().rstrip("."))
        except ValueError:
            self.failureResultOf(d, NameNotResolved)
        else:
            self.assertEqual(self.successResultOf(d), (literal,))

    def test_notAName(self) -> None:
        """
        Text that is no host name is refused without a lookup.
        """
        for bad in ["", "a b", "a\r\nb", "-a", "a" * 300]:
            self.failureResultOf(self.resolver.resolve(bad), NameNotResolved)
        self.assertEqual(self.names.lookups, [])


class NameWatchTests(SynchronousTestCase):
    """
    Tests for L{NameWatch}.
    """

    def test_answers(self) -> None:
        """
        Names are resolved at start and again every interval; failures
        are empty answers; names never answered are missing.
        """
        clock = Clock()
        resolver = TableResolver({"a.test": ["10.0.0.1"]})
        resolver.hold = True
        watch = NameWatch(resolver, ["a.test", "b.test"], clock, interval=30)
        watch.start()
        self.assertEqual(watch.resolved(), {})
        resolver.release("a.test")
        resolver.release("b.test")
        self.assertEqual(watch.resolved(), {"a.test": (_ip("10.0.0.1"),), "b.test": ()})
        resolver.table["b.test"] = (_ip("10.0.0.2"),)
        clock.advance(30)
        resolver.release("a.test")
        resolver.release("b.test")
        self.assertEqual(watch.resolved()["b.test"], (_ip("10.0.0.2"),))
        watch.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noNames(self) -> None:
        """
        Without names the watch does nothing.
        """
        clock = Clock()
        watch = NameWatch(TableResolver(), [], clock)
        watch.start()
        self.assertEqual(clock.getDelayedCalls(), [])
