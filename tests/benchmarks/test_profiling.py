"""
Tests for L{benchmarks.profiling}: reading py-spy's collapsed stacks.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from benchmarks.profiling import ProfileError, frameName, parseCollapsed, pySpyCommand, renderSummary, summarise

SAMPLE = [
    "<module> (twistd:1);run (base.py:10);doRead (tcp.py:20);dataReceived (tls.py:30) 60\n",
    "<module> (twistd:1);run (base.py:10);doRead (tcp.py:20);dataReceived (tls.py:31) 20\n",
    "<module> (twistd:1);run (base.py:11);parse (parser.py:5) 20\n",
    "\n",
]


class SummaryTests(SynchronousTestCase):
    """
    Tests for L{summarise}.
    """

    def test_shares(self) -> None:
        """
        Self time goes to the innermost frame, inclusive time to every frame
        of the stack; lines of one function add up.
        """
        summary = summarise(SAMPLE, focus="")
        self.assertEqual(summary.samples, 100)
        self.assertEqual(summary.selfTime[0].function, "dataReceived (tls.py)")
        self.assertAlmostEqual(summary.selfTime[0].share, 0.8)
        inclusive = {s.function: s.share for s in summary.inclusive}
        self.assertNotIn("run (base.py)", inclusive)  # in every sample: says nothing
        self.assertAlmostEqual(inclusive["doRead (tcp.py)"], 0.8)
        self.assertAlmostEqual(inclusive["parse (parser.py)"], 0.2)
        self.assertEqual([(s.function, s.share) for s in summary.byFile], [("tls.py", 0.8), ("parser.py", 0.2)])

    def test_processFrame(self) -> None:
        """
        The process frame py-spy puts first with --subprocesses is dropped.
        """
        stacks = parseCollapsed(['process 42:"python x.py";main (x.py:3);work (x.py:9) 4\n'])
        self.assertEqual(stacks, [(["main (x.py)", "work (x.py)"], 4)])

    def test_focus(self) -> None:
        """
        The inclusive list names only functions under the focus path.
        """
        summary = summarise(["loop (twisted/base.py:1);handle (ztnagw/x.py:2);send (OpenSSL/SSL.py:3) 10\n"])
        self.assertEqual([s.function for s in summary.inclusive], [])  # in every sample
        summary = summarise(
            [
                "loop (twisted/base.py:1);handle (ztnagw/x.py:2);send (OpenSSL/SSL.py:3) 10\n",
                "loop (twisted/base.py:1);poll (twisted/base.py:9) 10\n",
            ]
        )
        self.assertEqual([(s.function, s.share) for s in summary.inclusive], [("handle (ztnagw/x.py)", 0.5)])

    def test_malformed(self) -> None:
        """
        A line without a count is an error.
        """
        self.assertRaises(ProfileError, summarise, ["a;b;c\n"])

    def test_empty(self) -> None:
        """
        No samples: an empty summary.
        """
        self.assertEqual(summarise([]).samples, 0)

    @given(st.lists(st.tuples(st.lists(st.sampled_from(["a (x.py:1)", "b (y.py:2)", "c (z.py:3)"]), min_size=1,
                                       max_size=6), st.integers(min_value=1, max_value=1000)), max_size=20))
    def test_selfSharesAddUp(self, stacks) -> None:
        """
        Self shares add up to one (every sample has one innermost frame);
        inclusive shares are never below self shares.
        """
        lines = [";".join(frames) + f" {count}\n" for frames, count in stacks]
        summary = summarise(lines, top=10, focus="")
        if not stacks:
            return
        self.assertAlmostEqual(sum(s.share for s in summary.selfTime), 1.0)
        self.assertAlmostEqual(sum(s.share for s in summary.byFile), 1.0)
        inclusive = {s.function: s.share for s in summary.inclusive}
        for spot in summary.selfTime:
            if spot.function in inclusive:
                self.assertGreaterEqual(inclusive[spot.function] + 1e-9, spot.share)

    @given(st.text())
    def test_anyText(self, text) -> None:
        """
        Arbitrary text is read or refused with L{ProfileError}, nothing else.
        """
        try:
            parseCollapsed(text.splitlines())
        except ProfileError:
            pass

    def test_frameName(self) -> None:
        """
        Line numbers are dropped, the rest kept.
        """
        self.assertEqual(frameName("write (ztnagw/tls/transport.py:120)"), "write (ztnagw/tls/transport.py)")
        self.assertEqual(frameName("<module> (twistd)"), "<module> (twistd)")

    def test_render(self) -> None:
        """
        The rendering lists both columns with percentages.
        """
        text = renderSummary("Load 1", summarise(SAMPLE, focus=""))
        self.assertIn("**Load 1** (100 samples; by file, self time: tls.py 80 %, parser.py 20 %)", text)
        self.assertIn("\n| 80.0 | `dataReceived (tls.py)` | | 80.0 | ", text)
        self.assertIn("| 20.0 | `parse (parser.py)` |", text)

    def test_command(self) -> None:
        """
        py-spy samples the process and its workers without stopping them.
        """
        command = pySpyCommand("py-spy", 42, 5, "/tmp/out.txt")
        self.assertEqual(command[:4], ["py-spy", "record", "--pid", "42"])
        for flag in ("--subprocesses", "--nonblocking"):
            self.assertIn(flag, command)
        self.assertEqual(command[command.index("--format") + 1], "raw")
