# -*- test-case-name: tests.test_blockpage,tests.test_access -*-
"""
The FortiOS ZTNA error codes, in one table.

A FortiGate that refuses a ZTNA request shows a replacement page with a
category title and a three-digit code (FortiOS 7.4.1 and later).  Users,
help desks and FortiClient all read those codes, so ztnagw uses the same
numbers with the same meaning, and every denial anywhere in the gateway (HTTPS
access proxy, TCP forwarding access proxy, EMS telemetry) names one of the
L{ZtnaError} values below.  Nothing else may invent a code.

The HTTP status chosen for each code is ours (FortiOS does not document one):
403 for certificate and policy denials, 404 when no application matched and
502 when an application matched but its real server cannot be reached.
"""

from __future__ import annotations

from attrs import frozen


@frozen
class ZtnaError:
    """
    One ZTNA error code.

    @ivar code: the three-digit code as FortiOS prints it (C{"063"}).
    @ivar category: the block page title (FortiOS's category name).
    @ivar message: one line saying what happened, shown on the block page,
        printed by the forwarder and written to the logs.
    @ivar httpStatus: the HTTP status of the block page.
    """

    code: str
    category: str
    message: str
    httpStatus: int

    def __str__(self) -> str:
        return f"{self.code} {self.message}"


_CERTIFICATE = "Invalid ZTNA Certificate"
_NOT_FOUND = "ZTNA Application Not Found"
_PORTAL = "ZTNA Portal Error"
_POLICY = "ZTNA Policy Deny"

INVALID_CERTIFICATE = ZtnaError(
    "001",
    _CERTIFICATE,
    "client certificate is not valid for this gateway",
    403,
)
EMPTY_CERTIFICATE = ZtnaError(
    "002", _CERTIFICATE, "no client certificate was presented", 403
)
MANAGEABLE_WITHOUT_CERTIFICATE = ZtnaError(
    "003",
    _CERTIFICATE,
    "managed device presented no client certificate",
    403,
)
NO_APPLICATION = ZtnaError(
    "021", _NOT_FOUND, "no application matches this request", 404
)
NO_REAL_SERVER = ZtnaError(
    "022", _NOT_FOUND, "no usable real server for this application", 502
)
DNS_FAILURE = ZtnaError(
    "023", _NOT_FOUND, "the destination host name could not be resolved", 502
)
PORTAL_BOOKMARK = ZtnaError(
    "041", _PORTAL, "web portal bookmark could not be reached", 502
)
NO_POLICY = ZtnaError("061", _POLICY, "no ZTNA policy matches", 403)
POLICY_DENY = ZtnaError("062", _POLICY, "denied by a ZTNA policy", 403)
CERTIFICATE_REVOKED = ZtnaError(
    "063", _POLICY, "client certificate revoked", 403
)
TAG_DENY = ZtnaError(
    "064", _POLICY, "denied by a matched posture tag or by quarantine", 403
)
TAGS_MISSING = ZtnaError(
    "065", _POLICY, "required posture tags are missing", 403
)
UNKNOWN_DEVICE = ZtnaError(
    "066", _POLICY, "no device information for this client", 403
)
DEVICE_OFFLINE = ZtnaError("067", _POLICY, "device is offline", 403)

#: Every code, by its three digits.
ALL: dict[str, ZtnaError] = {
    e.code: e
    for e in (
        INVALID_CERTIFICATE,
        EMPTY_CERTIFICATE,
        MANAGEABLE_WITHOUT_CERTIFICATE,
        NO_APPLICATION,
        NO_REAL_SERVER,
        DNS_FAILURE,
        PORTAL_BOOKMARK,
        NO_POLICY,
        POLICY_DENY,
        CERTIFICATE_REVOKED,
        TAG_DENY,
        TAGS_MISSING,
        UNKNOWN_DEVICE,
        DEVICE_OFFLINE,
    )
}


def byCode(code: str) -> ZtnaError:
    """
    Look a code up.

    @param code: three digits, as in a C{X-ZTNA-Error} header.
    @raise KeyError: for a code FortiOS does not define.
    """
    return ALL[code]
