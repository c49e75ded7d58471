"""
Test doubles for the registry index tests: a reactor that can run code "from
a thread", a thread pool that runs work when the test says so, and a store
that fails on demand.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from zope.interface import implementer

from ztnagw.registry.interfaces import IEndpointStore
from ztnagw.registry.record import EndpointRecord


class ThreadingMemoryReactorClock(MemoryReactorClock):
    """
    A L{MemoryReactorClock} that also provides C{callFromThread}; with
    L{FakeThreadPool}, "threads" run in the test's own thread, so the call is
    made at once.
    """

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """
        Call C{f} now.
        """
        f(*args, **kwargs)


class FakeThreadPool:
    """
    A thread pool whose work runs in the calling thread: at once when
    C{synchronous}, else when the test calls L{runOne}.

    @ivar pending: work submitted and not run yet.
    @ivar inThread: whether work of this pool is running now, so that a
        store can check that it is only used from the pool.
    """

    def __init__(self, synchronous: bool = True):
        self.synchronous = synchronous
        self.pending: list[tuple[Callable[..., Any], Callable[..., Any], tuple, dict]] = []
        self.inThread = False

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """
        Submit C{f(*args, **kwargs)}; C{onResult(success, resultOrFailure)}
        is called when it has run.
        """
        self.pending.append((onResult, f, args, kwargs))
        if self.synchronous:
            self.runAll()

    def runOne(self) -> None:
        """
        Run the oldest pending work.
        """
        onResult, f, args, kwargs = self.pending.pop(0)
        self.inThread = True
        try:
            result = f(*args, **kwargs)
        except BaseException:
            failure = Failure()
            self.inThread = False
            onResult(False, failure)
        else:
            self.inThread = False
            onResult(True, result)

    def runAll(self) -> None:
        """
        Run pending work until none is left.
        """
        while self.pending:
            self.runOne()


@implementer(IEndpointStore)
class FlakyStore:
    """
    A store that delegates to a real one, but raises L{failure} from every
    call while it is set, and insists on being used from C{pool}.

    @ivar failure: the exception to raise, or C{None} to work.
    @ivar closed: whether L{close} was called.
    """

    def __init__(self, store: IEndpointStore, pool: FakeThreadPool | None = None):
        self._store = store
        self._pool = pool
        self.failure: BaseException | None = None
        self.closed = False
        self.calls = 0

    def _enter(self) -> None:
        if self._pool is not None and not self._pool.inThread:
            raise AssertionError("the store was used outside the thread pool")
        self.calls += 1
        if self.failure is not None:
            raise self.failure

    def get(self, uid: str) -> EndpointRecord | None:
        """
        Delegate to the real store, unless failing.
        """
        self._enter()
        return self._store.get(uid)

    def list(self) -> list[EndpointRecord]:
        """
        Delegate to the real store, unless failing.
        """
        self._enter()
        return self._store.list()

    def put(self, record: EndpointRecord) -> EndpointRecord:
        """
        Delegate to the real store, unless failing.
        """
        self._enter()
        return self._store.put(record)

    def update(self, uid: str, change: Callable[[EndpointRecord], EndpointRecord]) -> EndpointRecord:
        """
        Delegate to the real store, unless failing.
        """
        self._enter()
        return self._store.update(uid, change)

    def delete(self, uid: str) -> None:
        """
        Delegate to the real store, unless failing.
        """
        self._enter()
        self._store.delete(uid)

    def changesSince(self, generation: int) -> tuple[int, list[EndpointRecord], list[str]]:
        """
        Delegate to the real store, unless failing.
        """
        self._enter()
        return self._store.changesSince(generation)

    def close(self) -> None:
        """
        Remember that the store was closed (the real one stays open).
        """
        self.closed = True
