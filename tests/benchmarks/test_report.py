"""
Tests for L{benchmarks.report}: medians, ratios, targets and renderings.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from benchmarks.report import (
    FIGURES,
    TARGETS,
    Results,
    dumpJson,
    formatNumber,
    renderMarkdown,
    renderTable,
    renderTargets,
)


class ResultsTests(SynchronousTestCase):
    """
    Tests for L{Results}.
    """

    def test_median(self) -> None:
        """
        A figure's value is the median of its runs.
        """
        results = Results()
        for value in (3.0, 1.0, 2.0):
            results.record("keepalive-rps", "nginx", value)
        self.assertEqual(results.median("keepalive-rps", "nginx"), 2.0)
        self.assertIsNone(results.median("keepalive-rps", "ztnagw"))

    @given(st.lists(st.floats(min_value=1, max_value=1e6), min_size=1, max_size=9),
           st.lists(st.floats(min_value=1, max_value=1e6), min_size=1, max_size=9))
    def test_ratio(self, ours, theirs) -> None:
        """
        The ratio is ztnagw's median over the peer's median.
        """
        import statistics

        results = Results()
        for value in ours:
            results.record("bulk-mibps", "ztnagw", value)
        for value in theirs:
            results.record("bulk-mibps", "nginx", value)
        self.assertAlmostEqual(
            results.ratio("bulk-mibps", "nginx"), statistics.median(ours) / statistics.median(theirs)
        )

    def test_failureHasNoValue(self) -> None:
        """
        A failed figure has no median, and no ratio is made from it.
        """
        results = Results()
        results.record("keepalive-rps", "ztnagw", 10.0)
        results.record("keepalive-rps", "nginx", 100.0)
        results.fail("keepalive-rps", "ztnagw", "did not start")
        self.assertIsNone(results.median("keepalive-rps", "ztnagw"))
        self.assertIsNone(results.ratio("keepalive-rps", "nginx"))

    def test_unknown(self) -> None:
        """
        Unknown figures or systems are errors, not new lines.
        """
        results = Results()
        self.assertRaises(KeyError, results.record, "speed", "ztnagw", 1.0)
        self.assertRaises(KeyError, results.record, "keepalive-rps", "envoy", 1.0)

    def test_targets(self) -> None:
        """
        Ratio targets compare with the peer; absolute targets with the
        value; unmeasured targets say so.
        """
        results = Results()
        results.record("keepalive-rps", "ztnagw", 6000.0)
        results.record("keepalive-rps", "nginx", 50000.0)  # 0.12: met (at least)
        results.record("keepalive-p99", "ztnagw", 110.0)
        results.record("keepalive-p99", "nginx", 10.0)  # 11x: missed (at most 10x)
        results.record("idle-tunnel-10000", "ztnagw", 80.0)  # missed (64 KiB)
        results.extra["idleTunnelsHeld"] = 10000
        statuses = {s["figure"]: s for s in results.targetStatus()}
        self.assertTrue(statuses["keepalive-rps"]["met"])
        self.assertAlmostEqual(statuses["keepalive-rps"]["value"], 0.12)
        self.assertFalse(statuses["keepalive-p99"]["met"])
        self.assertEqual(statuses["keepalive-p99"]["gap"], "1.10× the limit")
        self.assertFalse(statuses["idle-tunnel-10000"]["met"])
        self.assertTrue(statuses["idle-tunnel-10000-held"]["met"])
        self.assertIsNone(statuses["bulk-mibps"]["met"])
        self.assertEqual(len(statuses), len(TARGETS))

    def test_heldLimitedByMachine(self) -> None:
        """
        When the machine's descriptor limit keeps the idle tunnels below the
        target, the target is not judged, and the report says why.
        """
        results = Results()
        results.extra.update(idleTunnelsHeld=9900, idleTunnelsAsked=9900)
        status = {s["figure"]: s for s in results.targetStatus()}["idle-tunnel-10000-held"]
        self.assertIsNone(status["met"])
        self.assertIn("9,900 of the 9,900", status["note"])
        self.assertIn("| 9,900 of the 9,900 this machine's open-file limit allows | – |", renderTargets(results))

    def test_everyTargetNamesAFigure(self) -> None:
        """
        Every target refers to a figure of the table (or the held count).
        """
        keys = {f.key for f in FIGURES} | {"idle-tunnel-10000-held"}
        for target in TARGETS:
            self.assertIn(target.key, keys)


class RenderTests(SynchronousTestCase):
    """
    Tests for the Markdown and JSON renderings.
    """

    def setUp(self) -> None:
        self.results = Results()
        self.results.facts["machine"] = {"cpu": "Test CPU", "cores": 2}
        for value in (1000.0, 1200.0, 1100.0):
            self.results.record("keepalive-rps", "ztnagw", value)
        for value in (50000.0, 52000.0, 51000.0):
            self.results.record("keepalive-rps", "nginx", value)
        self.results.fail("keepalive-rps", "haproxy", "did not start: port in use")
        self.results.note("tunnel-1-tls0-mibps", "stunnel", "stunnel has no clear mode")

    def test_table(self) -> None:
        """
        The table shows medians with separators, the ratio to each peer,
        failures marked, and only the systems that have figures.
        """
        table = renderTable(self.results)
        lines = table.splitlines()
        self.assertEqual(
            lines[0], "| # | figure | unit | ztnagw | nginx | HAProxy | stunnel pair | ztnagw ÷ peer |"
        )
        self.assertIn("| 1 | keep-alive HTTPS, 1 KiB, mTLS, 50 connections | req/s | 1,100 | 51,000 | failed¹ |  |"
                      " 0.02 (nginx) |", table)

    def test_markdown(self) -> None:
        """
        The report holds the facts, the table, the targets and the notes.
        """
        text = renderMarkdown(self.results, [("Extra", "body")])
        self.assertIn("- machine: cpu Test CPU, cores 2", text)
        self.assertIn("keep-alive req/s ≥ 0.12 × nginx | 0.02× | **missed** (0.18× of the target)", text)
        self.assertIn("- ¹ keepalive-rps / HAProxy: did not start: port in use", text)
        self.assertIn("- tunnel-1-tls0-mibps / stunnel pair: stunnel has no clear mode", text)
        self.assertIn("## Extra\n\nbody", text)
        self.assertIn("| p99 latency ≤ 10 × nginx's | not measured | – |", renderTargets(self.results))

    def test_json(self) -> None:
        """
        The JSON holds every run, the medians, the ratios and the targets.
        """
        data = json.loads(dumpJson(self.results))
        byKey = {(f["figure"], f["system"]): f for f in data["figures"]}
        self.assertEqual(byKey[("keepalive-rps", "ztnagw")]["runs"], [1000.0, 1200.0, 1100.0])
        self.assertEqual(byKey[("keepalive-rps", "ztnagw")]["median"], 1100.0)
        self.assertEqual(byKey[("keepalive-rps", "haproxy")]["failure"], "did not start: port in use")
        self.assertEqual(data["ratios"], [{"figure": "keepalive-rps", "peer": "nginx", "ratio": 1100 / 51000}])
        self.assertEqual(data["facts"]["machine"]["cores"], 2)
        self.assertEqual(len(data["targets"]), len(TARGETS))

    def test_formatNumber(self) -> None:
        """
        Large values are whole with separators; small ones keep digits.
        """
        self.assertEqual(formatNumber(51234.4), "51,234")
        self.assertEqual(formatNumber(12.34), "12.3")
        self.assertEqual(formatNumber(1.234), "1.23")
        self.assertEqual(formatNumber(None), "–")
