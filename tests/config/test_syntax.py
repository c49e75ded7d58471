"""
Tests for L{ztnagw.config.syntax}: FortiOS CLI text to syntax tree and back,
on examples.  The properties over generated input are in
L{tests.config.test_syntax_properties}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.syntax import (
    MAX_DEPTH,
    MAX_ERRORS,
    MAX_SIZE,
    parse,
    parseFile,
    quote,
    render,
    renderBlocks,
    renderWord,
)
from ztnagw.config.tree import (
    ConfigBlock,
    ConfigurationRejected,
    Document,
    EditBlock,
    Location,
    SetStatement,
    UnsetStatement,
    Word,
)


def setStatement(option: str, *values: str) -> SetStatement:
    """
    Build a L{SetStatement} of bare-or-quoted values (quoting takes no part
    in equality).
    """
    return SetStatement(option, tuple(Word(value) for value in values))


def edit(key: str, *statements) -> EditBlock:
    """
    Build an L{EditBlock}.
    """
    return EditBlock(Word(key), tuple(statements))


def config(path: str, *statements) -> ConfigBlock:
    """
    Build a L{ConfigBlock} from its path written with blanks.
    """
    return ConfigBlock(tuple(path.split()), tuple(statements))


# The three CLI blocks of the walkthrough
# (reference/walkthrough-ztna-https-access-proxy.txt), verbatim: the page
# lost its indentation, which the language does not need.
WALKTHROUGH_VIP = """\
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

WALKTHROUGH_ACCESS_PROXY = """\
config firewall access-proxy
edit "ZTNA-WS1"
set vip "ZTNA-WS1"
config api-gateway
edit 1
config realservers
edit 1
set addr-type fqdn
set address "ws1.mylabfound.com"
set port 11443
next
end
next
end
next
end
"""

WALKTHROUGH_POLICY = """\
config firewall policy
edit 9
set name "Access-WS1-ZTNA"
set srcintf "port3"
set dstintf "any"
set action accept
set srcaddr "all"
set dstaddr "ZTNA-WS1"
set schedule "always"
set logtraffic all
set nat enable
next
end
"""

WALKTHROUGH_TREES = {
    WALKTHROUGH_VIP: config(
        "firewall vip",
        edit(
            "ZTNA-WS1",
            setStatement("uuid", "7d54bf6a-c894-51f0-489a-986b6702da86"),
            setStatement("type", "access-proxy"),
            setStatement("server-type", "https"),
            setStatement("extip", "10.0.3.10"),
            setStatement("extintf", "port3"),
            setStatement("extport", "11443"),
            setStatement("ssl-certificate", "mylabfound-wildcard"),
        ),
    ),
    WALKTHROUGH_ACCESS_PROXY: config(
        "firewall access-proxy",
        edit(
            "ZTNA-WS1",
            setStatement("vip", "ZTNA-WS1"),
            config(
                "api-gateway",
                edit(
                    "1",
                    config(
                        "realservers",
                        edit(
                            "1",
                            setStatement("addr-type", "fqdn"),
                            setStatement("address", "ws1.mylabfound.com"),
                            setStatement("port", "11443"),
                        ),
                    ),
                ),
            ),
        ),
    ),
    WALKTHROUGH_POLICY: config(
        "firewall policy",
        edit(
            "9",
            setStatement("name", "Access-WS1-ZTNA"),
            setStatement("srcintf", "port3"),
            setStatement("dstintf", "any"),
            setStatement("action", "accept"),
            setStatement("srcaddr", "all"),
            setStatement("dstaddr", "ZTNA-WS1"),
            setStatement("schedule", "always"),
            setStatement("logtraffic", "all"),
            setStatement("nat", "enable"),
        ),
    ),
}

CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUHT0HECWM9WmWEpHfJZ9jM7lUDvkwCgYIKoZIzj0EAwIw\n"
    "-----END CERTIFICATE-----"
)

# A file as FortiOS writes a backup, edited on Windows: header comments,
# CRLF line ends (LF in the last block), tabs, comments after statements,
# inline PEM spanning lines, escapes, several values, no final line end.
FORTIOS_FILE = (
    b"\xef\xbb\xbf#config-version=FGT60F-7.4.4-FW-build2662-240514:"
    b"opmode=0:vdom=0:user=admin\r\n"
    b"#conf_file_ver=46301584939012\r\n"
    b"#buildno=2662\r\n"
    b"#global_vdom=1\r\n"
    b"\r\n"
    b"config system global\r\n"
    b'\tset hostname "FGT-Z\xc3\xbcrich"\r\n'
    b"    set admintimeout 480 # minutes\r\n"
    b"end\r\n"
    b"config vpn certificate local\r\n"
    b'    edit "mylabfound-wildcard"\r\n'
    b"        set password ENC cXVpdGUgc2VjcmV0\r\n"
    b'        set comments "lab \\"wildcard\\" cert from C:\\\\certs"\r\n'
    b'        set certificate "' + CERTIFICATE.replace("\n", "\r\n").encode() + b'"\r\n'
    b"    next\r\n"
    b"end\r\n"
    b"config firewall policy\n"
    b"    edit 9\n"
    b'        set srcaddr "all" "web-servers"\n'
    b"        set groups 'ZTNA users'   \t\n"
    b"        # a comment indented like a statement\n"
    b"        unset schedule\n"
    b"    next\n"
    b"end"
)


class WalkthroughTests(SynchronousTestCase):
    """
    The configuration our users copy from the FortiGate walkthrough loads
    unchanged.
    """

    def test_trees(self) -> None:
        """
        Each of the walkthrough's three CLI blocks parses into the tree it
        describes.
        """
        for text, tree in WALKTHROUGH_TREES.items():
            self.assertEqual(parse(text), Document((tree,)))

    def test_together(self) -> None:
        """
        The three blocks in one file are three top-level blocks, in order.
        """
        text = WALKTHROUGH_VIP + WALKTHROUGH_ACCESS_PROXY + WALKTHROUGH_POLICY
        self.assertEqual(
            parse(text), Document(tuple(WALKTHROUGH_TREES.values()))
        )

    def test_quotedFlags(self) -> None:
        """
        Each word remembers whether it was quoted: FortiOS quotes names and
        leaves numbers and keywords bare.
        """
        (block,) = parse(WALKTHROUGH_VIP).blocks
        (entry,) = block.statements
        self.assertTrue(entry.key.quoted)
        flags = {s.option: s.values[0].quoted for s in entry.statements}
        self.assertEqual(
            flags,
            {
                "uuid": False,
                "type": False,
                "server-type": False,
                "extip": False,
                "extintf": True,
                "extport": False,
                "ssl-certificate": True,
            },
        )

    def test_locations(self) -> None:
        """
        Every node knows the file and line it starts on.
        """
        document = parse(WALKTHROUGH_ACCESS_PROXY, source="etc/ztnagw.conf")
        self.assertEqual(document.source, "etc/ztnagw.conf")
        (accessProxy,) = document.blocks
        self.assertEqual(accessProxy.location, Location("etc/ztnagw.conf", 1))
        (entry,) = accessProxy.statements
        vip, apiGateways = entry.statements
        self.assertEqual(entry.location, Location("etc/ztnagw.conf", 2))
        self.assertEqual(vip.location, Location("etc/ztnagw.conf", 3))
        self.assertEqual(apiGateways.location, Location("etc/ztnagw.conf", 4))
        (realServers,) = apiGateways.statements[0].statements
        (realServer,) = realServers.statements
        self.assertEqual(
            [s.location.line for s in realServer.statements], [8, 9, 10]
        )

    def test_renderLayout(self) -> None:
        """
        Rendering prints the walkthrough as FortiOS C{show} does: four
        blanks per level, names quoted as they were, numbers bare.
        """
        self.assertEqual(
            render(parse(WALKTHROUGH_ACCESS_PROXY + WALKTHROUGH_POLICY)),
            """\
config firewall access-proxy
    edit "ZTNA-WS1"
        set vip "ZTNA-WS1"
        config api-gateway
            edit 1
                config realservers
                    edit 1
                        set addr-type fqdn
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
        set name "Access-WS1-ZTNA"
        set srcintf "port3"
        set dstintf "any"
        set action accept
        set srcaddr "all"
        set dstaddr "ZTNA-WS1"
        set schedule "always"
        set logtraffic all
        set nat enable
    next
end
""",
        )


class FortiOSFileTests(SynchronousTestCase):
    """
    A whole file as FortiOS writes it, with the lexical details of real
    files, parses.
    """

    def setUp(self) -> None:
        self.document = parse(FORTIOS_FILE, source="backup.conf")

    def test_tree(self) -> None:
        """
        Header and other comments, blank lines, tabs and trailing blanks
        leave no trace; CRLF and LF line ends both end statements; the file
        needs no final line end.
        """
        self.assertEqual(
            self.document,
            Document(
                (
                    config(
                        "system global",
                        setStatement("hostname", "FGT-Z\u00fcrich"),
                        setStatement("admintimeout", "480"),
                    ),
                    config(
                        "vpn certificate local",
                        edit(
                            "mylabfound-wildcard",
                            setStatement("password", "ENC", "cXVpdGUgc2VjcmV0"),
                            setStatement(
                                "comments", 'lab "wildcard" cert from C:\\certs'
                            ),
                            setStatement("certificate", CERTIFICATE),
                        ),
                    ),
                    config(
                        "firewall policy",
                        edit(
                            "9",
                            setStatement("srcaddr", "all", "web-servers"),
                            setStatement("groups", "ZTNA users"),
                            UnsetStatement("schedule"),
                        ),
                    ),
                )
            ),
        )

    def test_pemLines(self) -> None:
        """
        An inline PEM value keeps its line breaks, as LF whatever the file's
        line ends; its statement is located on the C{set} line and the
        statements after it on their own lines.
        """
        entry = self.document.blocks[1].statements[0]
        certificate = entry.statements[2]
        self.assertEqual(certificate.values[0].text.split("\n")[0],
                         "-----BEGIN CERTIFICATE-----")
        self.assertNotIn("\r", certificate.values[0].text)
        self.assertEqual(certificate.location, Location("backup.conf", 14))
        self.assertEqual(
            self.document.blocks[2].location, Location("backup.conf", 19)
        )
        self.assertEqual(
            self.document.blocks[2].statements[0].statements[2].location,
            Location("backup.conf", 24),
        )


class LexicalTests(SynchronousTestCase):
    """
    How a line is split into words.
    """

    def values(self, written: str) -> tuple[Word, ...]:
        """
        Parse C{set x <written>} and return the values.
        """
        (block,) = parse(f"config a\nset x {written}\nend\n").blocks
        (statement,) = block.statements
        return statement.values

    def texts(self, written: str) -> list[str]:
        """
        The texts of the values of C{set x <written>}.
        """
        return [value.text for value in self.values(written)]

    def test_blanks(self) -> None:
        """
        Blanks and tabs, one or many, separate words.
        """
        self.assertEqual(self.texts("a \t b\t\tc "), ["a", "b", "c"])

    def test_quotes(self) -> None:
        """
        Double and single quotes hold blanks, the other quote and C{#}; an
        empty pair is an empty value.
        """
        self.assertEqual(
            self.texts("""\"a b\" 'say "hi"' "it's" "#1" \"\""""),
            ["a b", 'say "hi"', "it's", "#1", ""],
        )
        self.assertTrue(all(value.quoted for value in self.values('"a" \'b\'')))

    def test_adjacentPieces(self) -> None:
        """
        Pieces with no blank between them form one word, quoted if any
        piece was.
        """
        self.assertEqual(self.texts('ab"c d"'), ["abc d"])
        self.assertEqual(self.texts("'x'\"y\"z"), ["xyz"])
        self.assertEqual(self.values('ab"c d"')[0].quoted, True)

    def test_escapesInQuotes(self) -> None:
        """
        Inside quotes a backslash makes the next character literal: C{\\"},
        C{\\'}, C{\\\\}, and a letter stands for itself (C{\\n} is C{n}).
        """
        self.assertEqual(
            self.texts(r'''"a\"b" 'c\'d' "e\\f" "\n"'''),
            ['a"b', "c'd", "e\\f", "n"],
        )

    def test_escapesOutsideQuotes(self) -> None:
        """
        Outside quotes a backslash makes the next character literal too: a
        blank, a quote, a C{#}.
        """
        self.assertEqual(
            self.texts(r"a\ b \"c \#d e\\"),
            ["a b", '"c', "#d", "e\\"],
        )
        self.assertFalse(self.values(r"a\ b")[0].quoted)

    def test_lineContinuation(self) -> None:
        """
        A backslash just before a line end continues the statement on the
        next line, joining the word if there is no blank before it; the
        statement is located on its first line, the next one on its own.
        """
        document = parse("config a\nset x ab\\\ncd \\\r\n  e\nset y z\nend\n")
        first, second = document.blocks[0].statements
        self.assertEqual(first, setStatement("x", "abcd", "e"))
        self.assertEqual(first.location.line, 2)
        self.assertEqual(second.location.line, 5)

    def test_comments(self) -> None:
        """
        C{#} where a word would begin starts a comment to the end of the
        line; inside a word, even right after a quoted piece, it is literal.
        """
        self.assertEqual(self.texts("a # b c"), ["a"])
        self.assertEqual(self.texts("a\t#b"), ["a"])
        self.assertEqual(self.texts("a#b"), ["a#b"])
        self.assertEqual(self.texts('"a"#b'), ["a#b"])
        self.assertEqual(self.texts('"a" #b'), ["a"])

    def test_commentDoesNotContinue(self) -> None:
        """
        A backslash at the end of a comment is part of the comment.
        """
        document = parse("config a # \\\nset x y\nend\n")
        self.assertEqual(document, Document((config("a", setStatement("x", "y")),)))

    def test_lineEnds(self) -> None:
        """
        LF and CRLF end lines, mixed in one file; the last line needs no
        line end; blank and comment-only lines are ignored.
        """
        expected = Document((config("a", setStatement("x", "y")),))
        for text in [
            "config a\nset x y\nend\n",
            "config a\r\nset x y\r\nend\r\n",
            "config a\r\nset x y\nend",
            "\n\n#c\nconfig a\n\n   \n\t# c\nset x y\n\nend\n\n",
        ]:
            self.assertEqual(parse(text), expected)

    def test_crlfInQuotes(self) -> None:
        """
        A CRLF inside quotes reads as LF, so a value does not depend on the
        file's line ends; an escaped carriage return is kept.
        """
        self.assertEqual(self.texts('"a\r\nb"'), ["a\nb"])
        self.assertEqual(self.texts('"a\\\r\nb"'), ["a\r\nb"])

    def test_unicode(self) -> None:
        """
        Values may hold any Unicode, in bytes decoded as UTF-8 or in text;
        Unicode blanks do not separate words.
        """
        data = 'config a\nset x "Z\u00fcrich \u6771\u4eac" a\u00a0b\nend\n'
        for text in [data, data.encode("utf-8")]:
            (block,) = parse(text).blocks
            self.assertEqual(
                block.statements[0],
                setStatement("x", "Z\u00fcrich \u6771\u4eac", "a\u00a0b"),
            )

    def test_byteOrderMark(self) -> None:
        """
        A UTF-8 byte-order mark at the start is skipped, in bytes and in
        text read without the C{utf-8-sig} codec.
        """
        expected = Document((config("a"),))
        self.assertEqual(parse(b"\xef\xbb\xbfconfig a\nend\n"), expected)
        self.assertEqual(parse("\ufeffconfig a\nend\n"), expected)

    def test_empty(self) -> None:
        """
        An empty text, or one of comments only, is an empty document.
        """
        self.assertEqual(parse(""), Document(()))
        self.assertEqual(parse(b"#config-version=x\n\n"), Document(()))

    def test_setInSingleton(self) -> None:
        """
        C{set} directly in a C{config} block, C{config} directly in a
        C{config} block and C{config} inside C{edit} are all legal: the
        tree does not decide which blocks are tables.
        """
        text = (
            "config router bgp\n"
            "set as 65000\n"
            "config neighbor\n"
            'edit "10.0.0.1"\n'
            "set remote-as 65001\n"
            "config conditional-advertise\n"
            "end\n"
            "next\n"
            "end\n"
            "end\n"
        )
        self.assertEqual(
            parse(text),
            Document(
                (
                    config(
                        "router bgp",
                        setStatement("as", "65000"),
                        config(
                            "neighbor",
                            edit(
                                "10.0.0.1",
                                setStatement("remote-as", "65001"),
                                config("conditional-advertise"),
                            ),
                        ),
                    ),
                )
            ),
        )


class ErrorTests(SynchronousTestCase):
    """
    Every malformed text is rejected with errors naming the line and saying
    what is allowed.
    """

    def assertRejected(
        self, text: str | bytes, expected: list[tuple[int, str]]
    ) -> None:
        """
        Assert that C{text} is rejected with exactly the C{(line, message)}
        errors given, in that order, each located in C{test.conf}.
        """
        with self.assertRaises(ConfigurationRejected) as caught:
            parse(text, source="test.conf")
        self.assertEqual(
            [(e.location.line, e.message) for e in caught.exception.errors],
            expected,
        )
        self.assertEqual(
            {e.location.path for e in caught.exception.errors}, {"test.conf"}
        )

    def test_setOutsideConfig(self) -> None:
        """
        C{set} outside any C{config} block is an error.
        """
        self.assertRejected(
            "config a\nend\nset extport 443\n",
            [
                (
                    3,
                    "'set extport' outside any config block; set statements "
                    "belong inside 'config ... end'",
                )
            ],
        )

    def test_unsetOutsideConfig(self) -> None:
        """
        C{unset} outside any C{config} block is an error.
        """
        self.assertRejected(
            "unset extport\n",
            [
                (
                    1,
                    "'unset extport' outside any config block; unset "
                    "statements belong inside 'config ... end'",
                )
            ],
        )

    def test_editOutsideConfig(self) -> None:
        """
        C{edit} outside any C{config} block is one error; its body and
        C{next} cause no more.
        """
        self.assertRejected(
            '#c\nedit "ZTNA-WS1"\nset type access-proxy\nnext\n',
            [
                (
                    2,
                    "'edit \"ZTNA-WS1\"' outside any config block; an entry "
                    "belongs inside 'config <table>' ... 'end'",
                )
            ],
        )

    def test_editInEdit(self) -> None:
        """
        C{edit} directly inside an open C{edit} is an error (a forgotten
        C{next}); the rest reads as if the C{next} were there.
        """
        self.assertRejected(
            "config firewall policy\nedit 1\nset a b\nedit 2\nset c d\nnext\nend\n",
            [
                (
                    4,
                    "'edit 2' while 'edit 1' (line 2) is still open; close "
                    "that entry with 'next' first",
                )
            ],
        )

    def test_nextWithoutEdit(self) -> None:
        """
        C{next} with no open C{edit} is an error, at the top level and
        directly in a C{config} block.
        """
        self.assertRejected(
            "next\nconfig system global\nset a b\nnext\nend\n",
            [
                (
                    1,
                    "'next' without an open 'edit'; 'next' closes a table "
                    "entry",
                ),
                (
                    4,
                    "'next' in 'config system global' (line 2) without an "
                    "open 'edit'; close the block with 'end'",
                ),
            ],
        )

    def test_endWithoutConfig(self) -> None:
        """
        C{end} with no open C{config} is an error.
        """
        self.assertRejected(
            "config a\nend\nend\n",
            [(3, "'end' without an open 'config'; 'end' closes a config block")],
        )

    def test_endInEdit(self) -> None:
        """
        C{end} while an C{edit} is open is an error; reading goes on as if
        C{next} had come first.
        """
        self.assertRejected(
            "config firewall vip\nedit 1\nset a b\nend\nconfig x\nend\n",
            [
                (
                    4,
                    "'end' while 'edit 1' (line 2) is still open; close the "
                    "entry with 'next' first",
                )
            ],
        )

    def test_unclosedConfig(self) -> None:
        """
        A C{config} block still open at the end is an error on the line
        that opened it.
        """
        self.assertRejected(
            "config firewall vip\nedit 1\nnext\n",
            [
                (
                    1,
                    "'config firewall vip' opened here is never closed with "
                    "'end'",
                )
            ],
        )

    def test_unclosedEdit(self) -> None:
        """
        Every block still open at the end is reported, outermost first,
        among the other errors in line order.
        """
        self.assertRejected(
            'config firewall vip\nedit "ZTNA-WS1"\nset a\n',
            [
                (
                    1,
                    "'config firewall vip' opened here is never closed with "
                    "'end'",
                ),
                (
                    2,
                    "'edit \"ZTNA-WS1\"' opened here is never closed with "
                    "'next'",
                ),
                (
                    3,
                    "'set a' has no value (FortiOS: value parse error); give "
                    "a value, or use 'unset a' to restore the default",
                ),
            ],
        )

    def test_unterminatedQuote(self) -> None:
        """
        A quote never closed is an error on the line where it opened; as it
        swallowed the rest of the text, nothing else is reported.
        """
        self.assertRejected(
            'config vpn certificate local\nedit "c"\n'
            'set certificate "-----BEGIN\nMIIC\nnext\nend\n',
            [(3, 'unterminated quote: the " opened here is never closed')],
        )
        self.assertRejected(
            "config a\nset b 'c\\'\n",
            [(2, "unterminated quote: the ' opened here is never closed")],
        )

    def test_nextWithArguments(self) -> None:
        """
        C{next} takes no arguments; C{end} neither.  Each still closes its
        block.
        """
        self.assertRejected(
            "config a\nedit 1\nnext 2\nend all\n",
            [
                (3, "'next' takes no arguments, but has '2'"),
                (4, "'end' takes no arguments, but has 'all'"),
            ],
        )

    def test_unknownCommands(self) -> None:
        """
        Commands other than the six are errors naming the supported ones,
        with a hint for FortiOS's list-editing commands; reading goes on
        after each.
        """
        supported = (
            "a configuration file uses only config, edit, set, unset, next, "
            "end"
        )
        listHint = "; write the whole list with 'set'"
        self.assertRejected(
            "config firewall policy\n"
            "edit 1\n"
            "append srcaddr x\n"
            "select dstaddr y\n"
            "next\n"
            "purge\n"
            "end\n"
            "execute reboot\n"
            "get system status\n"
            "show\n",
            [
                (3, f"unknown command 'append'; {supported}{listHint}"),
                (4, f"unknown command 'select'; {supported}{listHint}"),
                (6, f"unknown command 'purge'; {supported}"),
                (8, f"unknown command 'execute'; {supported}"),
                (9, f"unknown command 'get'; {supported}"),
                (10, f"unknown command 'show'; {supported}"),
            ],
        )

    def test_configWithoutPath(self) -> None:
        """
        C{config} needs at least one path word; its body and C{end} cause no
        more errors.
        """
        self.assertRejected(
            "config\nset a b\nend\n",
            [(1, "'config' needs a path, such as 'config firewall vip'")],
        )

    def test_editKeys(self) -> None:
        """
        C{edit} takes exactly one key.
        """
        self.assertRejected(
            "config a\nedit\nnext\nedit ZTNA WS1\nnext\nend\n",
            [
                (2, "'edit' needs a key, the entry's name or number"),
                (
                    4,
                    "'edit' takes exactly one key, the entry's name or "
                    "number, but has 2; quote a name that contains blanks",
                ),
            ],
        )

    def test_setWithoutValue(self) -> None:
        """
        C{set} without a value is FortiOS's "value parse error"; without an
        option too.
        """
        self.assertRejected(
            "config a\nset extport\nset\nset b\t# no value\nend\n",
            [
                (
                    2,
                    "'set extport' has no value (FortiOS: value parse error); "
                    "give a value, or use 'unset extport' to restore the "
                    "default",
                ),
                (
                    3,
                    "'set' needs an option name and a value (FortiOS: value "
                    "parse error)",
                ),
                (
                    4,
                    "'set b' has no value (FortiOS: value parse error); give "
                    "a value, or use 'unset b' to restore the default",
                ),
            ],
        )

    def test_unsetArguments(self) -> None:
        """
        C{unset} takes exactly one option name.
        """
        self.assertRejected(
            "config a\nunset\nunset a b\nend\n",
            [
                (2, "'unset' needs an option name"),
                (3, "'unset' takes exactly one option name, but has 2"),
            ],
        )

    def test_strayCarriageReturn(self) -> None:
        """
        A carriage return that does not end a CRLF line end is an error.
        """
        self.assertRejected(
            "config a\nset b c\rset d e\nend\n",
            [
                (
                    2,
                    "carriage return not followed by a line feed; lines must "
                    "end with LF or CRLF",
                )
            ],
        )

    def test_trailingBackslash(self) -> None:
        """
        A backslash at the very end escapes nothing: an error.
        """
        self.assertRejected(
            "config a\nend\\",
            [
                (
                    2,
                    "backslash at the end of the text, with nothing to "
                    "escape or continue",
                )
            ],
        )

    def test_invalidUtf8(self) -> None:
        """
        Bytes that are not UTF-8 are errors on their lines, one per line,
        not a decoding traceback.
        """
        self.assertRejected(
            b"\xef\xbb\xbfconfig a\nset b \xff\xfe\nset c \xc3\nend\n",
            [
                (2, "not valid UTF-8 (byte 0xff); save the configuration as UTF-8"),
                (3, "not valid UTF-8 (byte 0xc3); save the configuration as UTF-8"),
            ],
        )

    def test_invalidUtf8Bounded(self) -> None:
        """
        Undecodable bytes give one error per line, and no more than
        L{MAX_ERRORS} in all.
        """
        with self.assertRaises(ConfigurationRejected) as caught:
            parse(b"\xff\xfe\xfd\n" * (MAX_ERRORS * 2))
        errors = caught.exception.errors
        self.assertEqual(
            [error.location.line for error in errors],
            list(range(1, MAX_ERRORS + 2)),
        )
        self.assertEqual(
            errors[-1].message,
            f"too many errors; stopped reading after {MAX_ERRORS}",
        )

    def test_severalErrors(self) -> None:
        """
        Reading goes on after an error, so one run reports them all, and a
        text with any error yields no tree.
        """
        self.assertRejected(
            "config a\nappend x\nset b c\nset d\nnext\nend\n",
            [
                (2, "unknown command 'append'; a configuration file uses "
                    "only config, edit, set, unset, next, end; write the "
                    "whole list with 'set'"),
                (4, "'set d' has no value (FortiOS: value parse error); give "
                    "a value, or use 'unset d' to restore the default"),
                (5, "'next' in 'config a' (line 1) without an open 'edit'; "
                    "close the block with 'end'"),
            ],
        )

    def test_tooManyErrors(self) -> None:
        """
        Reading stops after L{MAX_ERRORS} errors, saying so.
        """
        with self.assertRaises(ConfigurationRejected) as caught:
            parse("bogus\n" * (MAX_ERRORS * 3))
        errors = caught.exception.errors
        self.assertEqual(len(errors), MAX_ERRORS + 1)
        self.assertEqual(
            str(errors[-1]),
            f"<string>:{MAX_ERRORS}: too many errors; stopped reading after "
            f"{MAX_ERRORS}",
        )

    def test_depth(self) -> None:
        """
        L{MAX_DEPTH} nested blocks are accepted; one more is an error, and
        reading stops there.
        """
        deepest = "config a\n" * MAX_DEPTH + "end\n" * MAX_DEPTH
        self.assertEqual(len(parse(deepest).blocks), 1)
        self.assertRejected(
            "config a\nedit 1\n" * (MAX_DEPTH // 2) + "config b\n",
            [(MAX_DEPTH + 1, f"'config b' nests deeper than {MAX_DEPTH} levels")],
        )

    def test_size(self) -> None:
        """
        Text longer than L{MAX_SIZE} is refused before it is read; up to
        the limit it is read.
        """
        self.assertEqual(parse(b"#" * MAX_SIZE), Document(()))
        self.assertRejected(
            b"#" * (MAX_SIZE + 1),
            [
                (
                    1,
                    f"the configuration is larger than the limit of {MAX_SIZE} "
                    f"bytes (at least {MAX_SIZE + 1} bytes)",
                )
            ],
        )
        self.assertRejected(
            "#" * (MAX_SIZE + 1),
            [
                (
                    1,
                    f"the configuration is larger than the limit of {MAX_SIZE} "
                    f"characters (at least {MAX_SIZE + 1} characters)",
                )
            ],
        )

    def test_messagesShowHostileText(self) -> None:
        """
        User text in a message is shortened and its control characters made
        visible, so a message is one readable line.
        """
        with self.assertRaises(ConfigurationRejected) as caught:
            parse('"bad\ncommand\x1b[2J' + "x" * 100 + '"\n')
        (error,) = caught.exception.errors
        self.assertEqual(
            error.message,
            "unknown command '\"bad\\ncommand\\x1b[2Jxxxxxxxxxxxxxxxxxxxxxxxx"
            "x...\"'; a configuration file uses only config, edit, set, "
            "unset, next, end",
        )


class RenderTests(SynchronousTestCase):
    """
    L{render}, L{renderBlocks}, L{renderWord} and L{quote} write trees back
    in FortiOS layout.
    """

    def test_quote(self) -> None:
        """
        L{quote} always writes double quotes, escaping C{"} and C{\\} (and
        carriage returns) with a backslash, and keeps line feeds literal as
        FortiOS prints PEM.
        """
        self.assertEqual(quote("port3"), '"port3"')
        self.assertEqual(quote(""), '""')
        self.assertEqual(quote('a "b" \\c\'d'), '"a \\"b\\" \\\\c\'d"')
        self.assertEqual(quote("a\nb"), '"a\nb"')
        self.assertEqual(quote("a\r\nb"), '"a\\\r\nb"')

    def test_renderWordKeepsQuoting(self) -> None:
        """
        A word is written as it was read: quoted if it was, bare if it was
        and may be.
        """
        self.assertEqual(renderWord(Word("11443")), "11443")
        self.assertEqual(renderWord(Word("11443", quoted=True)), '"11443"')

    def test_renderWordQuotesWhenNeeded(self) -> None:
        """
        A bare word is quoted when it would not read back as itself or would
        be invisible: empty, or holding blanks, quotes, backslashes, C{#},
        line ends, control characters or Unicode spaces.
        """
        for text in ["", "a b", "a\tb", 'a"b', "a'b", "a\\b", "#a", "a#b",
                     "a\nb", "a\rb", "a\x00b", "a\u00a0b", "a\u2028b"]:
            self.assertEqual(renderWord(Word(text)), quote(text), repr(text))
        for text in ["access-proxy", "10.0.3.10/32", "Z\u00fcrich", "*.example.com"]:
            self.assertEqual(renderWord(Word(text)), text)

    def test_renderNames(self) -> None:
        """
        Option names and config paths are quoted only when they need it.
        """
        document = Document(
            (
                ConfigBlock(
                    ("firewall", "odd name"),
                    (
                        SetStatement("a b", (Word("c"),)),
                        UnsetStatement("#x"),
                    ),
                ),
            )
        )
        self.assertEqual(
            render(document),
            'config firewall "odd name"\n    set "a b" c\n    unset "#x"\nend\n',
        )
        self.assertEqual(parse(render(document)), document)

    def test_multiLineValue(self) -> None:
        """
        A value with line breaks is written across lines, unindented after
        the first, exactly as FortiOS prints inline PEM.
        """
        document = Document(
            (
                config(
                    "vpn certificate local",
                    EditBlock(
                        Word("c", quoted=True),
                        (setStatement("certificate", CERTIFICATE),),
                    ),
                ),
            )
        )
        self.assertEqual(
            render(document),
            "config vpn certificate local\n"
            '    edit "c"\n'
            '        set certificate "' + CERTIFICATE + '"\n'
            "    next\n"
            "end\n",
        )

    def test_emptyBlocks(self) -> None:
        """
        Empty documents, blocks and entries are written and read back.
        """
        self.assertEqual(render(Document(())), "")
        document = Document((config("a", edit("1")), config("b")))
        self.assertEqual(
            render(document), "config a\n    edit 1\n    next\nend\nconfig b\nend\n"
        )
        self.assertEqual(parse(render(document)), document)

    def test_renderBlocks(self) -> None:
        """
        L{renderBlocks} writes a sequence of blocks as L{render} writes a
        document holding them.
        """
        blocks = list(WALKTHROUGH_TREES.values())
        self.assertEqual(renderBlocks(blocks), render(Document(tuple(blocks))))

    def test_refusesUnwritableTrees(self) -> None:
        """
        A tree the language cannot express is refused with L{ValueError}
        rather than written as text that would read back differently.
        """
        deep = config("a")
        for _ in range(MAX_DEPTH):
            deep = config("a", deep)
        for blocks in [
            (ConfigBlock((), ()),),
            (config("a", SetStatement("b", ())),),
            (edit("1"),),
            (setStatement("a", "b"),),
            (config("a", edit("1", edit("2"))),),
            (config("a", "not a statement"),),
            (deep,),
        ]:
            self.assertRaises(ValueError, renderBlocks, blocks)


class ParseFileTests(SynchronousTestCase):
    """
    L{parseFile} reads a file and names it in errors and locations.
    """

    def test_file(self) -> None:
        """
        The file is parsed; the path as given is the source.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(FORTIOS_FILE)
        document = parseFile(path)
        self.assertEqual(document, parse(FORTIOS_FILE))
        self.assertEqual(document.source, path)
        self.assertEqual(document.blocks[0].location, Location(path, 6))

    def test_errorsNameFile(self) -> None:
        """
        Errors carry the path.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"config a\n")
        with self.assertRaises(ConfigurationRejected) as caught:
            parseFile(path)
        self.assertEqual(
            str(caught.exception),
            f"{path}:1: 'config a' opened here is never closed with 'end'",
        )

    def test_tooLarge(self) -> None:
        """
        A file over L{MAX_SIZE} is refused.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"#" * (MAX_SIZE + 100))
        with self.assertRaises(ConfigurationRejected) as caught:
            parseFile(path)
        (error,) = caught.exception.errors
        self.assertIn("larger than the limit", error.message)

    def test_missing(self) -> None:
        """
        A file that cannot be read raises L{OSError}.
        """
        self.assertRaises(OSError, parseFile, os.path.join(self.mktemp(), "x"))


class LargeConfigTests(SynchronousTestCase):
    """
    Large configurations parse in one linear pass.
    """

    def test_twentyThousandAddresses(self) -> None:
        """
        A configuration of 20,000 address objects (about 3.9 MB) parses,
        every entry in place with its line.
        """
        lines = ["config firewall address"]
        for index in range(20000):
            lines += [
                f'    edit "host-{index}"',
                "        set uuid 7d54bf6a-c894-51f0-489a-986b6702da86",
                f'        set comment "address number {index}"',
                f"        set subnet 10.{index // 256 % 256}.{index % 256}.1 "
                "255.255.255.255",
                "    next",
            ]
        lines.append("end")
        (block,) = parse("\n".join(lines)).blocks
        self.assertEqual(len(block.statements), 20000)
        last = block.statements[-1]
        self.assertEqual(last.key, Word("host-19999"))
        self.assertEqual(last.location.line, 2 + 19999 * 5)
        self.assertEqual(
            last.statements[2], setStatement("subnet", "10.78.31.1", "255.255.255.255")
        )
