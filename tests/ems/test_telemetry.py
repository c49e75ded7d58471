"""
Tests for L{ztnagw.ems.telemetry}: batched telemetry writes and the
presence monitor.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.registry.fakes import FakeThreadPool, ThreadingMemoryReactorClock
from ztnagw.config import loads
from ztnagw.ems.api import ApiError, DeviceReport
from ztnagw.ems.telemetry import (
    PresenceMonitor,
    Report,
    TelemetryWriter,
    onNetChecker,
    telemetryInterval,
)
from ztnagw.logs.entries import DEVICE_OFFLINE, DEVICE_ONLINE, EventLog
from ztnagw.registry.interfaces import RegistryUnavailable
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore

UID_A = "9A016B5A6E914B42AD4168C066EB04CA"
UID_B = "0123456789ABCDEF0123456789ABCDEF"
NOW = 1_800_000_000.0


def report(uid: str = UID_A, serial: str = "01", at: float = NOW, **device: Any) -> Report:
    """
    A telemetry report.
    """
    return Report(
        uid=uid,
        certSerial=serial,
        device=DeviceReport(**device),
        sourceIp="198.51.100.7",
        onNet=True,
        receivedAt=at,
    )


class _ThreadCheckingStore:
    """
    A store that fails the test when used outside the thread pool, or
    raises while C{failure} is set.
    """

    def __init__(self, store: SQLiteEndpointStore, pool: FakeThreadPool) -> None:
        self._store = store
        self._pool = pool
        self.failure: Exception | None = None
        self.transactions = 0

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        if not self._pool.inThread:
            raise AssertionError("SQLite used outside the thread pool")
        if self.failure is not None:
            raise self.failure
        self.transactions += 1
        with self._store.transaction() as t:
            yield t


class WriterTests(SynchronousTestCase):
    """
    L{TelemetryWriter} writes reports in batches, in a thread.
    """

    def setUp(self) -> None:
        path = os.path.join(os.path.abspath(self.mktemp()), "registry.sqlite")
        self.real = SQLiteEndpointStore(path)
        self.addCleanup(self.real.close)
        self.real.put(EndpointRecord(uid=UID_A, certSerial="01", lastSeen=NOW - 100))
        self.real.put(EndpointRecord(uid=UID_B, certSerial="02", lastSeen=NOW - 100))
        self.reactor = ThreadingMemoryReactorClock()
        self.pool = FakeThreadPool(synchronous=False)
        self.store: _ThreadCheckingStore | None = _ThreadCheckingStore(self.real, self.pool)
        self.writer = TelemetryWriter(self.reactor, lambda: self.store, self.pool, flushInterval=1.0, maxBatch=3)

    def test_batched(self) -> None:
        """
        Reports wait for the flush interval and are written together; a
        device that reports twice is written once, with its latest report,
        and both answers wait for the commit.
        """
        first = self.writer.submit(report(UID_A, hostName="old"))
        second = self.writer.submit(report(UID_A, at=NOW + 1, hostName="new", facts={"x": "1"}))
        other = self.writer.submit(report(UID_B, serial="02"))
        self.reactor.advance(0.9)
        self.assertEqual(self.pool.pending, [])
        self.reactor.advance(0.1)
        self.assertNoResult(first)
        self.pool.runAll()
        record = self.successResultOf(first)
        self.assertEqual(self.successResultOf(second), record)
        self.successResultOf(other)
        self.assertEqual(self.store.transactions, 1)  # type: ignore[union-attr]
        self.assertEqual((self.writer.batches, self.writer.written), (1, 3))
        stored = self.real.get(UID_A)
        self.assertEqual(
            (stored.hostName, stored.facts, stored.lastSeen, stored.publicIp, stored.onNet),
            ("new", {"x": "1"}, NOW + 1, "198.51.100.7", True),
        )

    def test_keptFields(self) -> None:
        """
        Fields a report leaves out keep their value; facts are replaced.
        """
        self.real.update(UID_A, lambda r: attrs.evolve(r, hostName="pc1", facts={"old": "1"}, tags=frozenset({"T"})))
        d = self.writer.submit(report(UID_A, user="alice"))
        self.reactor.advance(1)
        self.pool.runAll()
        record = self.successResultOf(d)
        self.assertEqual((record.hostName, record.user, record.facts, record.tags), ("pc1", "alice", {}, {"T"}))

    def test_refusedInBatch(self) -> None:
        """
        A report whose device was deleted, revoked or re-enrolled since its
        connection was judged is refused with the ZTNA code; the others of
        the batch are written.
        """
        self.real.update(UID_B, lambda r: attrs.evolve(r, revoked=True))
        good = self.writer.submit(report(UID_A))
        revoked = self.writer.submit(report(UID_B, serial="02"))
        self.reactor.advance(1)
        self.pool.runAll()
        self.successResultOf(good)
        self.assertEqual(self.failureResultOf(revoked, ApiError).value.ztnaCode, "063")
        stale = self.writer.submit(report(UID_A, serial="99"))
        unknown = self.writer.submit(report("F" * 32))
        self.reactor.advance(1)
        self.pool.runAll()
        self.assertEqual(self.failureResultOf(stale, ApiError).value.ztnaCode, "001")
        self.assertEqual(self.failureResultOf(unknown, ApiError).value.ztnaCode, "066")

    def test_fullBatch(self) -> None:
        """
        A full batch is written at once.
        """
        for uid in (UID_A, UID_B, "F" * 32):
            self.writer.submit(report(uid))
        self.reactor.advance(0)
        self.assertEqual(len(self.pool.pending), 1)

    def test_oneWriteAtATime(self) -> None:
        """
        Reports arriving during a write wait for the next batch.
        """
        first = self.writer.submit(report(UID_A))
        self.reactor.advance(1)
        late = self.writer.submit(report(UID_A, at=NOW + 5))
        self.reactor.advance(5)
        self.assertEqual(len(self.pool.pending), 1)
        self.pool.runAll()
        self.successResultOf(first)
        self.assertNoResult(late)
        self.reactor.advance(1)
        self.pool.runAll()
        self.assertEqual(self.successResultOf(late).lastSeen, NOW + 5)

    def test_unavailable(self) -> None:
        """
        A registry that cannot be written (or is not open yet) fails every
        report of the batch with 503.
        """
        assert self.store is not None
        self.store.failure = RegistryUnavailable("locked")
        d = self.writer.submit(report(UID_A))
        self.reactor.advance(1)
        self.pool.runAll()
        error = self.failureResultOf(d, ApiError).value
        self.assertEqual((error.status, error.code), (503, "registry-unavailable"))
        self.store = None
        d = self.writer.submit(report(UID_A))
        self.reactor.advance(1)
        self.assertEqual(self.failureResultOf(d, ApiError).value.status, 503)

    def test_stop(self) -> None:
        """
        Stopping writes what is pending, then refuses new reports.
        """
        d = self.writer.submit(report(UID_A))
        stopped = self.writer.stop()
        self.assertNoResult(stopped)
        self.pool.runAll()
        self.successResultOf(d)
        self.successResultOf(stopped)
        self.assertEqual(self.failureResultOf(self.writer.submit(report(UID_A)), ApiError).value.status, 503)


class _Index:
    """
    An index whose changes the test announces.
    """

    def __init__(self, records: list[EndpointRecord]) -> None:
        self._records = {r.uid: r for r in records}
        self._observers: list[Callable[[str, EndpointRecord | None], None]] = []

    def lookup(self, uid: str) -> EndpointRecord | None:
        return self._records.get(uid)

    def records(self) -> list[EndpointRecord]:
        return list(self._records.values())

    def subscribe(self, observer: Callable[[str, EndpointRecord | None], None]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer)

    def change(self, record: EndpointRecord) -> None:
        self._records[record.uid] = record
        for observer in list(self._observers):
            observer(record.uid, record)

    def delete(self, uid: str) -> None:
        del self._records[uid]
        for observer in list(self._observers):
            observer(uid, None)


class PresenceTests(SynchronousTestCase):
    """
    L{PresenceMonitor} logs offline and online transitions at the moment
    they happen, with one timer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.events: list[EventLog] = []
        self.index = _Index(
            [
                EndpointRecord(uid=UID_A, certSerial="01", lastSeen=NOW - 2, publicIp="198.51.100.7"),
                EndpointRecord(uid=UID_B, certSerial="02", lastSeen=NOW - 100),
            ]
        )
        self.monitor = PresenceMonitor(self.index, self.clock, 10.0, "FCTEMS8825007278", self.events.append)
        self.monitor.start()
        self.addCleanup(self.monitor.stop)

    def test_offlineAtThreshold(self) -> None:
        """
        A device silent for longer than the threshold is logged offline
        once, just after the threshold; one already offline at start is
        not logged.
        """
        self.clock.advance(7.9)
        self.assertEqual(self.events, [])
        self.clock.advance(0.2)
        self.assertEqual([e.kind for e in self.events], [DEVICE_OFFLINE])
        self.assertEqual(self.events[0].uid, UID_A)
        self.assertIn("silent for 10 s", self.events[0].msg)
        self.clock.advance(100)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 0)

    def test_reportsKeepOnline(self) -> None:
        """
        A device that reports in time is never logged offline; only one
        timer is pending at a time.
        """
        for _ in range(10):
            self.clock.advance(5)
            self.index.change(attrs.evolve(self.index.lookup(UID_A), lastSeen=self.clock.seconds()))
            self.assertLessEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.events, [])

    def test_backOnline(self) -> None:
        """
        An offline device that reports again is logged online, with its
        address.
        """
        self.clock.advance(20)
        self.index.change(attrs.evolve(self.index.lookup(UID_A), lastSeen=self.clock.seconds()))
        self.index.change(attrs.evolve(self.index.lookup(UID_B), lastSeen=self.clock.seconds()))
        kinds = [(e.kind, e.uid) for e in self.events]
        self.assertEqual(kinds, [(DEVICE_OFFLINE, UID_A), (DEVICE_ONLINE, UID_A), (DEVICE_ONLINE, UID_B)])
        self.assertEqual(str(self.events[1].srcIp), "198.51.100.7")
        self.assertTrue(self.monitor.isOnline(UID_B))

    def test_deletedAndStatic(self) -> None:
        """
        Deleted devices and devices declared always online are not logged.
        """
        self.index.delete(UID_A)
        self.index.change(EndpointRecord(uid="F" * 32, certSerial="03", lastSeen=NOW, staticPresence=True))
        self.clock.advance(100)
        self.assertEqual(self.events, [])


class HelperTests(SynchronousTestCase):
    """
    The report interval and on-net addresses.
    """

    def test_interval(self) -> None:
        """
        A third of the threshold, within 1 to 60 seconds.
        """
        self.assertEqual(telemetryInterval(10), 3)
        self.assertEqual(telemetryInterval(180), 60)
        self.assertEqual(telemetryInterval(3600), 60)
        self.assertEqual(telemetryInterval(2), 1)

    def test_onNet(self) -> None:
        """
        Sources inside the on-net addresses (IPv4, IPv4-mapped IPv6) are
        on-net; others, and FQDN addresses, are not.
        """
        config = loads(
            """
config firewall address
    edit "corp"
        set subnet 10.0.0.0 255.0.0.0
    next
    edit "named"
        set type fqdn
        set fqdn "corp.example.com"
    next
end
config endpoint-control fctems
    edit 1
        set status enable
        set server "127.0.0.1"
        set serial-number "FCTEMS0000000001"
        set on-net-address "corp" "named"
    next
    edit 2
        set status enable
        set server "127.0.0.2"
        set serial-number "FCTEMS0000000002"
    next
end
"""
        )
        onNet = onNetChecker(config, config.emsConnectors[1])
        self.assertTrue(onNet("10.1.2.3"))
        self.assertTrue(onNet("::ffff:10.1.2.3"))
        for address in ("192.0.2.1", "2001:db8::1", None, "nonsense"):
            self.assertFalse(onNet(address), address)
        self.assertFalse(onNetChecker(config, config.emsConnectors[2])("10.1.2.3"))
