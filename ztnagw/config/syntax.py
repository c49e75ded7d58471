# -*- test-case-name: tests.config.test_syntax,tests.config.test_syntax_properties -*-
"""
FortiOS CLI configuration text to syntax tree, and back.

Operators know FortiGate's CLI, and the walkthroughs they copy from print
configuration in it; so ztnagw reads that language unchanged and writes it
back in the layout FortiOS C{show} uses.  This module knows only the
syntax: it turns text into the schema-free tree of L{ztnagw.config.tree}
(and back) without knowing which objects or options exist; the model
decides that.

Grammar
=======

  - A configuration is a sequence of statements, one per line.  LF and
    CRLF line ends are both accepted, mixed too; the last line needs no
    line end.  A carriage return not followed by a line feed is an error.
  - A line is split into words at blanks (space and tab).  A word is made
    of pieces written without blank between them, and the pieces are
    joined: C{ab"c d"} is the one word C{abc d}.  A piece is:
      - a bare run of characters other than blank, line end, quote and
        backslash;
      - a quoted run, in C{"} or C{'}, which may hold blanks, C{#} and line
        ends (FortiOS prints inline PEM certificates and keys this way);
        inside it a backslash makes the next character literal (C{\\"},
        C{\\'}, C{\\\\}; C{\\n} is a plain C{n}), and an unescaped CRLF
        reads as LF, so the file's line ends never leak into a value;
      - a backslash and the character after it, taken literally
        (C{a\\ b} is the word C{a b}).  A backslash just before a line end
        continues the statement on the next line and adds nothing to the
        word (C{ab\\<LF>cd} is C{abcd}).
  - C{#} where a word would begin (at the start of a line or after a blank)
    starts a comment that runs to the end of the line; inside a word or
    quotes it is literal.  Comment lines (FortiOS's C{#config-version=...}
    header) and blank lines are ignored.
  - The first word of a statement is its command, in lower case:
      - C{config <word> [<word>...]} opens a block, at the top level, inside
        an C{edit} entry or inside another C{config} block; C{end} closes
        it;
      - C{edit <key>} opens one table entry, directly inside a C{config}
        block; C{next} closes it;
      - C{set <option> <value> [<value>...]} and C{unset <option>} appear
        inside a C{config} block or an C{edit} entry.
    Other commands (FortiOS's interactive C{append}, C{select}, C{delete},
    C{show}, ...) are errors: a file states the whole configuration.
  - It is an error to use C{edit}, C{set} or C{unset} outside any block,
    C{edit} directly in an C{edit} entry, C{next} with no entry open, C{end}
    with no block open, C{next} or C{end} with arguments, C{config} without
    a path, C{edit} without exactly one key, C{set} without a value
    (FortiOS's "value parse error"), C{unset} without exactly one option,
    or to leave a block or quote open at the end.
  - C{end} while an C{edit} entry is open is an error too (interactive
    FortiOS would take it as C{next} + C{end}; in a file it almost always
    means a forgotten C{next} and a block closed one level too high).
  - Nesting deeper than L{MAX_DEPTH} blocks, input larger than L{MAX_SIZE}
    and bytes that are not UTF-8 are errors.  A UTF-8 byte-order mark at
    the very start is skipped.

Every error names the line where its statement starts (for an unclosed
block or quote, the line where it was opened).  Errors are collected, up to
L{MAX_ERRORS}, and any error rejects the whole text: a tree is never built
from a text that had a statement the parser could not place.

Rendering writes the layout of FortiOS C{show}: one statement per line,
four blanks of indentation per level, LF line ends.  A word is written bare
when it was read bare and reads back as itself; otherwise it is written in
double quotes with C{"}, C{\\} and carriage return escaped by a backslash
and line feeds literal (see L{renderWord} and L{quote}).  Whatever the
input's layout, comments or quoting style, C{parse(render(document))}
equals C{document}.

Parsing is a single pass in time linear in the text; the tree is built with
an explicit stack, so hostile nesting cannot exhaust the interpreter's
recursion limit.
"""

from __future__ import annotations

import re
from typing import Sequence

from ztnagw.config.tree import (
    ConfigBlock,
    ConfigError,
    ConfigurationRejected,
    Document,
    EditBlock,
    Location,
    SetStatement,
    Statement,
    UnsetStatement,
    Word,
)

__all__ = [
    "COMMANDS",
    "MAX_DEPTH",
    "MAX_ERRORS",
    "MAX_SIZE",
    "parse",
    "parseFile",
    "quote",
    "render",
    "renderBlocks",
    "renderWord",
]

MAX_SIZE = 16 * 1024 * 1024
"""
The largest configuration accepted, in bytes (or characters, for text
given as C{str}).  Real FortiGate configurations are a few megabytes; the
limit keeps a hostile file from exhausting memory.
"""

MAX_DEPTH = 32
"""
The deepest nesting of C{config} and C{edit} blocks accepted.  FortiOS's
deepest ZTNA objects (VDOM, access proxy, api-gateway, real server) need 8.
"""

MAX_ERRORS = 100
"""
Parsing stops after this many errors: more would not help anyone, and a
text of garbage must not make a million error objects.
"""

COMMANDS = ("config", "edit", "set", "unset", "next", "end")
"""
The commands a configuration file may use.
"""

_INDENT = "    "

# Quoted runs are written as unrolled loops: unambiguous, so that matching
# stays linear even when a quote is never closed.
_DOUBLE = r'"(?P<double>[^"\\]*(?:\\[\s\S][^"\\]*)*)"'
_SINGLE = r"'(?P<single>[^'\\]*(?:\\[\s\S][^'\\]*)*)'"
_ESCAPED = r"\\(?P<escaped>\r\n|[\s\S])"

# What comes where a word may begin (at the start of a line or after a
# blank), blanks before it included.  The first two alternatives are the
# common case, a whole word in one match: a bare word, or a double-quoted
# one on one line without escapes, followed by a blank or line end.  The
# pieces of other words are read one by one with _IN_WORD.
_BETWEEN_WORDS = re.compile(
    r"[ \t]*(?:"
    r"""(?P<word>[^ \t\r\n"'\\#][^ \t\r\n"'\\]*)(?=[ \t\r\n]|\Z)"""
    r'|"(?P<simple>[^"\\\r\n]*)"(?=[ \t\r\n]|\Z)'
    r"|(?P<newline>\r?\n)"
    r"|(?P<comment>#[^\r\n]*)"
    r"""|(?P<bare>[^ \t\r\n"'\\]+)"""
    f"|{_DOUBLE}|{_SINGLE}|{_ESCAPED}"
    r"|(?P<stray>[^ \t])"
    r"|(?P<eof>\Z)"
    r")"
)

# What follows a piece of a word: a blank or line end that ends the word,
# or its next piece.
_IN_WORD = re.compile(
    r"(?P<blank>[ \t]+)"
    r"|(?P<newline>\r?\n)"
    r"""|(?P<bare>[^ \t\r\n"'\\]+)"""
    f"|{_DOUBLE}|{_SINGLE}|{_ESCAPED}"
    r"|(?P<stray>[\s\S])"
)

# Inside quotes: an escaped character, or a CRLF line end to read as LF.
_QUOTED_SPECIAL = re.compile(r"\\([\s\S])|\r\n")

# What makes a word need quotes when rendered.
_NEEDS_QUOTES = re.compile(r"""[ \t"'\\#\r\n]""")

# What must be escaped inside double quotes.  CR is escaped so that a value
# holding CRLF does not read back as LF.
_ESCAPE_IN_QUOTES = re.compile(r'["\\\r]')

# Invalid UTF-8 bytes, as the surrogateescape decoder represents them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")

# FortiOS's interactive commands that edit a list in place; a file sets the
# whole list instead.
_LIST_COMMANDS = frozenset(["append", "select", "unselect", "clear"])

_BOM = "\ufeff"


def parse(text: str | bytes, source: str = "<string>") -> Document:
    """
    Parse a FortiOS CLI configuration.

    @param text: the configuration.  Bytes are decoded as UTF-8 (a leading
        byte-order mark is skipped).
    @param source: the name errors and locations use, normally the path.
    @return: the syntax tree, each node carrying its L{Location}.
    @raise ConfigurationRejected: the text is not a well-formed
        configuration; its C{errors} list every problem found (each with a
        L{Location}), in line order.  Nothing else is raised for any
        C{str} or C{bytes} input.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = _decode(bytes(text), source)
    else:
        if len(text) > MAX_SIZE:
            raise _tooLarge(len(text), "characters", source)
        # Text read with the plain utf-8 codec keeps the mark.
        if text.startswith(_BOM):
            text = text[1:]
    return _Parser(source).parse(text)


def parseFile(path: str) -> Document:
    """
    Read and parse a configuration file.

    This blocks on the file system; code running in the reactor calls it
    through a thread pool.

    @param path: the file; errors name it as given.
    @return: the syntax tree.
    @raise ConfigurationRejected: see L{parse}.
    @raise OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        # One byte more than the limit is enough to know it is too large,
        # without reading a huge file into memory.
        data = f.read(MAX_SIZE + 1)
    return parse(data, source=path)


def quote(text: str) -> str:
    """
    Write one value in double quotes, as FortiOS prints strings.

    C{"} and C{\\} are escaped with a backslash (and so is a carriage
    return, so that it survives a round trip); line feeds stay literal, as
    in FortiOS's inline PEM certificates.

    @param text: the value.
    @return: the quoted value, which L{parse} reads back as C{text}.
    """
    return '"' + _ESCAPE_IN_QUOTES.sub(_backslashed, text) + '"'


def renderWord(word: Word) -> str:
    """
    Write one word: bare when it was bare and needs no quotes, else quoted.

    A word needs quotes when it is empty, contains a blank, quote,
    backslash, C{#} or line end, or a character that is not printable
    (control characters, Unicode spaces and line separators), which would
    not read back or would be invisible.

    @param word: the word.
    @return: its text in the configuration language.
    """
    text = word.text
    if word.quoted or not _isBare(text):
        return quote(text)
    return text


def render(document: Document) -> str:
    """
    Write a document in the layout of FortiOS C{show}.

    @param document: the tree.
    @return: the text, with LF line ends and four blanks of indentation per
        level; L{parse} reads it back as an equal document.
    @raise ValueError: the tree cannot be written in the language (see
        L{renderBlocks}).
    """
    return renderBlocks(document.blocks)


def renderBlocks(blocks: Sequence[ConfigBlock]) -> str:
    """
    Write top-level C{config} blocks in the layout of FortiOS C{show}.

    @param blocks: the blocks, written in order.
    @return: the text, ending with a line feed (empty for no blocks).
    @raise ValueError: the tree cannot be written in the language: a
        top-level node or a node inside an C{edit} entry that is not a
        statement, an L{EditBlock} that is not directly inside a
        L{ConfigBlock}, a C{config} path or C{set} value list that is
        empty, or nesting deeper than L{MAX_DEPTH}.  Writing such a tree
        would produce text that reads back differently or not at all.
    """
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, ConfigBlock):
            raise ValueError(
                f"only config blocks can stand at the top level, not {block!r}"
            )
        _renderStatement(block, 0, False, lines)
    if not lines:
        return ""
    lines.append("")
    return "\n".join(lines)


def _renderStatement(
    statement: Statement, depth: int, inConfig: bool, lines: list[str]
) -> None:
    """
    Append the lines of one statement to C{lines}.

    Recursion is bounded by L{MAX_DEPTH}, checked before descending.

    @param depth: the indentation level, which is the nesting depth.
    @param inConfig: whether the parent is a L{ConfigBlock}.
    """
    indent = _INDENT * depth
    if isinstance(statement, SetStatement):
        if not statement.values:
            raise ValueError(
                f"set {statement.option!r} has no value and would not parse back"
            )
        lines.append(
            f"{indent}set {renderWord(Word(statement.option))} "
            + " ".join(renderWord(value) for value in statement.values)
        )
    elif isinstance(statement, UnsetStatement):
        lines.append(f"{indent}unset {renderWord(Word(statement.option))}")
    elif isinstance(statement, (ConfigBlock, EditBlock)):
        if depth >= MAX_DEPTH:
            raise ValueError(
                f"nesting deeper than {MAX_DEPTH} levels would not parse back"
            )
        if isinstance(statement, ConfigBlock):
            if not statement.path:
                raise ValueError("a config block with an empty path")
            opening = "config " + " ".join(
                renderWord(Word(part)) for part in statement.path
            )
            closing = "end"
        else:
            if not inConfig:
                raise ValueError(
                    f"edit {statement.key.text!r} must be directly inside "
                    "a config block"
                )
            opening = "edit " + renderWord(statement.key)
            closing = "next"
        lines.append(indent + opening)
        isConfig = isinstance(statement, ConfigBlock)
        for child in statement.statements:
            _renderStatement(child, depth + 1, isConfig, lines)
        lines.append(indent + closing)
    else:
        raise ValueError(f"not a statement: {statement!r}")


def _isBare(text: str) -> bool:
    """
    Whether C{text} reads back as itself when written without quotes.
    """
    return (
        text != ""
        and _NEEDS_QUOTES.search(text) is None
        and text.isprintable()
    )


def _backslashed(match: re.Match[str]) -> str:
    """
    Escape the character C{match} found with a backslash.
    """
    return "\\" + match.group()


def _unquoted(match: re.Match[str]) -> str:
    """
    Read what L{_QUOTED_SPECIAL} found inside quotes: an escaped character
    stands for itself, a CRLF line end for LF.
    """
    escaped = match.group(1)
    return "\n" if escaped is None else escaped


def _show(text: str, quoted: bool = False, limit: int = 40) -> str:
    """
    Show user text in an error message: as it would be written, with
    invisible characters made visible and long text shortened, so that a
    hostile value cannot forge lines in a log or flood it.

    @param text: the text.
    @param quoted: whether the user wrote it in quotes.
    @param limit: how many characters to show at most.
    @return: the text to put in the message.
    """
    if len(text) > limit:
        text = text[:limit] + "..."
    shown = renderWord(Word(text, quoted))
    if shown.isprintable():
        return shown
    return "".join(
        ch if ch.isprintable() else ascii(ch)[1:-1] for ch in shown
    )


def _decode(data: bytes, source: str) -> str:
    """
    Decode UTF-8, naming the line of every byte that is not UTF-8.
    """
    if len(data) > MAX_SIZE:
        raise _tooLarge(len(data), "bytes", source)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # surrogateescape never fails and marks each undecodable byte with a
    # lone surrogate, which valid UTF-8 cannot produce: one linear pass
    # finds them all with their lines.
    text = data.decode("utf-8", "surrogateescape")
    errors: list[ConfigError] = []
    line = 1
    counted = 0
    search = _UNDECODABLE.search
    found = search(text)
    while found is not None:
        line += text.count("\n", counted, found.start())
        counted = found.start()
        if len(errors) == MAX_ERRORS:
            errors.append(
                ConfigError(
                    Location(source, line),
                    f"too many errors; stopped reading after {MAX_ERRORS}",
                )
            )
            break
        byte = ord(found.group()) - 0xDC00
        errors.append(
            ConfigError(
                Location(source, line),
                f"not valid UTF-8 (byte 0x{byte:02x}); "
                "save the configuration as UTF-8",
            )
        )
        # One error per line is enough; go on from the next line.
        lineEnd = text.find("\n", counted)
        found = None if lineEnd < 0 else search(text, lineEnd)
    if errors:
        raise ConfigurationRejected(errors)
    return text


def _lineOf(error: ConfigError) -> int:
    """
    The line of an error, to sort errors by.
    """
    return error.location.line if error.location is not None else 0


def _tooLarge(size: int, unit: str, source: str) -> ConfigurationRejected:
    """
    The rejection of a text over L{MAX_SIZE}.

    @param size: its size, or as much of it as was read.
    @param unit: C{"bytes"} or C{"characters"}.
    """
    return ConfigurationRejected(
        [
            ConfigError(
                Location(source, 1),
                f"the configuration is larger than the limit of {MAX_SIZE} "
                f"{unit} (at least {size} {unit})",
            )
        ]
    )


class _Stop(Exception):
    """
    Parsing cannot usefully go on; the errors found so far are the answer.
    """


class _Frame:
    """
    A C{config} block or C{edit} entry that is open.

    @ivar isConfig: C{config} (C{True}) or C{edit} (C{False}).
    @ivar words: the C{config} path or the C{edit} key.
    @ivar line: where it was opened.
    @ivar statements: its body so far.
    """

    __slots__ = ("isConfig", "words", "line", "statements")

    def __init__(
        self, isConfig: bool, words: tuple[str, ...] | Word, line: int
    ) -> None:
        self.isConfig = isConfig
        self.words = words
        self.line = line
        self.statements: list[Statement] = []

    @property
    def label(self) -> str:
        """
        The opening statement as written, for messages.
        """
        return _label(self.words)


def _label(words: tuple[str, ...] | Word) -> str:
    """
    The statement that opens a block, as written, for messages.

    @param words: the C{config} path or the C{edit} key.
    """
    if isinstance(words, Word):
        return f"edit {_show(words.text, words.quoted)}"
    return " ".join(["config", *(_show(part) for part in words)])


class _Parser:
    """
    One parse of one text: the scanner turns characters into statements,
    L{_statement} places each statement in the tree.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[ConfigError] = []
        self.stack: list[_Frame] = []
        self.blocks: list[ConfigBlock] = []
        self.words: dict[tuple[str, bool], Word] = {}

    def parse(self, text: str) -> Document:
        """
        Parse the whole text.

        @return: the document.
        @raise ConfigurationRejected: any error was found.
        """
        try:
            self._scan(text)
        except _Stop:
            pass
        else:
            for frame in self.stack:
                closer = "end" if frame.isConfig else "next"
                self._report(
                    frame.line,
                    f"'{frame.label}' opened here is never closed with "
                    f"'{closer}'",
                    stopping=False,
                )
            if self.errors:
                # Unclosed blocks name earlier lines than the errors found
                # while scanning.
                self.errors.sort(key=_lineOf)
        if self.errors:
            raise ConfigurationRejected(self.errors)
        return Document(tuple(self.blocks), source=self.source)

    def _report(self, line: int, message: str, stopping: bool = True) -> None:
        """
        Record an error; stop when there are too many.

        @param stopping: whether reaching L{MAX_ERRORS} stops parsing.
        """
        self.errors.append(ConfigError(Location(self.source, line), message))
        if stopping and len(self.errors) >= MAX_ERRORS:
            self.errors.append(
                ConfigError(
                    Location(self.source, line),
                    f"too many errors; stopped reading after {MAX_ERRORS}",
                )
            )
            raise _Stop()

    def _scan(self, text: str) -> None:
        """
        Split C{text} into statements and hand each to L{_statement}.

        @raise _Stop: parsing cannot go on.
        """
        betweenWords = _BETWEEN_WORDS.match
        inWord = _IN_WORD.match
        statement = self._statement
        end = len(text)
        pos = 0
        line = 1
        startLine = 1
        # The words of the statement so far, as (text, quoted) pairs.
        words: list[tuple[str, bool]] = []
        # The pieces of the word being read, or None between words.
        pieces: list[str] | None = None
        quoted = False

        while pos < end:
            if pieces is None:
                found = betweenWords(text, pos)
                kind = found.lastgroup
                pos = found.end()
                if kind == "word" or kind == "simple":
                    if not words:
                        startLine = line
                    words.append((found.group(kind), kind == "simple"))
                    continue
                if kind == "newline":
                    if words:
                        statement(startLine, words)
                        words = []
                    line += 1
                    continue
                if kind == "comment" or kind == "eof":
                    continue
            else:
                found = inWord(text, pos)
                kind = found.lastgroup
                pos = found.end()
                if kind == "blank" or kind == "newline":
                    words.append(("".join(pieces), quoted))
                    pieces = None
                    if kind == "newline":
                        statement(startLine, words)
                        words = []
                        line += 1
                    continue
            # A piece of a word, the first one or a later one, or a stray
            # character.
            if kind == "bare":
                if pieces is None:
                    if not words:
                        startLine = line
                    pieces = []
                    quoted = False
                pieces.append(found.group(kind))
            elif kind == "double" or kind == "single":
                if pieces is None:
                    if not words:
                        startLine = line
                    pieces = []
                quoted = True
                raw = found.group(kind)
                if "\\" in raw or "\r" in raw:
                    raw = _QUOTED_SPECIAL.sub(_unquoted, raw)
                pieces.append(raw)
                line += text.count("\n", found.start(), pos)
            elif kind == "escaped":
                character = found.group(kind)
                if character == "\n" or character == "\r\n":
                    # A line continuation: the statement, and the word if
                    # one is being read, go on.
                    line += 1
                    continue
                if pieces is None:
                    if not words:
                        startLine = line
                    pieces = []
                    quoted = False
                pieces.append(character)
            else:
                character = found.group(kind)
                if character == "\r":
                    self._report(
                        line,
                        "carriage return not followed by a line feed; "
                        "lines must end with LF or CRLF",
                    )
                    # Read on as if it were a blank.
                    if pieces is not None:
                        words.append(("".join(pieces), quoted))
                        pieces = None
                elif character == "\\":
                    self._report(
                        line,
                        "backslash at the end of the text, with nothing to "
                        "escape or continue",
                    )
                else:
                    # The quote runs to the end of the text and swallowed
                    # every statement after it, so nothing more can be
                    # said, not even which blocks are left open.
                    self._report(
                        line,
                        f"unterminated quote: the {character} opened here "
                        "is never closed",
                    )
                    raise _Stop()
        if pieces is not None:
            words.append(("".join(pieces), quoted))
        if words:
            statement(startLine, words)

    def _statement(self, line: int, words: list[tuple[str, bool]]) -> None:
        """
        Place one statement in the tree.

        @param line: where the statement starts.
        @param words: its words, as (text, quoted) pairs; the first is the
            command.
        """
        command = words[0][0]
        stack = self.stack
        if command == "set":
            if len(words) < 3:
                if len(words) == 1:
                    self._report(
                        line,
                        "'set' needs an option name and a value "
                        "(FortiOS: value parse error)",
                    )
                else:
                    option = _show(words[1][0])
                    self._report(
                        line,
                        f"'set {option}' has no value (FortiOS: value parse "
                        f"error); give a value, or use 'unset {option}' to "
                        "restore the default",
                    )
                return
            if not stack:
                self._report(
                    line,
                    f"'set {_show(words[1][0])}' outside any config block; "
                    "set statements belong inside 'config ... end'",
                )
                return
            # Words are immutable: one object per distinct word saves time
            # and memory in large configurations, which repeat values
            # ("enable", "all") a great deal.
            cache = self.words
            values = []
            for index in range(2, len(words)):
                pair = words[index]
                value = cache.get(pair)
                if value is None:
                    value = cache[pair] = Word(*pair)
                values.append(value)
            stack[-1].statements.append(
                SetStatement(words[1][0], tuple(values), Location(self.source, line))
            )
        elif command == "edit":
            if len(words) == 1:
                self._report(
                    line, "'edit' needs a key, the entry's name or number"
                )
            elif len(words) > 2:
                self._report(
                    line,
                    "'edit' takes exactly one key, the entry's name or "
                    f"number, but has {len(words) - 1}; quote a name that "
                    "contains blanks",
                )
            if len(words) != 2:
                # Read on with the entry open (the text is rejected
                # anyway) so that its body and 'next' cause no more errors.
                words = words[:2] if len(words) > 2 else [words[0], ("", False)]
            key = Word(words[1][0], words[1][1])
            if not stack:
                self._report(
                    line,
                    f"'{_label(key)}' outside any config block; an entry "
                    "belongs inside 'config <table>' ... 'end'",
                )
                # Kept open, outside the tree, so that its body and its
                # 'next' read without more errors.
                self._push(_Frame(False, key, line))
                return
            if not stack[-1].isConfig:
                # Most likely a forgotten 'next': close the open entry and
                # read this one as its sibling.
                openEntry = stack[-1]
                self._report(
                    line,
                    f"'{_label(key)}' while '{openEntry.label}' (line "
                    f"{openEntry.line}) is still open; close that entry "
                    "with 'next' first",
                )
                self._pop()
                self._push(_Frame(False, key, line))
                return
            self._push(_Frame(False, key, line))
        elif command == "next":
            if len(words) != 1:
                self._report(
                    line,
                    f"'next' takes no arguments, but has '{_show(words[1][0])}'",
                )
            if not stack:
                self._report(
                    line,
                    "'next' without an open 'edit'; 'next' closes a table "
                    "entry",
                )
            elif stack[-1].isConfig:
                block = stack[-1]
                self._report(
                    line,
                    f"'next' in '{block.label}' (line {block.line}) without "
                    "an open 'edit'; close the block with 'end'",
                )
            else:
                self._pop()
        elif command == "config":
            path = tuple(text for text, _ in words[1:])
            if not path:
                self._report(
                    line,
                    "'config' needs a path, such as 'config firewall vip'",
                )
                # Read on with the block open, as for 'edit' above.
            self._push(_Frame(True, path, line))
        elif command == "end":
            if len(words) != 1:
                self._report(
                    line,
                    f"'end' takes no arguments, but has '{_show(words[1][0])}'",
                )
            if not stack:
                self._report(
                    line,
                    "'end' without an open 'config'; 'end' closes a config "
                    "block",
                )
                return
            if not stack[-1].isConfig:
                entry = stack[-1]
                self._report(
                    line,
                    f"'end' while '{entry.label}' (line {entry.line}) is "
                    "still open; close the entry with 'next' first",
                )
                # Read on as FortiOS would: the entry, then its block.
                self._pop()
                if not stack:
                    return
            self._pop()
        elif command == "unset":
            if len(words) != 2:
                if len(words) == 1:
                    message = "'unset' needs an option name"
                else:
                    message = (
                        "'unset' takes exactly one option name, but has "
                        f"{len(words) - 1}"
                    )
                self._report(line, message)
                return
            if not stack:
                self._report(
                    line,
                    f"'unset {_show(words[1][0])}' outside any config "
                    "block; unset statements belong inside "
                    "'config ... end'",
                )
                return
            stack[-1].statements.append(
                UnsetStatement(words[1][0], Location(self.source, line))
            )
        else:
            supported = ", ".join(COMMANDS)
            hint = ""
            if command in _LIST_COMMANDS:
                hint = "; write the whole list with 'set'"
            self._report(
                line,
                f"unknown command '{_show(command)}'; a configuration "
                f"file uses only {supported}{hint}",
            )

    def _push(self, frame: _Frame) -> None:
        """
        Open a block.

        @raise _Stop: nesting too deep.
        """
        if len(self.stack) >= MAX_DEPTH:
            self._report(
                frame.line,
                f"'{frame.label}' nests deeper than {MAX_DEPTH} levels",
                stopping=False,
            )
            raise _Stop()
        self.stack.append(frame)

    def _pop(self) -> None:
        """
        Close the innermost block and attach it to its parent.
        """
        frame = self.stack.pop()
        location = Location(self.source, frame.line)
        node: Statement
        if frame.isConfig:
            node = ConfigBlock(frame.words, tuple(frame.statements), location)
        else:
            node = EditBlock(frame.words, tuple(frame.statements), location)
        if self.stack:
            self.stack[-1].statements.append(node)
        elif isinstance(node, ConfigBlock):
            self.blocks.append(node)
        # else: an entry opened outside any block, already reported.
