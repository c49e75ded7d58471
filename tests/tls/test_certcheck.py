"""
Tests for L{ztnagw.tls.certcheck}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from OpenSSL.SSL import X509VerificationCodes as Codes
from twisted.trial.unittest import SynchronousTestCase

from tests.support import pki
from tests.tls.loopback import DEVICE, EMS_CA
from ztnagw.device import CN_NOT_UID, NOT_EMS_ISSUED
from ztnagw.tls import certcheck
from ztnagw.tls.certcheck import (
    PRECEDENCE,
    certificateProblem,
    leafProblems,
    verifyErrorProblem,
)

_ALL_CODES = sorted(
    value
    for name, value in vars(Codes).items()
    if name.startswith("ERR_") and isinstance(value, int)
)


class VerifyErrorProblemTests(SynchronousTestCase):
    """
    Tests for L{verifyErrorProblem}.
    """

    def test_examples(self) -> None:
        """
        The errors a client certificate commonly causes have plain reasons.
        """
        cases = [
            (Codes.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0, NOT_EMS_ISSUED),
            (Codes.ERR_DEPTH_ZERO_SELF_SIGNED_CERT, 0, NOT_EMS_ISSUED),
            (Codes.ERR_SELF_SIGNED_CERT_IN_CHAIN, 1, NOT_EMS_ISSUED),
            (Codes.ERR_CERT_HAS_EXPIRED, 0, certcheck.EXPIRED),
            (Codes.ERR_CERT_NOT_YET_VALID, 0, certcheck.NOT_YET_VALID),
            (Codes.ERR_CERT_HAS_EXPIRED, 1, certcheck.BAD_ISSUER),
            (Codes.ERR_INVALID_PURPOSE, 0, certcheck.NO_CLIENT_AUTH),
            (Codes.ERR_INVALID_PURPOSE, 1, certcheck.ISSUER_NOT_CLIENT_AUTH),
            (Codes.ERR_CERT_SIGNATURE_FAILURE, 0, certcheck.BAD_SIGNATURE),
            (Codes.ERR_CERT_CHAIN_TOO_LONG, 1, certcheck.INTERMEDIATE),
            (66, 0, certcheck.WEAK),
        ]
        for errno, depth, reason in cases:
            self.assertEqual(verifyErrorProblem(errno, depth), reason, errno)

    def test_unknown(self) -> None:
        """
        An error without a plain reason is named by number and OpenSSL name.
        """
        self.assertEqual(
            verifyErrorProblem(Codes.ERR_PERMITTED_VIOLATION, 0),
            "certificate does not verify (OpenSSL verify error 47, "
            "ERR_PERMITTED_VIOLATION)",
        )
        self.assertIn("12345, unknown", verifyErrorProblem(12345, 0))

    @given(st.sampled_from(_ALL_CODES) | st.integers(1, 200), st.integers(0, 3))
    def test_alwaysAReason(self, errno: int, depth: int) -> None:
        """
        Every error gets a non-empty reason that is either a known one or
        names the error number.
        """
        reason = verifyErrorProblem(errno, depth)
        self.assertTrue(reason in PRECEDENCE or f"error {errno}," in reason, reason)


class LeafProblemsTests(SynchronousTestCase):
    """
    Tests for L{leafProblems}.
    """

    def test_good(self) -> None:
        """
        An EMS device certificate has no problem of its own.
        """
        self.assertEqual(leafProblems(DEVICE.certificate), [])

    def test_everythingWrong(self) -> None:
        """
        No EKU, CA flag and no UID are all reported.
        """
        leaf = pki.makeCA("laptop", issuer=EMS_CA)
        self.assertEqual(
            leafProblems(leaf.certificate),
            [certcheck.NO_CLIENT_AUTH, certcheck.LEAF_IS_CA, CN_NOT_UID],
        )


class CertificateProblemTests(SynchronousTestCase):
    """
    Tests for L{certificateProblem}.
    """

    def test_good(self) -> None:
        """
        A device certificate, directly from an EMS CA, without errors, has
        no problem.
        """
        self.assertIsNone(certificateProblem(DEVICE.certificate, [], 1, True))

    def test_notFromEms(self) -> None:
        """
        A depth-1 issuer that is no EMS CA, or no issuer at all, is "not
        issued by an EMS CA".
        """
        self.assertEqual(
            certificateProblem(DEVICE.certificate, [], 1, False), NOT_EMS_ISSUED
        )
        self.assertEqual(
            certificateProblem(DEVICE.certificate, [], 0, False), NOT_EMS_ISSUED
        )

    def test_intermediate(self) -> None:
        """
        A chain deeper than leaf + CA is an intermediate chain.
        """
        self.assertEqual(
            certificateProblem(DEVICE.certificate, [], 2, False),
            certcheck.INTERMEDIATE,
        )

    @given(
        st.lists(st.tuples(st.integers(0, 2), st.sampled_from(_ALL_CODES)), max_size=4),
        st.integers(0, 3),
        st.booleans(),
    )
    def test_precedence(
        self, errors: list[tuple[int, int]], depth: int, fromEms: bool
    ) -> None:
        """
        The chosen reason is the highest-ranked of all the reasons that
        apply, so it does not depend on the order OpenSSL reported them.
        """
        problem = certificateProblem(DEVICE.certificate, errors, depth, fromEms)
        reversed_ = certificateProblem(
            DEVICE.certificate, list(reversed(errors)), depth, fromEms
        )
        self.assertEqual(problem, reversed_)
        reasons = [verifyErrorProblem(e, d) for d, e in errors]
        if depth > 1:
            reasons.append(certcheck.INTERMEDIATE)
        elif not fromEms:
            reasons.append(NOT_EMS_ISSUED)
        if not reasons:
            self.assertIsNone(problem)
            return
        assert problem is not None
        self.assertIn(problem, reasons)
        known = [r for r in reasons if r in PRECEDENCE]
        if known:
            self.assertEqual(problem, min(known, key=PRECEDENCE.index))
