"""
Fuzz tests of a VIP's HTTP front end, through the real server protocol and
the gateway's request and tunnel handlers (L{tests.fuzz.frontend}):
whatever bytes a client sends, in whatever pieces, it gets refusals (4xx,
or a ZTNA denial, or 502/504 for a real server that cannot be reached) or a
closed connection, and nothing inside the gateway fails.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.frontend import ALLOWED_STATUSES, REQUEST_PIECES, FrontEnd, LoggedFailures, feed, splitResponses

#: Where a fuzz input is cut into the pieces C{dataReceived} gets.
_cuts = st.lists(st.integers(min_value=0, max_value=4096), max_size=12)

#: Inputs made of request pieces, hostile pieces and random bytes.
_requestish = st.lists(
    st.one_of(st.sampled_from(REQUEST_PIECES), st.binary(max_size=12)), max_size=24
).map(b"".join)


class FrontEndTestsMixin:
    """
    The properties every fuzz input must keep.
    """

    def check(self, data: bytes, cuts: list[int], clientCloses: bool, withCertificate: bool = True) -> list[int]:
        """
        Send C{data} and assert that only allowed statuses were answered,
        that the connection ended, and that no failure was logged.

        @return: the statuses answered.
        """
        frontEnd = FrontEnd(withCertificate)
        statuses, transport, failures = feed(frontEnd, data, cuts, clientCloses)
        self.assertEqual(failures.events, [], failures.describe())  # type: ignore[attr-defined]
        self.assertLessEqual(set(statuses), ALLOWED_STATUSES, data[:300])  # type: ignore[attr-defined]
        if not clientCloses:
            # Every timeout has passed: the gateway closed the connection.
            self.assertTrue(transport.disconnecting, data[:300])  # type: ignore[attr-defined]
        self.assertEqual(frontEnd.reactor.tcpClients, [])  # type: ignore[attr-defined]
        return statuses


class ArbitraryBytesTests(FrontEndTestsMixin, SynchronousTestCase):
    """
    Random bytes and request-shaped bytes.
    """

    @settings(max_examples=150)
    @given(st.binary(max_size=2048), _cuts, st.booleans())
    def test_anyBytes(self, data: bytes, cuts: list[int], clientCloses: bool) -> None:
        """
        Arbitrary bytes in arbitrary pieces: refused or closed.
        """
        self.check(data, cuts, clientCloses)

    @settings(max_examples=400)
    @given(_requestish, _cuts, st.booleans(), st.booleans())
    def test_requestShaped(self, data: bytes, cuts: list[int], clientCloses: bool, withCertificate: bool) -> None:
        """
        Requests glued from valid and hostile pieces (smuggling framings,
        tunnel queries, absolute forms, bad fields), with and without a
        device certificate: refused, denied or relayed to a real server
        that fails, never an internal error.
        """
        self.check(data, cuts, clientCloses, withCertificate)

    def test_splitMakesNoDifference(self) -> None:
        """
        The same pipelined requests get the same answers whole and one byte
        at a time (the fuzz's cuts reach every parser state).
        """
        data = REQUEST_PIECES[0] + b"GET /%2e%2e/x HTTP/1.1\r\n\r\n"
        whole = self.check(data, [], False)
        bytewise = self.check(data, list(range(len(data))), False)
        self.assertEqual(whole, bytewise)
        self.assertEqual(whole, [502, 400])


class SplitResponsesTests(SynchronousTestCase):
    """
    L{splitResponses} reads the gateway's answers back.
    """

    def test_two(self) -> None:
        """
        Responses are told apart by their lengths.
        """
        self.assertEqual(
            splitResponses(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nabc"
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"
            ),
            [100, 400, 502],
        )

    def test_garbage(self) -> None:
        """
        Output that is not a response fails the test.
        """
        self.assertRaises(AssertionError, splitResponses, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab")
        self.assertRaises(AssertionError, splitResponses, b"HTTP/1.1 200 OK\r\n")


class LoggedFailuresTests(SynchronousTestCase):
    """
    L{LoggedFailures} sees what the gateway would log when something fails,
    so that the fuzz tests' "nothing logged" is not vacuous.
    """

    def test_failureAndError(self) -> None:
        """
        A logged failure and an error-level event are collected; an info
        event is not; nothing is collected once it is removed.
        """
        from twisted.logger import Logger
        from twisted.python.failure import Failure

        log = Logger()
        with LoggedFailures() as failures:
            log.info("fine")
            try:
                raise ValueError("boom")
            except ValueError:
                log.failure("it failed", Failure())
            log.error("an error")
        log.error("after")
        self.assertEqual(len(failures.events), 2)
        self.assertIn("boom", failures.describe())
        # Trial sees logged failures too (and fails the test): this one
        # was logged on purpose.
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
