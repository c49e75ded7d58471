# -*- test-case-name: tests.registry.test_index -*-
"""
The in-memory endpoint index the reactor thread reads.

The TLS verify callback runs inside the handshake and the access decision
runs for every request; neither may wait for a disk.  They read
L{EndpointIndex}, a dict of the current records, and this module keeps that
dict within a second of the store: a poll every C{pollInterval} seconds asks
the store, in a thread, what changed since the last generation it applied
(L{IEndpointStore.changesSince}), and applies the answer in the reactor
thread, telling subscribers (the code that ends a revoked device's live
sessions) of each change.

When the store cannot be read the index keeps serving what it has, for at
most C{stalenessAllowance} seconds; after that, or at once if the store is
found corrupt, L{EndpointIndex.healthy} is C{False} and the access decision
denies everything (fail closed) until a read succeeds again.  Each change of
that state is logged once, never once per poll.

A full reload, compared record by record with the dict, happens at start,
when the store says it cannot list the changes (L{HistoryLost}), when the
index had to reopen the store, and every C{resyncInterval} seconds as a
safety net for the one case generations cannot reveal: a backup restored
through SQLite whose generation happens to be ahead of the index.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.registry.exceptions import HistoryLost, RegistryCorrupt
from ztnagw.registry.interfaces import (
    IEndpointIndex,
    IEndpointStore,
    RegistryUnavailable,
)
from ztnagw.registry.record import EndpointRecord

#: Seconds between two polls of the store.
DEFAULT_POLL_INTERVAL = 0.25

#: Seconds the index may serve records it could not refresh.
DEFAULT_STALENESS_ALLOWANCE = 5.0

#: Seconds between two full reloads (see the module docstring).
DEFAULT_RESYNC_INTERVAL = 600.0

Observer = Callable[[str, Union[EndpointRecord, None]], None]

# What the index thinks of the store, for logging state changes.
_HEALTHY = "healthy"
_FAILING = "failing"
_STALE = "stale"
_CORRUPT = "corrupt"
_STOPPED = "stopped"


class _Read:
    """
    The result of one read of the store, computed in a thread.

    @ivar full: whether C{records} is every record (compare with the dict)
        rather than the records changed since the index's generation.
    """

    def __init__(
        self,
        full: bool,
        generation: int,
        records: list[EndpointRecord],
        deleted: list[str],
    ):
        self.full = full
        self.generation = generation
        self.records = records
        self.deleted = deleted


@implementer(IEndpointIndex)
class EndpointIndex:
    """
    The registry as the reactor thread sees it.

    Use: C{index = EndpointIndex(store, reactor)}; C{yield index.start()}
    before accepting connections; C{index.lookup(uid)} anywhere in the
    reactor thread; C{yield index.stop()} at shutdown.

    @ivar generation: the store generation the index is current with (0
        before the first load).
    """

    _log = Logger()

    def __init__(
        self,
        store: IEndpointStore | Callable[[], IEndpointStore],
        reactor: Any,
        threadpool: Any = None,
        pollInterval: float = DEFAULT_POLL_INTERVAL,
        stalenessAllowance: float = DEFAULT_STALENESS_ALLOWANCE,
        resyncInterval: float = DEFAULT_RESYNC_INTERVAL,
    ):
        """
        @param store: the store to read, or a function that opens it.  With
            a function, the index opens the store in a thread, owns it
            (closes it on L{stop}) and reopens it after a failed read, so
            that a registry restored by an operator is picked up.
        @param reactor: provides
            L{IReactorTime<twisted.internet.interfaces.IReactorTime>} and
            L{IReactorFromThreads<twisted.internet.interfaces.IReactorFromThreads>}
            (and C{getThreadPool}, when C{threadpool} is not given).
        @param threadpool: where store reads run (an object with
            C{callInThreadWithCallback}); the reactor's by default.
        @param pollInterval: seconds between polls.
        @param stalenessAllowance: seconds after the last successful read
            beyond which the index is unhealthy.
        @param resyncInterval: seconds between full reloads.
        """
        if IEndpointStore.providedBy(store):
            self._store: IEndpointStore | None = store  # type: ignore[assignment]
            self._storeFactory: Callable[[], IEndpointStore] | None = None
        else:
            self._store = None
            self._storeFactory = store  # type: ignore[assignment]
        self._reactor = reactor
        self._threadpool = threadpool
        self._pollInterval = pollInterval
        self._allowance = stalenessAllowance
        self._resyncInterval = resyncInterval

        self._records: dict[str, EndpointRecord] = {}
        self._observers: list[Observer] = []
        self.generation = 0

        self._running = False
        self._started: Deferred[None] | None = None
        self._timer: Any = None
        self._reading = False
        self._readWaiters: list[Deferred[None]] = []
        self._needFullLoad = True
        self._lastSuccess: float | None = None
        self._lastFullLoad: float | None = None
        self._lastFailure: Failure | None = None
        self._corrupt = False
        self._state = _STOPPED

    # IEndpointIndex

    @property
    def healthy(self) -> bool:
        """
        C{False} before the first load, after L{stop}, while the store is
        corrupt, and once the last successful read is older than the
        staleness allowance.
        """
        if not self._running or self._corrupt or self._lastSuccess is None:
            return False
        return self._reactor.seconds() - self._lastSuccess <= self._allowance

    def lookup(self, uid: str) -> EndpointRecord | None:
        """
        The current record for C{uid}, or C{None}.  A dict lookup.
        """
        return self._records.get(uid)

    def records(self) -> Iterable[EndpointRecord]:
        """
        Every current record (a snapshot: later changes do not alter it).
        """
        return list(self._records.values())

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """
        Call C{observer(uid, newRecordOrNone)} in the reactor thread after
        every change the index applies, including the records of the first
        load.  An exception from an observer is logged and does not stop
        the others.

        @return: a function that removes the observer (calling it again
            does nothing).
        """
        self._observers.append(observer)

        def unsubscribe() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return unsubscribe

    # Life cycle

    def start(self) -> Deferred[None]:
        """
        Load every record, then keep polling.

        @return: a Deferred that fires with C{None} after the first full
            load, or fails with the store's error (L{RegistryUnavailable}
            and its kinds) if that load fails, in which case the index does
            not poll: a gateway must not start without its registry.
        """
        if self._running:
            raise RuntimeError("the endpoint index is already running")
        self._running = True
        self._started = Deferred()
        started = self._started
        self._tick()
        return started

    def stop(self) -> Deferred[None]:
        """
        Stop polling.  A pending L{start} fails with L{CancelledError}.

        @return: a Deferred that fires once no read is in progress any more
            and, if the index opened the store, the store is closed.
        """
        self._running = False
        self._setState(_STOPPED)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._started is not None:
            started, self._started = self._started, None
            started.errback(Failure(CancelledError("the endpoint index stopped")))
        finished: Deferred[None] = Deferred()
        if self._reading:
            self._readWaiters.append(finished)
        else:
            finished.callback(None)
        if self._storeFactory is not None:
            finished.addCallback(lambda _: self._inThread(self._closeStore))
        return finished

    # Polling

    def _pool(self) -> Any:
        if self._threadpool is None:
            self._threadpool = self._reactor.getThreadPool()
        return self._threadpool

    def _inThread(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._pool(), function, *args)

    def _tick(self) -> None:
        """
        One poll: judge staleness, start a read unless one is still in
        progress, and schedule the next poll.
        """
        self._timer = None
        if not self._running:
            return
        self._judge()
        if not self._reading:
            now = self._reactor.seconds()
            full = self._needFullLoad or (
                self._lastFullLoad is not None
                and now - self._lastFullLoad >= self._resyncInterval
            )
            self._reading = True
            d = self._inThread(self._readStore, self.generation, full)
            d.addCallbacks(
                self._readSucceeded,
                self._readFailed,
                callbackArgs=(now,),
                errbackArgs=(now,),
            )
            d.addBoth(self._readFinished)
        if self._running:
            self._timer = self._reactor.callLater(self._pollInterval, self._tick)

    def _readStore(self, generation: int, full: bool) -> _Read:
        """
        Ask the store what changed.  Runs in a thread: the only code here
        that touches the store, apart from L{_closeStore}.
        """
        if self._store is None:
            assert self._storeFactory is not None
            self._store = self._storeFactory()
            full = True
        try:
            if not full and generation:
                try:
                    return _Read(False, *self._store.changesSince(generation))
                except HistoryLost:
                    pass
            return _Read(True, *self._store.changesSince(0))
        except BaseException:
            if self._storeFactory is not None:
                # Reopen on the next poll: an operator may have repaired or
                # restored the registry.
                self._closeStore()
            raise

    def _closeStore(self) -> None:
        """
        Close a store the index opened.  Runs in a thread (closing may
        checkpoint the write-ahead log).
        """
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                self._log.failure("Closing the endpoint registry failed")

    def _readSucceeded(self, read: _Read, startedAt: float) -> None:
        if not self._running:
            return
        if read.full:
            changes = self._replaceAll(read.records)
            self._lastFullLoad = startedAt
            self._needFullLoad = False
        else:
            changes = self._applyChanges(read.records, read.deleted)
        self.generation = read.generation
        self._lastSuccess = startedAt
        self._lastFailure = None
        self._corrupt = False
        self._judge()
        self._notify(changes)
        if self._started is not None:
            started, self._started = self._started, None
            self._log.info(
                "Loaded {count} endpoint records (generation {generation})",
                count=len(self._records),
                generation=self.generation,
            )
            started.callback(None)

    def _readFailed(self, failure: Failure, startedAt: float) -> None:
        if not self._running:
            return
        if self._storeFactory is not None:
            self._needFullLoad = True
        if self._started is not None:
            # No first load: refuse to start rather than serve nothing.
            started, self._started = self._started, None
            self._running = False
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self._log.critical(
                "Cannot load the endpoint registry: {error}",
                error=failure.getErrorMessage(),
            )
            started.errback(failure)
            return
        unexpected = not failure.check(RegistryUnavailable)
        previous = self._lastFailure
        if unexpected and (previous is None or previous.type is not failure.type):
            # A bug, not an outage: worth a traceback, but once, not per poll.
            self._log.failure(
                "Unexpected error reading the endpoint registry", failure
            )
        self._lastFailure = failure
        if failure.check(RegistryCorrupt):
            self._corrupt = True
        self._judge()

    def _readFinished(self, result: object) -> None:
        self._reading = False
        waiters, self._readWaiters = self._readWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Applying changes

    def _applyChanges(
        self, written: list[EndpointRecord], deleted: list[str]
    ) -> list[tuple[str, EndpointRecord | None]]:
        changes: list[tuple[str, EndpointRecord | None]] = []
        for record in written:
            self._records[record.uid] = record
            changes.append((record.uid, record))
        for uid in deleted:
            if self._records.pop(uid, None) is not None:
                changes.append((uid, None))
        return changes

    def _replaceAll(
        self, everything: list[EndpointRecord]
    ) -> list[tuple[str, EndpointRecord | None]]:
        changes: list[tuple[str, EndpointRecord | None]] = []
        fresh = {record.uid: record for record in everything}
        for uid in [uid for uid in self._records if uid not in fresh]:
            del self._records[uid]
            changes.append((uid, None))
        for uid, record in fresh.items():
            if self._records.get(uid) != record:
                self._records[uid] = record
                changes.append((uid, record))
        return changes

    def _notify(self, changes: list[tuple[str, EndpointRecord | None]]) -> None:
        # Observers run after the whole batch is applied, so that one that
        # looks at other records sees a consistent picture.
        for uid, record in changes:
            for observer in list(self._observers):
                try:
                    observer(uid, record)
                except Exception:
                    self._log.failure(
                        "Endpoint index observer {observer!r} failed for {uid}",
                        observer=observer,
                        uid=uid,
                    )

    # Health

    def _judge(self) -> None:
        """
        Work out the index's state from the last read and the clock, and
        log it if it changed.
        """
        if not self._running or self._lastSuccess is None:
            return
        age = self._reactor.seconds() - self._lastSuccess
        if self._corrupt:
            state = _CORRUPT
        elif age > self._allowance:
            state = _STALE
        elif self._lastFailure is not None:
            state = _FAILING
        else:
            state = _HEALTHY
        self._setState(state, age)

    def _setState(self, state: str, age: float = 0.0) -> None:
        previous, self._state = self._state, state
        if state == previous:
            return
        error = (
            self._lastFailure.getErrorMessage()
            if self._lastFailure is not None
            else "a read of the registry has not finished"
        )
        if state == _FAILING:
            self._log.warn(
                "Cannot read the endpoint registry ({error}); serving records "
                "read {age:.1f} s ago for up to {allowance:g} s",
                error=error,
                age=age,
                allowance=self._allowance,
            )
        elif state == _STALE:
            self._log.error(
                "The endpoint registry has not been read for {age:.1f} s "
                "({error}); every device is denied until it can be read",
                error=error,
                age=age,
            )
        elif state == _CORRUPT:
            self._log.critical(
                "The endpoint registry is damaged ({error}); every device is "
                "denied until it is restored",
                error=error,
            )
        elif state == _HEALTHY and previous != _STOPPED:
            self._log.info(
                "The endpoint registry can be read again: {count} records, "
                "generation {generation}",
                count=len(self._records),
                generation=self.generation,
            )

