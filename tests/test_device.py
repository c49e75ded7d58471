"""
Tests for L{ztnagw.device}: presented certificates and device verdicts.
"""

from __future__ import annotations

from typing import Callable, Iterable

from attrs import evolve, frozen
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tests.support import pki
from ztnagw import errors
from ztnagw.device import (
    CN_NOT_UID,
    NOT_EMS_ISSUED,
    VERDICT_ERRORS,
    DeviceVerdict,
    PresentedCertificate,
    VerdictKind,
    certificateFingerprint,
    judgeDevice,
    subjectUid,
)
from ztnagw.registry.interfaces import IEndpointIndex
from ztnagw.registry.record import (
    REGISTERED,
    UNREGISTERED,
    EndpointRecord,
    canonicalSerial,
)


@implementer(IEndpointIndex)
class FakeIndex:
    """
    An in-memory L{IEndpointIndex} for tests.

    @ivar healthy: see L{IEndpointIndex.healthy}.
    @ivar failure: if set, L{lookup} raises it.
    @ivar lookups: every UID looked up, in order.
    """

    def __init__(self, records: Iterable[EndpointRecord] = (), healthy: bool = True):
        self._records = {r.uid: r for r in records}
        self.healthy = healthy
        self.failure: Exception | None = None
        self.lookups: list[str] = []

    def put(self, record: EndpointRecord) -> None:
        """
        Add or replace C{record}.
        """
        self._records[record.uid] = record

    def lookup(self, uid: str) -> EndpointRecord | None:
        """
        See L{IEndpointIndex.lookup}.
        """
        self.lookups.append(uid)
        if self.failure is not None:
            raise self.failure
        return self._records.get(uid)

    def records(self) -> Iterable[EndpointRecord]:
        """
        See L{IEndpointIndex.records}.
        """
        return list(self._records.values())

    def subscribe(
        self, observer: Callable[[str, EndpointRecord | None], None]
    ) -> Callable[[], None]:
        """
        See L{IEndpointIndex.subscribe}; this fake never notifies.
        """
        return lambda: None


@frozen
class Ems:
    """
    The EMS settings L{judgeDevice} reads.
    """

    serialNumber: str = "FCTEMS0000000001"
    outOfSyncThreshold: float = 180.0


NOW = 1_800_000_000.0
EMS_ID = 1
CA = pki.makeCA("EMS 1 CA", keySlot=10)
OTHER_CA = pki.makeCA("Not an EMS", keySlot=11)
DEVICE = pki.makeDevice(CA, pki.DEVICE_UID, serial=0x2B8D4FF0E71FE7E0)


def goodRecord(**changes: object) -> EndpointRecord:
    """
    The record that makes L{DEVICE} valid at L{NOW}, with C{changes}.
    """
    record = EndpointRecord(
        uid=pki.DEVICE_UID,
        certSerial=canonicalSerial(DEVICE.serial),
        emsSerial=Ems().serialNumber,
        lastSeen=NOW - 10,
    )
    return evolve(record, **changes)  # type: ignore[arg-type]


def presented(**changes: object) -> PresentedCertificate:
    """
    What a handshake with L{DEVICE} captures, with C{changes}.
    """
    return evolve(  # type: ignore[arg-type]
        PresentedCertificate.fromLeaf(DEVICE.certificate, EMS_ID, None), **changes
    )


class SubjectUidTests(SynchronousTestCase):
    """
    Tests for L{subjectUid}.
    """

    def uidOf(self, commonNames: tuple[str, ...], **kwargs: object) -> str | None:
        """
        The UID of a certificate with these subject CNs.
        """
        leaf = pki.makeLeaf(CA, commonNames=commonNames, **kwargs)  # type: ignore[arg-type]
        return subjectUid(leaf.certificate)

    def test_uid(self) -> None:
        """
        A single CN that is a UID is the UID.
        """
        self.assertEqual(self.uidOf((pki.DEVICE_UID,)), pki.DEVICE_UID)

    def test_lowerCase(self) -> None:
        """
        A lower-case UID is not folded: it is not a UID.
        """
        self.assertIsNone(self.uidOf((pki.DEVICE_UID.lower(),)))

    def test_spaces(self) -> None:
        """
        Surrounding spaces are not trimmed.
        """
        self.assertIsNone(self.uidOf((" " + pki.DEVICE_UID,)))
        self.assertIsNone(self.uidOf((pki.DEVICE_UID + " ",)))

    def test_twoCommonNames(self) -> None:
        """
        Two CNs, even two valid UIDs or the same one twice, name no device.
        """
        other = "0" * 32
        self.assertIsNone(self.uidOf((pki.DEVICE_UID, other)))
        self.assertIsNone(self.uidOf((other, pki.DEVICE_UID)))
        self.assertIsNone(self.uidOf((pki.DEVICE_UID, pki.DEVICE_UID)))

    def test_nulByte(self) -> None:
        """
        A UID followed by a NUL byte and more text is not a UID.
        """
        self.assertIsNone(self.uidOf((pki.DEVICE_UID + "\x00.evil",)))

    def test_onlyInSubjectAlternativeName(self) -> None:
        """
        A UID only in a subject alternative name does not count.
        """
        self.assertIsNone(self.uidOf((), dnsNames=[pki.DEVICE_UID]))

    @given(st.text(max_size=40))
    def test_onlyWellFormed(self, text: str) -> None:
        """
        Whatever one CN holds, the UID is that exact text or nothing.
        """
        try:
            uid = self.uidOf((text,), keySlot=1) if text else None
        except ValueError:
            # cryptography refuses some texts (empty, too long) outright.
            return
        if uid is not None:
            self.assertEqual(uid, text)
            self.assertRegex(uid, r"\A[0-9A-F]{32}\Z")


class PresentedCertificateTests(SynchronousTestCase):
    """
    Tests for L{PresentedCertificate.fromLeaf}.
    """

    def test_good(self) -> None:
        """
        A device certificate from an EMS CA is described with its UID,
        canonical serial and SHA-256 fingerprint, and no problem.
        """
        p = PresentedCertificate.fromLeaf(DEVICE.certificate, EMS_ID, None)
        self.assertEqual(p.uid, pki.DEVICE_UID)
        self.assertEqual(p.certSerial, "2B8D4FF0E71FE7E0")
        self.assertEqual(p.emsId, EMS_ID)
        self.assertIsNone(p.problem)
        self.assertEqual(len(p.fingerprint), 64)
        self.assertEqual(p.fingerprint, certificateFingerprint(DEVICE.certificate))
        self.assertEqual(p.leaf, DEVICE.certificate)

    def test_problemKept(self) -> None:
        """
        A problem found by the chain checks is kept.
        """
        p = PresentedCertificate.fromLeaf(
            DEVICE.certificate, EMS_ID, "certificate has expired"
        )
        self.assertEqual(p.problem, "certificate has expired")
        self.assertEqual(p.uid, pki.DEVICE_UID)

    def test_noEms(self) -> None:
        """
        Without an issuing EMS the certificate is never problem-free.
        """
        p = PresentedCertificate.fromLeaf(DEVICE.certificate, None, None)
        self.assertEqual(p.problem, NOT_EMS_ISSUED)

    def test_noUid(self) -> None:
        """
        Without a UID the certificate is never problem-free.
        """
        leaf = pki.makeLeaf(CA, commonNames=("laptop",)).certificate
        p = PresentedCertificate.fromLeaf(leaf, EMS_ID, None)
        self.assertEqual(p.problem, CN_NOT_UID)
        self.assertIsNone(p.uid)

    def test_serialPadding(self) -> None:
        """
        Serials are spelled like FortiOS's C{Client cert SN}: upper-case hex
        padded to whole bytes.
        """
        leaf = pki.makeDevice(CA, pki.DEVICE_UID, serial=0xABC).certificate
        p = PresentedCertificate.fromLeaf(leaf, EMS_ID, None)
        self.assertEqual(p.certSerial, "0ABC")

    def test_subjectText(self) -> None:
        """
        L{PresentedCertificate.subjectText} spells the subject for logs.
        """
        self.assertEqual(presented().subjectText(), f"CN={pki.DEVICE_UID}")


class JudgeDeviceTests(SynchronousTestCase):
    """
    Tests for L{judgeDevice}, one per verdict and per ordering rule.
    """

    def judge(
        self,
        record: EndpointRecord | None = None,
        p: PresentedCertificate | None = None,
        index: FakeIndex | None = None,
        ems: Ems | None = None,
        now: float = NOW,
    ) -> DeviceVerdict:
        """
        Judge C{p} (default: L{DEVICE} well captured) against an index with
        C{record} (default: L{goodRecord}).
        """
        if index is None:
            index = FakeIndex([record if record is not None else goodRecord()])
        return judgeDevice(
            p if p is not None else presented(),
            {EMS_ID: index},
            {EMS_ID: ems or Ems()},
            now,
        )

    def assertVerdict(
        self, verdict: DeviceVerdict, kind: VerdictKind, error: errors.ZtnaError | None
    ) -> None:
        """
        C{verdict} is of C{kind} and denies with C{error}.
        """
        self.assertEqual((verdict.kind, verdict.error), (kind, error), verdict.reason)

    def test_valid(self) -> None:
        """
        An enrolled, online device with the enrolled certificate is valid
        and carries its record.
        """
        v = self.judge()
        self.assertVerdict(v, VerdictKind.VALID, None)
        self.assertTrue(v.valid)
        self.assertEqual(v.record, goodRecord())
        self.assertEqual(v.presented, presented())

    def test_noCertificate(self) -> None:
        """
        No certificate is its own verdict, without a code and without
        reading the registry.
        """
        index = FakeIndex([goodRecord()])
        v = judgeDevice(None, {EMS_ID: index}, {EMS_ID: Ems()}, NOW)
        self.assertVerdict(v, VerdictKind.NO_CERTIFICATE, None)
        self.assertFalse(v.valid)
        self.assertEqual(index.lookups, [])

    def test_invalid(self) -> None:
        """
        A certificate with a problem is invalid (001) with that problem as
        the reason, whatever the registry says.
        """
        index = FakeIndex([goodRecord()], healthy=False)
        v = self.judge(p=presented(problem="certificate has expired"), index=index)
        self.assertVerdict(v, VerdictKind.INVALID, errors.INVALID_CERTIFICATE)
        self.assertEqual(v.reason, "certificate has expired")
        self.assertEqual(index.lookups, [])

    def test_invalidWithoutUidOrEms(self) -> None:
        """
        A hand-built capture without a UID or an EMS is invalid even if it
        claims no problem.
        """
        for p in (presented(uid=None), presented(emsId=None)):
            self.assertVerdict(
                self.judge(p=p), VerdictKind.INVALID, errors.INVALID_CERTIFICATE
            )

    def test_registryUnhealthy(self) -> None:
        """
        An unhealthy index fails closed (066) before the UID is looked up.
        """
        index = FakeIndex([goodRecord()], healthy=False)
        v = self.judge(index=index)
        self.assertVerdict(v, VerdictKind.REGISTRY_UNAVAILABLE, errors.UNKNOWN_DEVICE)
        self.assertIn("cannot be read", v.reason)
        self.assertEqual(index.lookups, [])

    def test_registryRaises(self) -> None:
        """
        An index that raises fails closed (066) and says why.
        """
        index = FakeIndex([goodRecord()])
        index.failure = KeyError("boom")
        v = self.judge(index=index)
        self.assertVerdict(v, VerdictKind.REGISTRY_UNAVAILABLE, errors.UNKNOWN_DEVICE)
        self.assertIn("cannot be read", v.reason)
        self.assertIn("KeyError", v.reason)

    def test_emsNotConfigured(self) -> None:
        """
        A certificate from an EMS with no index or no settings fails closed.
        """
        p = presented(emsId=2)
        v = judgeDevice(p, {EMS_ID: FakeIndex()}, {EMS_ID: Ems(), 2: Ems()}, NOW)
        self.assertVerdict(v, VerdictKind.REGISTRY_UNAVAILABLE, errors.UNKNOWN_DEVICE)
        v = judgeDevice(p, {2: FakeIndex()}, {EMS_ID: Ems()}, NOW)
        self.assertVerdict(v, VerdictKind.REGISTRY_UNAVAILABLE, errors.UNKNOWN_DEVICE)

    def test_indexReturnsAnotherRecord(self) -> None:
        """
        An index that answers with another device's record fails closed.
        """

        class Confused(FakeIndex):
            def lookup(self, uid: str) -> EndpointRecord | None:
                return goodRecord(uid="0" * 32)

        v = self.judge(index=Confused())
        self.assertVerdict(v, VerdictKind.REGISTRY_UNAVAILABLE, errors.UNKNOWN_DEVICE)

    def test_unknown(self) -> None:
        """
        A UID without a record is unknown (066).
        """
        v = self.judge(index=FakeIndex([goodRecord(uid="0" * 32)]))
        self.assertVerdict(v, VerdictKind.UNKNOWN, errors.UNKNOWN_DEVICE)
        self.assertIn(pki.DEVICE_UID, v.reason)

    def test_unregistered(self) -> None:
        """
        A record that is not registered counts as no record (066).
        """
        v = self.judge(goodRecord(registrationStatus=UNREGISTERED))
        self.assertVerdict(v, VerdictKind.UNKNOWN, errors.UNKNOWN_DEVICE)

    def test_serialMismatch(self) -> None:
        """
        A certificate whose serial is not the enrolled one is refused (001).
        """
        v = self.judge(goodRecord(certSerial="01"))
        self.assertVerdict(v, VerdictKind.SERIAL_MISMATCH, errors.INVALID_CERTIFICATE)
        self.assertIn("2B8D4FF0E71FE7E0", v.reason)

    def test_serialCaseMatters(self) -> None:
        """
        Serials are compared as canonical text: a record spelled otherwise
        does not match.
        """
        v = self.judge(goodRecord(certSerial=canonicalSerial(DEVICE.serial).lower()))
        self.assertEqual(v.kind, VerdictKind.SERIAL_MISMATCH)

    def test_zeroSerial(self) -> None:
        """
        A record whose serial is all zeros never matches, even a capture
        with that serial (FortiOS: all-zero SN is an invalid certificate).
        """
        p = presented(certSerial="0000")
        v = self.judge(goodRecord(certSerial="0000"), p=p)
        self.assertVerdict(v, VerdictKind.SERIAL_MISMATCH, errors.INVALID_CERTIFICATE)

    def test_emsSerialMismatch(self) -> None:
        """
        A record registered by another EMS than the one whose CA issued the
        certificate makes the certificate invalid (001).
        """
        v = self.judge(goodRecord(emsSerial="FCTEMS9999999999"))
        self.assertVerdict(v, VerdictKind.INVALID, errors.INVALID_CERTIFICATE)
        self.assertIn("FCTEMS9999999999", v.reason)

    def test_revoked(self) -> None:
        """
        A revoked device is refused with 063.
        """
        v = self.judge(goodRecord(revoked=True))
        self.assertVerdict(v, VerdictKind.REVOKED, errors.CERTIFICATE_REVOKED)
        self.assertEqual(v.record, goodRecord(revoked=True))

    def test_quarantined(self) -> None:
        """
        A quarantined device is refused with 064.
        """
        v = self.judge(goodRecord(quarantined=True))
        self.assertVerdict(v, VerdictKind.QUARANTINED, errors.TAG_DENY)

    def test_offline(self) -> None:
        """
        A device silent for longer than the EMS's out-of-sync threshold is
        offline (067); at the threshold it is still online.
        """
        v = self.judge(goodRecord(lastSeen=NOW - 181))
        self.assertVerdict(v, VerdictKind.OFFLINE, errors.DEVICE_OFFLINE)
        self.assertIn("181 s ago", v.reason)
        self.assertTrue(self.judge(goodRecord(lastSeen=NOW - 180)).valid)
        v = self.judge(goodRecord(lastSeen=NOW - 100), ems=Ems(outOfSyncThreshold=60))
        self.assertEqual(v.kind, VerdictKind.OFFLINE)

    def test_neverSeen(self) -> None:
        """
        A device that never reported telemetry is offline, unless declared
        always present.
        """
        v = self.judge(goodRecord(lastSeen=None))
        self.assertVerdict(v, VerdictKind.OFFLINE, errors.DEVICE_OFFLINE)
        self.assertIn("never", v.reason)
        self.assertTrue(
            self.judge(goodRecord(lastSeen=None, staticPresence=True)).valid
        )

    def test_order(self) -> None:
        """
        When several things are wrong the earliest check decides: serial
        before EMS serial before revoked before quarantined before offline.
        """
        everything = goodRecord(
            certSerial="01",
            emsSerial="X",
            revoked=True,
            quarantined=True,
            lastSeen=None,
        )
        expected = [
            VerdictKind.SERIAL_MISMATCH,
            VerdictKind.INVALID,
            VerdictKind.REVOKED,
            VerdictKind.QUARANTINED,
            VerdictKind.OFFLINE,
            VerdictKind.VALID,
        ]
        fixes: list[dict[str, object]] = [
            {"certSerial": goodRecord().certSerial},
            {"emsSerial": goodRecord().emsSerial},
            {"revoked": False},
            {"quarantined": False},
            {"lastSeen": NOW},
            {},
        ]
        record = everything
        for kind, fix in zip(expected, fixes):
            self.assertEqual(self.judge(record).kind, kind)
            record = evolve(record, **fix)  # type: ignore[arg-type]

    def test_errorTable(self) -> None:
        """
        Every kind has an entry in the error table, and the codes are the
        documented ones.
        """
        self.assertEqual(set(VERDICT_ERRORS), set(VerdictKind))
        self.assertEqual(
            {k: (e.code if e else None) for k, e in VERDICT_ERRORS.items()},
            {
                VerdictKind.NO_CERTIFICATE: None,
                VerdictKind.INVALID: "001",
                VerdictKind.REGISTRY_UNAVAILABLE: "066",
                VerdictKind.UNKNOWN: "066",
                VerdictKind.SERIAL_MISMATCH: "001",
                VerdictKind.REVOKED: "063",
                VerdictKind.QUARANTINED: "064",
                VerdictKind.OFFLINE: "067",
                VerdictKind.VALID: None,
            },
        )

    def test_fakeIndexIsAnIndex(self) -> None:
        """
        The fake used here honours L{IEndpointIndex}.
        """
        self.assertTrue(verifyObject(IEndpointIndex, FakeIndex()))


records = st.builds(
    EndpointRecord,
    uid=st.sampled_from([pki.DEVICE_UID, "0" * 32]),
    certSerial=st.sampled_from(["2B8D4FF0E71FE7E0", "00", "01", "2b8d4ff0e71fe7e0"]),
    emsSerial=st.sampled_from(["FCTEMS0000000001", "FCTEMS0000000002", ""]),
    quarantined=st.booleans(),
    revoked=st.booleans(),
    registrationStatus=st.sampled_from([REGISTERED, UNREGISTERED]),
    lastSeen=st.one_of(st.none(), st.floats(NOW - 10_000, NOW + 100)),
    staticPresence=st.booleans(),
)


class JudgeDevicePropertyTests(SynchronousTestCase):
    """
    Properties of L{judgeDevice} over arbitrary records, thresholds and
    times.
    """

    @given(
        records,
        st.floats(0, 5_000),
        st.floats(NOW - 1_000, NOW + 10_000),
        st.booleans(),
    )
    def test_firstFailingCheckDecides(
        self, record: EndpointRecord, threshold: float, now: float, healthy: bool
    ) -> None:
        """
        The verdict is the first failing check of the documented order, its
        error is the table's, and only a device passing every check is
        valid.
        """
        p = presented()
        ems = Ems(outOfSyncThreshold=threshold)
        v = judgeDevice(p, {EMS_ID: FakeIndex([record], healthy)}, {EMS_ID: ems}, now)
        known = record.uid == p.uid and record.registrationStatus == REGISTERED
        checks = [
            (VerdictKind.REGISTRY_UNAVAILABLE, healthy),
            (VerdictKind.UNKNOWN, known),
            (
                VerdictKind.SERIAL_MISMATCH,
                record.certSerial == p.certSerial and record.certSerial != "00",
            ),
            (VerdictKind.INVALID, record.emsSerial == ems.serialNumber),
            (VerdictKind.REVOKED, not record.revoked),
            (VerdictKind.QUARANTINED, not record.quarantined),
            (
                VerdictKind.OFFLINE,
                record.staticPresence
                or (record.lastSeen is not None and now - record.lastSeen <= threshold),
            ),
        ]
        expected = next((kind for kind, ok in checks if not ok), VerdictKind.VALID)
        self.assertEqual(v.kind, expected, v.reason)
        self.assertEqual(v.error, VERDICT_ERRORS[v.kind])
        self.assertEqual(v.presented, p)
        self.assertTrue(v.reason)
        if not healthy or record.uid != p.uid:
            self.assertIsNone(v.record)
        else:
            self.assertEqual(v.record, record)

    @given(records, st.floats(NOW - 1_000, NOW + 10_000))
    def test_laterTimeNeverRevives(self, record: EndpointRecord, now: float) -> None:
        """
        Time only moves a device towards offline: a device that is not
        valid at C{now} is not valid later either, and an offline device
        stays offline.
        """
        index = {EMS_ID: FakeIndex([record])}
        ems = {EMS_ID: Ems()}
        before = judgeDevice(presented(), index, ems, now)
        after = judgeDevice(presented(), index, ems, now + 1_000)
        if not before.valid:
            self.assertFalse(after.valid)
        if before.kind is VerdictKind.OFFLINE:
            self.assertEqual(after.kind, VerdictKind.OFFLINE)

    @given(st.one_of(st.none(), st.builds(lambda: presented(problem="x"))), records)
    def test_badCertificateNeverReachesRegistry(
        self, p: PresentedCertificate | None, record: EndpointRecord
    ) -> None:
        """
        Without a good certificate the registry is never consulted.
        """
        index = FakeIndex([record])
        judgeDevice(p, {EMS_ID: index}, {EMS_ID: Ems()}, NOW)
        self.assertEqual(index.lookups, [])
