"""
Fuzz tests of the EMS enrollment API through the real HTTP server protocol
and L{ztnagw.ems.service.EmsApi} (L{tests.fuzz.ems}): any request, body or
content type gets a JSON answer with a documented status, never a 500 or a
logged failure; an answer of 200 is a real enrollment, recorded in the
registry with a certificate of the EMS CA.

L{tests.ems.test_api} fuzzes the JSON reader and the device report alone;
this reaches the token check, the CSR check, the signing and the registry
transaction too, with bodies built around a valid token and a valid CSR so
that the fuzz gets past the first refusal.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz.ems import REPORT, InMemoryEms, enrollRequest

#: The statuses docs/ems.md documents for the API.
DOCUMENTED = frozenset({200, 400, 401, 403, 404, 405, 408, 409, 413, 415, 429})

_SENTINEL_TOKEN = object()
_SENTINEL_CSR = object()

_junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _mutatedPem(pem: str, data: st.DataObject) -> str:
    """
    C{pem} with a few characters changed, cut or repeated.
    """
    action = data.draw(st.sampled_from(["flip", "cut", "double", "header", "two"]))
    if action == "flip":
        index = data.draw(st.integers(0, len(pem) - 1))
        return pem[:index] + data.draw(st.sampled_from(["A", "=", "-", "\n", "\x00", "é"])) + pem[index + 1:]
    if action == "cut":
        return pem[: data.draw(st.integers(0, len(pem)))]
    if action == "double":
        return pem + pem
    if action == "header":
        return pem.replace("CERTIFICATE REQUEST", data.draw(st.sampled_from(["CERTIFICATE", "PRIVATE KEY", "X"])))
    return pem.replace("-----END", "\n-----END", 1)


@st.composite
def enrollmentBodies(draw: Any, token: str, csr: str) -> bytes:
    """
    An enrollment body: usually a JSON object with the API's fields, each
    valid, missing, mistyped or mutated; sometimes raw or damaged JSON.
    """
    data = draw(st.data())
    shape = draw(st.sampled_from(["object", "object", "object", "damaged", "raw"]))
    body: dict[str, Any] = {}
    choice = draw(st.sampled_from(["valid", "valid", "missing", "junk", "wrong", "long"]))
    if choice != "missing":
        body["token"] = {
            "valid": token, "junk": draw(_junk), "wrong": token[:-1] + ("A" if token[-1] != "A" else "B"),
            "long": token * 20,
        }[choice]
    choice = draw(st.sampled_from(["valid", "valid", "missing", "junk", "mutated"]))
    if choice != "missing":
        body["csr"] = {"valid": csr, "junk": draw(_junk), "mutated": _mutatedPem(csr, data)}.get(choice, csr)
    # Each further field is usually valid or absent, so that most bodies
    # reach the token and CSR checks.
    if draw(st.booleans()):
        body["device"] = draw(
            st.sampled_from([REPORT, {}, {"hostName": "x" * 500}, {"ips": ["300.1.1.1"]}, {"facts": {"a": [1]}}])
            | _junk
            if draw(st.integers(0, 3)) == 0
            else st.just(REPORT)
        )
    if draw(st.integers(0, 4)) == 0:
        body["uid"] = draw(st.sampled_from(["0" * 32, "A" * 32, "a" * 32, "0" * 31, "G" * 32]) | _junk)
    if draw(st.integers(0, 5)) == 0:
        body[draw(st.text(max_size=6))] = draw(_junk)
    encoded = json.dumps(body).encode("utf-8")
    if shape == "object":
        return encoded
    if shape == "damaged":
        index = draw(st.integers(0, len(encoded)))
        return encoded[:index] + draw(st.binary(max_size=4)) + encoded[index + draw(st.integers(0, 3)):]
    return draw(st.binary(max_size=200))


class EnrollmentApiTests(SynchronousTestCase):
    """
    The API answers every request with a documented JSON answer.
    """

    def setUp(self) -> None:
        self.ems = InMemoryEms(self.mktemp())
        self.addCleanup(self.ems.close)

    def check(self, request: bytes, cuts: list[int] = ()) -> list[tuple[int, Any]]:  # type: ignore[assignment]
        """
        Send C{request}; assert every answer is documented JSON, that 200s
        are real enrollments, and that nothing was logged as failed.
        """
        head = request.startswith(b"HEAD ")
        answers, failures = self.ems.exchange(request, cuts, head)
        self.assertEqual(failures.events, [], failures.describe())
        for status, answer in answers:
            self.assertIn(status, DOCUMENTED, answer)
            if head:
                self.assertNotEqual(status, 200)
            elif status == 200:
                certificate = x509.load_pem_x509_certificate(answer["certificate"].encode("ascii"))
                self.assertEqual(certificate.issuer, self.ems.ca.certificate.subject)
                stored = self.ems.store.get(answer["uid"])
                self.assertEqual(stored.certSerial, answer["certSerial"])
            else:
                self.assertIsInstance(answer["error"]["code"], str)
        return answers

    @settings(max_examples=150)
    @given(st.data())
    def test_anyBody(self, data: st.DataObject) -> None:
        """
        Enrollment bodies around a valid token and CSR, damaged in every
        field: a documented answer each.
        """
        body = data.draw(enrollmentBodies(self.ems.token, self.ems.csr))
        self.check(enrollRequest(body))

    @settings(max_examples=100)
    @given(
        st.sampled_from([b"/api/v1/enroll", b"/api/v1/telemetry", b"/api/v1/enroll/", b"/api/v2/enroll", b"/"]),
        st.sampled_from([b"POST", b"GET", b"PUT", b"HEAD", b"OPTIONS"]),
        st.sampled_from([b"application/json", b"Application/JSON; charset=utf-8", b"text/plain", b""]),
        st.binary(max_size=64),
        st.lists(st.integers(0, 300), max_size=5),
    )
    def test_anyRequest(self, path: bytes, method: bytes, contentType: bytes, body: bytes, cuts: list[int]) -> None:
        """
        Any method, path and content type, with any body, in any pieces.
        """
        request = enrollRequest(body, contentType, path).replace(b"POST", method, 1)
        self.check(request, cuts)

    def test_realEnrollment(self) -> None:
        """
        The fuzz's valid body enrolls, so the 200 branch is exercised.
        """
        body = json.dumps({"token": self.ems.token, "csr": self.ems.csr, "device": REPORT}).encode("utf-8")
        [(status, answer)] = self.check(enrollRequest(body))
        self.assertEqual(status, 200)
