"""
Tests for L{ztnagw.logs.destinations}: the log file and the
C{twisted.logger} destination.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import stat

from twisted.logger import LogLevel, Logger, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from ztnagw.logs.destinations import FileLogDestination, LoggerLogDestination
from ztnagw.logs.interfaces import ILogDestination
from ztnagw.logs.line import LogFormat, LogLine, parseKeyValue


def line(number: int, level: str = "notice", user: str = "alice") -> LogLine:
    """
    A small log line numbered C{number}.
    """
    return LogLine((("level", level), ("sessionid", number), ("user", user)))


def readLines(path: str) -> list[str]:
    """
    The lines of the file at C{path}, without terminators.
    """
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


class RecordingLogger:
    """
    A L{Logger} whose events are kept in a list.

    @ivar events: the events emitted, oldest first.
    @ivar log: the logger.
    """

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.log = Logger(observer=self.events.append)

    def messages(self, level: LogLevel) -> list[str]:
        """
        The formatted messages emitted at C{level}.
        """
        return [
            formatEvent(event)
            for event in self.events
            if event["log_level"] is level
        ]


class FileCreationTests(SynchronousTestCase):
    """
    The log file is private from its first byte.
    """

    def setUp(self) -> None:
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        self.path = self.mktemp()
        self.recorder = RecordingLogger()

    def open(self, **kwargs: object) -> FileLogDestination:
        """
        A destination for C{self.path}, closed after the test.
        """
        destination = FileLogDestination(
            self.path, log=self.recorder.log, **kwargs  # type: ignore
        )
        self.addCleanup(destination.close)
        return destination

    def test_privateByDefault(self) -> None:
        """
        A new log file is created 0600, even with an empty umask.
        """
        self.open()
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_groupReadable(self) -> None:
        """
        0640 may be asked for, to let a log-reader group read the file.
        """
        self.open(mode=0o640)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o640)

    def test_otherModesRefused(self) -> None:
        """
        Any mode that lets other users read, or anyone execute, is refused
        before the file is created.
        """
        for mode in (0o644, 0o666, 0o700, 0o660):
            self.assertRaises(ValueError, self.open, mode=mode)
        self.assertFalse(os.path.exists(self.path))

    def test_looseExistingFileReported(self) -> None:
        """
        An existing log file that other users can read is reported, with
        the command that fixes it; its mode is not changed behind the
        administrator's back.
        """
        with open(self.path, "w"):
            pass
        os.chmod(self.path, 0o644)
        self.open()
        [warning] = self.recorder.messages(LogLevel.warn)
        self.assertIn(f"chmod o-rwx {self.path}", warning)
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o644)

    def test_cannotOpen(self) -> None:
        """
        A log file that cannot be opened at start-up is an error the daemon
        sees.
        """
        self.path = os.path.join(self.mktemp(), "missing-dir", "ztnagw.log")
        self.assertRaises(OSError, self.open)

    def test_interfaces(self) -> None:
        """
        Both destinations provide L{ILogDestination}.
        """
        self.assertTrue(verifyObject(ILogDestination, self.open()))
        self.assertTrue(verifyObject(ILogDestination, LoggerLogDestination()))


class FileWriteTests(SynchronousTestCase):
    """
    Lines are appended, one per write, in either spelling.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.recorder = RecordingLogger()

    def open(self, **kwargs: object) -> FileLogDestination:
        """
        A destination for C{self.path}, closed after the test.
        """
        destination = FileLogDestination(
            self.path, log=self.recorder.log, **kwargs  # type: ignore
        )
        self.addCleanup(destination.close)
        return destination

    def test_append(self) -> None:
        """
        Lines are appended after what the file already holds, one per line.
        """
        with open(self.path, "w") as f:
            f.write("earlier line\n")
        os.chmod(self.path, 0o600)
        destination = self.open()
        destination.emit(line(1))
        destination.emit(line(2, user="zoë"))
        self.assertEqual(
            readLines(self.path),
            [
                "earlier line",
                'level="notice" sessionid=1 user="alice"',
                'level="notice" sessionid=2 user="zoë"',
            ],
        )
        self.assertEqual(
            (destination.linesWritten, destination.linesLost), (2, 0)
        )

    def test_writtenImmediately(self) -> None:
        """
        A line is in the file as soon as L{FileLogDestination.emit}
        returns: nothing waits in a buffer.
        """
        destination = self.open()
        destination.emit(line(1))
        self.assertEqual(len(readLines(self.path)), 1)

    def test_json(self) -> None:
        """
        A JSON destination writes one JSON object per line.
        """
        destination = self.open(logFormat=LogFormat.JSON)
        destination.emit(line(1))
        [text] = readLines(self.path)
        self.assertEqual(
            json.loads(text),
            {"level": "notice", "sessionid": 1, "user": "alice"},
        )

    def test_reopenAfterRotation(self) -> None:
        """
        After C{logrotate} renames the file, L{FileLogDestination.reopen}
        starts a new file with the same name and mode; the old file keeps
        its lines.
        """
        destination = self.open()
        destination.emit(line(1))
        os.rename(self.path, self.path + ".1")
        destination.emit(line(2))
        destination.reopen()
        destination.emit(line(3))
        self.assertEqual(
            [
                parseKeyValue(text)[1][1]
                for text in readLines(self.path + ".1")
            ],
            ["1", "2"],
        )
        self.assertEqual(
            [parseKeyValue(text)[1][1] for text in readLines(self.path)], ["3"]
        )
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_closeThenEmit(self) -> None:
        """
        After L{FileLogDestination.close}, a line opens the file again.
        """
        destination = self.open()
        destination.close()
        destination.emit(line(1))
        self.assertEqual(len(readLines(self.path)), 1)


class FileFailureTests(SynchronousTestCase):
    """
    Write errors are counted and reported once per episode, never raised,
    and the destination recovers by itself.
    """

    def setUp(self) -> None:
        self.recorder = RecordingLogger()
        # Absolute: a relative symbolic link target is read relative to the
        # link's own directory.
        directory = os.path.abspath(self.mktemp())
        os.mkdir(directory)
        self.path = os.path.join(directory, "ztnagw.log")
        self.target = os.path.join(directory, "real.log")

    def pointAt(self, target: str) -> None:
        """
        Make the log path a symbolic link to C{target}.
        """
        if os.path.lexists(self.path):
            os.unlink(self.path)
        os.symlink(target, self.path)

    def open(self) -> FileLogDestination:
        """
        A destination for C{self.path}, closed after the test.
        """
        destination = FileLogDestination(self.path, log=self.recorder.log)
        self.addCleanup(destination.close)
        return destination

    def test_diskFull(self) -> None:
        """
        On a full disk (C{/dev/full}) every line is counted as lost, the
        caller never sees an exception, and one error is reported for the
        whole episode.
        """
        self.pointAt("/dev/full")
        destination = self.open()
        for number in range(5):
            destination.emit(line(number))
        self.assertEqual(
            (destination.linesWritten, destination.linesLost), (0, 5)
        )
        [error] = self.recorder.messages(LogLevel.error)
        self.assertIn(self.path, error)
        self.assertIn(os.strerror(errno.ENOSPC), error)

    def test_recovery(self) -> None:
        """
        When writing works again the next line is written without any
        call from outside, one message says how many lines were lost, and a
        new failure is a new episode with its own report.
        """
        self.pointAt("/dev/full")
        destination = self.open()
        destination.emit(line(1))
        destination.emit(line(2))
        self.pointAt(self.target)
        destination.emit(line(3))
        destination.emit(line(4))
        self.assertEqual(
            [parseKeyValue(text)[1][1] for text in readLines(self.target)],
            ["3", "4"],
        )
        [recovered] = self.recorder.messages(LogLevel.info)
        self.assertIn("2 log lines were lost", recovered)
        self.pointAt("/dev/full")
        destination.reopen()
        destination.emit(line(5))
        self.assertEqual(len(self.recorder.messages(LogLevel.error)), 2)
        self.assertEqual(
            (destination.linesWritten, destination.linesLost), (2, 3)
        )

    def test_reopenFails(self) -> None:
        """
        A reopen that fails (the log directory is gone) does not raise;
        lines are counted as lost and the file is opened again when it can
        be.
        """
        self.pointAt(self.target)
        destination = self.open()
        missing = os.path.join(os.path.abspath(self.mktemp()), "gone", "x.log")
        self.pointAt(missing)
        destination.reopen()
        destination.emit(line(1))
        self.assertEqual(destination.linesLost, 1)
        [error] = self.recorder.messages(LogLevel.error)
        self.assertIn("Cannot reopen", error)
        self.pointAt(self.target)
        destination.emit(line(2))
        self.assertEqual(destination.linesWritten, 1)
        self.assertEqual(
            [parseKeyValue(text)[1][1] for text in readLines(self.target)],
            ["2"],
        )

    def test_tornLineTerminated(self) -> None:
        """
        A line cut short by a failure (here the file size limit) is ended
        before the next line, so the half line cannot swallow it.
        """
        self.pointAt(self.target)
        destination = self.open()
        destination.emit(line(1))
        size = os.path.getsize(self.target)
        oldHandler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.addCleanup(signal.signal, signal.SIGXFSZ, oldHandler)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
        try:
            destination.emit(line(2, user="x" * 100))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        destination.emit(line(3))
        lines = readLines(self.target)
        self.assertEqual(len(lines), 3)
        self.assertEqual(len(lines[1]), 10)
        self.assertEqual(
            parseKeyValue(lines[2]), parseKeyValue(line(3).keyValue())
        )
        self.assertEqual(
            (destination.linesWritten, destination.linesLost), (2, 1)
        )

    def test_fullPipeDoesNotBlock(self) -> None:
        """
        A log shipper's FIFO that stops reading makes lines lost, not the
        reactor thread block.
        """
        os.mkfifo(self.target, 0o600)
        reader = os.open(self.target, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        self.pointAt(self.target)
        destination = self.open()

        def blocked(signum: int, frame: object) -> None:
            raise AssertionError("writing to a full FIFO blocked")

        # A blocking write would hang the test run: turn it into a failure.
        oldHandler = signal.signal(signal.SIGALRM, blocked)
        self.addCleanup(signal.signal, signal.SIGALRM, oldHandler)
        self.addCleanup(signal.alarm, 0)
        signal.alarm(10)
        for number in range(200):
            destination.emit(line(number, user="x" * 1000))
        signal.alarm(0)
        self.assertGreater(destination.linesLost, 0)
        self.assertEqual(destination.linesWritten + destination.linesLost, 200)
        self.assertEqual(len(self.recorder.messages(LogLevel.error)), 1)


class LoggerDestinationTests(SynchronousTestCase):
    """
    L{LoggerLogDestination} shows log lines in twistd's log.
    """

    def test_emit(self) -> None:
        """
        The event's text is the log line; its fields travel typed.
        """
        recorder = RecordingLogger()
        LoggerLogDestination(recorder.log).emit(line(7))
        [event] = recorder.events
        self.assertEqual(
            formatEvent(event), 'level="notice" sessionid=7 user="alice"'
        )
        self.assertEqual(
            event["ztnaLogFields"],
            {"level": "notice", "sessionid": 7, "user": "alice"},
        )

    def test_levels(self) -> None:
        """
        FortiOS severities map onto twisted.logger's levels.
        """
        recorder = RecordingLogger()
        destination = LoggerLogDestination(recorder.log)
        for level in ("alert", "error", "warning", "notice", "debug"):
            destination.emit(line(1, level=level))
        self.assertEqual(
            [event["log_level"] for event in recorder.events],
            [
                LogLevel.critical,
                LogLevel.error,
                LogLevel.warn,
                LogLevel.info,
                LogLevel.debug,
            ],
        )

    def test_bracesInValues(self) -> None:
        """
        A brace in a logged value is text, not a format field.
        """
        recorder = RecordingLogger()
        LoggerLogDestination(recorder.log).emit(
            line(1, user="{log_namespace}")
        )
        self.assertEqual(
            formatEvent(recorder.events[0]),
            'level="notice" sessionid=1 user="{log_namespace}"',
        )

    def test_json(self) -> None:
        """
        The event text can be the JSON spelling.
        """
        recorder = RecordingLogger()
        LoggerLogDestination(recorder.log, LogFormat.JSON).emit(line(1))
        self.assertEqual(
            json.loads(formatEvent(recorder.events[0]))["sessionid"], 1
        )

    def test_reopenAndClose(self) -> None:
        """
        There is nothing to reopen or close; both calls are harmless.
        """
        destination = LoggerLogDestination(RecordingLogger().log)
        destination.reopen()
        destination.close()
        destination.emit(line(1))
