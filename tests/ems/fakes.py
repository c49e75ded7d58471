"""
Stand-ins for the configuration model in EMS tests.

L{ztnagw.ems.ca.ensureCertificateAuthority} and C{ztnagw ems init} read a
few attributes of the configuration (C{systemGlobal.stateDir},
C{systemGlobal.hostname}, C{emsConnectors[id]}); these values carry exactly
those, so the EMS tests do not depend on the whole configuration language.
"""

from __future__ import annotations

import datetime
from typing import Mapping

from attrs import field, frozen

from ztnagw.ems.ca import EmsCertificateAuthority, createCertificateAuthority


@frozen
class FakeEmsConnector:
    """
    The attributes of a C{config endpoint-control fctems} entry that the
    EMS role reads.
    """

    id: int
    status: bool = True
    serialNumber: str = "FCTEMS8825007278"
    caCertificate: str | None = None


@frozen
class FakeSystemGlobal:
    """
    The attributes of C{config system global} that the EMS role reads.
    """

    stateDir: str
    hostname: str = "gw1"


@frozen
class FakeConfig:
    """
    A configuration with just a state directory and EMS entries.
    """

    systemGlobal: FakeSystemGlobal
    emsConnectors: Mapping[int, FakeEmsConnector] = field(factory=dict)


def utcNow() -> datetime.datetime:
    """
    The current time, timezone-aware, to the second (X.509 keeps no
    fraction).
    """
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def newAuthority(now: datetime.datetime | None = None) -> EmsCertificateAuthority:
    """
    A fresh EMS CA, not stored.
    """
    return createCertificateAuthority("FCTEMS8825007278", "gw1", now or utcNow())
