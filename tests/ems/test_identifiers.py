"""
Tests for L{ztnagw.ems.identifiers}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.ems import identifiers
from ztnagw.ems.identifiers import SERIAL_BITS, newSerial, newUid
from ztnagw.registry.record import canonicalSerial, isUid


class UidAndSerialTests(SynchronousTestCase):
    """
    L{newUid} and L{newSerial} make identifiers the way FortiClient EMS
    spells them.
    """

    def test_uid(self) -> None:
        """
        A UID is 32 upper-case hex digits, and each is new.
        """
        uids = {newUid() for _ in range(1000)}
        self.assertEqual(len(uids), 1000)
        for uid in uids:
            self.assertTrue(isUid(uid), uid)

    def test_serialRangeAndDistinct(self) -> None:
        """
        Serials are positive, below 2**159, and distinct over many draws;
        most print as 40 hex digits.
        """
        serials = [newSerial() for _ in range(10000)]
        self.assertEqual(len(set(serials)), len(serials))
        for serial in serials:
            self.assertTrue(0 < serial < 2**SERIAL_BITS, serial)
        fortyDigits = sum(len(canonicalSerial(s)) == 40 for s in serials)
        self.assertGreater(fortyDigits, len(serials) * 0.9)

    def test_serialNeverZero(self) -> None:
        """
        A zero draw is drawn again.
        """
        draws = iter([0, 0, 7])
        self.patch(identifiers.secrets, "randbits", lambda bits: next(draws))
        self.assertEqual(newSerial(), 7)

    @given(st.integers(min_value=1, max_value=2**SERIAL_BITS - 1))
    def test_canonicalRoundTrip(self, serial: int) -> None:
        """
        Every serial L{newSerial} can return is spelled by
        L{canonicalSerial} in at most 40 upper-case hex digits, whole bytes,
        and reads back as itself.
        """
        text = canonicalSerial(serial)
        self.assertLessEqual(len(text), 40)
        self.assertEqual(len(text) % 2, 0)
        self.assertEqual(text, text.upper())
        self.assertEqual(int(text, 16), serial)
