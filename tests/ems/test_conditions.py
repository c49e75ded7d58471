"""
Tests for L{ztnagw.ems.conditions}: the comparisons of tagging rules.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.ems.conditions import (
    OS_FAMILIES,
    VERSION_OPERATORS,
    compareVersions,
    globMatches,
    isFactName,
    osFamily,
    parseVersion,
    textMatches,
    versionMatches,
)

_versions = st.lists(st.integers(0, 10**6), min_size=1, max_size=6).map(
    lambda numbers: ".".join(map(str, numbers))
)


class OsFamilyTests(SynchronousTestCase):
    """
    L{osFamily} names the family of what devices report as their OS.
    """

    def test_reported(self) -> None:
        """
        The OS types the forwarder and FortiClient report map to their
        family; Android and ChromeOS are not Linux, iOS is not macOS.
        """
        cases = {
            "Linux": "linux",
            "Ubuntu 22.04.3 LTS": "linux",
            "macOS": "macos",
            "Darwin": "macos",
            "Mac OS X": "macos",
            "Windows": "windows",
            "Microsoft Windows 11 Professional Edition, 64-bit": "windows",
            "Android 14 (Linux 5.15)": "android",
            "ChromeOS": "chromeos",
            "iPadOS": "ios",
            "iOS 17": "ios",
            "FreeBSD": "freebsd",
        }
        for reported, family in cases.items():
            self.assertEqual(osFamily(reported), family, reported)

    def test_unknown(self) -> None:
        """
        Nothing, or an OS of no known family, has no family.
        """
        for reported in (None, "", "Plan 9", "winux", "macintoshy"):
            self.assertIsNone(osFamily(reported), reported)

    @given(st.text(max_size=60))
    def test_total(self, reported: str) -> None:
        """
        Any text has a family among L{OS_FAMILIES} or none.
        """
        self.assertIn(osFamily(reported), OS_FAMILIES + (None,))


class VersionTests(SynchronousTestCase):
    """
    Versions compare by their leading dot-separated numbers.
    """

    def test_parse(self) -> None:
        """
        The leading numbers are read; suffixes are ignored; trailing zeros
        do not count; text that does not start with a number is no version.
        """
        self.assertEqual(parseVersion("5.15.0-91-generic"), (5, 15))
        self.assertEqual(parseVersion("10.0.19045.3693 (22H2)"), (10, 0, 19045, 3693))
        self.assertEqual(parseVersion("v1.2"), (1, 2))
        self.assertEqual(parseVersion("22.04"), (22, 4))
        self.assertEqual(parseVersion("10.0"), parseVersion("10"))
        self.assertEqual(parseVersion("0"), (0,))
        for text in (None, "", "Ubuntu 22.04", "x1", "1" * 10, "."):
            self.assertIsNone(parseVersion(text), text)

    def test_operators(self) -> None:
        """
        Each operator compares numerically, component by component, not as
        text.
        """
        self.assertTrue(versionMatches("ge", "10.0.19045", "10.0.19044"))
        self.assertTrue(versionMatches("gt", "10.10", "10.9"))
        self.assertTrue(versionMatches("lt", "10.9", "10.10"))
        self.assertTrue(versionMatches("eq", "22.04.0", "22.4"))
        self.assertTrue(versionMatches("le", "22.04", "22.04"))
        self.assertTrue(versionMatches("ne", "1.2", "1.3"))
        self.assertFalse(versionMatches("ge", "9", "10"))

    def test_missing(self) -> None:
        """
        A missing or unparsable version satisfies no operator, not even
        C{ne}.
        """
        for operator in VERSION_OPERATORS:
            self.assertFalse(versionMatches(operator, None, "1"))
            self.assertFalse(versionMatches(operator, "unknown", "1"))
        self.assertFalse(versionMatches("like", "1", "1"))

    @given(_versions, _versions)
    def test_exactlyOne(self, left: str, right: str) -> None:
        """
        For any two versions exactly one of lt, eq, gt holds, and le, ge, ne
        agree with them.
        """
        lt = versionMatches("lt", left, right)
        eq = versionMatches("eq", left, right)
        gt = versionMatches("gt", left, right)
        self.assertEqual(lt + eq + gt, 1)
        self.assertEqual(versionMatches("le", left, right), lt or eq)
        self.assertEqual(versionMatches("ge", left, right), gt or eq)
        self.assertEqual(versionMatches("ne", left, right), not eq)

    @given(_versions, _versions, _versions)
    def test_transitive(self, a: str, b: str, c: str) -> None:
        """
        The order is transitive and antisymmetric.
        """
        va, vb, vc = (parseVersion(v) for v in (a, b, c))
        assert va is not None and vb is not None and vc is not None
        if compareVersions(va, vb) <= 0 and compareVersions(vb, vc) <= 0:
            self.assertLessEqual(compareVersions(va, vc), 0)
        self.assertEqual(compareVersions(va, vb), -compareVersions(vb, va))

    @given(st.text(max_size=40), _versions)
    def test_totalOnAnyText(self, reported: str, version: str) -> None:
        """
        Any reported text compares without raising.
        """
        for operator in VERSION_OPERATORS:
            self.assertIsInstance(versionMatches(operator, reported, version), bool)


class TextTests(SynchronousTestCase):
    """
    Patterns and text comparisons.
    """

    def test_glob(self) -> None:
        """
        Shell-style patterns; case matters unless told otherwise; a missing
        value matches nothing.
        """
        self.assertTrue(globMatches("ops-*", "ops-alice"))
        self.assertFalse(globMatches("ops-*", "OPS-alice"))
        self.assertTrue(globMatches("*.CORP", "pc1.corp", caseSensitive=False))
        self.assertTrue(globMatches("alice", "alice"))
        self.assertFalse(globMatches("alice", "alice2"))
        self.assertTrue(globMatches("pc?", "pc7"))
        self.assertFalse(globMatches("*", None))

    def test_text(self) -> None:
        """
        eq, ne and glob; a missing value satisfies none of them.
        """
        self.assertTrue(textMatches("eq", "true", "true"))
        self.assertFalse(textMatches("eq", "True", "true"))
        self.assertTrue(textMatches("ne", "false", "true"))
        self.assertTrue(textMatches("glob", "enabled-2", "enabled-*"))
        for operator in ("eq", "ne", "glob"):
            self.assertFalse(textMatches(operator, None, "x"))
        self.assertFalse(textMatches("lt", "a", "b"))

    @given(st.text(max_size=20), st.text(max_size=20))
    def test_neIsNotEq(self, reported: str, value: str) -> None:
        """
        For a reported value, ne is exactly the negation of eq.
        """
        self.assertEqual(
            textMatches("ne", reported, value), not textMatches("eq", reported, value)
        )

    def test_factNames(self) -> None:
        """
        Fact names are short words of letters, digits, C{_ . -}.
        """
        for name in ("disk.root-encrypted", "a", "os_kernel", "9"):
            self.assertTrue(isFactName(name), name)
        for name in ("", "-a", ".a", "a b", "a" * 65, "é"):
            self.assertFalse(isFactName(name), name)
