"""
Tests for L{ztnagw.config.printer} (L{ztnagw.config.show}): the
configuration written back as text, and read back as an equal model.
"""

from __future__ import annotations

import os
import textwrap
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config import ConfigurationRejected, load, loads, show
from ztnagw.config.model import Address, Config, FirewallPolicy
from ztnagw.config.schema import FrozenMap
from ztnagw.config.syntax import quote, render
from ztnagw.config.tree import Document, EditBlock, SetStatement, Word

from tests.config.helpers import MINIMAL, ROOT
from tests.config.strategies import configurations
from tests.support.pki import makeCA, makeServer


@lru_cache(maxsize=None)
def _pem() -> list[tuple[str, str]]:
    ca = makeCA(keySlot=20)
    pairs = []
    for slot in (21, 22):
        server = makeServer(ca, keySlot=slot)
        pairs.append((server.certificatePem().decode(), server.keyPem().decode()))
    return pairs


def _loadDocument(document: Document, base: str) -> Config:
    return loads(render(document), source="generated.conf", baseDirectory=base)


class ShowTests(SynchronousTestCase):
    """
    L{show} prints what was set, like FortiOS C{show}, or everything,
    like C{show full-configuration}.
    """

    def test_walkthrough(self) -> None:
        """
        The walkthrough shows as FortiOS would print it: its own options
        only, indented, names quoted.
        """
        config = load(os.path.join(ROOT, "etc", "walkthrough.conf"))
        text = show(config)
        self.assertIn(
            textwrap.dedent(
                """\
                config firewall vip
                    edit "ZTNA-WS1"
                        set uuid 7d54bf6a-c894-51f0-489a-986b6702da86
                        set type access-proxy
                        set server-type https
                        set extip 10.0.3.10
                        set extintf "port3"
                        set extport 11443
                        set ssl-certificate "mylabfound-wildcard"
                    next
                end
                """
            ),
            text,
        )
        self.assertNotIn("ssl-min-version", text)
        self.assertNotIn('edit "all"', text)

    def test_full(self) -> None:
        """
        The full form adds every default, but no option that does not
        apply and no built-in object.
        """
        config = load(os.path.join(ROOT, "etc", "walkthrough.conf"))
        text = show(config, full=True)
        self.assertIn("        set ssl-min-version tls-1.2\n", text)
        self.assertIn("                        set verify-cert enable\n", text)
        # Only for tcp-forwarding api-gateways, only for ipmask addresses:
        self.assertNotIn("mappedport", text)
        self.assertNotIn("tunnel-encryption", text)
        self.assertNotIn("set subnet", text)
        self.assertNotIn('edit "always"', text)
        self.assertEqual(loads(text), config)

    def test_normalized(self) -> None:
        """
        Values are written in one form: masks as FortiOS prints them, days
        in week order, UUIDs in lower case.
        """
        config = loads(
            textwrap.dedent(
                """\
                config firewall address
                    edit "n"
                        set uuid 7D54BF6A-C894-51F0-489A-986B6702DA86
                        set subnet 10.0.0.0/8
                    next
                end
                config firewall schedule recurring
                    edit "s"
                        set day friday monday
                    next
                end
                """
            )
        )
        text = show(config)
        self.assertIn("set subnet 10.0.0.0 255.0.0.0\n", text)
        self.assertIn("set day monday friday\n", text)
        self.assertIn("set uuid 7d54bf6a-c894-51f0-489a-986b6702da86\n", text)

    def test_madeInPython(self) -> None:
        """
        An object made in Python (without a record of explicit options)
        shows the options that differ from their defaults.
        """
        config = Config(
            addresses=FrozenMap({"n": Address(name="n", comment="lab")}),
            policies=FrozenMap(
                {
                    3: FirewallPolicy(
                        id=3,
                        srcintf=("any",),
                        dstintf=("any",),
                        srcaddr=("n",),
                        dstaddr=("n",),
                        schedule="always",
                        ztnaStatus=True,
                    )
                }
            ),
        )
        text = show(config)
        self.assertIn('    edit "n"\n        set comment "lab"\n    next\n', text)
        self.assertNotIn("set action", text)
        self.assertEqual(loads(text), config)

    def test_redact(self) -> None:
        """
        With C{redact}, private keys and passwords are written C{ENC
        redacted}, which loads as a clear error rather than as a value.
        """
        certificate, key = _pem()[0]
        config = loads(
            "config vpn certificate local\n"
            '    edit "c"\n'
            f"        set certificate {quote(certificate)}\n"
            f"        set private-key {quote(key)}\n"
            "    next\n"
            "end\n"
            "config user local\n"
            '    edit "bob"\n'
            '        set passwd "hunter2"\n'
            "    next\n"
            "end\n"
        )
        text = show(config, redact=True)
        self.assertNotIn("PRIVATE KEY", text)
        self.assertNotIn("hunter2", text)
        self.assertIn("        set private-key ENC redacted\n", text)
        self.assertIn("        set passwd ENC redacted\n", text)
        self.assertIn("BEGIN CERTIFICATE", text)
        rejected = self.assertRaises(ConfigurationRejected, loads, text)
        self.assertEqual(
            [e.message for e in rejected.errors],
            [
                f'vpn certificate local "c": {option}: is encrypted (ENC ...): a '
                "value encrypted by a FortiGate, or redacted by 'ztnagw config "
                "show', cannot be read; give it in clear"
                for option in ("private-key",)
            ]
            + [
                'user local "bob": passwd: is encrypted (ENC ...): a value '
                "encrypted by a FortiGate, or redacted by 'ztnagw config show', "
                "cannot be read; give it in clear"
            ],
        )
        self.assertEqual(loads(show(config)), config)

    def test_emptyConfiguration(self) -> None:
        """
        An empty configuration shows as nothing, and fully as its global
        settings.
        """
        config = loads("")
        self.assertEqual(show(config), "")
        self.assertTrue(show(config, full=True).startswith("config system global\n"))


class RoundTripTests(SynchronousTestCase):
    """
    C{loads(show(c)) == c}, for configurations generated from the schema.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())

    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def test_roundTrip(self, data: st.DataObject) -> None:
        """
        A generated configuration loads; its C{show} and C{show --full}
        forms load back as an equal configuration, and showing is stable.
        """
        document = data.draw(configurations(_pem()))
        try:
            config = _loadDocument(document, self.base)
        except ConfigurationRejected as e:
            self.fail(f"generated configuration rejected:\n{e}\n\n{render(document)}")
        for full in (False, True):
            text = show(config, full=full)
            again = loads(text, baseDirectory=self.base)
            self.assertEqual(again, config, text)
            self.assertEqual(show(again, full=full), text)


#: Words that are wrong somewhere: out of range, malformed, hostile.
_JUNK = st.one_of(
    st.sampled_from(
        [
            "",
            "0",
            "-1",
            "65536",
            "4294967296",
            "99999999999999999999999",
            "1" * 5000,
            "enable",
            "disable",
            "none",
            "all",
            "any",
            "always",
            "10.0.0.256",
            "10.0.0.0/33",
            "10.0.0.1/24",
            "255.0.255.0",
            "00:00",
            "24:00",
            "8:00 2025/02/30",
            "2025/01/01",
            "EMS1_ZTNA_x",
            "EMS9_ZTNA_x",
            "sqlite:",
            "postgresql://u:p@h/d",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "(",
            "*.",
            "\x00",
            "a\nb",
            "\u2028",
        ]
    ),
    st.text(max_size=12),
)


@st.composite
def _mutations(draw: st.DrawFn) -> Document:
    """
    A generated configuration with one statement changed: junk values, a
    statement removed or doubled, or an entry renamed.
    """
    document = draw(configurations(_pem()))
    blocks = list(document.blocks)
    index = draw(st.integers(0, len(blocks) - 1))
    block = blocks[index]

    def mutate(statements: tuple) -> tuple:  # type: ignore[type-arg]
        if not statements:
            return statements
        position = draw(st.integers(0, len(statements) - 1))
        statement = statements[position]
        kind = draw(st.sampled_from(["values", "drop", "double", "deeper"]))
        if kind == "deeper" and hasattr(statement, "statements"):
            replaced = mutate(statement.statements)
            if isinstance(statement, EditBlock):
                if draw(st.booleans()):
                    key = Word(draw(_JUNK))
                    return statements[:position] + (EditBlock(key, replaced, statement.location),) + statements[position + 1 :]
                return statements[:position] + (EditBlock(statement.key, replaced, statement.location),) + statements[position + 1 :]
            return statements[:position] + (type(statement)(statement.path, replaced, statement.location),) + statements[position + 1 :]
        if kind == "values" and isinstance(statement, SetStatement):
            words = tuple(Word(w) for w in draw(st.lists(_JUNK, min_size=1, max_size=3)))
            return statements[:position] + (SetStatement(statement.option, words, statement.location),) + statements[position + 1 :]
        if kind == "double":
            return statements[:position] + (statement,) + statements[position:]
        return statements[:position] + statements[position + 1 :]

    blocks[index] = type(block)(block.path, mutate(block.statements), block.location)
    return Document(tuple(blocks), source=document.source)


class MutationTests(SynchronousTestCase):
    """
    A configuration with a wrong value, a missing or doubled statement
    either loads or is rejected with located errors; nothing else happens.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())

    @settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_mutations())
    def test_neverATraceback(self, document: Document) -> None:
        """
        Loading a mutated tree either succeeds (and then shows and reloads
        equal) or raises L{ConfigurationRejected} whose errors all have a
        location.
        """
        from ztnagw.config.build import buildConfig

        try:
            config = buildConfig(document, self.base)
        except ConfigurationRejected as e:
            for error in e.errors:
                self.assertIsNotNone(error.location, str(error))
                self.assertNotIn("\n", error.message)
        else:
            self.assertEqual(loads(show(config), baseDirectory=self.base), config)

    def test_minimalMutated(self) -> None:
        """
        The hand-written minimal configuration survives the same treatment
        for a few fixed mutations.
        """
        for old, new in [
            ("set extport 443", "set extport"),
            ('set vip "vip"', "set vip"),
            ("edit 1", 'edit "x y"'),
        ]:
            try:
                loads(MINIMAL.replace(old, new, 1))
            except ConfigurationRejected:
                pass
