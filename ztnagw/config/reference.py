# -*- test-case-name: tests.config.test_reference -*-
"""
The option reference of C{docs/configuration.md}, generated from the model's
declarations.

Documentation written by hand drifts from the code; this reference cannot:
it is made from the same declarations the loader reads, and a test fails
when the document is not current.  Regenerate it with::

    python -m ztnagw.config.reference docs/configuration.md
"""

from __future__ import annotations

import sys
from typing import Sequence

from ztnagw.config.model import BUILTIN_NAMES, BUILTINS, ApiGateway, Config
from ztnagw.config.schema import (
    EXTENSION,
    Condition,
    Option,
    Table,
    keyOf,
    optionsOf,
    tablesOf,
)

__all__ = ["BEGIN", "END", "optionReference", "updateDocument"]

#: The line before the generated part of the document.
BEGIN = (
    "<!-- BEGIN OPTION REFERENCE: generated from ztnagw/config/model.py by "
    "`python -m ztnagw.config.reference docs/configuration.md`; do not edit -->"
)

#: The line after it.
END = "<!-- END OPTION REFERENCE -->"


def _cell(text: str) -> str:
    # Markdown tables: no line breaks, escaped bars, and no "<" that a
    # renderer would take for an HTML tag (outside code spans).
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;")
    return "`".join(parts)


def _describe(condition: Condition, owner: type) -> str:
    source = ApiGateway if condition.parent else owner
    (controlling,) = [o for o in optionsOf(source) if o.cliName == condition.option]
    return condition.describe(controlling.valueType)


def _default(declaration: Option, owner: type) -> str:
    if declaration.defaultHelp is not None:
        return declaration.defaultHelp
    rendered = declaration.renderDefault()
    if rendered is None or rendered == "":
        if declaration.required:
            return "required"
        if declaration.requiredWhen is not None:
            return f"required when {_describe(declaration.requiredWhen, owner)}"
        return "(none)"
    return f"`{rendered}`"


def _notes(declaration: Option, owner: type) -> str:
    notes = []
    if declaration.origin == EXTENSION:
        notes.append("**ztnagw extension.**")
    notes.append(declaration.help)
    if declaration.when is not None:
        notes.append(f"Only when {_describe(declaration.when, owner)}.")
    return " ".join(notes)


def _section(table: Table, parents: Sequence[str], out: list[str]) -> None:
    path = " ".join(table.path)
    level = "###" if not parents else "####"
    title = " > ".join([*parents, f"config {path}"])
    out.append(f"{level} `{title}`")
    out.append("")
    doc = (table.objectClass.__doc__ or "").strip()
    # The class docstring's first paragraph, epytext markup removed.
    first = doc.split("\n\n")[0]
    for markup in ("C{", "L{", "I{", "B{"):
        first = first.replace(markup, "`")
    first = first.replace("}", "`")
    out.append(" ".join(line.strip() for line in first.splitlines()))
    out.append("")
    key = keyOf(table.objectClass)
    if key is not None:
        if key.numeric:
            out.append(f"Entries: `edit <id>`, {key.minimum} to {key.maximum}.")
        else:
            out.append("Entries: `edit <name>`.")
        builtins = list(BUILTINS.get(table.attribute, {}))
        builtins += BUILTIN_NAMES.get(table.attribute, ())
        if builtins:
            out.append("Built in: " + ", ".join(f"`{b}`" for b in builtins) + ".")
        out.append("")
    out.append("| option | value | default | |")
    out.append("|---|---|---|---|")
    for declaration in optionsOf(table.objectClass):
        out.append(
            "| "
            + " | ".join(
                _cell(part)
                for part in (
                    f"`{declaration.cliName}`",
                    declaration.valueType.describe(),
                    _default(declaration, table.objectClass),
                    _notes(declaration, table.objectClass),
                )
            )
            + " |"
        )
    out.append("")
    for nested in tablesOf(table.objectClass):
        _section(nested, [*parents, f"config {path}"], out)


def optionReference() -> str:
    """
    The generated part of C{docs/configuration.md}: one section per
    configuration block, one table row per option.
    """
    out: list[str] = []
    for table in tablesOf(Config):
        _section(table, [], out)
    return "\n".join(out).rstrip("\n") + "\n"


def updateDocument(text: str) -> str:
    """
    C{text} with the part between L{BEGIN} and L{END} replaced by a fresh
    L{optionReference}.

    @raise ValueError: the markers are missing.
    """
    start = text.index(BEGIN) + len(BEGIN)
    end = text.index(END)
    return text[:start] + "\n\n" + optionReference() + "\n" + text[end:]


def main(argv: Sequence[str]) -> int:
    """
    Print the reference, or update the document named in C{argv}.
    """
    if not argv:
        sys.stdout.write(optionReference())
        return 0
    (path,) = argv
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(updateDocument(text))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
