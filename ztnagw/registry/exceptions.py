# -*- test-case-name: tests.registry.test_sqlite,tests.registry.test_index -*-
"""
The ways an endpoint store can fail, beyond the two that
L{ztnagw.registry.interfaces} names.

The index and the admin command react differently to each: a busy or missing
store is retried and judged against the staleness allowance, a corrupt one
makes the index unhealthy at once, and a store that cannot say what changed
makes the index reload everything.  These classes let any store (SQLite now,
a networked engine later) say which case it is in.
"""

from __future__ import annotations

from ztnagw.registry.interfaces import RegistryUnavailable


class RegistryCorrupt(RegistryUnavailable):
    """
    The store's contents cannot be trusted: the file is not a database, a
    page is malformed, or a stored record does not decode.  Retrying will not
    help; an operator has to restore the registry.
    """


class NewerSchema(RegistryUnavailable):
    """
    The store was written by a newer ztnagw with a schema this version does
    not know; it is refused rather than misread.

    @ivar found: the store's schema version.
    @ivar supported: the newest version this ztnagw knows.
    """

    def __init__(self, message: str, found: int, supported: int):
        super().__init__(message)
        self.found = found
        self.supported = supported


class HistoryLost(Exception):
    """
    The store cannot list exactly what changed since the generation asked
    about: the tombstones of that period were pruned, the generation is
    newer than the store's (a restored backup), or the file was replaced.
    The caller must reload every record and compare.
    """


class InvalidRecord(ValueError):
    """
    A record was refused before it was written because one of its fields is
    malformed (the message says which); nothing was stored.
    """
