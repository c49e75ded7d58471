"""
Tests for L{ztnagw.registry.validation}: what a storable record is.
"""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.registry.strategies import records, tagNames
from ztnagw.registry.exceptions import InvalidRecord
from ztnagw.registry.record import EndpointRecord, canonicalSerial
from ztnagw.registry.validation import (
    MAX_TAG_LENGTH,
    checkRecord,
    isCanonicalSerial,
    isTagName,
    tagNameProblem,
)

_TAG_CHARACTERS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


class TagNameTests(SynchronousTestCase):
    """
    L{isTagName} and L{tagNameProblem}.
    """

    @given(st.text(max_size=80))
    def test_charset(self, text: str) -> None:
        """
        A tag name is 1 to L{MAX_TAG_LENGTH} letters, digits, C{-}, C{_} or
        C{.}; nothing else is.
        """
        expected = 0 < len(text) <= MAX_TAG_LENGTH and set(text) <= _TAG_CHARACTERS
        self.assertEqual(isTagName(text), expected)

    @given(tagNames)
    def test_valid(self, tag: str) -> None:
        """
        Valid tag names have no problem.
        """
        self.assertIsNone(tagNameProblem(tag))

    def test_examples(self) -> None:
        """
        FortiOS-style tags pass; spaces, empty names, trailing newlines and
        over-long names do not.
        """
        for good in ("Domain-Users", "Low", "os.linux", "a" * MAX_TAG_LENGTH):
            self.assertTrue(isTagName(good), good)
        for bad in ("Domain Users", "", "x\n", "a" * (MAX_TAG_LENGTH + 1), "é"):
            self.assertFalse(isTagName(bad), bad)
            self.assertIn("not a valid tag name", tagNameProblem(bad))

    def test_builtIn(self) -> None:
        """
        C{all_registered_clients} cannot be assigned: every registered
        device has it.
        """
        self.assertIn("built in", tagNameProblem("all_registered_clients"))


class SerialTests(SynchronousTestCase):
    """
    L{isCanonicalSerial}.
    """

    @given(st.integers(min_value=0, max_value=2**200))
    def test_canonical(self, serial: int) -> None:
        """
        Whatever L{canonicalSerial} writes is canonical.
        """
        self.assertTrue(isCanonicalSerial(canonicalSerial(serial)))

    def test_nonCanonical(self) -> None:
        """
        Lower case, odd length, extra leading zero bytes, prefixes and
        empty text are not canonical.
        """
        for text in ("1d3d", "D3D", "00FF", "0x1D", "", "1D 3D"):
            self.assertFalse(isCanonicalSerial(text), text)


class CheckRecordTests(SynchronousTestCase):
    """
    L{checkRecord}.
    """

    @given(records())
    def test_valid(self, record: EndpointRecord) -> None:
        """
        Records made of valid parts pass.
        """
        checkRecord(record)

    def assertRefused(self, field: str, **changes: object) -> None:
        """
        A valid record changed by C{changes} is refused with a message
        naming C{field}.
        """
        good = EndpointRecord(uid="A" * 32, certSerial="01")
        checkRecord(good)
        error = self.assertRaises(
            InvalidRecord, checkRecord, attrs.evolve(good, **changes)
        )
        self.assertIn(field, str(error))

    def test_invalid(self) -> None:
        """
        Each kind of malformed field is refused, naming the field.
        """
        self.assertRefused("uid", uid="a" * 32)
        self.assertRefused("uid", uid="A" * 31)
        self.assertRefused("certSerial", certSerial="1d")
        self.assertRefused("emsSerial", emsSerial=None)
        self.assertRefused("hostName", hostName=7)
        self.assertRefused("macList", macList=("a", 1))
        self.assertRefused("not a valid tag name", tags={"two words"})
        self.assertRefused("built in", tags={"all_registered_clients"})
        self.assertRefused("fact", facts={"n": 1})
        self.assertRefused("revoked", revoked=1)
        self.assertRefused("registrationStatus", registrationStatus="maybe")
        self.assertRefused("registeredAt", registeredAt=float("inf"))
        self.assertRefused("lastSeen", lastSeen=float("nan"))
        self.assertRefused("lastSeen", lastSeen="yesterday")
