# -*- test-case-name: tests.benchmarks.test_profiling -*-
"""
Profiles of the gateway under load, summarised.

Issue 8 asks where ztnagw's time goes under each load.  The harness runs
C{py-spy record} (a sampling profiler from PyPI that reads another process's
stacks; it does not change the gateway) in raw "collapsed stack" form, and
L{summarise} turns the samples into the few lines a reader needs: the
functions that use the most time themselves (self) and those under which
the most time is spent (inclusive), each as a share of the samples.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from attrs import frozen

_LINE_NUMBER = re.compile(r":\d+\)$")


class ProfileError(Exception):
    """
    A collapsed-stack file could not be read.
    """


@frozen
class HotSpot:
    """
    One function and its share of the samples.
    """

    function: str
    share: float


@frozen
class ProfileSummary:
    """
    The summary of one profile.

    @ivar samples: samples read.
    @ivar selfTime: functions by time spent in them, largest first.
    @ivar inclusive: functions of the profiled code (see C{focus}) by time
        spent in them and their callees, leaving out frames under which
        (nearly) every sample lies.
    @ivar byFile: source files by self time: where the time goes, module
        by module (C{OpenSSL/SSL.py}, C{ztnagw/http/server.py}, ...).
    """

    samples: int
    selfTime: tuple[HotSpot, ...]
    inclusive: tuple[HotSpot, ...]
    byFile: tuple[HotSpot, ...] = ()


def frameName(frame: str) -> str:
    """
    A frame without its line number: C{"write (tls.py:12)"} becomes
    C{"write (tls.py)"}, so that the samples of one function add up.
    """
    return _LINE_NUMBER.sub(")", frame.strip())


def parseCollapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """
    Read collapsed stacks: C{frame;frame;...;frame COUNT} per line, the
    root first.

    @raise ProfileError: a line is not of that form.
    """
    stacks = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            raise ProfileError(f"line {number} is not a collapsed stack: {line[:200]!r}")
        frames = [frameName(f) for f in stack.split(";") if f.strip()]
        # py-spy --subprocesses puts the process ("process 42:...") first.
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        stacks.append((frames, int(count)))
    return stacks


def summarise(lines: Iterable[str], top: int = 12, focus: str = "ztnagw/") -> ProfileSummary:
    """
    The C{top} functions by self and by inclusive time.

    @param focus: the inclusive list names only functions of files under
        this path (the code being profiled), not the reactor and library
        frames that every stack passes through.

    @raise ProfileError: malformed input.
    """
    selfCounts: Counter[str] = Counter()
    inclusiveCounts: Counter[str] = Counter()
    fileCounts: Counter[str] = Counter()
    total = 0
    for frames, count in parseCollapsed(lines):
        if not frames:
            continue
        total += count
        selfCounts[frames[-1]] += count
        fileCounts[_fileOf(frames[-1])] += count
        for frame in set(frames):
            if _fileOf(frame).startswith(focus):
                inclusiveCounts[frame] += count
    if total == 0:
        return ProfileSummary(samples=0, selfTime=(), inclusive=())

    def spots(counts: Counter[str]) -> tuple[HotSpot, ...]:
        return tuple(HotSpot(name, n / total) for name, n in counts.most_common(top))

    below = Counter({name: n for name, n in inclusiveCounts.items() if n < _EVERYWHERE * total})
    return ProfileSummary(
        samples=total, selfTime=spots(selfCounts), inclusive=spots(below), byFile=spots(fileCounts)
    )


#: Share of the samples above which a frame is "everywhere" (the
#: interpreter's start, the reactor's loop) and left out of the inclusive
#: list.
_EVERYWHERE = 0.95


def _fileOf(frame: str) -> str:
    """
    The source file of a frame name, C{"write (a/b.py)"} → C{"a/b.py"}.
    """
    if frame.endswith(")") and " (" in frame:
        return frame[frame.rindex(" (") + 2 : -1]
    return frame


def renderSummary(title: str, summary: ProfileSummary, rows: int = 10) -> str:
    """
    A Markdown table of one profile's hot spots.
    """
    lines = [
        f"**{title}** ({summary.samples} samples; by file, self time: "
        + ", ".join(f"{s.function} {s.share * 100:.0f} %" for s in summary.byFile[:6])
        + ")",
        "",
        "| self % | function | | inclusive % | function |",
        "|---:|---|---|---:|---|",
    ]
    for index in range(min(rows, max(len(summary.selfTime), len(summary.inclusive)))):
        left = summary.selfTime[index] if index < len(summary.selfTime) else None
        right = summary.inclusive[index] if index < len(summary.inclusive) else None
        lines.append(
            "| "
            + (f"{left.share * 100:.1f} | `{left.function}`" if left else " | ")
            + " | | "
            + (f"{right.share * 100:.1f} | `{right.function}`" if right else " | ")
            + " |"
        )
    return "\n".join(lines)


def pySpyCommand(pyspy: str, pid: int, seconds: int, output: str, rate: int = 250) -> list[str]:
    """
    The command that samples process C{pid} (and its worker processes) for
    C{seconds}, writing collapsed stacks to C{output}.
    """
    return [
        pyspy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--subprocesses",
        "--nonblocking",
        "--output",
        output,
    ]
