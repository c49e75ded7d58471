"""
What the results table of C{docs/security.md} says about each attack test,
and the measurements tests hand to it.

Every attack test is decorated with L{attack}, which records the row the
table shows for it (area, attack, expected behaviour).  The table is made
by L{tests.security.report} from an actual run: the rows come from the
tests trial ran, the results from trial's outcome, the measurements from
L{measure}.  Nothing here is typed into the table by hand.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, TypeVar

from attrs import frozen

__all__ = ["RESULTS_ENVIRONMENT", "Attack", "attack", "attackOf", "measure"]

#: The environment variable that names the file measurements are appended
#: to (one JSON object per line); unset, measurements are not kept.
RESULTS_ENVIRONMENT = "ZTNAGW_SECURITY_MEASUREMENTS"

#: The areas of the table, in its order.
AREAS = ("certificates", "registry", "http", "paths", "tunnel", "exhaustion", "enrollment", "local")

_F = TypeVar("_F", bound=Callable[..., Any])


@frozen
class Attack:
    """
    One row of the results table.

    @ivar area: one of L{AREAS}.
    @ivar attack: what the attacker does.
    @ivar expected: what the gateway must do.
    """

    area: str
    attack: str
    expected: str


def attack(area: str, what: str, expected: str) -> Callable[[_F], _F]:
    """
    Mark a test method as an attack test with its row of the table.

    @raise ValueError: C{area} is not one of L{AREAS}.
    """
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}")

    def mark(method: _F) -> _F:
        method.ztnagwAttack = Attack(area, what, expected)  # type: ignore[attr-defined]
        return method

    return mark


def attackOf(method: object) -> Attack | None:
    """
    The row of an attack test method, or C{None} for another method.
    """
    found = getattr(method, "ztnagwAttack", None)
    return found if isinstance(found, Attack) else None


def measure(testId: str, name: str, value: float | int | str) -> None:
    """
    Record a measurement of test C{testId} (latency during an attack,
    connections refused...) for the results table.
    """
    path = os.environ.get(RESULTS_ENVIRONMENT)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": testId, "name": name, "value": value}) + "\n")
