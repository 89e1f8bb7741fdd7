"""What a check's end says: its verdict, its details as JSON can carry them, its error.

A check fails by raising (anything, ``BaseException`` included) or by returning False
(or a coroutine or generator it never ran); a mapping it returns is its details. A
:class:`~di.Degraded` raised, alone or from a task group, makes it degraded. Details
are made JSON-ready once, when the result is recorded, so that no answer, log or report
built from them can fail.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

from ..errors import HealthCheckError
from ..health import Degraded


def verdict(label: str, value: Any) -> HealthCheckError | None:
    """What a check's return value says: False, or a generator never run, is a failure."""
    if value is False:
        return HealthCheckError(label, "it returned False")
    if inspect.iscoroutine(value) or inspect.isgenerator(value) or inspect.isasyncgen(value):
        close_awaitable(value)
        kind = type(value).__name__
        return HealthCheckError(
            label, f"it returned a {kind} that was never run; a check must raise to fail"
        )
    return None


def degraded(error: Exception) -> Degraded | None:
    """The Degraded a check raised, also from a task group where only Degraded was raised."""
    if isinstance(error, Degraded):
        return error
    if isinstance(error, BaseExceptionGroup):
        matched, rest = error.split(Degraded)
        if matched is not None and rest is None:
            leaves: list[BaseException] = list(matched.exceptions)
            while leaves and isinstance(leaves[0], BaseExceptionGroup):
                leaves = list(leaves[0].exceptions)
            first = leaves[0] if leaves else None
            return first if isinstance(first, Degraded) else Degraded(str(error))
    return None


def json_ready(details: Any) -> dict[str, Any] | None:
    """A check's details as JSON can carry them: string keys, plain values, finite numbers.

    Anything else is shown by its text, so that no answer or report fails on them.
    """
    if not isinstance(details, Mapping):
        return None
    return {str(key): _plain(value, 0) for key, value in details.items()}


def _plain(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < 4 and isinstance(value, Mapping):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    return str(value)


def as_exception(label: str, error: BaseException) -> Exception:
    """What a check raised, as the Exception a report holds."""
    if isinstance(error, Exception):
        return error
    wrapped = HealthCheckError(label, f"it raised {type(error).__name__}")
    wrapped.__cause__ = error
    return wrapped


def close_awaitable(awaitable: object) -> None:
    """Close a coroutine (or generator) that will never be run, so Python does not warn."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
