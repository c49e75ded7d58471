# -*- test-case-name: tests.logs.test_writer -*-
"""
The log writer: stamps entries with the injected clock and hands the line
to every destination.

The gateway creates one L{LogWriter} at start-up and calls L{LogWriter.write}
for each session and event.  The writer owns the clock (so tests control
time stamps) and the time zone (the host's, as on a FortiGate), and it
shields the gateway from its destinations: whatever a destination does,
L{LogWriter.write} returns normally.
"""

from __future__ import annotations

import datetime
from typing import Sequence

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ztnagw.logs.interfaces import ILogDestination, ILogEntry
from ztnagw.logs.line import LogLine, LogTime

_log = Logger()


class LogWriter:
    """
    Stamp log entries and send them to destinations.

    @ivar destinationFailures: how many times a destination raised (it
        should not; see L{ILogDestination}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        destinations: Sequence[ILogDestination],
        timeZone: datetime.tzinfo | None = None,
        deviceName: str | None = None,
        log: Logger | None = None,
    ) -> None:
        """
        @param clock: where time stamps come from (the reactor).
        @param destinations: where lines go, each in its own format.
        @param timeZone: the zone of C{date}, C{time} and C{tz}; C{None}
            means the host's local time zone.
        @param deviceName: the gateway's name for the C{devname} field
            (C{config system global} C{hostname}), or C{None} for none.
        @param log: where to report a misbehaving destination.
        """
        self._clock = clock
        self._deviceName = deviceName
        self._destinations = tuple(destinations)
        self._timeZone = timeZone
        self._log = _log if log is None else log
        self._reported: set[int] = set()
        self.destinationFailures = 0

    def write(self, entry: ILogEntry) -> None:
        """
        Log C{entry} now.  Never raises.
        """
        line = LogLine.fromEntry(
            LogTime.fromSeconds(self._clock.seconds(), self._timeZone),
            entry.logFields(),
            self._deviceName,
        )
        for destination in self._destinations:
            self._call(destination, "emit", line)

    def reopen(self) -> None:
        """
        Reopen every destination's file (on C{SIGHUP}, after C{logrotate}).
        """
        for destination in self._destinations:
            self._call(destination, "reopen")

    def close(self) -> None:
        """
        Close every destination (at shutdown).
        """
        for destination in self._destinations:
            self._call(destination, "close")

    def _call(
        self, destination: ILogDestination, name: str, *args: object
    ) -> None:
        try:
            getattr(destination, name)(*args)
        except Exception:
            # A destination must not raise; if one does anyway, the gateway
            # must not fail a request for it, and the traceback is shown
            # once per destination, not once per line.
            self.destinationFailures += 1
            if id(destination) not in self._reported:
                self._reported.add(id(destination))
                self._log.failure(
                    "Log destination {destination!r} failed; further "
                    "failures of it are only counted",
                    destination=destination,
                )
