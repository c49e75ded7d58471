"""
Real servers that are down, reset in the middle of a body, answer with
garbage or never answer, and names that do not resolve: each gets the
answer docs/gateway.md documents (502, truncation, 502, 504, 023) within a
bounded time, and the daemon keeps serving a device on a healthy real
server right after.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import TestCase

from tests.faults.garbage import GarbageServer
from tests.integration.httpsfixture import Gateway


class RealServerFaultTests(TestCase):
    """
    One daemon (L{Gateway}: C{refused.test} points at a port nobody
    listens on, C{slow.test} has a C{response-timeout} of 2 s, C{dns.test}
    a name that does not resolve).
    """

    def setUp(self) -> None:
        self.gateway = Gateway(self.mktemp())
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.device = self.gateway.issueDevice()

    def request(self, path: str = "/headers", host: str | None = None) -> tuple[int, dict, bytes, int, float]:
        """
        A device's request; its status, fields, body, curl's exit status
        and how long it took.
        """
        started = time.monotonic()
        status, fields, body, code = self.gateway.curl("MAIN", path, self.device, host)
        return status, fields, body, code, time.monotonic() - started

    def assertStillServing(self) -> None:
        """
        A request to the healthy real server succeeds.
        """
        self.assertEqual(self.request()[0], 200)

    def assertNoFailureLogged(self) -> None:
        """
        The daemon logged no traceback.
        """
        self.assertNotIn("Traceback", self.gateway.daemon.log())

    def test_down(self) -> None:
        """
        Nothing listens: 502 at once.
        """
        status, fields, body, _, took = self.request("/", "refused.test")
        self.assertEqual(status, 502, body)
        self.assertLess(took, 10)
        self.assertStillServing()
        self.assertNoFailureLogged()

    def test_garbage(self) -> None:
        """
        The real server answers with bytes that are not HTTP: 502.
        """
        server = GarbageServer(self.gateway.ports["CLOSED"])
        self.addCleanup(server.stop)
        status, fields, body, _, took = self.request("/", "refused.test")
        self.assertEqual(status, 502, body)
        self.assertGreaterEqual(server.connections, 1)
        self.assertStillServing()
        self.assertNoFailureLogged()

    def test_resetMidBody(self) -> None:
        """
        The real server resets after half the body: the client's
        connection is cut (curl reports a partial transfer), never
        completed with made-up bytes.
        """
        status, fields, body, code, took = self.request("/reset?n=100000")
        self.assertEqual(status, 200)
        self.assertEqual(fields["content-length"], ["200000"])
        self.assertLess(len(body), 200000)
        self.assertIn(code, (18, 56))
        self.assertStillServing()
        self.assertNoFailureLogged()

    def test_neverAnswers(self) -> None:
        """
        The real server accepts and reads but never answers: 504 after the
        api-gateway's C{response-timeout} (2 s).
        """
        status, fields, body, _, took = self.request("/never", "slow.test")
        self.assertEqual(status, 504, body)
        self.assertGreaterEqual(took, 1.5)
        self.assertLess(took, 15)
        self.assertStillServing()
        self.assertNoFailureLogged()

    def test_dnsFails(self) -> None:
        """
        The real server's name does not resolve: 023, within the
        resolver's bound (10 s), and again from the cache.
        """
        for _ in range(2):
            status, fields, body, _, took = self.request("/", "dns.test")
            self.assertEqual(fields.get("x-ztna-error"), ["023"], body)
            self.assertLess(took, 15)
        self.assertStillServing()
        self.assertNoFailureLogged()
