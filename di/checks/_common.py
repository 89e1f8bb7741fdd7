"""What every ready-made check shares: its failure, its shape, and how it times itself."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

__all__ = ["AsyncCheck", "Check", "CheckFailed", "latency_ms", "since"]


class CheckFailed(Exception):
    """A ready-made check saw its dependency answer, and the answer is a failure.

    A disk below its minimum, a certificate about to expire, an unexpected HTTP status,
    no Celery worker answering. ``details`` are what the check observed, as a passing
    check returns them. Errors of the client itself (a refused connection, a database
    error) are raised as the client raised them.
    """

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details


class Check(Protocol):
    """A sync check: the instance it is given (if any) is not used; returns its details.

    It runs in a worker thread, as every sync check does.
    """

    def __call__(self, instance: object = None, /) -> dict[str, Any]: ...


class AsyncCheck(Protocol):
    """An async check: the instance it is given (if any) is not used; returns its details.

    It is cancelled when the per-check timeout ends it.
    """

    def __call__(self, instance: object = None, /) -> Awaitable[dict[str, Any]]: ...


def since() -> float:
    """A start time for :func:`latency_ms`."""
    return time.perf_counter()


def latency_ms(started: float) -> float:
    """Milliseconds since ``started``, to the microsecond."""
    return round((time.perf_counter() - started) * 1000, 3)
