# -*- test-case-name: tests.ems.test_stores -*-
"""
One registry connection per file in the daemon, shared by the registry
index and the EMS listener.

The daemon reads an EMS's registry (the index, polling in a thread) and
writes it (enrollment and telemetry, in threads).  Two
L{ztnagw.registry.sqlite.SQLiteEndpointStore}s on one file in one process
would be unsafe: opening a store opens and closes a file descriptor on the
database (to create it with the right mode), and closing any descriptor of
a file drops every POSIX lock the process holds on it, including those
SQLite's other connection holds to tell other processes it is there.  An
admin command closing its own connection then believes it is the last
user, checkpoints and deletes the write-ahead log under the daemon, whose
later writes go to a deleted file and are lost.

L{SharedStore} avoids that: every user in the process borrows the same
store (L{SharedStore.acquire}); the file is opened when the first user
needs it and closed when the last one gives it back, so a store is only
ever opened while no other connection of this process is open.  The
registry index takes C{shared.acquire} as its store factory, so that its
own close-and-reopen after a failed read keeps working.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, ContextManager

from zope.interface import implementer

from ztnagw.registry.interfaces import IEndpointStore
from ztnagw.registry.record import EndpointRecord

__all__ = ["SharedStore"]


class SharedStore:
    """
    A store opened once per process and lent to several users.

    @ivar users: how many borrowed stores are not given back.
    """

    def __init__(self, openStore: Callable[[], IEndpointStore]) -> None:
        """
        @param openStore: opens the store (blocks; called in the thread of
            the first L{acquire}).
        """
        self._openStore = openStore
        self._lock = threading.Lock()
        self._store: IEndpointStore | None = None
        self.users = 0

    def acquire(self) -> IEndpointStore:
        """
        Borrow the store, opening it if nobody holds it.  Blocks.

        @return: a store whose C{close} gives it back.
        @raise ztnagw.registry.interfaces.RegistryUnavailable: it cannot be
            opened.
        """
        with self._lock:
            if self._store is None:
                self._store = self._openStore()
            self.users += 1
            return _Borrowed(self, self._store)

    def _release(self) -> None:
        with self._lock:
            self.users -= 1
            if self.users == 0 and self._store is not None:
                store, self._store = self._store, None
                store.close()


@implementer(IEndpointStore)
class _Borrowed:
    """
    A borrowed store: every call goes to the shared one, and L{close} gives
    it back (once).
    """

    def __init__(self, owner: SharedStore, store: IEndpointStore) -> None:
        self._owner = owner
        self._store: IEndpointStore | None = store

    def _use(self) -> IEndpointStore:
        store = self._store
        if store is None:
            from ztnagw.registry.interfaces import RegistryUnavailable

            raise RegistryUnavailable("this registry connection was closed")
        return store

    def get(self, uid: str) -> EndpointRecord | None:
        """
        @see: L{IEndpointStore.get}
        """
        return self._use().get(uid)

    def list(self) -> list[EndpointRecord]:
        """
        @see: L{IEndpointStore.list}
        """
        return self._use().list()

    def put(self, record: EndpointRecord) -> EndpointRecord:
        """
        @see: L{IEndpointStore.put}
        """
        return self._use().put(record)

    def update(self, uid: str, change: Callable[[EndpointRecord], EndpointRecord]) -> EndpointRecord:
        """
        @see: L{IEndpointStore.update}
        """
        return self._use().update(uid, change)

    def delete(self, uid: str) -> None:
        """
        @see: L{IEndpointStore.delete}
        """
        self._use().delete(uid)

    def changesSince(self, generation: int) -> tuple[int, list[EndpointRecord], list[str]]:
        """
        @see: L{IEndpointStore.changesSince}
        """
        return self._use().changesSince(generation)

    def transaction(self) -> ContextManager[Any]:
        """
        @see: L{IEndpointStore.transaction}
        """
        return self._use().transaction()

    def close(self) -> None:
        """
        Give the store back; closing again does nothing.
        """
        if self._store is not None:
            self._store = None
            self._owner._release()
