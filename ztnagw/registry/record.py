# -*- test-case-name: tests.registry.test_sqlite,tests.registry.test_validation -*-
"""
The endpoint record: what the registry knows about one enrolled device.

A FortiGate admits a ZTNA client only while EMS holds a matching record for
it (C{diagnose endpoint ec-shm list} shows them).  This module defines our
record with the same facts, so that every part of the gateway (the TLS
verify callback, the access decision, the EMS role, the admin command) talks
about a device in one vocabulary.

Records are immutable values; a change is a new record written to the store
(see L{ztnagw.registry.interfaces.IEndpointStore}).
"""

from __future__ import annotations

import re
from typing import Mapping

from attrs import field, frozen

#: A FortiClient UID: 32 hex digits, upper case, the certificate's subject CN.
UID_PATTERN = re.compile(r"\A[0-9A-F]{32}\Z")

#: The tenant id of EMS's default site.
DEFAULT_TENANT_ID = "0" * 32

#: The tag every registered device carries (FortiOS built-in).
ALL_REGISTERED_CLIENTS = "all_registered_clients"

REGISTERED = "registered"
UNREGISTERED = "unregistered"


def isUid(text: str) -> bool:
    """
    Whether C{text} is a well-formed FortiClient UID (32 upper-case hex).
    """
    return UID_PATTERN.match(text) is not None


def canonicalSerial(serial: int) -> str:
    """
    Spell a certificate serial number the way FortiOS prints C{Client cert
    SN}: upper-case hex without a prefix, zero-padded to whole bytes.

    @param serial: the certificate's serial number.
    """
    digits = format(serial, "X")
    if len(digits) % 2:
        digits = "0" + digits
    return digits


@frozen
class EndpointRecord:
    """
    One enrolled device.

    @ivar uid: FortiClient UID (see L{isUid}); the registry's key.
    @ivar certSerial: serial number of the device certificate recorded at
        enrollment, as L{canonicalSerial} spells it.  A certificate with
        this UID and any other serial is refused (code 001).
    @ivar emsSerial: serial number of the EMS that registered the device
        (C{fctems} C{serial-number}).
    @ivar tenantId: EMS tenant id, 32 hex digits.
    @ivar ip: private IP address the client reported.
    @ivar mac: primary MAC address the client reported.
    @ivar macList: every MAC address the client reported.
    @ivar publicIp: source address the gateway saw the client's telemetry
        come from.
    @ivar hostName: host name the client reported.
    @ivar osType: operating system family (C{"Linux"}, C{"Windows"},
        C{"macOS"}...).
    @ivar osVersion: operating system version string.
    @ivar clientVersion: version of the client software (forwarder or
        FortiClient).
    @ivar user: logged-on user the client reported.
    @ivar tags: posture tags assigned to the device by an administrator or
        by its enrollment token.  Tags derived from tagging rules are not
        stored here: they are computed from L{facts}.
    @ivar facts: posture facts from the last telemetry report (name to
        string value).
    @ivar quarantined: EMS quarantine: the device is denied everywhere.
    @ivar revoked: the device certificate is revoked (code 063).
    @ivar registrationStatus: L{REGISTERED} or L{UNREGISTERED}.
    @ivar onNet: whether the last telemetry came from an on-net address.
    @ivar registeredAt: when the record was created (POSIX seconds).
    @ivar lastSeen: when the device last reported telemetry (POSIX
        seconds), or C{None} if it never did.
    @ivar staticPresence: the administrator declared this device always
        online (a device without an agent); it is never judged offline.
    @ivar generation: the store's change counter when this version of the
        record was written; assigned by the store, 0 for a record not yet
        stored.
    """

    uid: str
    certSerial: str
    emsSerial: str = ""
    tenantId: str = DEFAULT_TENANT_ID
    ip: str | None = None
    mac: str | None = None
    macList: tuple[str, ...] = ()
    publicIp: str | None = None
    hostName: str | None = None
    osType: str | None = None
    osVersion: str | None = None
    clientVersion: str | None = None
    user: str | None = None
    tags: frozenset[str] = field(default=frozenset(), converter=frozenset)
    facts: Mapping[str, str] = field(
        factory=dict, converter=lambda m: _FrozenFacts(m)
    )
    quarantined: bool = False
    revoked: bool = False
    registrationStatus: str = REGISTERED
    onNet: bool = False
    registeredAt: float = 0.0
    lastSeen: float | None = None
    staticPresence: bool = False
    generation: int = 0

    def isOnline(self, now: float, outOfSyncThreshold: float) -> bool:
        """
        Whether the device counts as online at C{now}.

        @param now: the current POSIX time.
        @param outOfSyncThreshold: seconds of silence after which a device
            is offline (C{fctems} C{out-of-sync-threshold}).
        """
        if self.staticPresence:
            return True
        if self.lastSeen is None:
            return False
        return now - self.lastSeen <= outOfSyncThreshold


class _FrozenFacts(dict):
    """
    A read-only, hashable mapping of posture facts, so that records stay
    hashable values.
    """

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _readOnly(self, *args: object, **kwargs: object) -> None:
        raise TypeError("endpoint facts are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = _readOnly  # type: ignore
    setdefault = update = _readOnly  # type: ignore
