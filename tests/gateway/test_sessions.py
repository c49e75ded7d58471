"""
Tests for L{ztnagw.gateway.sessions}: live sessions are decided again when
their device's record changes or its online deadline passes.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.gateway.sessions import OFFLINE_MARGIN, LiveSession, SessionTracker
from ztnagw.registry.record import EndpointRecord
from tests.gateway.fakes import MemoryIndex

UID = "9A016B5A6E914B42AD4168C066EB04CA"
OTHER = "0123456789ABCDEF0123456789ABCDEF"


@frozen
class Verdict:
    """
    A stand-in for an authorization: just the answer.
    """

    allowed: bool
    generation: int = 0


class Harness:
    """
    A tracker over one in-memory index, deciding by a rule the test sets.
    """

    def __init__(self, threshold: float = 60.0) -> None:
        self.clock = Clock()
        self.index = MemoryIndex()
        self.allowed = True
        self.decisions = 0
        self.reports: list[tuple[LiveSession, Any]] = []
        self.tracker = SessionTracker(
            self.clock, {1: self.index}, {1: threshold}, self.reauthorize, self.report
        )

    def reauthorize(self, previous: Any) -> Any:
        """
        Decide: the device is allowed while C{allowed} is set and it is
        online per the index.
        """
        self.decisions += 1
        record = self.index.lookup(UID) or self.index.lookup(OTHER)
        online = record is not None and record.isOnline(self.clock.seconds(), 60.0)
        return Verdict(self.allowed and online, previous.generation + 1)

    def report(self, session: LiveSession, authorization: Any) -> None:
        """
        Remember what the tracker reported.
        """
        self.reports.append((session, authorization))


class TrackerTests(SynchronousTestCase):
    """
    Tests for L{SessionTracker}.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", staticPresence=True))
        self.h.tracker.start()
        self.closed: list[Any] = []

    def register(self, uid: str = UID) -> LiveSession:
        """
        Register a session that records its closing.
        """
        return self.h.tracker.register(1, uid, Verdict(True), self.closed.append, "label")

    def test_changeDenies(self) -> None:
        """
        When the record changes and the decision says no, the session is
        closed with the denying authorization and reported.
        """
        session = self.register()
        self.h.allowed = False
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", staticPresence=True, revoked=True))
        self.assertEqual(self.closed, [Verdict(False, 1)])
        self.assertTrue(session.ended)
        self.assertEqual(self.h.reports, [(session, Verdict(False, 1))])
        self.assertEqual(len(self.h.tracker), 0)
        self.assertEqual(self.h.tracker.closed, 1)

    def test_changeStillAllowed(self) -> None:
        """
        A change that still allows keeps the session, with the new
        authorization as the base of the next re-decision.
        """
        session = self.register()
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", staticPresence=True, tags=["x"]))
        self.assertEqual(self.closed, [])
        self.assertEqual(session.authorization, Verdict(True, 1))

    def test_otherDevicesUndisturbed(self) -> None:
        """
        A change of another device decides nothing.
        """
        self.register()
        self.h.index.put(EndpointRecord(uid=OTHER, certSerial="02"))
        self.assertEqual(self.h.decisions, 0)

    def test_deletedRecord(self) -> None:
        """
        A deleted record ends the device's sessions.
        """
        self.register()
        self.register()
        self.h.index.delete(UID)
        self.assertEqual(len(self.closed), 2)

    def test_ended(self) -> None:
        """
        A session its owner ended is not decided again.
        """
        session = self.register()
        session.end()
        session.end()
        self.h.allowed = False
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01"))
        self.assertEqual(self.h.decisions, 0)
        self.assertEqual(self.closed, [])

    def test_update(self) -> None:
        """
        L{LiveSession.update} replaces the authorization re-decisions start
        from.
        """
        session = self.register()
        session.update(Verdict(True, 10))
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", staticPresence=True))
        self.assertEqual(session.authorization, Verdict(True, 11))

    def test_stop(self) -> None:
        """
        After C{stop} the tracker no longer listens.
        """
        self.register()
        self.h.tracker.stop()
        self.assertEqual(self.h.index.subscribers, 0)

    def test_closeFailureContained(self) -> None:
        """
        A close callback that raises does not keep other sessions open.
        """
        def broken(authorization: Any) -> None:
            raise RuntimeError("broken")

        self.h.tracker.register(1, UID, Verdict(True), broken, "broken")
        self.register()
        self.h.allowed = False
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01"))
        self.assertEqual(len(self.closed), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_decisionFailureCloses(self) -> None:
        """
        A re-decision that raises closes the session (fail closed).
        """
        def broken(previous: Any) -> Any:
            raise ValueError("broken")

        self.h.tracker._reauthorize = broken
        self.register()
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01"))
        self.assertEqual(self.closed, [Verdict(True)])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class DeadlineTests(SynchronousTestCase):
    """
    Going offline without a record change: the tracker's timer.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.h.clock.advance(1000)
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", lastSeen=990.0))
        self.h.tracker.start()
        self.closed: list[Any] = []
        self.h.tracker.register(1, UID, Verdict(True), self.closed.append)

    def test_offline(self) -> None:
        """
        At the online deadline (last report plus the threshold) the device
        is decided again and its session closed.
        """
        self.h.clock.advance(50 - 0.01)
        self.assertEqual(self.closed, [])
        self.assertEqual(self.h.decisions, 0)
        self.h.clock.advance(0.01 + OFFLINE_MARGIN)
        self.assertEqual(len(self.closed), 1)
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_reportMovesDeadline(self) -> None:
        """
        A new report moves the deadline: one timer, re-armed.
        """
        self.h.clock.advance(40)
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", lastSeen=1040.0))
        self.assertEqual(len(self.h.clock.getDelayedCalls()), 1)
        self.h.clock.advance(20)
        self.assertEqual(self.closed, [])
        self.h.clock.advance(40 + OFFLINE_MARGIN)
        self.assertEqual(len(self.closed), 1)

    def test_oneTimerPerDevice(self) -> None:
        """
        Many sessions of one device share one timer, cancelled when the
        last one ends.
        """
        sessions = [self.h.tracker.register(1, UID, Verdict(True), self.closed.append) for _ in range(5)]
        self.assertEqual(len(self.h.clock.getDelayedCalls()), 1)
        for session in sessions:
            session.end()
        self.assertEqual(len(self.h.clock.getDelayedCalls()), 1)
        for session in list(self.h.tracker.sessionsOf(1, UID)):
            session.end()
        self.assertEqual(self.h.clock.getDelayedCalls(), [])

    def test_staticPresenceNoTimer(self) -> None:
        """
        A device that is always online needs no timer.
        """
        self.h.index.put(EndpointRecord(uid=UID, certSerial="01", staticPresence=True))
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
