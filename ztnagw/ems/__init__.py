"""
The EMS role: the certificate authority that vouches for devices.

A FortiGate trusts devices because FortiClient EMS signed their
certificates; ztnagw plays EMS itself.  This package holds the EMS
certificate authority (L{ztnagw.ems.ca}), the checks every certificate
signing request must pass (L{ztnagw.ems.csr}) and the issuance of device and
gateway certificates (L{ztnagw.ems.signing}).  The key policy they share is
in L{ztnagw.ems.keys}.  See C{docs/ems.md}.
"""
