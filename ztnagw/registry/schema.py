# -*- test-case-name: tests.registry.test_schema -*-
"""
The SQLite registry's schema, as an ordered list of migrations.

A registry outlives the ztnagw version that created it, and later issues add
tables (EMS enrollment tokens, consumed in the same transaction that creates
a record).  So the schema is never written down as a whole: it is the result
of applying L{MIGRATIONS} in order.  The database remembers how many it has
seen in C{PRAGMA user_version}; opening a store applies the missing ones in
one transaction (all or nothing, even across a crash) and refuses a database
that has seen more than this ztnagw knows, rather than misreading it.

To change the schema, append a L{Migration} to L{MIGRATIONS} (never edit a
released one): its statements run inside the upgrade transaction, after every
earlier migration.  C{PRAGMA application_id} marks the file as a ztnagw
registry, so that another program's database is refused instead of being
written to.

Tables and columns are named like the Python attributes they hold (one
concept, one name); every table is C{STRICT}, so that a value of the wrong
type can never be stored and read back as something else.  The JSON columns
(C{macList}, C{tags}, C{facts}) are checked when read, not by C{CHECK}
constraints: SQLite's JSON functions are not allowed in a schema while
C{trusted_schema} is off, which the store insists on.
"""

from __future__ import annotations

import sqlite3

from attrs import frozen

from ztnagw.registry.exceptions import NewerSchema
from ztnagw.registry.interfaces import RegistryUnavailable

#: C{PRAGMA application_id} of a ztnagw registry: "ztna" in ASCII.
APPLICATION_ID = 0x7A746E61

#: STRICT tables need SQLite 3.37; C{RETURNING} needs 3.35.
MINIMUM_SQLITE = (3, 37, 0)


@frozen
class Migration:
    """
    One step of the schema's history.

    @ivar version: the schema version this migration produces; migrations
        are numbered 1, 2, 3... in order.
    @ivar summary: what the step adds, for logs and error messages.
    @ivar statements: SQL statements run in order inside the upgrade
        transaction.
    """

    version: int
    summary: str
    statements: tuple[str, ...]


_BOOLEAN = "INTEGER NOT NULL CHECK ({0} IN (0, 1))"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "endpoint records, their tombstones and the store generation",
        (
            # One row holding the store's change counter and how far
            # tombstones have been pruned (see SQLiteEndpointStore).
            """
            CREATE TABLE storeState (
                singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
                generation INTEGER NOT NULL CHECK (generation >= 0),
                prunedThrough INTEGER NOT NULL CHECK (prunedThrough >= 0)
            ) STRICT
            """,
            "INSERT INTO storeState (singleton, generation, prunedThrough) "
            "VALUES (1, 0, 0)",
            f"""
            CREATE TABLE endpoints (
                uid TEXT PRIMARY KEY NOT NULL
                    CHECK (length(uid) = 32 AND uid NOT GLOB '*[^0-9A-F]*'),
                certSerial TEXT NOT NULL
                    CHECK (length(certSerial) > 0
                           AND certSerial NOT GLOB '*[^0-9A-F]*'),
                emsSerial TEXT NOT NULL,
                tenantId TEXT NOT NULL,
                ip TEXT,
                mac TEXT,
                macList TEXT NOT NULL,
                publicIp TEXT,
                hostName TEXT,
                osType TEXT,
                osVersion TEXT,
                clientVersion TEXT,
                user TEXT,
                tags TEXT NOT NULL,
                facts TEXT NOT NULL,
                quarantined {_BOOLEAN.format("quarantined")},
                revoked {_BOOLEAN.format("revoked")},
                registrationStatus TEXT NOT NULL
                    CHECK (registrationStatus IN ('registered', 'unregistered')),
                onNet {_BOOLEAN.format("onNet")},
                registeredAt REAL NOT NULL,
                lastSeen REAL,
                staticPresence {_BOOLEAN.format("staticPresence")},
                generation INTEGER NOT NULL CHECK (generation > 0)
            ) STRICT
            """,
            "CREATE INDEX endpointsByGeneration ON endpoints (generation)",
            # A deleted record leaves its UID and the generation of the
            # deletion, so that a reader can learn of the deletion.
            """
            CREATE TABLE endpointTombstones (
                uid TEXT PRIMARY KEY NOT NULL,
                generation INTEGER NOT NULL CHECK (generation > 0),
                deletedAt REAL NOT NULL
            ) STRICT
            """,
            "CREATE INDEX endpointTombstonesByGeneration "
            "ON endpointTombstones (generation)",
            "CREATE INDEX endpointTombstonesByAge "
            "ON endpointTombstones (deletedAt)",
        ),
    ),
    Migration(
        2,
        "EMS enrollment tokens and their uses",
        (
            # A token's secret is never stored: only its SHA-256 (see
            # ztnagw.ems.tokens).  usesCount can never pass usesAllowed, so
            # that two enrollments racing for a token's last use cannot
            # both commit.
            """
            CREATE TABLE emsTokens (
                id TEXT PRIMARY KEY NOT NULL
                    CHECK (length(id) = 12 AND id NOT GLOB '*[^0-9a-f]*'),
                secretHash BLOB NOT NULL CHECK (length(secretHash) = 32),
                tags TEXT NOT NULL,
                user TEXT,
                uid TEXT CHECK (uid IS NULL
                    OR (length(uid) = 32 AND uid NOT GLOB '*[^0-9A-F]*')),
                usesAllowed INTEGER NOT NULL CHECK (usesAllowed >= 1),
                usesCount INTEGER NOT NULL
                    CHECK (usesCount >= 0 AND usesCount <= usesAllowed),
                createdAt REAL NOT NULL,
                expiresAt REAL,
                revokedAt REAL,
                lastUsedAt REAL,
                comment TEXT
            ) STRICT
            """,
            # Which device each use enrolled, written in the same
            # transaction as the device's record.
            """
            CREATE TABLE emsTokenUses (
                tokenId TEXT NOT NULL REFERENCES emsTokens (id) ON DELETE CASCADE,
                uid TEXT NOT NULL,
                certSerial TEXT NOT NULL,
                usedAt REAL NOT NULL,
                sourceIp TEXT
            ) STRICT
            """,
            "CREATE INDEX emsTokenUsesByToken ON emsTokenUses (tokenId)",
        ),
    ),
)

#: The schema version this ztnagw writes and understands.
LATEST_VERSION = len(MIGRATIONS)


def checkMigrations(migrations: tuple[Migration, ...]) -> None:
    """
    Refuse a migration list that is not numbered 1, 2, 3... in order (a
    mistake when appending one).

    @raise ValueError: the first out-of-place migration.
    """
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.summary!r} is numbered "
                f"{migration.version}, expected {expected}"
            )


checkMigrations(MIGRATIONS)


def _pragma(connection: sqlite3.Connection, name: str) -> int:
    return connection.execute(f"PRAGMA {name}").fetchone()[0]


def _identify(
    connection: sqlite3.Connection, path: str, migrations: tuple[Migration, ...]
) -> int:
    """
    The schema version of the database, after checking that it is a ztnagw
    registry this version can read.
    """
    applicationId = _pragma(connection, "application_id")
    version = _pragma(connection, "user_version")
    if applicationId == 0 and version == 0:
        tables = connection.execute(
            "SELECT count(*) FROM sqlite_schema"
        ).fetchone()[0]
        if tables:
            raise RegistryUnavailable(
                f"{path} is an SQLite database of another program, not a "
                "ztnagw registry; refusing to write to it"
            )
        return 0
    if applicationId != APPLICATION_ID:
        raise RegistryUnavailable(
            f"{path} is an SQLite database of another program (application "
            f"id {applicationId:#x}), not a ztnagw registry"
        )
    latest = len(migrations)
    if version > latest:
        raise NewerSchema(
            f"{path} has registry schema version {version}, newer than this "
            f"ztnagw understands (version {latest}); run the ztnagw that "
            "wrote it, or restore a backup made by this version",
            found=version,
            supported=latest,
        )
    return version


def migrate(
    connection: sqlite3.Connection,
    path: str,
    migrations: tuple[Migration, ...] = MIGRATIONS,
) -> int:
    """
    Bring the database behind C{connection} to the latest schema version,
    in one transaction.

    The connection must be in autocommit mode (C{isolation_level=None}):
    this function issues its own C{BEGIN IMMEDIATE}, so that two processes
    opening a new registry at once cannot both apply a migration.

    @param path: the database's file name, for error messages.
    @param migrations: the schema history (tests pass their own).
    @return: the schema version found before upgrading.
    @raise NewerSchema: the database is from a newer ztnagw.
    @raise RegistryUnavailable: the database belongs to another program.
    @raise sqlite3.Error: the upgrade failed; nothing was changed.
    """
    checkMigrations(migrations)
    found = _identify(connection, path, migrations)
    if found == len(migrations):
        return found
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have upgraded
        # the database since.
        before = _identify(connection, path, migrations)
        for migration in migrations[before:]:
            for statement in migration.statements:
                connection.execute(statement)
        # PRAGMA arguments cannot be bound; these are integers we control.
        connection.execute(f"PRAGMA application_id = {int(APPLICATION_ID)}")
        connection.execute(f"PRAGMA user_version = {int(len(migrations))}")
        connection.execute("COMMIT")
    except BaseException:
        # Some errors end the transaction by themselves; a second ROLLBACK
        # would then hide the real error behind "no transaction is active".
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return found
