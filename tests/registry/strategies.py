"""
Hypothesis strategies for endpoint records, shared by the registry tests.

They produce every value a store must keep exactly: arbitrary text
(including control characters and non-ASCII), optional fields, extreme
finite times, every flag combination, and the whole range of tag names and
certificate serials that the registry accepts.
"""

from __future__ import annotations

from hypothesis import strategies as st

from ztnagw.registry.record import (
    ALL_REGISTERED_CLIENTS,
    REGISTERED,
    UNREGISTERED,
    EndpointRecord,
    canonicalSerial,
)
from ztnagw.registry.validation import TAG_PATTERN

#: Well-formed FortiClient UIDs.
uids = st.text(alphabet="0123456789ABCDEF", min_size=32, max_size=32)

#: Certificate serials as L{canonicalSerial} spells them (up to 20 bytes,
#: the RFC 5280 limit, and a little beyond).
certSerials = st.integers(min_value=0, max_value=2**168).map(canonicalSerial)

#: Tag names an administrator may assign.
tagNames = st.from_regex(TAG_PATTERN, fullmatch=True).filter(
    lambda tag: tag != ALL_REGISTERED_CLIENTS
)

#: Finite POSIX times, including negative and huge ones.
times = st.floats(allow_nan=False, allow_infinity=False)

_optionalText = st.none() | st.text()


def records(uid: st.SearchStrategy[str] = uids) -> st.SearchStrategy[EndpointRecord]:
    """
    Endpoint records as a store accepts them (generation 0: not stored
    yet).

    @param uid: the strategy for the UID (pass C{st.just(...)} to get
        versions of one record).
    """
    return st.builds(
        EndpointRecord,
        uid=uid,
        certSerial=certSerials,
        emsSerial=st.text(),
        tenantId=st.text(),
        ip=_optionalText,
        mac=_optionalText,
        macList=st.lists(st.text(), max_size=4).map(tuple),
        publicIp=_optionalText,
        hostName=_optionalText,
        osType=_optionalText,
        osVersion=_optionalText,
        clientVersion=_optionalText,
        user=_optionalText,
        tags=st.frozensets(tagNames, max_size=4),
        facts=st.dictionaries(st.text(), st.text(), max_size=4),
        quarantined=st.booleans(),
        revoked=st.booleans(),
        registrationStatus=st.sampled_from([REGISTERED, UNREGISTERED]),
        onNet=st.booleans(),
        registeredAt=times,
        lastSeen=st.none() | times,
        staticPresence=st.booleans(),
    )
