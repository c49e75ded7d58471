"""
Tests for L{tests.security.report} and the results table it writes into
C{docs/security.md}: the table lists exactly the attack tests that exist,
with the words their declarations give, so it cannot drift from the
battery or be typed by hand.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.security.cases import AREAS, Attack, attack, attackOf
from tests.security.fixture import AttackCase
from tests.security.report import (
    BEGIN,
    END,
    FAIL,
    PASS,
    attackTests,
    iterateTests,
    renderTable,
    replaceTable,
    shortId,
    tableRows,
)

_DOCUMENT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "security.md"
)


class DocumentTests(SynchronousTestCase):
    """
    The generated table in C{docs/security.md} is current.
    """

    def setUp(self) -> None:
        with open(_DOCUMENT, encoding="utf-8") as f:
            self.rows = tableRows(f.read())
        self.attacks = {shortId(testId): row for testId, row in attackTests()}

    def test_exactlyTheAttackTests(self) -> None:
        """
        The table has one row per attack test of the battery, and no
        other; if not, run C{python -m tests.security.report}.
        """
        listed = [cells[3].strip("`") for cells in self.rows]
        self.assertEqual(sorted(listed), sorted(self.attacks))
        self.assertEqual(len(listed), len(set(listed)))

    def test_declaredWords(self) -> None:
        """
        Each row's area, attack and expected behaviour are those its test
        declares with L{attack}, and its result is one trial can give.
        """
        for cells in self.rows:
            row = self.attacks.get(cells[3].strip("`"))
            if row is None:
                continue
            self.assertEqual(cells[:3], [row.area, row.attack, row.expected])
            self.assertIn(cells[4], ("pass", "FAIL", "ERROR", "skip", "not run"))

    def test_everyAttackCaseTestDeclared(self) -> None:
        """
        Every test of an L{AttackCase} in the battery declares its row, so
        that none is missing from the table.
        """
        from twisted.trial import runner

        suite = runner.TestLoader().loadByName("tests.security", recurse=True)
        undeclared = [
            test.id()
            for test in iterateTests(suite)
            if isinstance(test, AttackCase) and attackOf(getattr(type(test), test._testMethodName)) is None
        ]
        self.assertEqual(undeclared, [])


class RenderTests(SynchronousTestCase):
    """
    The table is rendered from declarations, outcomes and measurements.
    """

    def test_render(self) -> None:
        """
        Rows come in area order, then in test order; pipes in the words are
        escaped; a test that did not run says so.
        """
        attacks = [
            ("tests.security.test_b.B.test_one", Attack("http", "a | b", "400")),
            ("tests.security.test_a.A.test_two", Attack("certificates", "none", "002")),
            ("tests.security.test_c.C.test_three", Attack("http", "c", "405")),
        ]
        table = renderTable(
            attacks,
            {"tests.security.test_b.B.test_one": PASS, "tests.security.test_a.A.test_two": FAIL},
            {"tests.security.test_b.B.test_one": [("latency", "3 ms")]},
            "Summary.",
        )
        lines = table.splitlines()
        self.assertEqual(lines[0], "Summary.")
        self.assertEqual(
            lines[4:],
            [
                "| certificates | none | 002 | `test_a.A.test_two` | FAIL |  |",
                "| http | a \\| b | 400 | `test_b.B.test_one` | pass | latency: 3 ms |",
                "| http | c | 405 | `test_c.C.test_three` | not run |  |",
            ],
        )
        document = replaceTable(f"intro\n{BEGIN}\nold\n{END}\nend\n", table)
        self.assertEqual(
            tableRows(document),
            [
                ["certificates", "none", "002", "`test_a.A.test_two`", "FAIL", ""],
                ["http", "a | b", "400", "`test_b.B.test_one`", "pass", "latency: 3 ms"],
                ["http", "c", "405", "`test_c.C.test_three`", "not run", ""],
            ],
        )
        self.assertTrue(document.startswith("intro\n") and document.endswith(f"{END}\nend\n"))

    def test_noMarkers(self) -> None:
        """
        A document without the markers is refused, not appended to.
        """
        self.assertRaises(ValueError, replaceTable, "no table here", "table")

    def test_unknownArea(self) -> None:
        """
        L{attack} accepts only the table's areas.
        """
        self.assertRaises(ValueError, attack, "elsewhere", "x", "y")
        self.assertIn("local", AREAS)
