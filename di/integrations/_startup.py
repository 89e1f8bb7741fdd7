"""What a newcomer gets wrong, named when the app or worker starts rather than at its
first request or task.

:func:`check_handlers` looks at each handler an app serves (``where`` names it: ``"route
GET /orders (list_orders)"``) and raises one :class:`~di.errors.GraphError` listing:

- a handler with ``Inject[T]`` parameters that no ``inject`` decorator wraps (the
  framework would call it without them): the fix is the decorator, named;
- an injecting handler asking for a key the container cannot build (nothing provides
  it, or a name is misspelt): looked up as ``invoke`` from a request's scope would,
  building nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from .._container import views
from ..errors import GraphError, ServiceNotFoundError
from ..scope import Scope
from ._inject import injected_params


def check_handlers(
    injector: Scope, handlers: Iterable[tuple[str, Callable[..., Any]]], decorator: str
) -> None:
    """Raise a GraphError naming each handler that forgot ``decorator`` or injects what
    ``injector`` cannot build; see the module."""
    problems: list[str] = []
    for where, handler in handlers:
        problems += _problems(injector, where, handler, decorator)
    if problems:
        raise GraphError(injector.name, problems)


def _problems(
    injector: Scope, where: str, handler: Callable[..., Any], decorator: str
) -> list[str]:
    inner = inspect.unwrap(handler)
    try:
        params = injected_params(inner)
    except (NameError, TypeError) as error:
        return [f"{where}: its Inject[...] parameters cannot be read: {error}"]
    if not params:
        return []
    try:
        visible = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        visible = {}  # type: ignore[assignment]
    forgotten = [name for name in params if name in visible]
    if forgotten:
        names = ", ".join(repr(name) for name in forgotten)
        return [
            f"{where} has Inject[...] parameters ({names}) but no {decorator}: decorate "
            f"it with {decorator}, or the framework calls it without them"
        ]
    problems: list[str] = []
    for name, (key, named) in params.items():
        try:
            views.find(injector, key, named)
        except ServiceNotFoundError as error:
            problems.append(f"{where}: parameter {name!r} injects what is not provided: {error}")
    return problems
