"""The status page and the history, as HTTP answers, framework-free: what :mod:`di.asgi`
and Flask serve beside :mod:`di._answers`'s.

The path of one request, whichever adapter received it:

- the adapter asks :meth:`Pages.answer` first for every GET (or HEAD) below ``/health``;
  None means "not mine", and the adapter renders ``/health`` as it always has;
- ``/health/history`` is the monitor's history as JSON (reasons only with
  ``show_details``), whether or not the page is on;
- with ``ui=True``: ``/health/ui`` is the page (rendered by :mod:`.render` from the
  snapshot, the history and the injector's dependency graph), ``/health/ui/live`` the
  part the page's script fetches again every poll, ``/health/ui/page.js`` and
  ``/health/ui/page.css`` its own script and style (shipped in this package); and a
  ``/health`` request that prefers HTML (:func:`wants_page`, a browser's ``Accept``)
  is sent to the page with a 303;
- every answer carries ``no-store`` and ``nosniff`` (:class:`~di._answers.Answer`);
  the page's also a Content-Security-Policy allowing only its own script, style and
  requests (:data:`CSP`), so nothing on the page loads or sends anything elsewhere.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING

from .._answers import Answer, json_answer
from .._container import views
from . import render

if TYPE_CHECKING:
    from ..monitor import HealthMonitor, HealthSnapshot, HistoryEntry

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own script, style and requests, nothing else."""
PAGE = "/health/ui"
LIVE = "/health/ui/live"
HISTORY = "/health/history"
_PAGE_HEADERS = {"content-security-policy": CSP, "referrer-policy": "no-referrer"}


def _asset(name: str, content_type: str) -> Answer:
    body = resources.files(__package__).joinpath(name).read_bytes()
    return Answer(200, body, content_type, **_PAGE_HEADERS)


ASSETS = {
    "/health/ui/page.js": _asset("page.js", "text/javascript; charset=utf-8"),
    "/health/ui/page.css": _asset("page.css", "text/css; charset=utf-8"),
}
UI_PATHS = (PAGE, LIVE, *ASSETS)
"""The page's paths, for a router that wants them spelt out."""
SEE_PAGE = Answer(303, b"", "text/plain; charset=utf-8", location="health/ui")
"""``/health`` asked by a browser: see the page (relative, so it holds under a prefix)."""


def wants_page(accept: str) -> bool:
    """Whether an ``Accept`` header prefers HTML to JSON: ``text/html`` listed, with a
    weight above every JSON type listed (``*/*``, a tool's default, is not HTML)."""
    html = 0.0
    json = 0.0
    for part in accept.split(",")[:32]:
        media, _, parameters = part.partition(";")
        weight = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
                if not 0.0 <= weight <= 1.0:
                    weight = 0.0
        media = media.strip().lower()
        if media == "text/html":
            html = max(html, weight)
        elif media in ("application/health+json", "application/json"):
            json = max(json, weight)
    return html > json


class Pages:
    """The page's and the history's answers for one adapter (``ui``, ``show_details``)."""

    __slots__ = ("_rendered", "details", "monitor", "ui")

    def __init__(self, monitor: HealthMonitor, details: bool, ui: bool) -> None:
        self.monitor = monitor
        self.details = details
        self.ui = ui
        # The page and its live part, rendered once per snapshot (the snapshot and its
        # answers replaced together: a thread rendering an older one keeps its own).
        self._rendered: tuple[object, dict[str, Answer]] = (None, {})

    def answer(self, snapshot: HealthSnapshot, path: str, accept: str = "") -> Answer | None:
        """The answer to a GET of ``path``; None when it is not the page's or the
        history's (``/health`` itself, unless a browser asks with the page on)."""
        if path == HISTORY:
            return self.history()
        if not self.ui:
            return None
        if path == "/health":
            return SEE_PAGE if accept and wants_page(accept) else None
        if path in (PAGE, LIVE):
            rendered_for, rendered = self._rendered
            if rendered_for is not snapshot:
                rendered = {}
                self._rendered = (snapshot, rendered)
            found = rendered.get(path)
            if found is None:
                found = rendered[path] = self._render(snapshot, path)
            return found
        return ASSETS.get(path)

    def _render(self, snapshot: HealthSnapshot, path: str) -> Answer:
        """The page (or its live part) from ``snapshot``, the history and the graph."""
        histories = self.monitor.histories()
        graph = views.dependencies(self.monitor.injector)
        if path == LIVE:
            body = render.live(snapshot, histories, graph, self.details)
        else:
            body = render.page(snapshot, histories, graph, self.details, self.monitor.interval)
        return Answer(200, body.encode(), "text/html; charset=utf-8", **_PAGE_HEADERS)

    def history(self) -> Answer:
        """``/health/history``: each name's last rounds, oldest first."""
        return json_answer(200, history_json(self.monitor.histories(), self.details))


def history_json(histories: Mapping[str, list[HistoryEntry]], details: bool) -> dict[str, object]:
    """The history as ``/health/history`` shows it: reasons only with ``details``."""
    shown: dict[str, list[dict[str, object]]] = {}
    for name, entries in histories.items():
        rounds = []
        for entry in entries:
            item: dict[str, object] = {
                "status": entry.outcome,
                "duration": round(entry.duration, 6),
                "time": datetime.datetime.fromtimestamp(entry.time, datetime.UTC).isoformat(),
            }
            if entry.reason is not None:
                item["reason"] = entry.reason if details else "reason withheld"
            rounds.append(item)
        shown[name] = rounds
    return {"history": shown}
