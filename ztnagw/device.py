# -*- test-case-name: tests.test_device -*-
"""
Device verdicts: what the gateway concludes about the device behind a
connection, from the client certificate it presented and the endpoint
registry.

The same judgement is made twice.  The TLS verify callback makes it once at
handshake time, to log what it saw.  The access decision makes it again for
every request and every tunnel, because TLS session resumption skips the
verify callback and because the registry changes (a device is revoked,
quarantined or goes offline) while a keep-alive connection stays open.  Two
implementations would drift apart, so there is exactly one: L{judgeDevice},
a pure function of what the handshake captured (L{PresentedCertificate}),
the registry indexes, the EMS settings and the time.

Nothing here does I/O; the only collaborator called is
L{IEndpointIndex.lookup<ztnagw.registry.interfaces.IEndpointIndex.lookup>},
which never blocks.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Mapping, Protocol

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from ztnagw import errors
from ztnagw.errors import ZtnaError
from ztnagw.registry.interfaces import IEndpointIndex
from ztnagw.registry.record import (
    REGISTERED,
    EndpointRecord,
    canonicalSerial,
    isUid,
)

#: The problem recorded when the subject does not name exactly one UID.
CN_NOT_UID = "subject CN is not a FortiClient UID"

#: The problem recorded when no configured EMS CA issued the certificate.
NOT_EMS_ISSUED = "not issued by an EMS CA"


def subjectUid(leaf: x509.Certificate) -> str | None:
    """
    The FortiClient UID a device certificate names, if it names exactly one.

    The subject must hold exactly one common name and it must be a
    well-formed UID (L{ztnagw.registry.record.isUid}) as it stands: no case
    folding and no trimming, because EMS writes the UID exactly and any other
    spelling is a different (forged or broken) certificate.  A UID found only
    in a subject alternative name does not count.

    @param leaf: the certificate the client presented.
    @return: the UID, or C{None}.
    """
    try:
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        # cryptography parses the subject lazily; a malformed one is not a
        # UID, whatever else it is.
        return None
    if len(names) != 1:
        return None
    value = names[0].value
    if not isinstance(value, str) or not isUid(value):
        return None
    return value


def certificateFingerprint(leaf: x509.Certificate) -> str:
    """
    The SHA-256 fingerprint of a certificate's DER encoding, as lower-case
    hex: a stable name for a certificate in logs that reveals nothing the
    certificate does not.
    """
    return hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest()


@frozen
class PresentedCertificate:
    """
    What the TLS handshake captured about the client certificate.

    Build one with L{PresentedCertificate.fromLeaf}, which derives the UID,
    serial and fingerprint and keeps the invariant that a certificate
    without a problem names a UID and was issued by a configured EMS CA.

    @ivar leaf: the certificate the client presented.
    @ivar uid: the FortiClient UID (see L{subjectUid}), or C{None}.
    @ivar certSerial: the certificate's serial number as
        L{canonicalSerial<ztnagw.registry.record.canonicalSerial>} spells it.
    @ivar emsId: the id of the configured EMS whose CA issued the
        certificate directly, or C{None}.
    @ivar problem: why the certificate is not a valid device certificate
        (a short human reason such as C{"certificate has expired"}), or
        C{None} if it is one.
    @ivar fingerprint: see L{certificateFingerprint}.
    """

    leaf: x509.Certificate
    uid: str | None
    certSerial: str
    emsId: int | None
    problem: str | None
    fingerprint: str

    @classmethod
    def fromLeaf(
        cls,
        leaf: x509.Certificate,
        emsId: int | None,
        problem: str | None,
    ) -> PresentedCertificate:
        """
        Describe a presented certificate.

        @param leaf: the certificate the client presented.
        @param emsId: the EMS whose CA issued it, if the chain showed one.
        @param problem: what the chain and certificate checks found wrong,
            or C{None}.  If they found nothing but the certificate names no
            UID or no EMS issued it, the problem says so: a certificate is
            never described as good without both.
        """
        uid = subjectUid(leaf)
        if problem is None:
            if emsId is None:
                problem = NOT_EMS_ISSUED
            elif uid is None:
                problem = CN_NOT_UID
        return cls(
            leaf=leaf,
            uid=uid,
            certSerial=_serialOf(leaf),
            emsId=emsId,
            problem=problem,
            fingerprint=certificateFingerprint(leaf),
        )

    def subjectText(self) -> str:
        """
        The subject as RFC 4514 text, for logs; a placeholder if it cannot
        be parsed.
        """
        try:
            return self.leaf.subject.rfc4514_string()
        except ValueError:
            return "<unparsable subject>"


def _serialOf(leaf: x509.Certificate) -> str:
    serial = leaf.serial_number
    if serial < 0:
        # RFC 5280 forbids negative serials; no record can match one, and
        # canonicalSerial only spells non-negative numbers.
        return "-" + canonicalSerial(-serial)
    return canonicalSerial(serial)


class VerdictKind(enum.Enum):
    """
    The kinds of device verdict, in the order L{judgeDevice} checks them.
    """

    NO_CERTIFICATE = "no-certificate"
    INVALID = "invalid"
    REGISTRY_UNAVAILABLE = "registry-unavailable"
    UNKNOWN = "unknown"
    SERIAL_MISMATCH = "serial-mismatch"
    REVOKED = "revoked"
    QUARANTINED = "quarantined"
    OFFLINE = "offline"
    VALID = "valid"


#: The ZTNA error each kind of verdict denies with.  A missing certificate
#: has no code of its own: the access decision maps it to 002 or 003, or
#: admits it, following C{empty-cert-action}.  FortiOS has no code for a
#: quarantined device; it is denied with 064 ("denied by a matched posture
#: tag") because EMS quarantine works like a deny tag that the administrator
#: put on the device.  An unreadable registry fails closed with 066 ("no
#: device information"), which is literally true at that moment.
VERDICT_ERRORS: Mapping[VerdictKind, ZtnaError | None] = {
    VerdictKind.NO_CERTIFICATE: None,
    VerdictKind.INVALID: errors.INVALID_CERTIFICATE,
    VerdictKind.REGISTRY_UNAVAILABLE: errors.UNKNOWN_DEVICE,
    VerdictKind.UNKNOWN: errors.UNKNOWN_DEVICE,
    VerdictKind.SERIAL_MISMATCH: errors.INVALID_CERTIFICATE,
    VerdictKind.REVOKED: errors.CERTIFICATE_REVOKED,
    VerdictKind.QUARANTINED: errors.TAG_DENY,
    VerdictKind.OFFLINE: errors.DEVICE_OFFLINE,
    VerdictKind.VALID: None,
}


@frozen
class DeviceVerdict:
    """
    What the gateway concluded about the device behind a connection.

    @ivar kind: which conclusion.
    @ivar error: the ZTNA error this verdict denies with (see
        L{VERDICT_ERRORS}); C{None} for a valid device and for a missing
        certificate.
    @ivar record: the device's endpoint record, when the registry had one.
    @ivar reason: one line for logs and block pages saying why.
    @ivar presented: what the handshake captured, or C{None} if the client
        presented no certificate.
    """

    kind: VerdictKind
    error: ZtnaError | None
    record: EndpointRecord | None
    reason: str
    presented: PresentedCertificate | None

    @property
    def valid(self) -> bool:
        """
        Whether the device may go on to policy matching.
        """
        return self.kind is VerdictKind.VALID


class EmsSettings(Protocol):
    """
    What L{judgeDevice} needs to know about one configured EMS
    (C{config endpoint-control fctems}).
    """

    @property
    def serialNumber(self) -> str:
        """
        The EMS serial number (C{serial-number}).
        """

    @property
    def outOfSyncThreshold(self) -> float:
        """
        Seconds without telemetry after which a device is offline
        (C{out-of-sync-threshold}).
        """


def _verdict(
    kind: VerdictKind,
    reason: str,
    presented: PresentedCertificate | None,
    record: EndpointRecord | None = None,
) -> DeviceVerdict:
    return DeviceVerdict(
        kind=kind,
        error=VERDICT_ERRORS[kind],
        record=record,
        reason=reason,
        presented=presented,
    )


def judgeDevice(
    presented: PresentedCertificate | None,
    indexes: Mapping[int, IEndpointIndex],
    emsSettings: Mapping[int, EmsSettings],
    now: float,
) -> DeviceVerdict:
    """
    Judge the device behind a connection.

    The checks run in this order and the first that fails decides: no
    certificate; invalid certificate; registry unreadable; unknown UID (or
    a record that is not registered); certificate serial differs from the
    record's (or the record's is all zeros, as FortiOS treats it); the
    record was registered by another EMS than the one whose CA issued the
    certificate (invalid); revoked; quarantined; offline; valid.

    An index that raises, or an EMS with no index or settings, fails closed
    as an unreadable registry.

    @param presented: what the handshake captured, or C{None} when the
        client presented no certificate.
    @param indexes: the registry index of each configured EMS, by EMS id.
    @param emsSettings: the settings of each configured EMS, by EMS id.
    @param now: the current POSIX time.
    """
    if presented is None:
        return _verdict(
            VerdictKind.NO_CERTIFICATE, "no client certificate was presented", None
        )
    if (
        presented.problem is not None
        or presented.uid is None
        or presented.emsId is None
    ):
        return _verdict(
            VerdictKind.INVALID, presented.problem or NOT_EMS_ISSUED, presented
        )
    uid, emsId = presented.uid, presented.emsId
    index = indexes.get(emsId)
    settings = emsSettings.get(emsId)
    if index is None or settings is None:
        return _verdict(
            VerdictKind.REGISTRY_UNAVAILABLE,
            f"the endpoint registry of EMS {emsId} cannot be read: "
            "it is not configured",
            presented,
        )
    try:
        healthy = bool(index.healthy)
        record = index.lookup(uid) if healthy else None
    except Exception as e:
        return _verdict(
            VerdictKind.REGISTRY_UNAVAILABLE,
            f"the endpoint registry of EMS {emsId} cannot be read: "
            f"{type(e).__name__}: {e}",
            presented,
        )
    if not healthy:
        return _verdict(
            VerdictKind.REGISTRY_UNAVAILABLE,
            f"the endpoint registry of EMS {emsId} cannot be read",
            presented,
        )
    if record is None:
        return _verdict(
            VerdictKind.UNKNOWN, f"no endpoint record for UID {uid}", presented
        )
    if record.uid != uid:
        return _verdict(
            VerdictKind.REGISTRY_UNAVAILABLE,
            f"the endpoint registry of EMS {emsId} returned the record of "
            f"{record.uid} for {uid}",
            presented,
        )
    if record.registrationStatus != REGISTERED:
        return _verdict(
            VerdictKind.UNKNOWN,
            f"device {uid} is {record.registrationStatus}",
            presented,
            record,
        )
    if record.certSerial.strip("0") == "":
        return _verdict(
            VerdictKind.SERIAL_MISMATCH,
            f"the endpoint record of {uid} holds no certificate serial",
            presented,
            record,
        )
    if record.certSerial != presented.certSerial:
        return _verdict(
            VerdictKind.SERIAL_MISMATCH,
            f"certificate serial {presented.certSerial} is not the serial "
            f"{record.certSerial} enrolled for {uid}",
            presented,
            record,
        )
    if record.emsSerial != settings.serialNumber:
        return _verdict(
            VerdictKind.INVALID,
            f"device {uid} was registered by EMS serial "
            f"{record.emsSerial or '(none)'}, not by EMS {emsId} "
            f"(serial {settings.serialNumber or '(none)'}) whose CA issued "
            "the certificate",
            presented,
            record,
        )
    if record.revoked:
        return _verdict(
            VerdictKind.REVOKED,
            f"the certificate of device {uid} is revoked",
            presented,
            record,
        )
    if record.quarantined:
        return _verdict(
            VerdictKind.QUARANTINED, f"device {uid} is quarantined", presented, record
        )
    if not record.isOnline(now, settings.outOfSyncThreshold):
        return _verdict(
            VerdictKind.OFFLINE,
            _offlineReason(record, now, settings.outOfSyncThreshold),
            presented,
            record,
        )
    return _verdict(VerdictKind.VALID, f"device {uid} is valid", presented, record)


def _offlineReason(record: EndpointRecord, now: float, threshold: float) -> str:
    if record.lastSeen is None:
        return f"device {record.uid} never reported telemetry"
    return (
        f"device {record.uid} last reported {now - record.lastSeen:.0f} s ago "
        f"(out-of-sync-threshold {threshold:g} s)"
    )
