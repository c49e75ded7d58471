"""
Tests for L{ztnagw.forwarder.rules}: C{-L} specifications, listening
addresses and the rules file.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.forwarder.rules import (
    ForwardRule,
    ListenAddress,
    RuleError,
    checkListenAddress,
    parseForwardSpec,
    parseListenAddress,
    parseRules,
    splitColons,
)
from ztnagw.tunnel.wire import TunnelTarget

EXAMPLE = """
# Options in [defaults] apply to every rule that does not set them.
[defaults]
gateway = gw.example.com:443

[ssh-jump]
destination = 10.88.0.5:22
listen = 2222

[payroll-db]
destination = DB.corp.example:5432
listen = 127.0.0.1:15432
encryption = off
gateway = gw2.example.com:8443
"""


class ForwardSpecTests(SynchronousTestCase):
    """
    C{-L [BIND:]LPORT:DEST:DPORT}.
    """

    def test_short(self) -> None:
        """
        Without C{BIND}, the forwarder listens on 127.0.0.1.
        """
        self.assertEqual(
            parseForwardSpec("2222:10.88.0.5:22"),
            ForwardRule(
                name="-L 2222:10.88.0.5:22",
                listen=ListenAddress("127.0.0.1", 2222),
                destination=TunnelTarget("10.88.0.5", 22, True),
            ),
        )

    def test_bindAndIPv6(self) -> None:
        """
        IPv6 addresses go in brackets, on either side.
        """
        rule = parseForwardSpec("[::1]:2222:[2001:db8::5]:22", encrypted=False)
        self.assertEqual(rule.listen, ListenAddress("::1", 2222))
        self.assertEqual(rule.destination, TunnelTarget("2001:db8::5", 22, False))

    def test_names(self) -> None:
        """
        C{localhost} and C{*} are the names a listening address may have;
        the destination may be any host name.
        """
        self.assertEqual(parseForwardSpec("localhost:1:db:5").listen, ListenAddress("127.0.0.1", 1))
        self.assertEqual(parseForwardSpec("*:1:db:5").listen, ListenAddress("0.0.0.0", 1))
        self.assertEqual(parseForwardSpec("0:db.corp:5").listen.port, 0)

    def test_bad(self) -> None:
        """
        Malformed specifications say what is wrong.
        """
        for spec, words in (
            ("2222:db", "is not [BIND:]LPORT:DEST:DPORT"),
            ("a:b:c:d:e", "is not [BIND:]LPORT:DEST:DPORT"),
            ("2222:db:0", "port"),
            ("x:db:22", "listen port"),
            ("bastion:2222:db:22", "not a host name"),
            ("[::1:2222:db:22", "without ']'"),
            ("2222:d b:22", "destination"),
        ):
            e = self.assertRaises(RuleError, parseForwardSpec, spec)
            self.assertIn(words, str(e), spec)

    def test_splitColons(self) -> None:
        """
        Colons inside brackets do not split.
        """
        self.assertEqual(splitColons("[::1]:22"), ["[::1]", "22"])
        self.assertRaises(RuleError, splitColons, "]:22")
        self.assertRaises(RuleError, splitColons, "[[::1]]:22")

    @given(st.text(alphabet="0123456789:[]abc.*", max_size=40))
    def test_anySpec(self, spec: str) -> None:
        """
        Any text is a rule or a L{RuleError}.
        """
        try:
            rule = parseForwardSpec(spec)
        except RuleError:
            return
        self.assertTrue(0 <= rule.listen.port <= 65535)


class ListenTests(SynchronousTestCase):
    """
    Listening addresses: loopback unless allowed.
    """

    def test_loopbackByDefault(self) -> None:
        """
        A bare port is on 127.0.0.1.
        """
        self.assertEqual(parseListenAddress("1080"), ListenAddress("127.0.0.1", 1080))

    def test_remoteRefused(self) -> None:
        """
        An address other machines can reach needs the explicit flag.
        """
        for text in ("0.0.0.0:1080", "*:1080", "192.0.2.7:1080", "[::]:1080"):
            listen = parseListenAddress(text)
            e = self.assertRaises(RuleError, checkListenAddress, listen, False)
            self.assertIn("--allow-remote-clients", str(e))
            checkListenAddress(listen, True)
        checkListenAddress(parseListenAddress("[::1]:1080"), False)
        checkListenAddress(parseListenAddress("127.0.0.2:1080"), False)


class RulesFileTests(SynchronousTestCase):
    """
    The rules file.
    """

    def test_example(self) -> None:
        """
        The documented example.
        """
        self.assertEqual(
            parseRules(EXAMPLE, "rules.ini"),
            [
                ForwardRule(
                    name="ssh-jump",
                    listen=ListenAddress("127.0.0.1", 2222),
                    destination=TunnelTarget("10.88.0.5", 22, True),
                    gateway=("gw.example.com", 443),
                ),
                ForwardRule(
                    name="payroll-db",
                    listen=ListenAddress("127.0.0.1", 15432),
                    destination=TunnelTarget("db.corp.example", 5432, False),
                    gateway=("gw2.example.com", 8443),
                ),
            ],
        )

    def test_defaultsOptional(self) -> None:
        """
        Without a gateway anywhere, a rule uses the forwarder's default.
        """
        (rule,) = parseRules("[a]\ndestination = h:1\nlisten = 2\nencryption = yes\n")
        self.assertIsNone(rule.gateway)
        self.assertTrue(rule.destination.encrypted)

    def assertRefused(self, text: str, words: str) -> None:
        """
        C{text} is refused with a message containing C{words}.
        """
        e = self.assertRaises(RuleError, parseRules, text, "r.ini")
        self.assertIn(words, str(e))
        self.assertTrue(str(e).startswith("r.ini"))

    def test_errors(self) -> None:
        """
        Unknown keys, missing keys, bad values, duplicates and text outside
        a section are refused, naming the rule.
        """
        self.assertRefused("[a]\ndestinaton = h:1\nlisten = 2\n", "[a]: unknown key 'destinaton'")
        self.assertRefused("[a]\nlisten = 2\n", "[a]: destination is required")
        self.assertRefused("[a]\ndestination = h:1\n", "[a]: listen is required")
        self.assertRefused("[a]\ndestination = h:1\nlisten = 2\nencryption = maybe\n", "on or off")
        self.assertRefused("[a]\ndestination = h\nlisten = 2\n", "[a]: destination")
        self.assertRefused("[a]\ndestination = h:1\nlisten = 2 # comment\n", "[a]: listen port")
        self.assertRefused("[a]\ndestination = h:1\nlisten = 2\nlisten = 3\n", "r.ini")
        self.assertRefused("destination = h:1\n", "r.ini")
        self.assertRefused("[defaults]\nlisten = 2\n", "[defaults]: unknown key 'listen'")
        self.assertRefused("# nothing\n", "no rules")
        self.assertRefused("[a]\ndestination = h:1\nlisten = 0.0.0.0:2\ngateway = g\n", "[a]: gateway")

    @given(st.text(max_size=200))
    def test_anyText(self, text: str) -> None:
        """
        Any text is a list of rules or a L{RuleError}.
        """
        try:
            rules = parseRules(text)
        except RuleError as e:
            self.assertTrue(str(e))
        else:
            self.assertTrue(rules)

    @given(
        st.lists(
            st.sampled_from(
                ["[r]", "[defaults]", "destination = h:1", "listen = 2", "gateway = g:3", "encryption = off", "x = 1", "", "  indented", "[r2]"]
            ),
            max_size=12,
        )
    )
    def test_anyNearText(self, lines: list[str]) -> None:
        """
        Files made of the lines of real ones are rules or a L{RuleError}.
        """
        try:
            parseRules("\n".join(lines))
        except RuleError:
            pass
