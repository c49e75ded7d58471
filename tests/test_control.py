"""
Tests for L{ztnagw.control}: the control channel between the admin command
and the running daemon.
"""

from __future__ import annotations

import os
import stat

from twisted.internet import defer, reactor, threads
from twisted.trial.unittest import TestCase

from ztnagw.control import ControlError, ControlService, ask, socketPath


class ControlTests(TestCase):
    """
    A real control socket in a temporary state directory, asked from a
    thread as the admin command asks it.
    """

    def setUp(self) -> None:
        self.stateDir = os.path.abspath(self.mktemp())
        os.makedirs(self.stateDir)
        self.service = ControlService(self.stateDir, reactor)
        self.service.register("echo", lambda arguments: {"got": arguments})
        self.service.register("slow", lambda arguments: defer.succeed([1, 2]))
        self.service.register("broken", lambda arguments: 1 / 0)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def _ask(self, command: str, arguments: dict | None = None) -> defer.Deferred:
        return threads.deferToThread(ask, self.stateDir, command, arguments, 5)

    @defer.inlineCallbacks
    def test_answers(self):
        """
        A registered command's result comes back, Deferred or not.
        """
        result = yield self._ask("echo", {"a": 1})
        self.assertEqual(result, {"got": {"a": 1}})
        result = yield self._ask("slow")
        self.assertEqual(result, [1, 2])

    @defer.inlineCallbacks
    def test_errors(self):
        """
        Unknown and failing commands are errors with a reason.
        """
        e = yield self.assertFailure(self._ask("nothing"), ControlError)
        self.assertIn("unknown command 'nothing'", str(e))
        self.assertIn("echo", str(e))
        e = yield self.assertFailure(self._ask("broken"), ControlError)
        self.assertIn("broken failed", str(e))
        self.flushLoggedErrors(ZeroDivisionError)

    def test_ownerOnly(self) -> None:
        """
        The socket is mode 0600 in a directory of mode 0700.
        """
        path = socketPath(self.stateDir)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o700)

    @defer.inlineCallbacks
    def test_notRunning(self):
        """
        Asking a gateway that does not run says so.
        """
        yield self.service.stopService()
        e = yield self.assertFailure(self._ask("echo"), ControlError)
        self.assertIn("not running", str(e))
        self.service.startService()

    def test_secondGateway(self) -> None:
        """
        A second gateway on the same state directory does not take the
        socket of one that runs.
        """
        other = ControlService(self.stateDir, reactor)
        self.assertRaises(OSError, other.startService)
