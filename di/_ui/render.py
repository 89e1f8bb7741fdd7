"""The status page as HTML and SVG, rendered from one snapshot, its history and the graph.

:func:`page` is the whole document (what a browser with JavaScript off shows);
:func:`live` is the part the page's script fetches again every poll and swaps in:
the summary, a row per checked service with its strip of the last rounds
(:func:`strip`), and the dependency graph (:func:`graph`), laid out in columns by
longest path to a service that needs nothing, nodes coloured by status.

Every text that comes from the application (names, error texts, details) is escaped;
error texts and details appear only with ``details`` (``show_details``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING

from ..health import HealthCheckResult, error_text

if TYPE_CHECKING:
    from ..monitor import HealthSnapshot, HistoryEntry

# A service's dependency graph: (label, kind, labels of what it needs), as views reads it.
Graph = Sequence[tuple[str, str, tuple[str, ...]]]

STRIP_WIDTH = 4  # pixels per round in a history strip
# Rounds drawn per strip, however many the history keeps: the page stays under 100 KB
# for a hundred services or so (``/health/history`` has them all).
STRIP_ROUNDS = 50
STRIP_HEIGHT = 18
NODE_WIDTH = 190
NODE_HEIGHT = 30
COLUMN_GAP = 60
ROW_GAP = 14
LABEL = 26  # characters of a node's label drawn; the whole label is its tooltip
_DOTTED = re.compile(r"^[\w.]+\.\w+$")  # a module's class: drawn by its own name
_HEALTH = {"pass": "pass", "warn": "warn", "fail": "fail"}


def clock(at: float) -> str:
    """``HH:MM:SS`` UTC of a Unix time."""
    return time.strftime("%H:%M:%S", time.gmtime(at))


def page(
    snapshot: HealthSnapshot,
    histories: Mapping[str, Sequence[HistoryEntry]],
    graph_of: Graph,
    details: bool,
    interval: float,
) -> str:
    """The whole page: head, the live part, and what the script needs to know."""
    overall = snapshot.health.get("", "fail")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request
        f"<title>Health: {overall}</title>"
        '<link rel="stylesheet" href="ui/page.css">'
        '<script src="ui/page.js" defer></script></head>'
        f'<body data-interval="{interval:g}">'
        '<header><h1>Health</h1><p id="freshness" class="freshness">'
        "Static view: reload for the latest.</p>"
        '<p id="stale" class="stale-note" hidden></p></header>'
        f'<main id="live">{live(snapshot, histories, graph_of, details)}</main>'
        "</body></html>\n"
    )


def live(
    snapshot: HealthSnapshot,
    histories: Mapping[str, Sequence[HistoryEntry]],
    graph_of: Graph,
    details: bool,
) -> str:
    """The part of the page that changes: summary, services, graph."""
    overall = snapshot.health.get("", "fail")
    latest = max((result.started_at for result in snapshot.results.get("", ())), default=None)
    parts = [
        f'<section class="summary" data-version="{snapshot.version}" data-status="{overall}">',
        f'<p>Overall <span class="badge {_HEALTH[overall]}">{overall}</span>'
        + ("" if latest is None else f"; last round {clock(latest)} UTC")
        + "</p>",
    ]
    if snapshot.reasons:
        held = "; ".join(f"{what}: {why}" for what, why in snapshot.reasons)
        parts.append(f'<p class="held">Held: {escape(held)}</p>')
    checked = _checked(snapshot)
    names = [
        f'<li><span class="badge {_HEALTH[status]}">{status}</span> {escape(name)}</li>'
        for name, status in snapshot.health.items()
        if name and name not in checked
    ]
    if names:
        parts.append(f'<ul class="names">{"".join(names)}</ul>')
    parts.append("</section>")
    parts.append(_table(snapshot, histories, details))
    parts.append(
        '<section class="graph"><h2>Dependencies</h2><p class="legend">An arrow points to '
        "what a service needs. Thick outline: a failure of its own (a root cause); dashed: "
        "failing because of what it needs; grey: no check.</p>"
    )
    parts.append(graph(graph_of, snapshot))
    parts.append("</section>")
    return "".join(parts)


def _checked(snapshot: HealthSnapshot) -> set[str]:
    return {result.key for result in snapshot.results.get("", ())}


def _table(
    snapshot: HealthSnapshot, histories: Mapping[str, Sequence[HistoryEntry]], details: bool
) -> str:
    head = (
        "<th>Service</th><th>Status</th><th>Last check (UTC)</th><th>Duration</th>"
        "<th>Failures in a row</th><th>Blocked by</th><th>Last rounds</th>"
    )
    if details:
        head += "<th>Details</th>"
    rows = []
    for result in snapshot.results.get("", ()):
        rows.append(_row(snapshot, result, histories.get(result.key, ()), details))
    for label in snapshot.unbuilt:
        rows.append(
            f'<tr class="row none" data-name="{escape(label)}"><th scope="row">{escape(label)}'
            '</th><td><span class="badge none">not built</span></td>'
            f"<td></td><td></td><td></td><td></td><td></td>{'<td></td>' if details else ''}</tr>"
        )
    if not rows:
        rows.append(f'<tr><td colspan="{8 if details else 7}">No checked service yet.</td></tr>')
    return (
        '<section class="services"><h2>Services</h2><table><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _row(
    snapshot: HealthSnapshot,
    result: HealthCheckResult,
    history: Sequence[HistoryEntry],
    details: bool,
) -> str:
    key = result.key
    status = snapshot.health.get(key, "fail")
    failures, _ = snapshot.streaks.get(key, (0 if result.healthy else 1, 0))
    blocked = ", ".join(result.blocked_by)
    name = escape(key)
    cells = [
        f'<tr class="row {_HEALTH[status]}" data-name="{name}" data-status="{status}">',
        f'<th scope="row">{name}</th>',
        f'<td><span class="badge {_HEALTH[status]}">{status}</span> {result.outcome.value}</td>',
        f"<td>{clock(result.started_at)}</td>",
        f"<td>{result.duration * 1000:.1f} ms</td>",
        f"<td>{failures}</td>",
        f"<td>{escape(blocked)}</td>",
        f'<td class="strip">{strip(history)}</td>',
    ]
    if details:
        cells.append(f"<td>{escape(_details(result))}</td>")
    cells.append("</tr>")
    return "".join(cells)


def _details(result: HealthCheckResult) -> str:
    text = []
    if result.error is not None:
        text.append(f"{type(result.error).__name__}: {error_text(result.error)}")
    if result.details:
        text.append(", ".join(f"{key}={value}" for key, value in result.details.items()))
    return "; ".join(text)


def strip(history: Sequence[HistoryEntry]) -> str:
    """The last rounds as one small SVG: a bar per round, its height the round's
    duration (relative to the slowest shown), its colour the outcome; the last
    :data:`STRIP_ROUNDS` at most."""
    if len(history) > STRIP_ROUNDS:
        history = list(history)[-STRIP_ROUNDS:]
    count = len(history)
    width = max(count, 1) * STRIP_WIDTH
    slowest = max((entry.duration for entry in history), default=0.0) or 1.0
    paths: dict[str, list[str]] = {}
    for index, entry in enumerate(history):
        height = max(4, round(STRIP_HEIGHT * entry.duration / slowest))
        x = index * STRIP_WIDTH
        paths.setdefault(entry.outcome, []).append(
            f"M{x} {STRIP_HEIGHT - height}h{STRIP_WIDTH - 1}v{height}h-{STRIP_WIDTH - 1}z"
        )
    drawn = "".join(
        f'<path class="{_HEALTH[outcome]}" d="{"".join(d)}"/>' for outcome, d in paths.items()
    )
    last = history[-1].outcome if history else "none"
    return (
        f'<svg class="history" data-rounds="{count}" data-last="{last}" width="{width}" '
        f'height="{STRIP_HEIGHT}" viewBox="0 0 {width} {STRIP_HEIGHT}" role="img" '
        f'aria-label="last {count} rounds">{drawn}</svg>'
    )


def layers(graph_of: Graph) -> dict[str, int]:
    """Each service's column: the longest path from it to a service that needs nothing
    (a cycle is cut where the walk meets it again)."""
    needs = {label: list(deps) for label, _, deps in graph_of}
    depth: dict[str, int] = {}
    for root in needs:
        if root in depth:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        on_path: set[str] = {root}
        while stack:
            label, index = stack[-1]
            deps = needs.get(label, [])
            if index < len(deps):
                stack[-1] = (label, index + 1)
                dep = deps[index]
                if dep not in depth and dep not in on_path:
                    on_path.add(dep)
                    stack.append((dep, 0))
                continue
            stack.pop()
            on_path.discard(label)
            depth[label] = 1 + max((depth.get(dep, -1) for dep in deps), default=-1)
    return depth


def graph(graph_of: Graph, snapshot: HealthSnapshot) -> str:
    """The dependency graph as SVG: a column per depth (what needs nothing on the left),
    an arrow from each service to what it needs, nodes coloured by the status of the
    service's check (grey: no check), a failure that is not blocked by another marked
    as a root cause."""
    if not graph_of:
        return "<p>No service provided.</p>"
    depth = layers(graph_of)
    kinds = {label: kind for label, kind, _ in graph_of}
    columns: dict[int, list[str]] = {}
    for label in depth:
        columns.setdefault(depth[label], []).append(label)
    at: dict[str, tuple[int, int]] = {}
    for column, labels in columns.items():
        for row, label in enumerate(labels):
            at[label] = (
                10 + column * (NODE_WIDTH + COLUMN_GAP),
                10 + row * (NODE_HEIGHT + ROW_GAP),
            )
    width = 20 + (max(columns) + 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    height = 20 + max(len(labels) for labels in columns.values()) * (NODE_HEIGHT + ROW_GAP)
    results = {result.key: result for result in snapshot.results.get("", ())}
    edges = []
    for label, _, deps in graph_of:
        x1, y1 = at[label]
        for dep in deps:
            if dep not in at:
                continue
            x2, y2 = at[dep]
            if x2 < x1:
                edges.append(
                    f'<path class="edge" d="M{x1} {y1 + NODE_HEIGHT // 2}L{x2 + NODE_WIDTH} '
                    f'{y2 + NODE_HEIGHT // 2}"/>'
                )
            else:  # same column or to the right: a cycle's edge, drawn around
                edges.append(
                    f'<path class="edge back" d="M{x1 + NODE_WIDTH // 2} {y1}C{x1} {y1 - 30} '
                    f'{x2 + NODE_WIDTH} {y2 - 30} {x2 + NODE_WIDTH // 2} {y2}"/>'
                )
    nodes = []
    for label, (x, y) in at.items():
        result = results.get(label)
        status = "none" if result is None else _HEALTH[snapshot.health.get(label, "fail")]
        classes = ["node", status]
        mark = ""
        if result is not None and status == "fail":
            if result.blocked_by:
                classes.append("blocked")
            else:
                classes.append("root")
                mark = " (root cause)"
        if label.endswith(" MISSING"):
            classes.append("missing")
        shown = label.rpartition(".")[2] if _DOTTED.match(label) else label  # app.Db: Db
        shown = shown if len(shown) <= LABEL else shown[: LABEL - 1] + "\u2026"
        tip = f"{label} ({kinds.get(label, 'missing')}): {status}{mark}"
        nodes.append(
            f'<g class="{" ".join(classes)}" data-name="{escape(label)}" data-status="{status}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="5"/>'
            f'<text x="{x + 8}" y="{y + 19}">{escape(shown)}</text></g>'
        )
    return (
        f'<svg class="deps" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="dependency graph"><defs><marker id="arrow" viewBox="0 0 8 8" '
        'refX="8" refY="4" markerWidth="8" markerHeight="8" orient="auto">'
        '<path d="M0 0L8 4L0 8z"/></marker></defs>'
        f"{''.join(edges)}{''.join(nodes)}</svg>"
    )
