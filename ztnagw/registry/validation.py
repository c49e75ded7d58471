# -*- test-case-name: tests.registry.test_validation -*-
"""
What a well-formed endpoint record is.

The verify callback and the access decision trust the registry: a record with
a lower-case UID would never match a certificate, a tag with a space could
never be named in a policy, a NaN C{lastSeen} would make a device neither
online nor offline.  Every store checks a record here before writing it, and
the admin command checks user input with the same rules, so that such a
record cannot exist.
"""

from __future__ import annotations

import math
import re

from ztnagw.registry.exceptions import InvalidRecord
from ztnagw.registry.record import (
    ALL_REGISTERED_CLIENTS,
    REGISTERED,
    UNREGISTERED,
    EndpointRecord,
    canonicalSerial,
    isUid,
)

#: The longest tag name: a FortiOS firewall address name has at most 79
#: characters and each tag becomes the dynamic address C{EMS<id>_ZTNA_<tag>},
#: whose prefix takes 10 of them.
MAX_TAG_LENGTH = 69

#: The characters FortiOS accepts in a tag it turns into a firewall address
#: name, without the ones that need quoting in the CLI: letters, digits,
#: C{-}, C{_} and C{.}.  No spaces.
TAG_PATTERN = re.compile(r"\A[A-Za-z0-9_.\-]{1,%d}\Z" % (MAX_TAG_LENGTH,))

_SERIAL_PATTERN = re.compile(r"\A[0-9A-F]+\Z")


def isTagName(text: str) -> bool:
    """
    Whether C{text} may be used as a posture tag name (see L{TAG_PATTERN}).
    """
    return TAG_PATTERN.match(text) is not None


def tagNameProblem(text: str) -> str | None:
    """
    Why C{text} cannot be a tag an administrator assigns, or C{None} if it
    can.
    """
    if text == ALL_REGISTERED_CLIENTS:
        return (
            f"{ALL_REGISTERED_CLIENTS!r} is built in: every registered "
            "device carries it"
        )
    if not isTagName(text):
        return (
            f"{text!r} is not a valid tag name: 1 to {MAX_TAG_LENGTH} "
            "letters, digits, '-', '_' or '.' (no spaces)"
        )
    return None


def isCanonicalSerial(text: str) -> bool:
    """
    Whether C{text} is a certificate serial spelled as
    L{canonicalSerial} spells it (upper-case hex, whole bytes, no extra
    leading zero byte).
    """
    if _SERIAL_PATTERN.match(text) is None:
        return False
    return canonicalSerial(int(text, 16)) == text


def _checkTime(name: str, value: object, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value):
        raise InvalidRecord(f"{name} must be a finite time, not {value!r}")


def _checkText(name: str, value: object, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise InvalidRecord(f"{name} must be text, not {value!r}")


def checkRecord(record: EndpointRecord) -> None:
    """
    Refuse a record that must not be stored.

    @raise InvalidRecord: the first problem found, naming the field.
    """
    if not isinstance(record.uid, str) or not isUid(record.uid):
        raise InvalidRecord(
            f"uid {record.uid!r} is not a FortiClient UID (32 upper-case hex "
            "digits)"
        )
    if not isinstance(record.certSerial, str) or not isCanonicalSerial(
        record.certSerial
    ):
        raise InvalidRecord(
            f"certSerial {record.certSerial!r} is not a certificate serial in "
            "canonical form (upper-case hex, whole bytes)"
        )
    for name in ("emsSerial", "tenantId"):
        _checkText(name, getattr(record, name), optional=False)
    for name in (
        "ip",
        "mac",
        "publicIp",
        "hostName",
        "osType",
        "osVersion",
        "clientVersion",
        "user",
    ):
        _checkText(name, getattr(record, name))
    if not isinstance(record.macList, tuple):
        raise InvalidRecord(f"macList must be a tuple, not {record.macList!r}")
    for mac in record.macList:
        _checkText("macList", mac, optional=False)
    for tag in sorted(record.tags, key=repr):
        if not isinstance(tag, str):
            raise InvalidRecord(f"tag {tag!r} is not text")
        problem = tagNameProblem(tag)
        if problem is not None:
            raise InvalidRecord(problem)
    for name, value in record.facts.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidRecord(
                f"fact {name!r}: {value!r}: posture facts map text to text"
            )
    for name in ("quarantined", "revoked", "onNet", "staticPresence"):
        if not isinstance(getattr(record, name), bool):
            raise InvalidRecord(f"{name} must be True or False")
    if record.registrationStatus not in (REGISTERED, UNREGISTERED):
        raise InvalidRecord(
            f"registrationStatus {record.registrationStatus!r} is neither "
            f"{REGISTERED!r} nor {UNREGISTERED!r}"
        )
    _checkTime("registeredAt", record.registeredAt, optional=False)
    _checkTime("lastSeen", record.lastSeen, optional=True)
