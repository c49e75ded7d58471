# -*- test-case-name: tests.ems.test_telemetry -*-
"""
Telemetry: devices reporting in, kept online, and their facts recorded.

An enrolled device's agent reports every few seconds
(C{POST /api/v1/telemetry} over mutual TLS, see C{docs/ems.md}).  Each
report refreshes the device's record: C{lastSeen} (what keeps it online,
L{EndpointRecord.isOnline}), the public address the EMS saw it come from,
whether that address is on-net (the C{fctems} C{on-net-address}
extension), and the facts it reported, which tagging rules read.

Two things are kept cheap, because an EMS with 10,000 devices reporting
every minute receives about 170 reports a second:

  - L{TelemetryWriter} batches reports: they wait (at most
    C{flushInterval}) and are written together, one transaction per batch
    in a thread, never in the reactor thread; a device that reports twice
    in one batch is written once.  Each report's answer waits for its
    batch to commit, so an answer of success means the report is stored.

  - L{PresenceMonitor} logs a device's going offline and coming back
    without polling every record: it keeps a heap of the moments devices
    go silent too long, fed by the registry index's change notifications,
    and wakes up only at the next such moment.
"""

from __future__ import annotations

import heapq
import ipaddress
from typing import Any, Callable

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from ztnagw.ems.api import ApiError, DeviceReport
from ztnagw.ems.enrollment import recordFromReport
from ztnagw.logs.entries import DEVICE_OFFLINE, DEVICE_ONLINE, EventLog
from ztnagw.registry.exceptions import InvalidRecord
from ztnagw.registry.interfaces import IEndpointIndex, IEndpointStore, RegistryUnavailable
from ztnagw.registry.record import REGISTERED, EndpointRecord

__all__ = [
    "PresenceMonitor",
    "Report",
    "TelemetryWriter",
    "onNetChecker",
    "telemetryInterval",
]

_log = Logger()


def telemetryInterval(outOfSyncThreshold: float) -> int:
    """
    How often an EMS asks devices to report: a third of its
    C{out-of-sync-threshold} (so that two lost reports do not make a device
    offline), between 1 and 60 seconds.
    """
    return int(max(1, min(60, outOfSyncThreshold // 3)))


def onNetChecker(config: Any, ems: Any) -> Callable[[str | None], bool]:
    """
    Whether a source address is on-net for EMS C{ems}: inside one of its
    C{on-net-address} addresses or groups (FQDN addresses count as empty).

    @param config: the gateway configuration.
    @param ems: the C{fctems} entry.
    """
    names = tuple(getattr(ems, "onNetAddress", ()))
    if not names:
        return lambda address: False
    addresses = config.addressSet(names)
    unresolved = {fqdn: () for fqdn in addresses.fqdns()}

    def onNet(address: str | None) -> bool:
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is None:
                return False
            ip = ip.ipv4_mapped
        return bool(addresses.contains(ip, unresolved))

    return onNet


@frozen
class Report:
    """
    One telemetry report, checked and ready to be written.

    @ivar uid: the reporting device (from its certificate).
    @ivar certSerial: the serial of the certificate it presented: the
        report is written only while the record still has this serial.
    @ivar device: what it reported.
    @ivar sourceIp: the address it reported from.
    @ivar onNet: whether that address is on-net.
    @ivar receivedAt: when the report arrived (POSIX seconds).
    """

    uid: str
    certSerial: str
    device: DeviceReport
    sourceIp: str | None
    onNet: bool
    receivedAt: float


def _apply(store: IEndpointStore, batch: dict[str, Report]) -> dict[str, EndpointRecord | ApiError]:
    """
    Write a batch of reports in one transaction.  Runs in a thread.

    A report for a device that was deleted, revoked or re-enrolled with
    another certificate since its connection was judged is not written; its
    outcome is the refusal.
    """
    outcomes: dict[str, EndpointRecord | ApiError] = {}
    with store.transaction() as transaction:
        for uid, report in batch.items():
            current = transaction.get(uid)
            if current is None or current.registrationStatus != REGISTERED:
                outcomes[uid] = ApiError(
                    403, "device-refused", f"device {uid} is not in the registry", ztnaCode="066"
                )
            elif current.certSerial != report.certSerial:
                outcomes[uid] = ApiError(
                    403,
                    "device-refused",
                    f"the certificate presented is not device {uid}'s current one",
                    ztnaCode="001",
                )
            elif current.revoked:
                outcomes[uid] = ApiError(
                    403, "device-refused", f"the certificate of device {uid} is revoked", ztnaCode="063"
                )
            else:
                updated = recordFromReport(
                    current, report.device, report.sourceIp, report.onNet, report.receivedAt
                )
                try:
                    outcomes[uid] = transaction.put(updated)
                except InvalidRecord as e:
                    outcomes[uid] = ApiError(400, "bad-request", f"the report cannot be recorded: {e}")
    return outcomes


class TelemetryWriter:
    """
    Writes telemetry reports to the registry in batches.

    Use: L{submit} each checked report; the Deferred fires with the stored
    record once its batch committed, or fails with an L{ApiError}.
    """

    def __init__(
        self,
        reactor: Any,
        store: Callable[[], IEndpointStore | None],
        threadpool: Any = None,
        flushInterval: float = 1.0,
        maxBatch: int = 1000,
    ) -> None:
        """
        @param reactor: provides C{IReactorTime} and C{IReactorFromThreads}
            (and C{getThreadPool} when C{threadpool} is not given).
        @param store: returns the open store, or C{None} while it is not
            open (reports then fail with 503).
        @param threadpool: where writes run.
        @param flushInterval: the longest a report waits for its batch.
        @param maxBatch: a batch this large is written at once.
        """
        self._reactor = reactor
        self._store = store
        self._threadpool = threadpool
        self._flushInterval = flushInterval
        self._maxBatch = maxBatch
        self._pending: dict[str, tuple[Report, list[Deferred[EndpointRecord]]]] = {}
        self._timer: Any = None
        self._writing: Deferred[None] | None = None
        self._stopped = False
        #: How many batches and reports were written, for tests and stats.
        self.batches = 0
        self.written = 0

    def submit(self, report: Report) -> Deferred[EndpointRecord]:
        """
        Queue C{report} for the next batch.
        """
        d: Deferred[EndpointRecord] = Deferred()
        if self._stopped:
            d.errback(Failure(ApiError(503, "unavailable", "the EMS is shutting down")))
            return d
        previous = self._pending.get(report.uid)
        waiters = previous[1] if previous is not None else []
        waiters.append(d)
        self._pending[report.uid] = (report, waiters)
        if len(self._pending) >= self._maxBatch:
            self._flushSoon(0)
        else:
            self._flushSoon(self._flushInterval)
        return d

    def _flushSoon(self, delay: float) -> None:
        if self._writing is not None:
            return
        if self._timer is not None:
            if delay > 0:
                return
            self._timer.cancel()
        self._timer = self._reactor.callLater(delay, self._flush)

    def _pool(self) -> Any:
        if self._threadpool is None:
            self._threadpool = self._reactor.getThreadPool()
        return self._threadpool

    def _flush(self) -> Deferred[None] | None:
        self._timer = None
        if not self._pending or self._writing is not None:
            return self._writing
        batch, self._pending = self._pending, {}
        reports = {uid: report for uid, (report, _) in batch.items()}
        store = self._store()
        if store is None:
            self._settle(batch, Failure(ApiError(503, "registry-unavailable", "the registry is not open yet")))
            return None
        d = deferToThreadPool(self._reactor, self._pool(), _apply, store, reports)

        def written(outcomes: dict[str, EndpointRecord | ApiError]) -> None:
            self.batches += 1
            for uid, (_, waiters) in batch.items():
                outcome = outcomes[uid]
                for waiter in waiters:
                    if isinstance(outcome, ApiError):
                        waiter.errback(Failure(outcome))
                    else:
                        self.written += 1
                        waiter.callback(outcome)

        def failed(reason: Failure) -> None:
            if reason.check(RegistryUnavailable):
                _log.warn("Cannot record telemetry: {error}", error=reason.getErrorMessage())
            else:
                _log.failure("Recording telemetry failed", reason)
            self._settle(
                batch,
                Failure(ApiError(503, "registry-unavailable", "the registry cannot be written now", retryAfter=5)),
            )

        def done(result: object) -> None:
            self._writing = None
            if self._pending:
                self._flushSoon(0 if len(self._pending) >= self._maxBatch else self._flushInterval)

        self._writing = d.addCallbacks(written, failed).addBoth(done)
        return self._writing

    def _settle(self, batch: dict[str, tuple[Report, list[Deferred[EndpointRecord]]]], failure: Failure) -> None:
        for _, waiters in batch.values():
            for waiter in waiters:
                waiter.errback(failure)

    def stop(self) -> Deferred[None]:
        """
        Write what is pending and refuse new reports.

        @return: fires when the last batch is written.
        """
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        finished: Deferred[None] = Deferred()

        def drain(_: object = None) -> None:
            if self._writing is not None:
                self._writing.addBoth(drain)
            elif self._pending:
                self._flush()
                drain()
            else:
                finished.callback(None)

        drain()
        return finished


class PresenceMonitor:
    """
    Logs devices going offline (silent longer than C{out-of-sync-threshold})
    and coming back online, from the registry index's notifications and
    one timer.

    Devices found offline when the monitor starts are not logged: only
    transitions it sees are.
    """

    def __init__(
        self,
        index: IEndpointIndex,
        clock: IReactorTime,
        threshold: float,
        emsSerial: str,
        emit: Callable[[EventLog], None],
    ) -> None:
        """
        @param index: the EMS's registry index.
        @param clock: the reactor.
        @param threshold: C{out-of-sync-threshold}.
        @param emsSerial: for the events' C{clientdeviceems}.
        @param emit: writes an event log entry.
        """
        self._index = index
        self._clock = clock
        self._threshold = threshold
        self._emsSerial = emsSerial
        self._emit = emit
        self._online: dict[str, bool] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._timer: Any = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        """
        Learn the current records and follow their changes.
        """
        now = self._clock.seconds()
        for record in self._index.records():
            self._track(record, now)
        self._unsubscribe = self._index.subscribe(self._changed)
        self._schedule()

    def stop(self) -> None:
        """
        Stop following changes.
        """
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def isOnline(self, uid: str) -> bool | None:
        """
        What the monitor last concluded about C{uid} (C{None}: unknown).
        """
        return self._online.get(uid)

    def _track(self, record: EndpointRecord, now: float) -> bool:
        online = record.isOnline(now, self._threshold)
        self._online[record.uid] = online
        if online and not record.staticPresence and record.lastSeen is not None:
            heapq.heappush(self._deadlines, (record.lastSeen + self._threshold, record.uid))
        return online

    def _changed(self, uid: str, record: EndpointRecord | None) -> None:
        if record is None:
            self._online.pop(uid, None)
            return
        was = self._online.get(uid)
        online = self._track(record, self._clock.seconds())
        if was is False and online:
            self._emit(
                EventLog(
                    DEVICE_ONLINE,
                    msg=f"device {uid} reported telemetry again",
                    uid=uid,
                    emsSerial=self._emsSerial,
                    srcIp=_address(record.publicIp),
                    hostname=record.hostName,
                    user=record.user,
                )
            )
        self._schedule()

    def _schedule(self) -> None:
        if self._unsubscribe is None or not self._deadlines:
            return
        # A small margin: isOnline still holds at the deadline itself.
        delay = max(0.0, self._deadlines[0][0] - self._clock.seconds()) + 0.01
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self._clock.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        while self._deadlines and self._deadlines[0][0] < now:
            _, uid = heapq.heappop(self._deadlines)
            record = self._index.lookup(uid)
            if record is None or not self._online.get(uid):
                continue
            if record.isOnline(now, self._threshold):
                # A newer report moved the deadline; its own entry waits in
                # the heap.
                continue
            self._online[uid] = False
            silence = "never reported" if record.lastSeen is None else (
                f"silent for {now - record.lastSeen:.0f} s"
            )
            self._emit(
                EventLog(
                    DEVICE_OFFLINE,
                    msg=f"device {uid} is offline: {silence} (out-of-sync-threshold "
                    f"{self._threshold:g} s)",
                    uid=uid,
                    emsSerial=self._emsSerial,
                    hostname=record.hostName,
                    user=record.user,
                )
            )
        self._schedule()


def _address(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text
