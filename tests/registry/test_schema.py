"""
Tests for L{ztnagw.registry.schema}: versioned migrations of the registry.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.registry.exceptions import NewerSchema
from ztnagw.registry.interfaces import RegistryUnavailable
from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.schema import (
    APPLICATION_ID,
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    checkMigrations,
    migrate,
)
from ztnagw.registry.sqlite import SQLiteEndpointStore

#: A migration a later issue might append.
TOKENS = Migration(
    LATEST_VERSION + 1,
    "enrollment tokens",
    (
        "CREATE TABLE enrollmentTokens (tokenHash TEXT PRIMARY KEY, "
        "uid TEXT REFERENCES endpoints (uid)) STRICT",
        "CREATE INDEX enrollmentTokensByUid ON enrollmentTokens (uid)",
    ),
)


def pragma(path: str, name: str) -> int:
    """
    Read an integer PRAGMA of the database at C{path}.
    """
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        connection.close()


def tables(path: str) -> set[str]:
    """
    The names of the tables in the database at C{path}.
    """
    connection = sqlite3.connect(path)
    try:
        return {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'"
            )
        }
    finally:
        connection.close()


class MigrationListTests(SynchronousTestCase):
    """
    The list of migrations itself.
    """

    def test_numbered(self) -> None:
        """
        The shipped migrations are numbered 1, 2, 3... and the latest
        version is their count.
        """
        checkMigrations(MIGRATIONS)
        self.assertEqual(
            [m.version for m in MIGRATIONS], list(range(1, LATEST_VERSION + 1))
        )

    def test_misnumbered(self) -> None:
        """
        A list with a gap or a duplicate is refused, naming the culprit.
        """
        gap = MIGRATIONS + (Migration(LATEST_VERSION + 2, "gap", ()),)
        error = self.assertRaises(ValueError, checkMigrations, gap)
        self.assertIn("'gap'", str(error))
        self.assertRaises(ValueError, checkMigrations, MIGRATIONS + MIGRATIONS)


class MigrateTests(SynchronousTestCase):
    """
    Applying migrations when a store opens.
    """

    def setUp(self) -> None:
        self.path = os.path.join(os.path.abspath(self.mktemp()), "r.sqlite")
        os.mkdir(os.path.dirname(self.path))

    def connect(self) -> sqlite3.Connection:
        """
        An autocommit connection to the test database.
        """
        connection = sqlite3.connect(self.path, isolation_level=None)
        self.addCleanup(connection.close)
        return connection

    def test_fresh(self) -> None:
        """
        An empty database gets every migration, the latest version and the
        ztnagw application id.
        """
        self.assertEqual(migrate(self.connect(), self.path), 0)
        self.assertEqual(pragma(self.path, "user_version"), LATEST_VERSION)
        self.assertEqual(pragma(self.path, "application_id"), APPLICATION_ID)
        self.assertTrue({"endpoints", "endpointTombstones", "storeState"} <= tables(self.path))

    def test_current(self) -> None:
        """
        A current database is left alone.
        """
        connection = self.connect()
        migrate(connection, self.path)
        self.assertEqual(migrate(connection, self.path), LATEST_VERSION)
        self.assertFalse(connection.in_transaction)

    def test_upgrade(self) -> None:
        """
        Opening a registry with a longer migration list applies only the new
        migrations and keeps every record.
        """
        store = SQLiteEndpointStore(self.path)
        stored = store.put(EndpointRecord(uid="A" * 32, certSerial="01"))
        store.close()
        store = SQLiteEndpointStore(self.path, migrations=MIGRATIONS + (TOKENS,))
        self.addCleanup(store.close)
        self.assertEqual(store.get("A" * 32), stored)
        self.assertEqual(pragma(self.path, "user_version"), LATEST_VERSION + 1)
        self.assertIn("enrollmentTokens", tables(self.path))

    def test_failedUpgrade(self) -> None:
        """
        A migration that fails leaves the database as it was: no statement
        of the failed upgrade remains and the version is unchanged.
        """
        SQLiteEndpointStore(self.path).close()
        broken = Migration(
            LATEST_VERSION + 1,
            "broken",
            ("CREATE TABLE halfway (x) STRICT", "CREATE TABLE nonsense ("),
        )
        self.assertRaises(
            RegistryUnavailable,
            SQLiteEndpointStore,
            self.path,
            migrations=MIGRATIONS + (broken,),
        )
        self.assertEqual(pragma(self.path, "user_version"), LATEST_VERSION)
        self.assertNotIn("halfway", tables(self.path))

    def test_newer(self) -> None:
        """
        A registry written by a newer ztnagw is refused with a message that
        gives both versions.
        """
        store = SQLiteEndpointStore(self.path, migrations=MIGRATIONS + (TOKENS,))
        store.close()
        error = self.assertRaises(NewerSchema, SQLiteEndpointStore, self.path)
        self.assertEqual((error.found, error.supported), (LATEST_VERSION + 1, LATEST_VERSION))
        self.assertIn(f"version {LATEST_VERSION + 1}", str(error))
        self.assertIn(self.path, str(error))
        self.assertIsInstance(error, RegistryUnavailable)

    def test_otherApplication(self) -> None:
        """
        A database marked with another application id is refused.
        """
        connection = self.connect()
        connection.execute("PRAGMA application_id = 1234")
        error = self.assertRaises(RegistryUnavailable, migrate, connection, self.path)
        self.assertIn("another program", str(error))
        self.assertEqual(pragma(self.path, "user_version"), 0)
