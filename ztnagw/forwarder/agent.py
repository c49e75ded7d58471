# -*- test-case-name: tests.forwarder.test_agent -*-
"""
The agent: telemetry that keeps an enrolled device online.

A gateway denies a device whose last report is older than its EMS's
C{out-of-sync-threshold} (error 067).  L{TelemetryService} reports, over
mutual TLS with the device certificate of a profile, every few seconds:
the device's identity and posture facts (L{ztnagw.forwarder.facts}), at
the interval the EMS asks for in each answer (a third of its threshold)
unless the user set one.  It is a Twisted service, so that
C{ztnagw-forward agent} runs it alone and the TCP forwarder runs it beside
its tunnels.

A report that fails is logged and retried sooner than the next regular
one would be, up to the regular interval; a device the EMS refuses
(revoked, deleted, re-enrolled elsewhere) keeps trying at a slow pace, so
that an administrator's unrevoke brings it back without a restart.

The profile is read again before a report when its files changed: a
running agent follows a re-enrollment (new certificate, same UID) instead
of reporting with a certificate the EMS now refuses.
"""

from __future__ import annotations

import os
import shlex
from typing import Any, Callable, Sequence

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

from ztnagw.ems.api import DeviceReport
from ztnagw.forwarder.api import API_SETTINGS, ApiAnswer, EmsError, postJson
from ztnagw.forwarder.facts import collectReport, runPostureCommand
from ztnagw.forwarder.profile import (
    CERTIFICATE_FILE,
    KEY_FILE,
    METADATA_FILE,
    Profile,
    ProfileError,
    loadProfile,
)
from ztnagw.http.pool import UpstreamPool

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_RETRY",
    "TELEMETRY_PATH",
    "TelemetryResult",
    "TelemetryService",
    "parsePostureCommand",
]

TELEMETRY_PATH = b"/api/v1/telemetry"

#: Seconds between reports until the EMS says how often it wants them.
DEFAULT_INTERVAL = 20.0

#: The slowest retry after failures, in seconds.
MAX_RETRY = 300.0

_log = Logger()


def parsePostureCommand(text: str) -> list[str]:
    """
    Split a C{--posture-command} the way a shell would (quotes, escapes),
    without running a shell.

    @raise ValueError: unbalanced quotes, or no command.
    """
    argv = shlex.split(text)
    if not argv:
        raise ValueError("the posture command is empty")
    return argv


@frozen
class TelemetryResult:
    """
    How one report went.

    @ivar ok: whether the EMS recorded it.
    @ivar answer: the EMS's answer when it did.
    @ivar error: the failure when it did not.
    @ivar nextIn: seconds until the next report.
    """

    ok: bool
    answer: dict[str, Any] | None
    error: EmsError | None
    nextIn: float


class TelemetryService(Service):
    """
    Report a profile's device to its EMS at an interval.

    @ivar reports: how many reports the EMS recorded.
    @ivar failures: how many failed in a row.
    @ivar lastResult: how the last report went.
    """

    def __init__(
        self,
        reactor: Any,
        profile: Profile,
        interval: float | None = None,
        postureCommand: Sequence[str] | None = None,
        collect: Callable[[dict[str, str]], DeviceReport] = collectReport,
        threadpool: Any = None,
        onResult: Callable[[TelemetryResult], None] | None = None,
    ) -> None:
        """
        @param reactor: provides time, TCP, processes and threads.
        @param profile: the enrolled device.
        @param interval: seconds between reports; C{None} follows the EMS.
        @param postureCommand: a command whose JSON output adds posture
            facts, or C{None}.
        @param collect: gathers the device report (called in a thread with
            the posture command's facts).
        @param threadpool: where C{collect} runs; the reactor's by default.
        @param onResult: called after every report.
        """
        self._reactor = reactor
        self._profile = profile
        self._interval = interval
        self._posture = list(postureCommand) if postureCommand else None
        self._collect = collect
        self._threadpool = threadpool
        self._onResult = onResult
        self._suggested: float | None = None
        self._timer: Any = None
        self._inFlight: Deferred[None] | None = None
        self._pool: UpstreamPool | None = None
        self._creator: Any = None
        # When the profile's files were last written, to notice a
        # re-enrollment.
        self._stamp = self._profileStamp()
        self.reports = 0
        self.failures = 0
        self.lastResult: TelemetryResult | None = None
        self.setName("telemetry")

    @property
    def interval(self) -> float:
        """
        The current interval between regular reports.
        """
        if self._interval is not None:
            return self._interval
        if self._suggested is not None:
            return self._suggested
        return DEFAULT_INTERVAL

    def startService(self) -> None:
        """
        Report now, then at the interval.
        """
        Service.startService(self)
        self._pool = UpstreamPool(self._reactor, API_SETTINGS)
        self._creator = self._profile.emsClientCreator()
        self._timer = self._reactor.callLater(0, self._tick)

    def stopService(self) -> Deferred[None]:
        """
        Stop reporting; wait for a report in flight.
        """
        Service.stopService(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waiting = self._inFlight if self._inFlight is not None else succeed(None)

        def close(_: object) -> None:
            if self._pool is not None:
                self._pool.closeIdle()

        return waiting.addBoth(close)

    def reportNow(self) -> Deferred[TelemetryResult]:
        """
        Send one report now (whatever the schedule), for C{agent --once}.
        The service need not be running.
        """
        if self._pool is None:
            self._pool = UpstreamPool(self._reactor, API_SETTINGS)
            self._creator = self._profile.emsClientCreator()
        return self._report()

    def _threads(self) -> Any:
        if self._threadpool is None:
            self._threadpool = self._reactor.getThreadPool()
        return self._threadpool

    def _tick(self) -> None:
        self._timer = None
        done = self._report()

        def schedule(result: TelemetryResult) -> None:
            self._inFlight = None
            if self.running:
                self._timer = self._reactor.callLater(result.nextIn, self._tick)

        self._inFlight = done.addCallback(schedule)

    def _facts(self) -> Deferred[dict[str, str]]:
        if self._posture is None:
            return succeed({})
        return runPostureCommand(self._reactor, self._posture)

    def _profileStamp(self) -> tuple[int, ...] | None:
        stamps = []
        for name in (METADATA_FILE, CERTIFICATE_FILE, KEY_FILE):
            try:
                stamps.append(os.stat(os.path.join(self._profile.directory, name)).st_mtime_ns)
            except OSError:
                return None
        return tuple(stamps)

    def _refreshProfile(self) -> Profile | None:
        """
        The profile read again if its files changed since it was loaded,
        else C{None}.  Runs in a thread.
        """
        stamp = self._profileStamp()
        if stamp is None or stamp == self._stamp:
            return None
        try:
            profile = loadProfile(self._profile.directory)
        except ProfileError as e:
            # Half-written (an enrollment in progress): try next time.
            _log.info("The profile changed but cannot be read yet: {error}", error=str(e))
            return None
        self._stamp = stamp
        return profile

    def _useProfile(self, profile: Profile | None) -> None:
        if profile is None:
            return
        if profile.uid != self._profile.uid or profile.certSerial != self._profile.certSerial:
            _log.info(
                "Reporting with the re-read profile: {uid}, certificate serial {serial}",
                uid=profile.uid,
                serial=profile.certSerial,
            )
        self._profile = profile
        self._creator = profile.emsClientCreator()

    def _report(self) -> Deferred[TelemetryResult]:
        d = deferToThreadPool(self._reactor, self._threads(), self._refreshProfile)
        d.addCallback(self._useProfile)
        d.addCallback(lambda _: self._reportWithProfile())
        return d

    def _reportWithProfile(self) -> Deferred[TelemetryResult]:
        host, port = self._profile.emsAddress
        d = self._facts()
        d.addCallback(lambda facts: deferToThreadPool(self._reactor, self._threads(), self._collect, facts))
        d.addCallback(
            lambda report: postJson(
                self._reactor, host, port, self._creator, TELEMETRY_PATH, report.toJson(), self._pool
            )
        )
        return d.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, answer: ApiAnswer) -> TelemetryResult:
        suggested = answer.body.get("telemetryInterval")
        if isinstance(suggested, (int, float)) and not isinstance(suggested, bool) and 1 <= suggested <= 3600:
            if self._interval is not None and self._interval > suggested and self._suggested != suggested:
                _log.warn(
                    "The EMS asks for a report every {suggested} s, but --interval is "
                    "{interval} s: the device may be judged offline between reports",
                    suggested=suggested,
                    interval=self._interval,
                )
            self._suggested = float(suggested)
        if self.failures:
            _log.info("Telemetry reaches the EMS again after {n} failure(s)", n=self.failures)
        self.failures = 0
        self.reports += 1
        return self._finish(TelemetryResult(True, answer.body, None, self.interval))

    def _failed(self, reason: Failure) -> TelemetryResult:
        self.failures += 1
        error = reason.value if reason.check(EmsError) else EmsError("unreachable", reason.getErrorMessage())
        if not reason.check(EmsError):
            _log.failure("Telemetry report failed", reason)
        if error.status == 403 or error.status == 401:
            # Refused for good until an administrator acts: do not hammer.
            delay = MAX_RETRY
        elif error.retryAfter is not None:
            delay = min(MAX_RETRY, max(1.0, error.retryAfter))
        else:
            # Sooner than the regular interval (the device is about to go
            # offline), backing off as failures pile up.
            delay = min(self.interval, 2.0 ** min(self.failures, 8))
        ztna = f" (ZTNA error {error.ztnaCode})" if error.ztnaCode else ""
        _log.warn(
            "Telemetry report refused or failed: {message}{ztna}; next try in {delay:.0f} s",
            message=error.message,
            ztna=ztna,
            delay=delay,
            code=error.code,
        )
        return self._finish(TelemetryResult(False, None, error, delay))

    def _finish(self, result: TelemetryResult) -> TelemetryResult:
        self.lastResult = result
        if self._onResult is not None:
            try:
                self._onResult(result)
            except Exception:
                _log.failure("Telemetry result observer failed")
        return result
