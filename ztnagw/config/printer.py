# -*- test-case-name: tests.config.test_show -*-
"""
Model to configuration text: what C{ztnagw config show} prints.

(The module is not called C{show}: that name is the function
L{ztnagw.config.show}, which a submodule of the same name would hide.)

Like FortiOS C{show}, the normal output holds only what the configuration
set explicitly; C{full=True} is FortiOS's C{show full-configuration},
every option with its value, defaults included.  Both read back as an equal
model (C{loads(show(c)) == c}), so C{show} is also how a configuration is
normalized.  The text is written by L{ztnagw.config.syntax.render} from a
syntax tree made here from the same declarations the builder reads, so an
option added to the model is printed without a change here.
"""

from __future__ import annotations

from ztnagw.config.model import Config
from ztnagw.config.schema import (
    ENCRYPTED,
    ConfigObject,
    Table,
    keyOf,
    optionsOf,
    tablesOf,
    valuesOf,
)
from ztnagw.config.syntax import render
from ztnagw.config.tree import (
    ConfigBlock,
    Document,
    EditBlock,
    SetStatement,
    Statement,
    Word,
)

__all__ = ["REDACTED", "show", "toDocument"]


def show(config: Config, full: bool = False, redact: bool = False) -> str:
    """
    The configuration in FortiOS CLI syntax.

    @param full: print every option, defaults included (FortiOS's C{show
        full-configuration}); by default only options set explicitly
        (FortiOS's C{show}).  Options without a value, and options that
        do not apply (C{subnet} of an C{fqdn} address), are never printed;
        neither are the built-in objects (address C{all}, schedule
        C{always}...) unless the configuration redefines them.
    @param redact: write secrets (private keys, passwords) as C{ENC
        redacted}, which no loader accepts, instead of their value: for
        text that may be shown to others.  Redacted text does not load
        back.
    """
    return render(toDocument(config, full, redact))


#: What a redacted secret is written as.
REDACTED = (ENCRYPTED, "redacted")


def toDocument(config: Config, full: bool = False, redact: bool = False) -> Document:
    """
    The syntax tree that L{show} renders.
    """
    blocks: list[ConfigBlock] = []
    for table in tablesOf(Config):
        value = getattr(config, table.attribute)
        if table.singleton:
            statements = _options(value, full, redact, None)
            if statements:
                blocks.append(ConfigBlock(table.path, tuple(statements)))
        else:
            block = _table(table, value, full, redact, None)
            if block is not None:
                blocks.append(block)
    return Document(tuple(blocks), source=config.source or "<string>")


def _table(
    table: Table,
    entries: "dict[object, ConfigObject]",
    full: bool,
    redact: bool,
    parentValues: dict[str, object] | None,
) -> ConfigBlock | None:
    key = keyOf(table.objectClass)
    assert key is not None
    edits = []
    for keyValue, obj in entries.items():
        if obj.builtin:
            continue
        statements: list[Statement] = list(_options(obj, full, redact, parentValues))
        values = valuesOf(obj)
        for nested in tablesOf(type(obj)):
            block = _table(nested, getattr(obj, nested.attribute), full, redact, values)
            if block is not None:
                statements.append(block)
        edits.append(EditBlock(key.render(keyValue), tuple(statements)))
    if not edits:
        return None
    return ConfigBlock(table.path, tuple(edits))


def _options(
    obj: ConfigObject,
    full: bool,
    redact: bool,
    parentValues: dict[str, object] | None,
) -> list[SetStatement]:
    statements = []
    values = valuesOf(obj)
    for declaration in optionsOf(type(obj)):
        value = values[declaration.cliName]
        if value is None:
            continue
        condition = declaration.when
        if condition is not None:
            source = parentValues if condition.parent else values
            if source is not None and not condition.holds(source):
                continue
        if not full and not obj.isExplicit(declaration.cliName):
            continue
        words = declaration.valueType.render(value)
        if not words:
            continue
        quoted = declaration.valueType.quoted
        if redact and declaration.secret:
            words, quoted = REDACTED, False
        statements.append(
            SetStatement(declaration.cliName, tuple(Word(w, quoted) for w in words))
        )
    return statements
