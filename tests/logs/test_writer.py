"""
Tests for L{ztnagw.logs.writer} and L{ztnagw.logs.testing}.
"""

from __future__ import annotations

import datetime

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from ztnagw.logs.entries import REAL_SERVER_DOWN, EventLog
from ztnagw.logs.interfaces import ILogDestination
from ztnagw.logs.line import LogLine, Token
from ztnagw.logs.testing import MemoryLogDestination
from ztnagw.logs.writer import LogWriter

from .test_destinations import RecordingLogger
from .test_line import setTimeZone


@implementer(ILogDestination)
class BrokenDestination:
    """
    A destination that breaks its promise and raises.
    """

    def emit(self, line: LogLine) -> None:
        """
        Raise.
        """
        raise RuntimeError("broken emit")

    def reopen(self) -> None:
        """
        Raise.
        """
        raise RuntimeError("broken reopen")

    def close(self) -> None:
        """
        Raise.
        """
        raise RuntimeError("broken close")


def serverDown() -> EventLog:
    """
    A small event entry.
    """
    return EventLog(REAL_SERVER_DOWN, dstIp="10.0.0.10", dstPort=443)


class LogWriterTests(SynchronousTestCase):
    """
    L{LogWriter} stamps entries with its clock and shields its caller.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1736510401.5)
        self.memory = MemoryLogDestination()

    def test_stamp(self) -> None:
        """
        The line is stamped from the injected clock, in the given zone.
        """
        writer = LogWriter(
            self.clock,
            [self.memory],
            datetime.timezone(datetime.timedelta(hours=1)),
        )
        writer.write(serverDown())
        [text] = self.memory.keyValueLines()
        self.assertTrue(
            text.startswith(
                "date=2025-01-10 time=13:00:01 eventtime=1736510401500000000 "
                'tz="+0100" logid="9900069903" '
            ),
            text,
        )

    def test_deviceName(self) -> None:
        """
        The gateway's name, when given, is logged as C{devname} after the
        time, as FortiOS does in syslog.
        """
        writer = LogWriter(
            self.clock,
            [self.memory],
            datetime.timezone.utc,
            deviceName='gw "1"',
        )
        writer.write(serverDown())
        [text] = self.memory.keyValueLines()
        self.assertTrue(
            text.startswith(
                'date=2025-01-10 time=12:00:01 devname="gw \\"1\\"" '
                "eventtime=1736510401500000000 "
            ),
            text,
        )

    def test_hostZone(self) -> None:
        """
        Without a zone, the host's local time zone is used.
        """
        setTimeZone(self, "UTC+5")
        LogWriter(self.clock, [self.memory]).write(serverDown())
        line = self.memory.lines[0]
        self.assertEqual(line.get("tz"), "-0500")
        self.assertEqual(line.get("date"), Token("2025-01-10"))

    def test_everyDestination(self) -> None:
        """
        Every destination receives the same line.
        """
        other = MemoryLogDestination()
        LogWriter(self.clock, [self.memory, other]).write(serverDown())
        self.assertEqual(self.memory.lines, other.lines)
        self.assertEqual(len(other.lines), 1)

    def test_brokenDestination(self) -> None:
        """
        A destination that raises does not reach the caller or the other
        destinations; its failure is reported once and then only counted.
        """
        recorder = RecordingLogger()
        writer = LogWriter(
            self.clock, [BrokenDestination(), self.memory], log=recorder.log
        )
        for i in range(3):
            writer.write(serverDown())
        writer.reopen()
        writer.close()
        self.assertEqual(len(self.memory.lines), 3)
        self.assertEqual(writer.destinationFailures, 5)
        failures = [
            event
            for event in recorder.events
            if event["log_level"] is LogLevel.critical
        ]
        self.assertEqual(len(failures), 1)
        self.assertIn("broken emit", str(failures[0]["log_failure"].value))

    def test_reopenAndClose(self) -> None:
        """
        L{LogWriter.reopen} and L{LogWriter.close} reach every destination.
        """
        writer = LogWriter(self.clock, [self.memory])
        writer.reopen()
        writer.reopen()
        writer.close()
        self.assertEqual((self.memory.reopened, self.memory.closed), (2, 1))

    def test_memoryInterface(self) -> None:
        """
        L{MemoryLogDestination} provides L{ILogDestination}.
        """
        self.assertTrue(verifyObject(ILogDestination, self.memory))
