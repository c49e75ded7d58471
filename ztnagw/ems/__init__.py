"""
The EMS role: the certificate authority that vouches for devices.

A FortiGate trusts devices because FortiClient EMS signed their
certificates; ztnagw plays EMS itself.  This package holds the EMS
certificate authority (L{ztnagw.ems.ca}), the checks every certificate
signing request must pass (L{ztnagw.ems.csr}) and the issuance of device and
gateway certificates (L{ztnagw.ems.signing}).  The key policy they share is
in L{ztnagw.ems.keys}.

Around the CA: enrollment tokens (L{ztnagw.ems.tokens}), the enrollment and
telemetry API (L{ztnagw.ems.enrollment}, L{ztnagw.ems.telemetry}) on the
EMS's own listener (L{ztnagw.ems.service}), and the tagging rules that turn
reported facts into posture tags (L{ztnagw.ems.tagging},
L{ztnagw.ems.conditions}).  See C{docs/ems.md}.
"""
