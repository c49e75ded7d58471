# -*- test-case-name: tests.logs.test_destinations -*-
"""
Where log lines go: an append-only file, and C{twisted.logger}.

The file destination is what administrators point C{logrotate}, C{tail -f}
and their log shippers at.  Three promises hold it together:

  - B{Private from the first byte.}  The file is created with mode 0600 (or
    0640 for a log-reader group) by C{os.open}: traffic logs name users and
    devices.  An existing file that other users can read is reported.

  - B{One line, one write.}  Each line is encoded and handed to the kernel
    with one C{write(2)} on a descriptor opened with C{O_APPEND}: nothing
    waits in a user-space buffer to be lost in a crash, and lines from
    several gateway processes sharing the file never interleave.  A write
    of a few hundred bytes to a local file completes in microseconds, the
    same way twistd writes its own log, so it is done on the reactor
    thread; C{O_NONBLOCK} keeps a FIFO (a log shipper's pipe) from ever
    blocking it.

  - B{Never raise, never go quiet.}  A failing write (disk full, file
    system gone) is counted in L{FileLogDestination.linesLost} and reported
    once when the failure starts and once when writing works again, never
    per line.  After a failure the file is opened again by name on the next
    line, so the destination recovers by itself.  A line cut short by a
    failure is terminated before the next one, so a half line can never
    swallow the line after it.

L{FileLogDestination.reopen} is what the daemon calls on C{SIGHUP} after
C{logrotate} has renamed the file.
"""

from __future__ import annotations

import errno
import os
import stat

from twisted.logger import Logger, LogLevel
from zope.interface import implementer

from ztnagw.logs.interfaces import ILogDestination
from ztnagw.logs.line import LogFormat, LogLine

_log = Logger()

#: The modes a log file may be created with.
FILE_MODES = (0o600, 0o640)

_OPEN_FLAGS = (
    os.O_WRONLY
    | os.O_APPEND
    | os.O_CREAT
    | os.O_CLOEXEC
    | os.O_NOCTTY
    | os.O_NONBLOCK
)


@implementer(ILogDestination)
class FileLogDestination:
    """
    Append log lines to a file.

    @ivar path: the file name, opened again by L{reopen}.
    @ivar logFormat: how lines are spelled.
    @ivar linesWritten: lines written since the destination was made.
    @ivar linesLost: lines that could not be written.
    """

    def __init__(
        self,
        path: str,
        logFormat: LogFormat = LogFormat.KEY_VALUE,
        mode: int = 0o600,
        log: Logger | None = None,
    ) -> None:
        """
        Open C{path} for appending, creating it with C{mode}.

        @param path: the log file.
        @param logFormat: how to spell lines.
        @param mode: 0600, or 0640 to let a log-reader group read the file.
        @param log: where to report problems with the file.
        @raise ValueError: C{mode} is not one of L{FILE_MODES}.
        @raise OSError: the file cannot be opened now.  This is the only
            time the destination raises: a gateway that cannot open its log
            at start-up should say so and stop.
        """
        if mode not in FILE_MODES:
            raise ValueError(
                f"log file mode must be 0600 or 0640, not {mode:04o}"
            )
        self.path = path
        self.logFormat = logFormat
        self.linesWritten = 0
        self.linesLost = 0
        self._mode = mode
        self._log = _log if log is None else log
        self._fd: int | None = None
        # True from the first failure until a line is written again.
        self._failing = False
        self._lostInEpisode = 0
        # True when the last write stopped in the middle of a line.
        self._torn = False
        self._open()

    def _open(self) -> None:
        fd = os.open(self.path, _OPEN_FLAGS, self._mode)
        try:
            info = os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        if stat.S_ISREG(info.st_mode) and info.st_mode & 0o007:
            self._log.warn(
                "Log file {path} can be read by other users (mode "
                "{mode:04o}): it names users and devices; run: "
                "chmod o-rwx {path}",
                path=self.path,
                mode=stat.S_IMODE(info.st_mode),
            )

    def _closeDescriptor(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                # Nothing to do about it: the descriptor is gone either way.
                pass

    def emit(self, line: LogLine) -> None:
        """
        Append C{line}.  Never raises; see the module docstring.
        """
        data = (self.logFormat.render(line) + "\n").encode("utf-8")
        if self._torn:
            data = b"\n" + data
        try:
            if self._fd is None:
                self._open()
            self._writeAll(data)
        except OSError as error:
            self._lost(error)
        else:
            self._written()

    def _writeAll(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        written = 0
        try:
            while written < len(view):
                count = os.write(self._fd, view[written:])
                if count == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += count
        except OSError:
            if written:
                self._torn = True
            raise
        self._torn = False

    def _lost(self, error: OSError) -> None:
        self.linesLost += 1
        self._lostInEpisode += 1
        # Open again by name on the next line: that is what recovers from
        # a removed file or a stale descriptor.
        self._closeDescriptor()
        if not self._failing:
            self._failing = True
            self._log.error(
                "Cannot write to log file {path}: {error}; log lines are "
                "counted and dropped until writing works again",
                path=self.path,
                error=os.strerror(error.errno) if error.errno else str(error),
            )

    def _written(self) -> None:
        self.linesWritten += 1
        if self._failing:
            self._failing = False
            self._log.info(
                "Writing to log file {path} works again; {lost} log lines "
                "were lost",
                path=self.path,
                lost=self._lostInEpisode,
            )
            self._lostInEpisode = 0

    def reopen(self) -> None:
        """
        Close the file and open it again by name (after C{logrotate}).
        Never raises: if the file cannot be opened, the next lines are
        counted as lost and opening is tried again for each of them.
        """
        self._closeDescriptor()
        try:
            self._open()
        except OSError as error:
            if not self._failing:
                self._failing = True
                self._log.error(
                    "Cannot reopen log file {path}: {error}; log lines are "
                    "counted and dropped until writing works again",
                    path=self.path,
                    error=(
                        os.strerror(error.errno) if error.errno else str(error)
                    ),
                )

    def close(self) -> None:
        """
        Close the file.  A later L{emit} opens it again.
        """
        self._closeDescriptor()


# FortiOS severities on twisted.logger's five levels.
_TWISTED_LEVELS = {
    "emergency": LogLevel.critical,
    "alert": LogLevel.critical,
    "critical": LogLevel.critical,
    "error": LogLevel.error,
    "warning": LogLevel.warn,
    "notice": LogLevel.info,
    "information": LogLevel.info,
    "debug": LogLevel.debug,
}


@implementer(ILogDestination)
class LoggerLogDestination:
    """
    Emit log lines as C{twisted.logger} events, so that twistd's own log
    shows them.

    Each event's text is the spelled line (C{{ztnaLogLine}}); the event
    also carries the fields as C{ztnaLogFields}, so a JSON log observer
    (C{twist} when not on a terminal) keeps them typed.
    """

    def __init__(
        self,
        log: Logger | None = None,
        logFormat: LogFormat = LogFormat.KEY_VALUE,
    ) -> None:
        """
        @param log: the logger to emit to; by default one in this module's
            namespace.
        @param logFormat: how the event text spells the line.
        """
        self._log = _log if log is None else log
        self.logFormat = logFormat

    def emit(self, line: LogLine) -> None:
        """
        Emit C{line} at the twisted.logger level matching its FortiOS level.
        """
        level = _TWISTED_LEVELS.get(str(line.get("level")), LogLevel.info)
        # The line is passed as a field, never as the format string: a
        # brace in a logged value must not be read as a format field.
        self._log.emit(
            level,
            "{ztnaLogLine}",
            ztnaLogLine=self.logFormat.render(line),
            ztnaLogFields=line.jsonObject(),
        )

    def reopen(self) -> None:
        """
        Nothing to reopen: twistd manages its own log file.
        """

    def close(self) -> None:
        """
        Nothing to close.
        """
