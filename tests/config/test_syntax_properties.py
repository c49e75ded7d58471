"""
Properties of L{ztnagw.config.syntax} over generated input: every tree
survives a round trip through text, and no input whatever makes the parser
raise anything but L{ConfigurationRejected}.
"""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.syntax import MAX_DEPTH, parse, render
from ztnagw.config.tree import (
    ConfigBlock,
    ConfigurationRejected,
    Document,
    EditBlock,
    SetStatement,
    UnsetStatement,
    Word,
)

# Text of every kind, with the characters that matter to the syntax made
# common enough to meet each other.
_SPECIAL = ' \t"\'\\#\r\n'
texts = st.one_of(
    st.text(),
    st.text(alphabet=st.sampled_from(_SPECIAL + "ab\u00a0\u2028\x00")),
    st.sampled_from(["", "end", "next", "#", "\\", "\r\n", "edit 1"]),
)
words = st.builds(Word, texts, st.booleans())
setStatements = st.builds(
    SetStatement, texts, st.lists(words, min_size=1, max_size=3).map(tuple)
)
unsetStatements = st.builds(UnsetStatement, texts)
inConfig = st.deferred(
    lambda: st.one_of(setStatements, unsetStatements, configBlocks, editBlocks)
)
inEdit = st.deferred(
    lambda: st.one_of(setStatements, unsetStatements, configBlocks)
)
configBlocks = st.builds(
    ConfigBlock,
    st.lists(texts, min_size=1, max_size=3).map(tuple),
    st.lists(inConfig, max_size=3).map(tuple),
)
editBlocks = st.builds(
    EditBlock, words, st.lists(inEdit, max_size=3).map(tuple)
)
documents = st.builds(Document, st.lists(configBlocks, max_size=3).map(tuple))


def depth(statement) -> int:
    """
    How deeply C{config} and C{edit} blocks nest in C{statement}.
    """
    if isinstance(statement, (ConfigBlock, EditBlock)):
        return 1 + max((depth(s) for s in statement.statements), default=0)
    return 0


def nodes(statements):
    """
    Every node of a tree, depth first.
    """
    for statement in statements:
        yield statement
        if isinstance(statement, (ConfigBlock, EditBlock)):
            yield from nodes(statement.statements)


# Lines that break a configuration in the ways people do.
_DAMAGE = [
    "",
    "next",
    "end",
    "edit 3",
    "edit",
    'edit "x" "y"',
    "config firewall vip",
    "config",
    "set a b",
    "set a",
    "unset",
    'set c "d',
    "set e 'f",
    "# comment",
    "append srcaddr all",
    "x\\",
    "\r",
    '"',
]

# A valid configuration to damage: the walkthrough's objects and a
# certificate, in FortiOS layout.
_VALID = """\
#config-version=FGT60F-7.4.4-FW-build2662-240514:opmode=0:vdom=0:user=admin
config vpn certificate local
    edit "mylabfound-wildcard"
        set certificate "-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUHT0HECWM9WmWEpHfJZ9jM7lUDvkwCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----"
    next
end
config firewall vip
    edit "ZTNA-WS1"
        set type access-proxy
        set extip 10.0.3.10
        set extport 11443
        set ssl-certificate "mylabfound-wildcard"
    next
end
config firewall access-proxy
    edit "ZTNA-WS1"
        set vip "ZTNA-WS1"
        config api-gateway
            edit 1
                config realservers
                    edit 1
                        set address "ws1.mylabfound.com"
                        set port 11443
                    next
                end
            next
        end
    next
end
config firewall policy
    edit 9
        set srcaddr "all" "web-servers"
        unset schedule
    next
end
"""


class RoundTripTests(SynchronousTestCase):
    """
    Rendering then parsing gives back the same tree.
    """

    @given(documents)
    def test_roundTrip(self, document: Document) -> None:
        """
        Any document (arbitrary Unicode in every word: quotes, backslashes,
        line ends, C{#}, empty strings) reads back equal from its text, and
        writing it again gives the same text: quoting is kept.
        """
        assume(max(map(depth, document.blocks), default=0) <= MAX_DEPTH)
        text = render(document)
        again = parse(text)
        self.assertEqual(again, document)
        self.assertEqual(render(again), text)

    @given(documents)
    def test_lineEndsDoNotMatter(self, document: Document) -> None:
        """
        The same text with CRLF line ends reads as the same tree, values
        included, with the same line numbers.
        """
        assume(max(map(depth, document.blocks), default=0) <= MAX_DEPTH)
        text = render(document)
        withLf = parse(text)
        withCrlf = parse(text.replace("\n", "\r\n"))
        self.assertEqual(withCrlf, document)
        self.assertEqual(
            [node.location for node in nodes(withCrlf.blocks)],
            [node.location for node in nodes(withLf.blocks)],
        )

    @given(documents)
    def test_locationsInText(self, document: Document) -> None:
        """
        Every node read back carries a line of the text, in text order.
        """
        assume(max(map(depth, document.blocks), default=0) <= MAX_DEPTH)
        text = render(document)
        lineCount = text.count("\n")
        lines = [node.location.line for node in nodes(parse(text).blocks)]
        self.assertEqual(lines, sorted(set(lines)))
        self.assertTrue(all(1 <= line <= lineCount for line in lines))


class HostileInputTests(SynchronousTestCase):
    """
    No input makes the parser fail in any way but L{ConfigurationRejected}
    with located errors.
    """

    def assertParsesOrRejects(self, text: str | bytes) -> None:
        """
        Assert that C{text} parses, or is rejected with errors each on a
        line of the text.
        """
        lineCount = text.count(b"\n" if isinstance(text, bytes) else "\n") + 1
        try:
            parse(text)
        except ConfigurationRejected as rejected:
            self.assertTrue(rejected.errors)
            for error in rejected.errors:
                self.assertTrue(1 <= error.location.line <= lineCount, error)

    @given(st.binary())
    def test_bytes(self, data: bytes) -> None:
        """
        Arbitrary bytes.
        """
        self.assertParsesOrRejects(data)

    @given(st.text())
    def test_text(self, text: str) -> None:
        """
        Arbitrary text.
        """
        self.assertParsesOrRejects(text)

    @settings(max_examples=500)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["config", "edit", "set", "unset", "next", "end", "a",
                     "1", '"', "'", "\\", "#", '"x y"', "a#", "\xff",
                     "\udc80", ""]
                ),
                st.sampled_from([" ", "\t", "\n", "\n", "\n", "\r\n", "\r", ""]),
            )
        ).map(lambda pairs: "".join(word + blank for word, blank in pairs))
    )
    def test_tokens(self, text: str) -> None:
        """
        Lines made of the language's own words and special characters, which
        reach far more of the parser than random text.
        """
        self.assertParsesOrRejects(text)
        encoded = text.encode("utf-8", "surrogatepass")
        self.assertParsesOrRejects(encoded)

    @given(st.data())
    def test_mutations(self, data: st.DataObject) -> None:
        """
        A valid configuration with a line deleted, duplicated or inserted
        either parses or is rejected with errors on lines of the text.
        """
        lines = _VALID.split("\n")
        for _ in range(data.draw(st.integers(1, 3))):
            index = data.draw(st.integers(0, len(lines) - 1))
            action = data.draw(st.sampled_from(["delete", "duplicate", "insert"]))
            if action == "delete":
                del lines[index]
            elif action == "duplicate":
                lines.insert(index, lines[index])
            else:
                lines.insert(index, data.draw(st.sampled_from(_DAMAGE)))
            if not lines:
                lines = [""]
        self.assertParsesOrRejects("\n".join(lines))

    def test_valid(self) -> None:
        """
        The configuration the mutations start from is valid, so that they
        test damage and not a broken original.
        """
        self.assertEqual(len(parse(_VALID).blocks), 4)
