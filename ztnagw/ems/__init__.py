"""
The EMS role: the certificate authority that vouches for devices.

A FortiGate trusts devices because FortiClient EMS signed their
certificates; ztnagw plays EMS itself.  This package holds the EMS
certificate authority (L{ztnagw.ems.ca}), the checks every certificate
signing request must pass (L{ztnagw.ems.csr}) and the issuance of device and
gateway certificates (L{ztnagw.ems.signing}).  The key policy they share is
in L{ztnagw.ems.keys}.

Around the CA: enrollment tokens (L{ztnagw.ems.tokens}), enrollment
(L{ztnagw.ems.enrollment}) and telemetry (L{ztnagw.ems.telemetry}) served
as a JSON API (L{ztnagw.ems.api}) on the EMS's own listener
(L{ztnagw.ems.service}, its certificate and pin in
L{ztnagw.ems.listener}, its registry connection shared through
L{ztnagw.ems.stores}), and the tagging rules that turn reported facts into
posture tags (L{ztnagw.ems.tagging}, L{ztnagw.ems.conditions}).  See
C{docs/ems.md}.
"""
