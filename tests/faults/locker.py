"""
Hold a write lock on an SQLite registry for a while, as another writer
(an admin command in a long transaction, a backup tool) would.

    python -m tests.faults.locker REGISTRY SECONDS

Prints C{locked} once the lock is held, then holds it (C{BEGIN EXCLUSIVE}:
no other connection can write; in WAL mode readers still read) for
C{SECONDS} and commits.
"""

from __future__ import annotations

import sqlite3
import sys
import time


def main() -> None:
    """
    Lock, report, wait, release.
    """
    path, seconds = sys.argv[1], float(sys.argv[2])
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()
    print("released", flush=True)


if __name__ == "__main__":
    main()
