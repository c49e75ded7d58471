# -*- test-case-name: tests.ems.test_identifiers -*-
"""
The identifiers the EMS assigns: device UIDs and certificate serial numbers.

The gateway admits a device only while the UID (the certificate's subject)
and the serial number match the registry, so both are chosen by the EMS
from the system's secure random source, never by the client.  They live
apart from L{ztnagw.ems.signing} because the CA (L{ztnagw.ems.ca}) needs
serial numbers too, and signing needs the CA.
"""

from __future__ import annotations

import secrets

#: Bits of randomness in a serial number: 159, so that the number is always
#: positive in DER and at most 20 octets (RFC 5280, 4.1.2.2) and prints as
#: up to 40 hex digits, like FortiOS's C{Client cert SN}.
SERIAL_BITS = 159


def newUid() -> str:
    """
    A new FortiClient UID: 32 upper-case hex digits.
    """
    return secrets.token_hex(16).upper()


def newSerial() -> int:
    """
    A new certificate serial number: L{SERIAL_BITS} random bits, never 0.

    Random serials make certificates unpredictable (RFC 5280 allows any
    positive number, the CA/Browser Forum requires 64 random bits); with 159
    bits two certificates never share one.
    """
    while True:
        serial = secrets.randbits(SERIAL_BITS)
        if serial:
            return serial
