"""The health routes of frameworks that are not ASGI: :func:`di.asgi.health_app`, called.

aiohttp and Django route ``/health``, ``/livez``, ``/readyz`` (and whatever else the
health app answers: its probes, the JSON Check, ``/metrics``) to one handler, which
hands the request to the health app in-process (:meth:`HealthRoutes.answer`): one
ASGI call, no socket, and the same routing, answers, bounds and cache as every other
server of the health app.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from .._answers import GRPC_CHECK, PROBES
from ..asgi import health_app
from ..monitor import HealthMonitor

# The paths (below the prefix) the health app answers, and the prefixes below which.
EXACT = ("/health", *(f"/{probe}" for probe in PROBES), GRPC_CHECK)
BELOW = ("/health/", *(f"/{probe}/" for probe in PROBES))


class Reply:
    """What the health app sent: status, headers and body."""

    __slots__ = ("body", "headers", "status")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[str, str]] = []
        self.body = b""


class HealthRoutes:
    """The health app of ``monitor``, answering requests of a framework in-process."""

    __slots__ = ("app", "metrics")

    def __init__(
        self, monitor: HealthMonitor, show_details: bool, metrics: Any, ui: bool = False
    ) -> None:
        self.app = health_app(monitor, show_details=show_details, metrics=metrics, ui=ui)
        self.metrics = metrics not in (False, None)

    def paths(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The exact paths the app answers, and the prefixes of those below them."""
        return self.paths_of(self.metrics)

    @staticmethod
    def paths_of(metrics: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The paths a health app answers, with ``/metrics`` or without."""
        return (*EXACT, *(("/metrics",) if metrics else ())), BELOW

    async def answer(
        self, method: str, path: str, query: bytes, body: bytes, accept: str = ""
    ) -> Reply:
        """The health app's answer to ``method path?query`` (``path`` below the prefix)
        with ``body`` (read, and bounded, by the caller) and the request's ``Accept``
        header (a browser's is sent to the status page, when it is on)."""
        reply = Reply()
        scope: MutableMapping[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "root_path": "",
            "query_string": query,
            "headers": [(b"accept", accept.encode("latin-1", "replace"))] if accept else [],
        }
        sent = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                reply.status = message["status"]
                reply.headers = [
                    (name.decode("latin-1"), value.decode("latin-1"))
                    for name, value in message.get("headers", ())
                    if name.lower() != b"content-length"
                ]
            elif message["type"] == "http.response.body":
                reply.body += message.get("body", b"")

        await self.app(scope, receive, send)
        return reply
