# -*- test-case-name: tests.benchmarks.test_report -*-
"""
The benchmark's results: figures, ratios, targets, and their renderings.

The harness records every run of every figure for every system here
(L{Results.record}), or why it could not be measured (L{Results.fail});
this module turns them into medians, ratios of ztnagw to the peer measured
in the same run, the issue's targets with met/missed, a Markdown table and
a JSON document.  It does no measuring, so the tests check the arithmetic
and the rendering directly.
"""

from __future__ import annotations

import json
import statistics
from typing import Any, Iterable, Mapping

from attrs import define, field, frozen

#: Column order of the table: the gateway, its peers, and the baseline.
SYSTEMS = ("ztnagw", "nginx", "haproxy", "stunnel", "direct")

SYSTEM_TITLES = {
    "ztnagw": "ztnagw",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "stunnel": "stunnel pair",
    "direct": "direct (no gateway)",
}


@frozen
class Figure:
    """
    One line of the table.

    @ivar key: its name in the JSON and in L{TARGETS}.
    @ivar number: the figure's number in the issue (1 to 7).
    @ivar title: what it measures.
    @ivar unit: unit of the values.
    @ivar higherIsBetter: whether a larger value is better (req/s) or
        worse (latency, memory).
    @ivar peers: the systems ztnagw is compared with on this line.
    """

    key: str
    number: int
    title: str
    unit: str
    higherIsBetter: bool
    peers: tuple[str, ...]


_HTTP_PEERS = ("nginx", "haproxy")
_TUNNEL_PEERS = ("stunnel",)

FIGURES: tuple[Figure, ...] = (
    Figure("keepalive-rps", 1, "keep-alive HTTPS, 1 KiB, mTLS, 50 connections", "req/s", True, _HTTP_PEERS),
    Figure("keepalive-p50", 1, "  latency p50", "ms", False, _HTTP_PEERS),
    Figure("keepalive-p99", 1, "  latency p99", "ms", False, _HTTP_PEERS),
    Figure("bulk-mibps", 2, "1 MiB bodies, mTLS, 10 connections", "MiB/s", True, _HTTP_PEERS),
    Figure("handshake-cps", 3, "new mTLS connections (full handshake + 1 request)", "conn/s", True, _HTTP_PEERS),
    Figure("tunnel-1-tls1-mibps", 4, "tunnel bulk, 1 stream, tls=1", "MiB/s", True, _TUNNEL_PEERS),
    Figure("tunnel-8-tls1-mibps", 4, "tunnel bulk, 8 streams, tls=1", "MiB/s", True, _TUNNEL_PEERS),
    Figure("tunnel-1-tls0-mibps", 4, "tunnel bulk, 1 stream, tls=0", "MiB/s", True, _TUNNEL_PEERS),
    Figure("tunnel-8-tls0-mibps", 4, "tunnel bulk, 8 streams, tls=0", "MiB/s", True, _TUNNEL_PEERS),
    Figure("tunnel-setup-p50", 5, "tunnel setup (connect → first echoed byte) p50", "ms", False, _TUNNEL_PEERS),
    Figure("tunnel-setup-p99", 5, "tunnel setup p99", "ms", False, _TUNNEL_PEERS),
    Figure("idle-https-1000", 6, "RSS per idle HTTPS connection, 1,000 open", "KiB", False, ("nginx",)),
    Figure("idle-https-10000", 6, "RSS per idle HTTPS connection, 10,000 open", "KiB", False, ("nginx",)),
    Figure("idle-tunnel-1000", 6, "RSS per idle tunnel, 1,000 open", "KiB", False, _TUNNEL_PEERS),
    Figure("idle-tunnel-10000", 6, "RSS per idle tunnel, 10,000 open", "KiB", False, _TUNNEL_PEERS),
    Figure("workers-rps", 7, "keep-alive req/s with N workers", "req/s", True, ()),
)

FIGURES_BY_KEY = {f.key: f for f in FIGURES}


@frozen
class Target:
    """
    A goal from issue 8: ztnagw's figure as a ratio to a peer's (or, with
    no peer, as an absolute value) must be at least or at most C{limit}.
    """

    key: str
    peer: str | None
    atLeast: bool
    limit: float
    text: str

    def check(self, value: float) -> bool:
        """
        Whether C{value} (a ratio, or the absolute figure) meets the target.
        """
        return value >= self.limit if self.atLeast else value <= self.limit

    def gap(self, value: float) -> str:
        """
        By how much C{value} misses (or beats) the limit, in words.
        """
        if self.limit == 0:
            return ""
        factor = value / self.limit
        if self.atLeast:
            return f"{factor:.2f}× of the target" if factor < 1 else f"{factor:.2f}× the target"
        return f"{factor:.2f}× the limit"


TARGETS: tuple[Target, ...] = (
    Target("keepalive-rps", "nginx", True, 0.12, "keep-alive req/s ≥ 0.12 × nginx"),
    Target("keepalive-p99", "nginx", False, 10.0, "p99 latency ≤ 10 × nginx's"),
    Target("bulk-mibps", "nginx", True, 0.6, "1 MiB bodies MiB/s ≥ 0.6 × nginx"),
    Target("handshake-cps", "nginx", True, 0.9, "new mTLS connections/s ≥ 0.9 × nginx"),
    Target("tunnel-1-tls1-mibps", "stunnel", True, 1.0, "tunnel MiB/s, tls=1, 1 stream ≥ 1.0 × stunnel pair"),
    Target("tunnel-8-tls1-mibps", "stunnel", True, 1.0, "tunnel MiB/s, tls=1, 8 streams ≥ 1.0 × stunnel pair"),
    Target("tunnel-1-tls0-mibps", "stunnel", True, 2.0, "tunnel MiB/s, tls=0, 1 stream ≥ 2.0 × stunnel pair"),
    Target("tunnel-8-tls0-mibps", "stunnel", True, 2.0, "tunnel MiB/s, tls=0, 8 streams ≥ 2.0 × stunnel pair"),
    Target("tunnel-setup-p50", "stunnel", False, 1.5, "tunnel setup p50 ≤ 1.5 × stunnel pair"),
    Target("idle-tunnel-10000", None, False, 64.0, "RSS per idle tunnel ≤ 64 KiB"),
    Target("idle-tunnel-10000-held", None, True, 10000.0, "10,000 concurrent idle tunnels in one worker"),
)


@define
class Cell:
    """
    The runs of one figure for one system.

    @ivar runs: one value per run.
    @ivar failure: why it could not be measured (then C{runs} may be
        empty).
    @ivar notes: remarks shown under the table.
    """

    runs: list[float] = field(factory=list)
    failure: str | None = None
    notes: list[str] = field(factory=list)

    @property
    def median(self) -> float | None:
        """
        The median of the runs; C{None} without runs or after a failure.
        """
        if self.failure is not None or not self.runs:
            return None
        return statistics.median(self.runs)


@define
class Results:
    """
    Everything one benchmark run found.

    @ivar facts: machine facts, versions, options, pinning (free-form,
        written to the JSON as they are).
    @ivar cells: figure key → system → L{Cell}.
    @ivar extra: figures that are not table lines (absolute counts such as
        idle tunnels held; profile summaries; handshake checks).
    """

    facts: dict[str, Any] = field(factory=dict)
    cells: dict[str, dict[str, Cell]] = field(factory=dict)
    extra: dict[str, Any] = field(factory=dict)

    def cell(self, key: str, system: str) -> Cell:
        """
        The cell of C{key} for C{system} (created empty when missing).

        @raise KeyError: C{key} is not a known figure or C{system} not a
            known system.
        """
        if key not in FIGURES_BY_KEY or system not in SYSTEMS:
            raise KeyError(f"unknown figure {key!r} or system {system!r}")
        return self.cells.setdefault(key, {}).setdefault(system, Cell())

    def record(self, key: str, system: str, value: float) -> None:
        """
        Add one run's value.
        """
        self.cell(key, system).runs.append(float(value))

    def fail(self, key: str, system: str, why: str) -> None:
        """
        Mark a figure as not measured, and why.
        """
        self.cell(key, system).failure = why

    def note(self, key: str, system: str, text: str) -> None:
        """
        Attach a remark to a figure.
        """
        notes = self.cell(key, system).notes
        if text not in notes:
            notes.append(text)

    def median(self, key: str, system: str) -> float | None:
        """
        The median of a figure, or C{None}.
        """
        cell = self.cells.get(key, {}).get(system)
        return cell.median if cell is not None else None

    def ratio(self, key: str, peer: str) -> float | None:
        """
        ztnagw's median divided by C{peer}'s, or C{None} if either is
        missing or the peer's is zero.
        """
        ours, theirs = self.median(key, "ztnagw"), self.median(key, peer)
        if ours is None or theirs is None or theirs == 0:
            return None
        return ours / theirs

    def targetStatus(self) -> list[dict[str, Any]]:
        """
        Every target with the value compared and whether it is met
        (C{None}: not measured).
        """
        statuses = []
        for target in TARGETS:
            note = None
            if target.key == "idle-tunnel-10000-held":
                value = self.extra.get("idleTunnelsHeld")
                value = None if value is None else float(value)
                asked = self.extra.get("idleTunnelsAsked", target.limit)
                if value is not None and asked < target.limit:
                    # The machine could not hold more: not a verdict on
                    # ztnagw either way.
                    note = f"{value:,.0f} of the {asked:,} this machine's open-file limit allows"
                    value = None
            elif target.peer is None:
                value = self.median(target.key, "ztnagw")
            else:
                value = self.ratio(target.key, target.peer)
            statuses.append(
                {
                    "target": target.text,
                    "figure": target.key,
                    "peer": target.peer,
                    "limit": target.limit,
                    "atLeast": target.atLeast,
                    "value": value,
                    "met": None if value is None else target.check(value),
                    "gap": None if value is None else target.gap(value),
                    "note": note,
                }
            )
        return statuses

    def toJson(self) -> dict[str, Any]:
        """
        The whole result as JSON-ready data.
        """
        figures = []
        for figure in FIGURES:
            for system, cell in self.cells.get(figure.key, {}).items():
                figures.append(
                    {
                        "figure": figure.key,
                        "number": figure.number,
                        "title": figure.title.strip(),
                        "unit": figure.unit,
                        "system": system,
                        "runs": cell.runs,
                        "median": cell.median,
                        "failure": cell.failure,
                        "notes": cell.notes,
                    }
                )
        ratios = []
        for figure in FIGURES:
            for peer in figure.peers:
                value = self.ratio(figure.key, peer)
                if value is not None:
                    ratios.append({"figure": figure.key, "peer": peer, "ratio": value})
        return {
            "facts": self.facts,
            "figures": figures,
            "ratios": ratios,
            "targets": self.targetStatus(),
            "extra": self.extra,
        }


def formatNumber(value: float | None) -> str:
    """
    A figure as the table shows it: three significant digits for small
    values, whole numbers with thousands separators for large ones.
    """
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cellText(results: Results, key: str, system: str) -> str:
    cell = results.cells.get(key, {}).get(system)
    if cell is None:
        return ""
    if cell.failure is not None:
        return "failed¹"
    return formatNumber(cell.median)


def renderTable(results: Results) -> str:
    """
    The Markdown table: one line per figure, one column per system that
    has any figure, ztnagw's ratios to its peers, and the notes.
    """
    systems = [s for s in SYSTEMS if any(s in row for row in results.cells.values())]
    header = ["#", "figure", "unit"] + [SYSTEM_TITLES[s] for s in systems] + ["ztnagw ÷ peer"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in FIGURES:
        if figure.key not in results.cells:
            continue
        ratios = []
        for peer in figure.peers:
            value = results.ratio(figure.key, peer)
            if value is not None:
                ratios.append(f"{value:.2f} ({SYSTEM_TITLES[peer]})")
        row = [str(figure.number), figure.title.replace("  ", "↳ "), figure.unit]
        row += [_cellText(results, figure.key, s) for s in systems]
        row.append(", ".join(ratios))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def renderTargets(results: Results) -> str:
    """
    The targets of issue 8 as a Markdown table, with met/missed.
    """
    lines = ["| target | measured | met |", "|---|---|---|"]
    for status in results.targetStatus():
        if status["value"] is None:
            measured, met = status["note"] or "not measured", "–"
        else:
            measured = formatNumber(status["value"])
            if status["peer"] is not None:
                measured += "×"
            met = ("met" if status["met"] else "**missed**") + f" ({status['gap']})"
        lines.append(f"| {status['target']} | {measured} | {met} |")
    return "\n".join(lines)


def renderNotes(results: Results) -> str:
    """
    The failures and notes attached to figures, one bullet each.
    """
    bullets = []
    for figure in FIGURES:
        for system, cell in results.cells.get(figure.key, {}).items():
            if cell.failure is not None:
                bullets.append(f"- ¹ {figure.key} / {SYSTEM_TITLES[system]}: {cell.failure}")
            for note in cell.notes:
                bullets.append(f"- {figure.key} / {SYSTEM_TITLES[system]}: {note}")
    return "\n".join(bullets)


def renderFacts(facts: Mapping[str, Any]) -> str:
    """
    Machine facts and versions as a bullet list.
    """
    lines = []
    for name, value in facts.items():
        if isinstance(value, Mapping):
            inner = ", ".join(f"{k} {v}" for k, v in value.items())
            lines.append(f"- {name}: {inner}")
        else:
            lines.append(f"- {name}: {value}")
    return "\n".join(lines)


def renderMarkdown(results: Results, extraSections: Iterable[tuple[str, str]] = ()) -> str:
    """
    The full Markdown report: facts, the table, targets, notes and any
    extra sections (title, body).
    """
    parts = [
        "## Machine and versions",
        renderFacts(results.facts),
        "## Figures (medians)",
        renderTable(results),
        "## Targets (issue 8)",
        renderTargets(results),
    ]
    notes = renderNotes(results)
    if notes:
        parts += ["## Notes", notes]
    for title, body in extraSections:
        parts += [f"## {title}", body]
    return "\n\n".join(parts) + "\n"


def dumpJson(results: Results) -> str:
    """
    The JSON document, indented.
    """
    return json.dumps(results.toJson(), indent=2, sort_keys=False, default=str)
