"""
Tests for L{ztnagw.config.reference}: the option reference in
C{docs/configuration.md} is current.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ztnagw.config.model import Config
from ztnagw.config.reference import BEGIN, END, optionReference, updateDocument
from ztnagw.config.schema import optionsOf, tablesOf

from tests.config.helpers import ROOT

DOCUMENT = os.path.join(ROOT, "docs", "configuration.md")


class ReferenceTests(SynchronousTestCase):
    """
    The documentation of every option is generated from its declaration.
    """

    def test_current(self) -> None:
        """
        C{docs/configuration.md} holds the reference the declarations make
        today; if not, run C{python -m ztnagw.config.reference
        docs/configuration.md}.
        """
        with open(DOCUMENT) as f:
            text = f.read()
        self.assertEqual(updateDocument(text), text)

    def test_everyOption(self) -> None:
        """
        Every block and every option has its row.
        """
        reference = optionReference()

        def check(cls: type) -> None:
            for table in tablesOf(cls):
                self.assertIn(f"config {' '.join(table.path)}`", reference)
                for declaration in optionsOf(table.objectClass):
                    self.assertIn(f"| `{declaration.cliName}` |", reference)
                check(table.objectClass)

        check(Config)

    def test_markers(self) -> None:
        """
        A document without the markers cannot be updated.
        """
        self.assertRaises(ValueError, updateDocument, "no markers")
        self.assertEqual(
            updateDocument(f"a\n{BEGIN}\nold\n{END}\nb\n"),
            f"a\n{BEGIN}\n\n{optionReference()}\n{END}\nb\n",
        )
