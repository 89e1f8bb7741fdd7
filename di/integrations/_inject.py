"""Injection into handlers, for every integration: one marker, one parser, one wrapper.

- :data:`INJECT` is the marker ``di.Inject[T]`` puts on a parameter (every
  integration's ``Inject`` is that one object): ``Annotated[T, INJECT]``, with FastAPI's
  ``Depends(...)`` too once FastAPI is loaded. ``Inject[Annotated[T, Named("x")]]``
  asks for the service named ``x``.
- :func:`injected_params` reads a handler's annotations once: ``{parameter: (key,
  name)}`` for each marked parameter, the ``Named`` read by
  :func:`~di._container.keys.parse_named`. Both live in
  :mod:`di._container.injection`, beside ``@injector.inject``.
- :func:`wrap` is the handler the framework calls: at each call it asks
  ``get_scope(kwargs)`` for the request's scope, fills the injected parameters from it
  (``invoke`` for sync functions and generators, ``ainvoke`` for coroutines and async
  generators) and calls the handler. Its signature is the handler's without the
  injected parameters (frameworks that read it never see them), plus ``extra`` ones
  the framework is to pass, which ``get_scope`` takes out of ``kwargs``.

An annotation naming a class defined after the handler is read at its first call
instead of when it is wrapped.

What a handler injects is checked when its app starts: each wrapper (and FastAPI's
``Inject`` dependency, and Litestar's ``provide()``) carries :data:`INJECTS`, a
function listing ``(parameter, key, name)``; the integration finds the handlers its
app serves and :func:`check_injected` raises one :class:`~di.errors.GraphError`
naming every handler that asks for what the container cannot build. A handler written
so that its framework could not inject it (a Flask view with ``Inject`` parameters but
no ``@inject``, a Litestar parameter that is a service no dependency provides) is named
there too: its site's reader raises :class:`Misused`, whose text is the fix.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from .._container import views
from .._container.injection import INJECT, injected_params
from .._container.keys import Key
from ..errors import GraphError, ServiceNotFoundError
from ..scope import Scope

__all__ = [
    "INJECT",
    "INJECTS",
    "Misused",
    "check_injected",
    "injected_params",
    "injects",
    "misused",
    "wrap",
]

# What a handler injects, as ``(parameter, key, name)`` triples (parameter None when the
# framework binds it: a FastAPI dependency's), read on demand.
Plan = Sequence[tuple[str | None, Key, str | None]]
# The attribute carrying a wrapper's (or a resolver's) reader of its plan. A decorator
# applied on top with functools.wraps copies it.
INJECTS: Final = "__healthdi_injects__"
# A handler that injects: where it is (``"route GET /orders (list_orders)"``), its plan.
Site = tuple[str, Callable[[], Plan]]


def wrap(
    func: Callable[..., Any],
    get_scope: Callable[[dict[str, Any]], Scope],
    *,
    params: Mapping[str, tuple[Key, str | None]] | None = None,
    extra: Sequence[inspect.Parameter] = (),
    required: str | None = None,
) -> Callable[..., Any]:
    """``func``, its injected parameters filled from ``get_scope(kwargs)`` at each call.

    ``params`` are the injected parameters if already read (else
    :func:`injected_params` reads them, at the first call if an annotation is not
    defined yet). ``extra`` parameters are added to the wrapper's signature for the
    framework to pass; ``get_scope`` pops them. With ``required`` (the decorator's
    name), a handler without any injected parameter is a ``TypeError``.
    """
    plan: tuple[tuple[str, Key, str | None], ...] | None = None

    def read() -> tuple[tuple[str, Key, str | None], ...]:
        nonlocal plan
        found = injected_params(func) if params is None else params
        if not found and required is not None:
            raise TypeError(f"{required}: {func.__qualname__} has no Inject[T] parameter")
        plan = tuple((name, key, named) for name, (key, named) in found.items())
        return plan

    with contextlib.suppress(NameError):  # an annotation defined later: read on first call
        read()

    wrapper: Any
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            scope = get_scope(kwargs)
            for name, key, named in plan if plan is not None else read():
                kwargs[name] = await scope.ainvoke(key, named)
            async with contextlib.aclosing(func(*args, **kwargs)) as items:
                async for item in items:
                    yield item

        wrapper = stream
    elif inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def call(*args: Any, **kwargs: Any) -> Any:
            scope = get_scope(kwargs)
            for name, key, named in plan if plan is not None else read():
                kwargs[name] = await scope.ainvoke(key, named)
            return await func(*args, **kwargs)

        wrapper = call
    elif inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def sync_stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            scope = get_scope(kwargs)
            for name, key, named in plan if plan is not None else read():
                kwargs[name] = scope.invoke(key, named)
            yield from func(*args, **kwargs)

        wrapper = sync_stream
    else:

        @functools.wraps(func)
        def sync_call(*args: Any, **kwargs: Any) -> Any:
            scope = get_scope(kwargs)
            for name, key, named in plan if plan is not None else read():
                kwargs[name] = scope.invoke(key, named)
            return func(*args, **kwargs)

        wrapper = sync_call
    setattr(wrapper, INJECTS, lambda: plan if plan is not None else read())
    # What the framework calls it with, for introspection: without what is injected.
    injected = {name for name, _, _ in plan} if plan is not None else set()
    signature = inspect.signature(func)
    wrapper.__signature__ = signature.replace(
        parameters=[
            *(p for p in signature.parameters.values() if p.name not in injected),
            *extra,
        ]
    )
    return typing.cast("Callable[..., Any]", wrapper)


def injects(func: object) -> Callable[[], Plan] | None:
    """The reader of what ``func`` injects, if it is an injecting wrapper or resolver."""
    reader = getattr(func, INJECTS, None)
    return reader if callable(reader) else None


class Misused(Exception):
    """A handler written so that its framework cannot inject it; the text says the fix."""


def misused(text: str) -> Callable[[], Plan]:
    """A site's reader that reports ``text`` (see :func:`check_injected`)."""

    def read() -> Plan:
        raise Misused(text)

    return read


def check_injected(injector: Scope, sites: Iterable[Site]) -> None:
    """Raise one :class:`~di.errors.GraphError` naming each site (``"route GET
    /orders (list_orders)"``) whose plan asks for a key ``injector`` cannot build.

    Each key is looked up as ``invoke`` would look it up from a request's scope (the
    injector's own services, context keys included); nothing is built.
    """
    problems: list[str] = []
    for where, read in sites:
        try:
            plan = read()
        except Misused as error:
            problems.append(f"{where}: {error}")
            continue
        except (NameError, TypeError) as error:
            problems.append(f"{where}: its injected parameters cannot be read: {error}")
            continue
        for parameter, key, name in plan:
            try:
                views.find(injector, key, name)
            except ServiceNotFoundError as error:
                what = f"parameter {parameter!r}" if parameter else "a dependency"
                problems.append(f"{where}: {what} injects what is not provided: {error}")
    if problems:
        raise GraphError(injector.name, problems)
