"""
Tests for L{benchmarks.soak}: the rules that pass or fail a soak, and one
60-second soak of the real daemon (the CI-length run; the 10-minute run is
C{python -m benchmarks.soak}, recorded in docs/security.md).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase, TestCase

from benchmarks.soak import MAX_POOLED, Sample, Soak, SoakReport

_OPERATIONS = {"https": 10, "tunnel": 5, "enroll": 3, "revoke": 1}


def report(start: Sample, end: Sample, errors: dict[str, int] | None = None, operations: dict | None = None) -> SoakReport:
    """
    A report with C{start} and C{end} and the given counts.
    """
    return SoakReport(
        duration=60.0,
        operations=_OPERATIONS if operations is None else operations,
        errors=errors or {},
        start=start,
        end=end,
    )


class ReportTests(SynchronousTestCase):
    """
    L{SoakReport.problems}.
    """

    def test_passes(self) -> None:
        """
        Same descriptors, memory within 10 %, only intended denials.
        """
        self.assertEqual(
            report(Sample(20, 100_000_000), Sample(20, 109_000_000), {"denied-002": 5, "denied-063": 2}).problems,
            [],
        )

    def test_descriptorLeak(self) -> None:
        """
        One descriptor more at the end fails, and names what it is open on.
        """
        problems = report(Sample(2, 100, ("a", "b")), Sample(3, 100, ("a", "b", "socket:[9]"))).problems
        self.assertEqual(len(problems), 1)
        self.assertIn("socket:[9]", problems[0])

    def test_pooledApart(self) -> None:
        """
        Pooled real-server connections are not a leak up to their bound;
        above it they are.
        """
        self.assertEqual(report(Sample(20, 100, pooled=1), Sample(25, 100, pooled=6)).problems, [])
        self.assertEqual(
            len(report(Sample(20, 100, pooled=1), Sample(20 + MAX_POOLED, 100, pooled=MAX_POOLED + 1)).problems), 1
        )

    def test_memory(self) -> None:
        """
        10 % growth fails.
        """
        self.assertEqual(len(report(Sample(20, 100), Sample(20, 110)).problems), 1)

    def test_unintended(self) -> None:
        """
        Any other error kind fails.
        """
        problems = report(Sample(20, 100), Sample(20, 100), {"denied-002": 1, "https-ConnectionResetError": 1}).problems
        self.assertEqual(problems, ["unintended errors: {'https-ConnectionResetError': 1}"])

    def test_everyKindRan(self) -> None:
        """
        A soak in which some kind of operation never completed fails.
        """
        problems = report(Sample(20, 100), Sample(20, 100), operations={"https": 1}).problems
        self.assertEqual(len(problems), 3)


class SoakTests(TestCase):
    """
    The CI-length soak.
    """

    def test_sixtySeconds(self) -> None:
        """
        60 s of mixed load: descriptors back to the baseline, memory growth
        under 10 %, only the intended denials.
        """
        result = Soak(self.mktemp(), 60.0, warmup=10.0).run()
        self.assertEqual(result.problems, [], result.describe())
        self.assertGreater(result.errors.get("denied-063", 0), 0)
        self.assertGreater(result.errors.get("denied-002", 0), 0)
