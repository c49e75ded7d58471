"""
The seams of the endpoint registry.

Two roles, two interfaces:

  - L{IEndpointStore} is the durable store (SQLite by default).  Its methods
    block on I/O, so the daemon calls them from a thread pool, never from the
    reactor thread; the admin command calls them directly.

  - L{IEndpointIndex} is the in-memory picture of the store that the TLS
    verify callback and the access decision read.  Its lookups are dict
    lookups: they never block and never fail.

Tests swap either one for a fake.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Iterable

from zope.interface import Attribute, Interface

from ztnagw.registry.record import EndpointRecord


class RegistryUnavailable(Exception):
    """
    The store cannot be opened or read (missing, locked for too long,
    corrupt).  Callers fail closed.
    """


class UnknownEndpoint(KeyError):
    """
    No record exists for the given UID.
    """


class IEndpointStore(Interface):
    """
    Durable endpoint records.  Every change is one transaction: a reader (in
    this or another process) sees a change whole or not at all.
    """

    def get(uid: str) -> EndpointRecord | None:
        """
        The record for C{uid}, or C{None}.
        """

    def list() -> list[EndpointRecord]:
        """
        Every record, ordered by UID.
        """

    def put(record: EndpointRecord) -> EndpointRecord:
        """
        Insert or replace the record with C{record.uid}.

        @return: the record as stored (with its new generation).
        """

    def update(
        uid: str, change: Callable[[EndpointRecord], EndpointRecord]
    ) -> EndpointRecord:
        """
        Read, change and write one record in a single transaction.

        @param change: computes the new record from the current one.
        @raise UnknownEndpoint: no record for C{uid}.
        @return: the record as stored.
        """

    def delete(uid: str) -> None:
        """
        Remove the record for C{uid}.

        @raise UnknownEndpoint: no record for C{uid}.
        """

    def changesSince(
        generation: int,
    ) -> tuple[int, list[EndpointRecord], list[str]]:
        """
        What changed after C{generation}.

        @return: the store's current generation, the records written since
            (current versions), and the UIDs deleted since.
        """

    def transaction() -> ContextManager[Any]:
        """
        Run several changes, on endpoint records and on tables that other
        parts of the gateway add by schema migration (enrollment tokens),
        as one write transaction: C{with store.transaction() as t: ...}.

        Everything done through C{t} commits when the block ends normally
        and is rolled back if it raises.  See
        L{ztnagw.registry.sqlite.StoreTransaction} for what C{t} offers.
        """

    def close() -> None:
        """
        Release the store's resources.
        """


class IEndpointIndex(Interface):
    """
    The registry as the reactor thread sees it: current within a second of
    any committed change, read without blocking.
    """

    healthy = Attribute(
        "False while the store cannot be read and the index may be stale "
        "beyond its allowance; the access decision then fails closed."
    )

    def lookup(uid: str) -> EndpointRecord | None:
        """
        The current record for C{uid}, or C{None}.  Never blocks.
        """

    def records() -> Iterable[EndpointRecord]:
        """
        Every current record.
        """

    def subscribe(
        observer: Callable[[str, EndpointRecord | None], None]
    ) -> Callable[[], None]:
        """
        Call C{observer(uid, newRecordOrNone)} in the reactor thread after
        every change the index learns of (a deletion passes C{None}).

        @return: a function that removes the observer.
        """
