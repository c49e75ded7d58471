"""
Fuzz tests of the whole configuration language, from text to the checked
model: real configurations (the shipped examples and the tunnel tests'
one) damaged statement by statement.

L{tests.config.test_syntax_properties} fuzzes the syntax layer alone; here
every damaged text goes through L{ztnagw.config.loads}, so the checks of
each option, the cross-references and the defaults see hostile values too.
A configuration either loads, and then survives C{config show} and back
unchanged, or is rejected with errors located in the text: never another
exception, which the daemon would report as a crash at start.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import Config, loads, show
from ztnagw.config.tree import ConfigurationRejected
from tests.gateway.test_tunnel import ALLOW, CONFIG

_ETC = os.path.join(os.path.dirname(__file__), "..", "..", "etc")


def _read(name: str) -> str:
    with open(os.path.join(_ETC, name), encoding="utf-8") as f:
        return f.read()


#: The configurations the damage starts from.
ORIGINALS = {
    "ztnagw.conf": _read("ztnagw.conf"),
    "walkthrough.conf": _read("walkthrough.conf"),
    "tunnel": CONFIG.replace("#IDLE#", "") + ALLOW,
}

#: Values an administrator, or an attacker with write access to a
#: configuration template, might put where another value belongs.
HOSTILE_VALUES = [
    "", '""', "0", "-1", "1", "65535", "65536", "4294967296", "99999999999999999999", "1e3", "0x10", "+5",
    "enable", "disable", "none", "all", "any", "*", "**", "*.", ".", "..", "a" * 300, '"x y"', "'x'",
    "127.0.0.1", "0.0.0.0", "255.255.255.255", "10.0.0.0 255.0.0.0", "10.0.0.1 0.255.0.0", "10.0.0.1/33",
    "::1", "2001:db8::1", "127.0.0.1-127.0.0.0", "1.2.3", "1.2.3.4.5", "256.1.1.1", "127.0.0.1:99999",
    '"\\x00"', "\\", "#", "EMS1_ZTNA_x", "FCTEMS0000000000", "sub-string", "wildcard", "regex", '"("',
    '"[a-"', '"(a+)+$"', "https", "http", "tcp-forwarding", "/", "/../../etc/passwd", '"' + "\u00e9" * 5 + '"',
]


def _damage(data: st.DataObject, text: str) -> str:
    """
    C{text} with one to four statements changed: a C{set} value replaced by
    a hostile value, a line deleted or duplicated, two lines swapped, or an
    option moved to the wrong block.
    """
    lines = text.split("\n")
    statements = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")]
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.sampled_from(statements))
        line = lines[index]
        action = data.draw(st.sampled_from(["value", "value", "extra", "delete", "duplicate", "swap", "move"]))
        words = line.split()
        if action in ("value", "extra") and words and words[0] in ("set", "edit"):
            indent = line[: len(line) - len(line.lstrip())]
            head = words[:2] if words[0] == "set" else words[:1]
            value = data.draw(st.sampled_from(HOSTILE_VALUES))
            tail = words[len(head):] if action == "extra" else []
            lines[index] = indent + " ".join(head + tail + [value])
        elif action == "delete":
            lines[index] = ""
        elif action == "duplicate":
            lines[index] = line + "\n" + line
        elif action == "swap":
            other = data.draw(st.sampled_from(statements))
            lines[index], lines[other] = lines[other], lines[index]
        else:
            other = data.draw(st.sampled_from(statements))
            lines[other] = lines[other] + "\n" + line
    return "\n".join(lines)


class DamagedConfigurationTests(SynchronousTestCase):
    """
    Damaged real configurations load or are rejected cleanly.
    """

    def assertLoadsOrRejects(self, text: str) -> Config | None:
        """
        C{text} loads into a configuration that C{config show} writes back
        to an equal one, or is rejected with errors that name lines of
        C{text}.

        @return: the configuration, if it loaded.
        """
        base = self.mktemp()
        try:
            config = loads(text, "fuzz.conf", baseDirectory=base)
        except ConfigurationRejected as rejected:
            self.assertTrue(rejected.errors)
            lineCount = text.count("\n") + 1
            for error in rejected.errors:
                self.assertTrue(error.message, error)
                if error.location is not None:
                    self.assertTrue(1 <= error.location.line <= lineCount, str(error))
            return None
        shown = show(config)
        self.assertEqual(loads(shown, "shown.conf", baseDirectory=base), config, shown)
        return config

    def test_originalsLoad(self) -> None:
        """
        The configurations the damage starts from are valid, so that the
        fuzz tests damage and not a broken original.
        """
        for name, text in ORIGINALS.items():
            self.assertIsInstance(self.assertLoadsOrRejects(text), Config, name)

    @settings(max_examples=300)
    @given(st.sampled_from(sorted(ORIGINALS)), st.data())
    def test_damaged(self, name: str, data: st.DataObject) -> None:
        """
        Any damage to a real configuration: loaded and shown back equal, or
        rejected with located errors.
        """
        self.assertLoadsOrRejects(_damage(data, ORIGINALS[name]))
