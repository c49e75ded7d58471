# -*- test-case-name: tests.ems.test_conditions -*-
"""
How the conditions of tagging rules compare what a device reported.

A tagging rule (C{config tagging-rule} inside C{config endpoint-control
fctems}) sets a posture tag on the devices whose reported facts meet its
conditions: an operating system family, a version compared as a version
(C{ge 22.04}), a user or host name matched by a shell-style pattern, a
posture fact.  This module holds the comparisons themselves and the
patterns the configuration model uses to check what a rule may say
(L{OS_FAMILIES}, L{FACT_NAME_PATTERN}, L{VERSION_PATTERN}).  It depends on
nothing else in ztnagw, so that the model can import it while
L{ztnagw.ems.tagging}, which evaluates whole rules against endpoint
records, imports the model.

Every comparison is total: a reported value that is missing, malformed, or
not comparable (a version that is not a version) makes the comparison
false, never an error, so that nothing a device reports can break tag
evaluation.  See C{docs/ems.md}, "Tagging rules".
"""

from __future__ import annotations

import fnmatch
import re

__all__ = [
    "FACT_NAME_PATTERN",
    "OS_FAMILIES",
    "TEXT_OPERATORS",
    "VERSION_OPERATORS",
    "VERSION_PATTERN",
    "compareVersions",
    "globMatches",
    "isFactName",
    "osFamily",
    "parseVersion",
    "textMatches",
    "versionMatches",
]

#: Operating system families a rule can name, in the order L{osFamily}
#: tries them.
OS_FAMILIES = ("windows", "android", "chromeos", "ios", "macos", "linux", "freebsd")

# How a reported OS type names each family.  Order matters: Android and
# ChromeOS run Linux kernels and may say so, iPadOS and iOS are not macOS.
_FAMILY_PATTERNS = (
    ("windows", re.compile(r"\bwindows\b|\bwin(32|64|nt)\b|\bmicrosoft\b")),
    ("android", re.compile(r"\bandroid\b")),
    ("chromeos", re.compile(r"\bchrome ?os\b|\bchromium ?os\b")),
    ("ios", re.compile(r"\bi(pad)?os\b|\biphone\b|\bipad\b")),
    ("macos", re.compile(r"\bmac ?os\b|\bos ?x\b|\bdarwin\b|\bmacintosh\b")),
    (
        "linux",
        re.compile(r"\blinux\b|\bubuntu\b|\bdebian\b|\bfedora\b|\brhel\b|\bcentos\b"),
    ),
    ("freebsd", re.compile(r"\bfreebsd\b")),
)

#: A posture fact's name (without anchors, as the model's text patterns are
#: written): what the agent and the posture command may report, and what
#: a rule may name.
FACT_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"

#: A version as a rule writes it: one to ten dot-separated numbers (without
#: anchors).
VERSION_PATTERN = r"[0-9]{1,9}(\.[0-9]{1,9}){0,9}"

_FACT_NAME = re.compile(rf"\A{FACT_NAME_PATTERN}\Z")

#: The leading dotted numbers of a reported version (C{5.15.0} of
#: C{5.15.0-91-generic}, C{10.0.19045} of C{10.0.19045.3693 (22H2)}).
_REPORTED_VERSION = re.compile(r"\A\s*[vV]?([0-9]{1,9}(?:\.[0-9]{1,9}){0,9})(?![0-9])")

#: Version operators, with the comparison results that satisfy each.
VERSION_OPERATORS: dict[str, tuple[int, ...]] = {
    "eq": (0,),
    "ne": (-1, 1),
    "lt": (-1,),
    "le": (-1, 0),
    "gt": (1,),
    "ge": (0, 1),
}

#: Operators that compare text.
TEXT_OPERATORS = ("eq", "ne", "glob")


def isFactName(text: str) -> bool:
    """
    Whether C{text} may name a posture fact: 1 to 64 letters, digits,
    C{_}, C{.} or C{-}, starting with a letter or digit.
    """
    return _FACT_NAME.match(text) is not None


def osFamily(osType: str | None) -> str | None:
    """
    The family (one of L{OS_FAMILIES}) of a reported operating system, or
    C{None} if it names none of them.

    @param osType: what the device reported (C{"Linux"}, C{"macOS"},
        C{"Microsoft Windows 11 Pro"}...).
    """
    if not osType:
        return None
    text = osType.lower()
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.search(text):
            return family
    return None


def parseVersion(text: str | None) -> tuple[int, ...] | None:
    """
    The numbers a version starts with, or C{None} if it does not start
    with one.  Trailing zeros are dropped, so that C{10.0} and C{10} are the
    same version.

    @param text: a version, as reported (C{"5.15.0-91-generic"}) or
        written in a rule.
    """
    if text is None:
        return None
    match = _REPORTED_VERSION.match(text)
    if match is None:
        return None
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def compareVersions(left: tuple[int, ...], right: tuple[int, ...]) -> int:
    """
    -1, 0 or 1 as version C{left} is before, the same as, or after
    C{right}; missing components count as 0.
    """
    width = max(len(left), len(right))
    a = left + (0,) * (width - len(left))
    b = right + (0,) * (width - len(right))
    return (a > b) - (a < b)


def versionMatches(operator: str, reported: str | None, version: str) -> bool:
    """
    Whether the C{reported} version stands in relation C{operator} (one of
    L{VERSION_OPERATORS}) to C{version}.  A missing or unparsable version
    satisfies no operator, not even C{ne}.
    """
    wanted = VERSION_OPERATORS.get(operator)
    value = parseVersion(reported)
    mine = parseVersion(version)
    if wanted is None or value is None or mine is None:
        return False
    return compareVersions(value, mine) in wanted


def globMatches(pattern: str, reported: str | None, caseSensitive: bool = True) -> bool:
    """
    Whether C{reported} matches the shell-style C{pattern} (C{*}, C{?},
    C{[...]}; a pattern without them is an exact name).  A missing value
    matches nothing.

    @param caseSensitive: compare case (user names) or not (host names).
    """
    if reported is None:
        return False
    if not caseSensitive:
        pattern, reported = pattern.casefold(), reported.casefold()
    # fnmatchcase: the case rule is ours, not the platform's.
    return fnmatch.fnmatchcase(reported, pattern)


def textMatches(operator: str, reported: str | None, value: str) -> bool:
    """
    Whether C{reported} stands in relation C{operator} (one of
    L{TEXT_OPERATORS}) to C{value}, case-sensitively.  A missing value
    satisfies no operator, not even C{ne}.
    """
    if reported is None:
        return False
    if operator == "eq":
        return reported == value
    if operator == "ne":
        return reported != value
    if operator == "glob":
        return globMatches(value, reported)
    return False
