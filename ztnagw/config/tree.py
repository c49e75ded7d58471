# -*- test-case-name: tests.config.test_syntax -*-
"""
The syntax tree of a FortiOS CLI configuration, and configuration errors.

This module is the contract between the two halves of the configuration
language: L{ztnagw.config.syntax} turns text into these nodes (and back), and
L{ztnagw.config.build} turns nodes into the typed, validated model of
L{ztnagw.config.model}.  Neither
half knows the other's internals.

The tree is a faithful, schema-free picture of the text: C{config} blocks
hold statements, C{edit} blocks hold statements, statements are C{set},
C{unset}, C{edit} or a nested C{config}.  Every node remembers where it came
from so that every error the model finds can name C{file:line}.

Locations take no part in equality: two trees that say the same thing are
equal even when the text was laid out differently.
"""

from __future__ import annotations

from typing import Union

from attrs import field, frozen


@frozen
class Location:
    """
    Where a node starts in the source text.

    @ivar path: the file name as given by the user (or C{"<string>"}).
    @ivar line: 1-based line number.
    """

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@frozen
class Word:
    """
    One value of a C{set} statement, unquoted and unescaped.

    @ivar text: the value.
    @ivar quoted: whether the source wrote it in quotes.  Rendering keeps
        quotes where the source had them, and adds them where the text needs
        them (empty, blanks, quotes, C{#}, line breaks).
    """

    text: str
    quoted: bool = field(default=False, eq=False)


@frozen
class SetStatement:
    """
    C{set <option> <value> [<value>...]}.
    """

    option: str
    values: tuple[Word, ...]
    location: Location | None = field(default=None, eq=False)


@frozen
class UnsetStatement:
    """
    C{unset <option>}: the option returns to its default.
    """

    option: str
    location: Location | None = field(default=None, eq=False)


@frozen
class EditBlock:
    """
    C{edit <key>} ... C{next}: one entry of a table.

    @ivar key: the entry's name or numeric id, as written (unquoted).
    @ivar statements: the body, in source order.
    """

    key: Word
    statements: tuple["Statement", ...]
    location: Location | None = field(default=None, eq=False)


@frozen
class ConfigBlock:
    """
    C{config <path words>} ... C{end}.

    @ivar path: the words after C{config}, e.g. C{("firewall", "vip")} or,
        nested inside an edit, C{("realservers",)}.
    @ivar statements: the body, in source order.  A table holds
        L{EditBlock}s; a singleton such as C{config system global} holds
        L{SetStatement}s directly.  The tree does not enforce which: the
        model does, with a better error message.
    """

    path: tuple[str, ...]
    statements: tuple["Statement", ...]
    location: Location | None = field(default=None, eq=False)


Statement = Union[SetStatement, UnsetStatement, EditBlock, ConfigBlock]


@frozen
class Document:
    """
    A whole configuration file: its top-level C{config} blocks in order.
    """

    blocks: tuple[ConfigBlock, ...]
    source: str = field(default="<string>", eq=False)


@frozen
class ConfigError:
    """
    One problem found in a configuration.

    @ivar location: where, when known.
    @ivar message: what is wrong and what is allowed instead, in one
        sentence; it names the object and option concerned.
    """

    location: Location | None
    message: str

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}"


class ConfigurationRejected(Exception):
    """
    A configuration could not be loaded.

    @ivar errors: every problem found, in source order; never empty.
    """

    def __init__(self, errors: list[ConfigError] | tuple[ConfigError, ...]):
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))
