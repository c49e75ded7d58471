# -*- test-case-name: tests.logs.test_writer -*-
"""
An in-memory log destination for tests.

The gateway's tests need to see which lines it logged without touching the
disk; they give a L{MemoryLogDestination} to a real
L{ztnagw.logs.writer.LogWriter} with a L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from zope.interface import implementer

from ztnagw.logs.interfaces import ILogDestination
from ztnagw.logs.line import LogLine


@implementer(ILogDestination)
class MemoryLogDestination:
    """
    Keep every line in a list.

    @ivar lines: the lines emitted, oldest first.
    @ivar reopened: how many times L{reopen} was called.
    @ivar closed: how many times L{close} was called.
    """

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self.reopened = 0
        self.closed = 0

    def emit(self, line: LogLine) -> None:
        """
        Keep C{line}.
        """
        self.lines.append(line)

    def reopen(self) -> None:
        """
        Count the call.
        """
        self.reopened += 1

    def close(self) -> None:
        """
        Count the call.
        """
        self.closed += 1

    def keyValueLines(self) -> list[str]:
        """
        The lines in FortiOS C{key=value} spelling.
        """
        return [line.keyValue() for line in self.lines]
