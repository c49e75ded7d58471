# -*- test-case-name: tests.logs.test_writer -*-
"""
The seams of the log writer.

Log entries (L{ILogEntry}) are the facts the gateway reports; destinations
(L{ILogDestination}) are where stamped lines go.  The writer between them
(L{ztnagw.logs.writer.LogWriter}) owns the clock.  Tests swap destinations
for L{ztnagw.logs.testing.MemoryLogDestination}.
"""

from __future__ import annotations

from typing import Iterable

from zope.interface import Attribute, Interface

from ztnagw.logs.line import FieldValue, LogLine


class ILogEntry(Interface):
    """
    Something worth one log line: a traffic session or an event.
    """

    level = Attribute(
        "The FortiOS severity name (C{notice}, C{warning}, ...), used by "
        "destinations that map it to their own levels."
    )

    def logFields() -> Iterable[tuple[str, FieldValue]]:
        """
        The entry's fields in FortiOS order, from C{logid} on (the writer
        adds C{date}, C{time}, C{eventtime} and C{tz} in front).  Unknown
        values are left out.
        """


class ILogDestination(Interface):
    """
    Where stamped log lines go (a file, C{twisted.logger}).

    Every method is called from the reactor thread and must return quickly.
    None of them may raise: a destination that cannot write counts the
    lines it lost, reports the problem once per failure episode and
    recovers by itself when writing works again.
    """

    def emit(line: LogLine) -> None:
        """
        Record C{line}.
        """

    def reopen() -> None:
        """
        Let go of any open file and open it again by name: the daemon calls
        this on C{SIGHUP} after C{logrotate} has moved the file away.
        """

    def close() -> None:
        """
        Let go of any open file.  A later L{emit} opens it again.
        """
