# -*- test-case-name: tests.ems.test_enrollment -*-
"""
Enrollment: a token and a CSR in, a device certificate and a registry
record out, all or nothing.

A device enrolls by sending (C{POST /api/v1/enroll}, see C{docs/ems.md})
an enrollment token, a certificate signing request and what it knows about
itself.  L{Enroller.enroll} then, in one registry transaction:

  1. checks the token (L{ztnagw.ems.tokens.verifyToken}: known, secret
     right, not revoked, not used up, not expired);
  2. decides the device's UID: a new one from the EMS, or, for the
     re-enrollment of a known device, its own, but only with proof that
     the client is that device: the device's current certificate
     presented on the enrollment connection, or a token created for that
     UID (C{ztnagw token create --uid}).  A token alone never lets anyone
     take over an existing UID;
  3. signs the checked CSR with a new serial
     (L{ztnagw.ems.signing.issueDeviceCertificate}), so that the device's
     previous certificate, if any, now fails with 001;
  4. writes the endpoint record (registered, tags from the token, the
     reported facts) and counts the token's use.

The transaction commits after all four, or nothing happened: a crash
(even C{kill -9}) in the middle leaves neither a record without a token
use nor a used token without its record, and the signed certificate is
never sent.

L{AttemptLimiter} slows down token guessing: failed attempts are counted
per source address, and a source over its allowance is refused (429)
before any registry work.

L{Enroller.enroll} blocks (SQLite, signing): the EMS service runs it in a
thread.
"""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections import OrderedDict
from typing import Any, Callable

from attrs import evolve, frozen
from cryptography import x509

from ztnagw.ems.api import ApiError, DeviceReport, checkFields, parseDeviceReport, text
from ztnagw.ems.ca import EmsCertificateAuthority
from ztnagw.ems.csr import SigningRequestRejected, parseCertificateSigningRequest
from ztnagw.ems.identifiers import newSerial, newUid
from ztnagw.ems.signing import DEVICE_VALIDITY, issueDeviceCertificate
from ztnagw.ems.tokens import EnrollmentToken, TokenRefused, recordUse, verifyToken
from ztnagw.registry.interfaces import IEndpointStore
from ztnagw.registry.record import REGISTERED, EndpointRecord, canonicalSerial, isUid

__all__ = [
    "AttemptLimiter",
    "Enrolled",
    "Enroller",
    "EnrollmentRequest",
    "Proof",
    "parseEnrollmentRequest",
    "recordFromReport",
]

#: How far a device certificate's validity starts in the past, for devices
#: whose clock runs a little slow.
BACKDATE = datetime.timedelta(minutes=5)

_REQUEST_FIELDS = ("token", "csr", "uid", "device")


@frozen
class EnrollmentRequest:
    """
    A checked enrollment request.

    @ivar token: the enrollment token as sent.
    @ivar csr: the certificate signing request (PEM), not yet checked.
    @ivar uid: the UID the client asks to re-enroll, if it is a known
        device; C{None} for a new device.
    @ivar device: what the device reported about itself.
    """

    token: str
    csr: bytes
    uid: str | None
    device: DeviceReport


def parseEnrollmentRequest(body: dict[str, Any]) -> EnrollmentRequest:
    """
    Check the JSON object of an enrollment request.

    @raise ApiError: 400 C{bad-request} for unknown or malformed fields.
    """
    where = "the enrollment request"
    checkFields(body, _REQUEST_FIELDS, where)
    token = text(body, "token", where, maxLength=200, required=True)
    csr = body.get("csr")
    if not isinstance(csr, str) or not csr:
        raise ApiError(400, "bad-request", f"{where} needs the field 'csr' (PEM text)")
    uid = text(body, "uid", where, maxLength=32)
    if uid is not None and not isUid(uid):
        raise ApiError(400, "bad-request", f"{where}: 'uid' is not a FortiClient UID (32 upper-case hex digits)")
    device = parseDeviceReport(body.get("device", {}), "the device report")
    assert token is not None
    return EnrollmentRequest(token=token, csr=csr.encode("utf-8"), uid=uid, device=device)


@frozen
class Proof:
    """
    What the enrollment connection proves about the client: the device
    certificate it presented, if the shared verifier judged it a device of
    this EMS that may still enroll (valid, offline or quarantined; never
    revoked, unknown or with another serial).

    @ivar uid: the certificate's UID.
    @ivar certSerial: its serial.
    """

    uid: str
    certSerial: str


@frozen
class Enrolled:
    """
    A committed enrollment.

    @ivar record: the device's record as stored.
    @ivar certificate: its new certificate.
    @ivar created: whether the device is new (C{False}: re-enrollment).
    @ivar token: the token used (as it was before this use).
    """

    record: EndpointRecord
    certificate: x509.Certificate
    created: bool
    token: EnrollmentToken


def recordFromReport(
    record: EndpointRecord, report: DeviceReport, sourceIp: str | None, onNet: bool, now: float
) -> EndpointRecord:
    """
    C{record} updated with a device report seen from C{sourceIp} at C{now}:
    the facts it reports, the public address and on-net status the EMS saw,
    and C{lastSeen}.  Fields the report leaves out keep their value, except
    the facts, which are replaced whole (a fact no longer reported is no
    longer true).
    """
    return evolve(
        record,
        hostName=report.hostName if report.hostName is not None else record.hostName,
        osType=report.osType if report.osType is not None else record.osType,
        osVersion=report.osVersion if report.osVersion is not None else record.osVersion,
        clientVersion=report.clientVersion
        if report.clientVersion is not None
        else record.clientVersion,
        user=report.user if report.user is not None else record.user,
        ip=report.ips[0] if report.ips else record.ip,
        mac=report.macs[0] if report.macs else record.mac,
        macList=report.macs if report.macs else record.macList,
        facts=report.facts,
        publicIp=sourceIp,
        onNet=onNet,
        lastSeen=float(now),
    )


class Enroller:
    """
    Enrolls devices with one EMS: its CA signs, its registry records.
    """

    def __init__(
        self,
        ca: EmsCertificateAuthority,
        emsSerial: str,
        tenantId: str,
        onNet: Callable[[str | None], bool] = lambda address: False,
        validity: datetime.timedelta = DEVICE_VALIDITY,
        beforeCommit: Callable[[Enrolled], None] | None = None,
    ) -> None:
        """
        @param ca: the EMS CA.
        @param emsSerial: the EMS serial number, written in records.
        @param tenantId: the EMS tenant id, written in records.
        @param onNet: whether a source address is on-net.
        @param validity: how long device certificates are valid.
        @param beforeCommit: called inside the transaction with the
            enrollment about to commit (tests use it to stop a process
            there); it may raise to abort.
        """
        self._ca = ca
        self._emsSerial = emsSerial
        self._tenantId = tenantId
        self._onNet = onNet
        self._validity = validity
        self._beforeCommit = beforeCommit

    def enroll(
        self,
        store: IEndpointStore,
        request: EnrollmentRequest,
        sourceIp: str | None,
        proof: Proof | None,
        now: float,
    ) -> Enrolled:
        """
        Enroll one device (see the module docstring).  Blocks.

        @param sourceIp: the address the request came from.
        @param proof: the device certificate the connection presented, if
            acceptable.
        @param now: the current POSIX time.
        @raise TokenRefused: the token does not allow an enrollment.
        @raise ApiError: the CSR is refused (400 C{csr-rejected}), the UID
            is not the client's to re-enroll (403 C{reenrollment-refused},
            C{uid-mismatch}), or the device is revoked (403
            C{device-revoked}).
        @raise ztnagw.registry.interfaces.RegistryUnavailable: the registry
            cannot be written.
        """
        try:
            signingRequest = parseCertificateSigningRequest(request.csr)
        except SigningRequestRejected as e:
            raise ApiError(400, "csr-rejected", e.message) from None
        notBefore = datetime.datetime.fromtimestamp(now, datetime.timezone.utc) - BACKDATE
        with store.transaction() as transaction:
            token = verifyToken(transaction.cursor, request.token, now)
            uid = self._chooseUid(transaction, request, proof, token)
            existing = transaction.get(uid) if uid is not None else None
            if uid is None:
                uid = newUid()
                while transaction.get(uid) is not None:
                    uid = newUid()
            if existing is not None and existing.revoked:
                raise ApiError(
                    403,
                    "device-revoked",
                    f"device {uid} is revoked; an administrator must unrevoke it "
                    "(ztnagw endpoint unrevoke) before it can enroll again",
                    ztnaCode="063",
                )
            if (
                request.uid is not None
                and token.uid is None
                and (existing is None or proof is None or existing.certSerial != proof.certSerial)
            ):
                # The proof was judged against the index, a moment old; the
                # store says the device is gone or the presented
                # certificate is no longer its own.
                raise ApiError(
                    403,
                    "reenrollment-refused",
                    f"the certificate presented is no longer device {uid}'s; ask "
                    f"an administrator for a token for this device (ztnagw token "
                    f"create --uid {uid})",
                    ztnaCode="001",
                )
            serial = newSerial()
            certificate = issueDeviceCertificate(
                self._ca, signingRequest, uid, serial, notBefore, notBefore + self._validity
            )
            record = self._record(existing, uid, serial, token, request.device, sourceIp, now)
            stored = transaction.put(record)
            recordUse(transaction.cursor, token, uid, stored.certSerial, now, sourceIp)
            enrolled = Enrolled(
                record=stored, certificate=certificate, created=existing is None, token=token
            )
            if self._beforeCommit is not None:
                self._beforeCommit(enrolled)
        return enrolled

    def _chooseUid(
        self,
        transaction: Any,
        request: EnrollmentRequest,
        proof: Proof | None,
        token: EnrollmentToken,
    ) -> str | None:
        """
        The UID to enroll, or C{None} for a new one.
        """
        if token.uid is not None:
            if request.uid is not None and request.uid != token.uid:
                raise ApiError(
                    403,
                    "uid-mismatch",
                    f"this token enrolls device {token.uid} only, not {request.uid}",
                )
            return token.uid
        if request.uid is None:
            return None
        if proof is None or proof.uid != request.uid:
            raise ApiError(
                403,
                "reenrollment-refused",
                f"re-enrolling device {request.uid} needs its current certificate on "
                f"the enrollment connection, or a token created for it (ztnagw token "
                f"create --uid {request.uid})",
            )
        return request.uid

    def _record(
        self,
        existing: EndpointRecord | None,
        uid: str,
        serial: int,
        token: EnrollmentToken,
        report: DeviceReport,
        sourceIp: str | None,
        now: float,
    ) -> EndpointRecord:
        if existing is None:
            base = EndpointRecord(uid=uid, certSerial="00", registeredAt=float(now))
        else:
            base = existing
        record = recordFromReport(base, report, sourceIp, self._onNet(sourceIp), now)
        return evolve(
            record,
            certSerial=canonicalSerial(serial),
            emsSerial=self._emsSerial,
            tenantId=self._tenantId,
            registrationStatus=REGISTERED,
            tags=base.tags | token.tags,
            user=token.user if token.user is not None else record.user,
        )


class AttemptLimiter:
    """
    Failed enrollment attempts per source: a token bucket of C{burst}
    attempts refilled at C{perSecond}, for each IPv4 address and each IPv6
    /64 (one host usually has a whole /64).

    Only the C{maxSources} most recently failing sources are remembered, so
    that memory stays bounded whatever the attacker's address space.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        burst: int = 10,
        perSecond: float = 1 / 30,
        maxSources: int = 10000,
    ) -> None:
        """
        @param clock: monotonic seconds (the reactor's C{seconds}).
        @param burst: failures allowed at once.
        @param perSecond: failures allowed per second after the burst.
        @param maxSources: sources remembered.
        """
        self._clock = clock
        self._burst = float(burst)
        self._rate = perSecond
        self._maxSources = maxSources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @staticmethod
    def sourceKey(address: str | None) -> str:
        """
        The key a source address is counted under.
        """
        if address is None:
            return "?"
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.IPv6Network((ip, 64), strict=False))
        return str(ip)

    def _level(self, key: str) -> float:
        entry = self._buckets.get(key)
        if entry is None:
            return self._burst
        level, stamp = entry
        return min(self._burst, level + (self._clock() - stamp) * self._rate)

    def retryAfter(self, address: str | None) -> float | None:
        """
        C{None} if C{address} may try now; otherwise the seconds until it
        may.
        """
        level = self._level(self.sourceKey(address))
        if level >= 1:
            return None
        return (1 - level) / self._rate

    def failed(self, address: str | None) -> None:
        """
        Count a failed attempt from C{address}.
        """
        key = self.sourceKey(address)
        level = self._level(key)
        self._buckets[key] = (max(0.0, level - 1), self._clock())
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._maxSources:
            self._buckets.popitem(last=False)
