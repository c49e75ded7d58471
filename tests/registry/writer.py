"""
A separate process that writes to a registry, for the tests that need a
second writer (lost updates) or a writer killed at a random instant (crash
safety).

Run from the repository root::

    python -m tests.registry.writer PATH increment UID COUNT
    python -m tests.registry.writer PATH churn

C{increment} adds one to the C{counter} fact of UID, COUNT times, each in
its own read-modify-write transaction, then prints C{done}.

C{churn} writes forever: each transaction sets the C{counter} fact of the
three L{CHURN_UIDS} records to the next number and creates or deletes
L{CHURN_TOGGLED} (present when the number is even).  It prints C{ready},
then each number once its transaction has committed, so that whoever kills
it knows the last state that must have survived.
"""

from __future__ import annotations

import sys

import attrs

from ztnagw.registry.record import EndpointRecord
from ztnagw.registry.sqlite import SQLiteEndpointStore

#: The records C{churn} keeps equal.
CHURN_UIDS = tuple(f"{n:032X}" for n in (1, 2, 3))

#: The record C{churn} deletes and re-creates.
CHURN_TOGGLED = f"{4:032X}"


def counterOf(record: EndpointRecord) -> int:
    """
    The C{counter} fact of C{record}.
    """
    return int(record.facts["counter"])


def withCounter(record: EndpointRecord, counter: int) -> EndpointRecord:
    """
    C{record} with its C{counter} fact set to C{counter}.
    """
    return attrs.evolve(record, facts={**record.facts, "counter": str(counter)})


def increment(store: SQLiteEndpointStore, uid: str, count: int) -> None:
    """
    Add one to the counter of C{uid}, C{count} times.
    """
    for _ in range(count):
        store.update(uid, lambda r: withCounter(r, counterOf(r) + 1))


def churn(store: SQLiteEndpointStore) -> None:
    """
    Write forever (see the module docstring).
    """
    current = store.get(CHURN_UIDS[0])
    counter = 0 if current is None else counterOf(current)
    print("ready", flush=True)
    while True:
        counter += 1
        with store.transaction() as transaction:
            for uid in CHURN_UIDS:
                transaction.put(
                    withCounter(
                        EndpointRecord(uid=uid, certSerial="01", hostName="x" * 200),
                        counter,
                    )
                )
            present = transaction.get(CHURN_TOGGLED) is not None
            if counter % 2 == 0 and not present:
                transaction.put(EndpointRecord(uid=CHURN_TOGGLED, certSerial="02"))
            elif counter % 2 == 1 and present:
                transaction.delete(CHURN_TOGGLED)
        print(counter, flush=True)


def main(argv: list[str]) -> None:
    """
    Run one of the writers named in the module docstring.
    """
    store = SQLiteEndpointStore(argv[0])
    if argv[1] == "increment":
        print("ready", flush=True)
        increment(store, argv[2], int(argv[3]))
        print("done", flush=True)
    elif argv[1] == "churn":
        churn(store)
    else:
        raise SystemExit(f"unknown writer {argv[1]!r}")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
