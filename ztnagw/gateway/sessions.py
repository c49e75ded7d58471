# -*- test-case-name: tests.gateway.test_sessions -*-
"""
The live-session tracker: ends the connections of a device the registry
stops admitting.

Every request and every tunnel is decided when it starts, but a keep-alive
HTTPS connection, a long download or a tunnel lives on afterwards.  When the
administrator revokes or quarantines the device, removes a tag a policy
needs, or the device stops reporting telemetry, its live sessions must end
too (FortiOS re-checks active ZTNA sessions when posture changes), within a
second, and nothing else may be disturbed.

Each live session registers here with the device (EMS id and UID), the
authorization of its last decision and a close callback.  The tracker
listens to the registry indexes (L{IEndpointIndex.subscribe}); when the
record of a device with sessions changes, each of its sessions is decided
again, with the same facts and the device judged anew, and closed if the
answer is no longer "allowed".  A device's online status changes without
any record change (its last report simply gets old), so the tracker also
keeps one timer per device, set to the moment it would go offline (last
report plus C{out-of-sync-threshold}), instead of polling every session.

The decision itself is not made here: the tracker calls the C{reauthorize}
function it was given (the authorize path of L{ztnagw.gateway.context}), so
that there is one decision for requests, tunnels and live sessions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ztnagw.registry.interfaces import IEndpointIndex

if TYPE_CHECKING:  # pragma: no cover
    from ztnagw.gateway.context import Authorization

__all__ = ["LiveSession", "SessionTracker", "OFFLINE_MARGIN"]

_log = Logger()

#: Seconds after the online deadline at which the device is re-decided:
#: a device is still online at exactly C{lastSeen + out-of-sync-threshold}.
OFFLINE_MARGIN = 0.05

DeviceKey = tuple[int, str]


class LiveSession:
    """
    One live session of a device: a keep-alive connection, a tunnel.

    @ivar key: the device, as C{(emsId, uid)}.
    @ivar authorization: the authorization of its last decision.
    @ivar label: what the log says about the session (free for the
        owner; the tracker passes it to its C{report} function).
    @ivar ended: whether the session ended (closed by the tracker or ended
        by its owner).
    """

    def __init__(
        self,
        tracker: SessionTracker,
        key: DeviceKey,
        authorization: Authorization,
        close: Callable[[Authorization], None],
        label: object,
    ) -> None:
        self.key = key
        self.authorization = authorization
        self.label = label
        self.ended = False
        self._tracker = tracker
        self._close = close

    def __repr__(self) -> str:
        return f"<LiveSession EMS {self.key[0]} device {self.key[1]} {self.label!r}>"

    def update(self, authorization: Authorization) -> None:
        """
        A new decision was made for the session (the next request on a
        keep-alive connection): re-decisions use its facts from now on.
        """
        if not self.ended:
            self.authorization = authorization

    def end(self) -> None:
        """
        The session is over (its owner closed it); forget it.  Calling it
        again does nothing.
        """
        if not self.ended:
            self.ended = True
            self._tracker._forget(self)


class SessionTracker:
    """
    Keeps every live session of every device and re-decides them when the
    device's record changes or its online deadline passes.

    @ivar closed: how many sessions the tracker closed since it started.
    """

    def __init__(
        self,
        clock: IReactorTime,
        indexes: Mapping[int, IEndpointIndex],
        thresholds: Mapping[int, float],
        reauthorize: Callable[[Authorization], Authorization],
        report: Callable[[LiveSession, Authorization], None],
    ) -> None:
        """
        @param clock: the reactor's clock.
        @param indexes: the registry index of each EMS, by EMS id.
        @param thresholds: each EMS's C{out-of-sync-threshold}, by EMS id.
        @param reauthorize: decides a session again from the authorization
            of its last decision (the device judged now).
        @param report: called after the tracker closed a session, with the
            denying authorization (the event log line).
        """
        self._clock = clock
        self._indexes = indexes
        self._thresholds = thresholds
        self._reauthorize = reauthorize
        self._report = report
        self._sessions: dict[DeviceKey, list[LiveSession]] = {}
        self._timers: dict[DeviceKey, IDelayedCall] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self.closed = 0

    def start(self) -> None:
        """
        Listen to every index.
        """
        for emsId, index in self._indexes.items():
            self._unsubscribe.append(
                index.subscribe(lambda uid, record, emsId=emsId: self._changed(emsId, uid))
            )

    def stop(self) -> None:
        """
        Stop listening and cancel every timer; sessions are left to their
        owners (the daemon is stopping).
        """
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for function in unsubscribe:
            function()
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            if timer.active():
                timer.cancel()

    def register(
        self,
        emsId: int,
        uid: str,
        authorization: Authorization,
        close: Callable[[Authorization], None],
        label: object = None,
    ) -> LiveSession:
        """
        Track a live session of device C{uid} of EMS C{emsId}.

        @param authorization: the decision that admitted it.
        @param close: ends the session (closes the connection or tunnel);
            called at most once, with the authorization that denied it (or
            the last one, if deciding again failed).
        @param label: what the log should say about the session.
        @return: the session; its owner calls L{LiveSession.update} with
            later decisions and L{LiveSession.end} when it ends.
        """
        key = (emsId, uid)
        session = LiveSession(self, key, authorization, close, label)
        self._sessions.setdefault(key, []).append(session)
        if key not in self._timers:
            self._schedule(key)
        return session

    def sessionsOf(self, emsId: int, uid: str) -> tuple[LiveSession, ...]:
        """
        The live sessions of a device.
        """
        return tuple(self._sessions.get((emsId, uid), ()))

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._sessions.values())

    def _forget(self, session: LiveSession) -> None:
        sessions = self._sessions.get(session.key)
        if sessions is None or session not in sessions:
            return
        sessions.remove(session)
        if not sessions:
            del self._sessions[session.key]
            timer = self._timers.pop(session.key, None)
            if timer is not None and timer.active():
                timer.cancel()

    def _changed(self, emsId: int, uid: str) -> None:
        key = (emsId, uid)
        if key in self._sessions:
            self._recheck(key)

    def _recheck(self, key: DeviceKey) -> None:
        for session in list(self._sessions.get(key, ())):
            if session.ended:
                continue
            try:
                authorization = self._reauthorize(session.authorization)
            except Exception:
                # The decision never raises; if it did, closing is the
                # only answer that cannot admit what it should not.
                _log.failure("while deciding live session {session!r} again", session=session)
                authorization = None
            if authorization is not None and authorization.allowed:
                session.authorization = authorization
                continue
            session.ended = True
            self._forget(session)
            self.closed += 1
            denial = authorization if authorization is not None else session.authorization
            try:
                session._close(denial)
            except Exception:
                _log.failure("while closing live session {session!r}", session=session)
            if authorization is not None:
                try:
                    self._report(session, authorization)
                except Exception:
                    _log.failure("while logging the end of {session!r}", session=session)
        if key in self._sessions:
            self._schedule(key)

    def _deadline(self, key: DeviceKey) -> float | None:
        emsId, uid = key
        index = self._indexes.get(emsId)
        threshold = self._thresholds.get(emsId)
        if index is None or threshold is None:
            return None
        try:
            record = index.lookup(uid)
        except Exception:
            return None
        if record is None or record.staticPresence or record.lastSeen is None:
            return None
        return record.lastSeen + threshold + OFFLINE_MARGIN

    def _schedule(self, key: DeviceKey) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        deadline = self._deadline(key)
        now = self._clock.seconds()
        if deadline is None or deadline <= now:
            # No deadline, or one the last decision already saw pass (it
            # was made at or after it): nothing to wait for until the
            # record changes.
            return
        self._timers[key] = self._clock.callLater(deadline - now, self._deadlinePassed, key)

    def _deadlinePassed(self, key: DeviceKey) -> None:
        self._timers.pop(key, None)
        if key in self._sessions:
            self._recheck(key)
