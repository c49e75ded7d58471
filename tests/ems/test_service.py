"""
Tests for L{ztnagw.ems.service}: the EMS API over real TLS sockets, with the
forwarder's own client code on the other side.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.ems.fixtures import RunningEms
from ztnagw.device import VerdictKind
from ztnagw.ems.api import DeviceReport
from ztnagw.ems.enrollment import AttemptLimiter
from ztnagw.forwarder.agent import TelemetryService
from ztnagw.forwarder.api import EmsError, postJson
from ztnagw.forwarder.enroll import EnrollmentFailed, EnrollmentPlan, enroll, probePin
from ztnagw.forwarder.profile import loadProfile
from ztnagw.http.pool import BytesBody, PoolSettings, UpstreamKey, UpstreamPool
from ztnagw.logs.entries import DEVICE_ENROLLED, ENROLLMENT_REFUSED
from ztnagw.tls.client import parsePin, pinnedClientCreator

REPORT = DeviceReport(hostName="pc1", osType="Linux", osVersion="12", user="alice", facts={"a": "1"})


class ServiceCase(TestCase):
    """
    An EMS listener on 127.0.0.1.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        self.base = os.path.abspath(self.mktemp())
        self.ems = RunningEms(os.path.join(self.base, "state"))
        yield self.ems.start()
        self.addCleanup(self.ems.stop)

    def plan(self, token: str, existing: Any = None, pin: bool = True, ca: bool = False, name: str = "p") -> EnrollmentPlan:
        """
        An enrollment plan against the fixture's EMS.
        """
        return EnrollmentPlan(
            emsUrl=self.ems.url,
            host="127.0.0.1",
            port=self.ems.port,
            token=token,
            pin=parsePin(self.ems.pin) if pin else None,
            caCertificates=(self.ems.ca.certificate,) if ca else (),
            directory=os.path.join(self.base, name),
            existing=existing,
            gateway=None,
        )

    @inlineCallbacks
    def rawPost(self, path: bytes, body: bytes, contentType: bytes = b"application/json", method: bytes = b"POST") -> Any:
        """
        Send raw bytes; return the status, headers and parsed JSON answer.
        """
        pool = UpstreamPool(reactor, PoolSettings())
        creator = pinnedClientCreator("127.0.0.1", parsePin(self.ems.pin))
        response = yield pool.request(
            UpstreamKey("127.0.0.1", self.ems.port, creator),
            method,
            path,
            [(b"Host", b"127.0.0.1"), (b"Content-Type", contentType)],
            BytesBody(body) if body else None,
        )
        from ztnagw.forwarder.api import _Collect

        done: Deferred[bytes] = Deferred()
        response.deliverBody(_Collect(done))
        data = yield done
        pool.closeIdle()
        return response.status, response.headers, json.loads(data)


class EnrollTests(ServiceCase):
    """
    Enrollment over the API.
    """

    @inlineCallbacks
    def test_enrollWithPin(self) -> Any:
        """
        With the listener's pin, a device enrolls: its profile holds the
        certificate and CA, the registry its record, the log the event.
        """
        profile = yield enroll(reactor, self.plan(self.ems.token(tags=["Lab"])), REPORT)
        self.assertEqual(loadProfile(profile.directory).uid, profile.uid)
        self.assertEqual(profile.gateway, "127.0.0.1:11443")
        self.assertEqual(profile.caCertificates, (self.ems.ca.certificate,))
        record = self.ems.store.get(profile.uid)
        self.assertEqual((record.certSerial, record.tags, record.user), (profile.certSerial, {"Lab"}, "alice"))
        self.assertEqual([e.kind for e in self.ems.events], [DEVICE_ENROLLED])
        self.assertEqual(self.ems.events[0].uid, profile.uid)

    @inlineCallbacks
    def test_knownWhenAnswered(self) -> Any:
        """
        When the enrollment is answered, the gateway's index already knows
        the device: it may connect to a VIP at once.
        """
        slow = RunningEms(os.path.join(self.base, "slow"), pollInterval=0.5)
        yield slow.start()
        self.addCleanup(slow.stop)
        plan = attrs.evolve(
            self.plan(slow.token()), port=slow.port, emsUrl=slow.url, pin=parsePin(slow.pin)
        )
        profile = yield enroll(reactor, plan, REPORT)
        record = slow.index.lookup(profile.uid)
        self.assertIsNotNone(record)
        self.assertEqual(record.certSerial, profile.certSerial)

    @inlineCallbacks
    def test_enrollWithCaFile(self) -> Any:
        """
        The EMS CA certificate authenticates the listener just as well; the
        profile then keeps the pin the EMS told, so that its telemetry does
        not depend on the CA (which a rotation replaces).
        """
        profile = yield enroll(reactor, self.plan(self.ems.token(), pin=False, ca=True), REPORT)
        self.assertEqual(profile.emsPin, parsePin(self.ems.pin))

    @inlineCallbacks
    def test_wrongPin(self) -> Any:
        """
        A listener whose key is not the pinned one gets nothing: the token
        is still unused afterwards.
        """
        token = self.ems.token()
        plan = attrs.evolve(self.plan(token), pin=b"\x00" * 32)
        error = yield self.assertFailure(enroll(reactor, plan, REPORT), EnrollmentFailed)
        self.assertIn("pinned", error.message)
        yield enroll(reactor, self.plan(token), REPORT)

    @inlineCallbacks
    def test_probe(self) -> Any:
        """
        Without a pin, the forwarder can read the listener's pin (and sends
        nothing).
        """
        pin = yield probePin(reactor, "127.0.0.1", self.ems.port)
        self.assertEqual(pin, parsePin(self.ems.pin))

    @inlineCallbacks
    def test_tokenRefusals(self) -> Any:
        """
        A used token is refused with its code; wrong tokens count towards
        the source's limit, then 429 with Retry-After.
        """
        token = self.ems.token()
        yield enroll(reactor, self.plan(token), REPORT)
        error = yield self.assertFailure(enroll(reactor, self.plan(token, name="q"), REPORT), EnrollmentFailed)
        self.assertEqual(error.code, "token-used")
        self.ems.service.api.limiter = AttemptLimiter(reactor.seconds, burst=2, perSecond=0.01)
        for _ in range(2):
            error = yield self.assertFailure(enroll(reactor, self.plan("zt1.000000000000." + "A" * 43, name="r"), REPORT), EnrollmentFailed)
            self.assertEqual(error.code, "token-invalid")
        error = yield self.assertFailure(enroll(reactor, self.plan(self.ems.token(), name="s"), REPORT), EnrollmentFailed)
        self.assertEqual(error.code, "too-many-attempts")
        status, headers, body = yield self.rawPost(b"/api/v1/enroll", b"{}")
        self.assertEqual(status, 429)
        self.assertTrue(int(headers.get(b"retry-after")) > 0)
        self.assertIn(ENROLLMENT_REFUSED, [e.kind for e in self.ems.events])
        for event in self.ems.events:
            self.assertNotIn("zt1.", event.msg or "")

    @inlineCallbacks
    def test_reenrollWithCertificate(self) -> Any:
        """
        A device presenting its certificate re-enrolls: same UID, new
        serial; its old certificate is then refused with 001.
        """
        first = yield enroll(reactor, self.plan(self.ems.token()), REPORT)
        second = yield enroll(reactor, self.plan(self.ems.token(), existing=first), REPORT)
        self.assertEqual(second.uid, first.uid)
        self.assertNotEqual(second.certSerial, first.certSerial)
        yield self.ems.waitForRecord(first.uid, lambda record: record.certSerial == second.certSerial)
        from ztnagw.device import PresentedCertificate

        old = self.ems.verifier.judge(PresentedCertificate.fromLeaf(first.certificate, 1, None))
        self.assertEqual((old.kind, old.error.code), (VerdictKind.SERIAL_MISMATCH, "001"))
        new = self.ems.verifier.judge(PresentedCertificate.fromLeaf(second.certificate, 1, None))
        self.assertEqual(new.kind, VerdictKind.VALID)

    @inlineCallbacks
    def test_reenrollWithoutCertificate(self) -> Any:
        """
        Naming a known UID without its certificate is refused (a token
        alone never takes over a device).
        """
        first = yield enroll(reactor, self.plan(self.ems.token()), REPORT)
        creator = pinnedClientCreator("127.0.0.1", parsePin(self.ems.pin))
        from ztnagw.forwarder.enroll import makeRequest
        from cryptography.hazmat.primitives.asymmetric import ec

        body = makeRequest(ec.generate_private_key(ec.SECP256R1()), self.ems.token(), REPORT, first.uid)
        error = yield self.assertFailure(
            postJson(reactor, "127.0.0.1", self.ems.port, creator, b"/api/v1/enroll", body), EmsError
        )
        self.assertEqual((error.status, error.code), (403, "reenrollment-refused"))

    @inlineCallbacks
    def test_badRequests(self) -> Any:
        """
        Malformed, oversized, mistyped and misrouted requests are JSON
        errors with stable codes.
        """
        cases = [
            ((b"/api/v1/enroll", b"{"), (400, "bad-request")),
            ((b"/api/v1/enroll", b'{"token": "x", "csr": "y", "junk": 1}'), (400, "bad-request")),
            ((b"/api/v1/enroll", b"[" * 1000), (400, "bad-request")),
            ((b"/api/v1/enroll", b'{"a":"' + b"x" * 70000 + b'"}'), (413, "body-too-large")),
            ((b"/api/v1/enroll", b'{"token": "x", "csr": "y"}'), (400, "csr-rejected")),
            ((b"/api/v2/nope", b"{}"), (404, "not-found")),
        ]
        for (path, body), expected in cases:
            status, _, answer = yield self.rawPost(path, body)
            self.assertEqual((status, answer["error"]["code"]), expected, path + body[:40])
        status, _, answer = yield self.rawPost(b"/api/v1/enroll", b"{}", contentType=b"text/plain")
        self.assertEqual((status, answer["error"]["code"]), (415, "unsupported-media-type"))
        status, headers, answer = yield self.rawPost(b"/api/v1/enroll", b"", method=b"GET")
        self.assertEqual((status, headers.get(b"allow")), (405, b"POST"))


class TelemetryTests(ServiceCase):
    """
    Telemetry over mutual TLS.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        yield super().setUp()
        self.profile = yield enroll(reactor, self.plan(self.ems.token()), REPORT)

    @inlineCallbacks
    def test_recorded(self) -> Any:
        """
        A report updates the record: last seen, source address, on-net,
        facts; the answer says how often to report.
        """
        reported = DeviceReport(hostName="pc2", osType="Linux", facts={"disk.root-encrypted": "true"})
        service = TelemetryService(reactor, self.profile, collect=lambda facts: reported)
        result = yield service.reportNow()
        self.assertTrue(result.ok)
        self.assertEqual(result.answer["telemetryInterval"], 3)
        self.assertEqual(service.interval, 3)
        record = self.ems.store.get(self.profile.uid)
        self.assertEqual((record.hostName, record.facts, record.publicIp, record.onNet), ("pc2", {"disk.root-encrypted": "true"}, "127.0.0.1", True))
        self.assertTrue(abs(record.lastSeen - reactor.seconds()) < 5)

    @inlineCallbacks
    def test_revoked(self) -> Any:
        """
        A revoked device's reports are refused with 063 and not recorded.
        """
        self.ems.store.update(self.profile.uid, lambda r: attrs.evolve(r, revoked=True, hostName="kept"))
        yield self.ems.waitForRecord(self.profile.uid, lambda record: record.revoked)
        service = TelemetryService(reactor, self.profile, collect=lambda facts: REPORT)
        result = yield service.reportNow()
        self.assertFalse(result.ok)
        self.assertEqual((result.error.status, result.error.code, result.error.ztnaCode), (403, "device-refused", "063"))
        self.assertEqual(self.ems.store.get(self.profile.uid).hostName, "kept")

    @inlineCallbacks
    def test_noCertificate(self) -> Any:
        """
        Telemetry without a device certificate is refused (401, 002).
        """
        creator = pinnedClientCreator("127.0.0.1", parsePin(self.ems.pin))
        error = yield self.assertFailure(
            postJson(reactor, "127.0.0.1", self.ems.port, creator, b"/api/v1/telemetry", {}), EmsError
        )
        self.assertEqual((error.status, error.code, error.ztnaCode), (401, "certificate-required", "002"))

    @inlineCallbacks
    def test_badReport(self) -> Any:
        """
        A malformed report is a 400 and changes nothing.
        """
        creator = self.profile.emsClientCreator()
        error = yield self.assertFailure(
            postJson(reactor, "127.0.0.1", self.ems.port, creator, b"/api/v1/telemetry", {"facts": {"bad name": 1}}),
            EmsError,
        )
        self.assertEqual((error.status, error.code), (400, "bad-request"))
