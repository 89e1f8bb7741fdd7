"""Injection into any function: the one marker, its parser, and ``@scope.inject``.

- :data:`INJECT` is the marker ``di.Inject[T]`` puts in a parameter's annotation
  (``Annotated[T, ..., INJECT]``); every integration reads that same marker.
- :func:`injected_params` reads a function's annotations: ``{parameter: (key, name)}``
  for each marked parameter, the ``Named`` read by :func:`~.keys.parse_named`.
- :func:`decorate` is ``@scope.inject``: the function, wrapped so that each call runs
  in a child scope of its own (``with scope.scope() as call``), its ``Inject``
  parameters invoked from that scope (``ainvoke`` for coroutines and async
  generators), then the function called. The scope closes when the call returns or
  raises, and a failure reaches generator factories, as any ``with`` block's does.
  Parameters passed explicitly win; the others pass through.
- Each decorated function is noted on the scope (:class:`Injected`, held weakly), so
  that ``validate()`` and ``start()`` check its keys (:func:`problems`).

An annotation naming a class defined after the function is read at its first call
(and by ``validate()``) instead of when it is decorated.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import typing
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any, Final

from . import registry
from .keys import Key, describe, parse_named
from .service import Lifetime
from .signature import label

if TYPE_CHECKING:
    from ..scope import Scope


class _Marker:
    """What ``Inject[T]`` puts in a parameter's annotation."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Inject"

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        """Asked by pydantic, which only meets ``Inject[T]`` as a field to validate when
        FastAPI reads one made before FastAPI was imported (without its dependency, see
        :mod:`di.inject`): the error that says so, instead of one about a field."""
        raise TypeError(
            f"Inject[{describe(source)}] was evaluated before fastapi was imported, so it "
            "carries no FastAPI dependency and FastAPI reads it as a field to validate: "
            "import fastapi before the module that evaluates it, or write Inject[...] in "
            "the annotations of a module that starts with "
            "`from __future__ import annotations`, which FastAPI evaluates itself"
        )


INJECT: Final = _Marker()
"""The marker ``Inject[T]`` puts in a parameter's ``Annotated`` metadata."""

# The keyword kinds: an injected parameter is passed by keyword.
_BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

# One injected parameter: its name, the key to invoke, the service name (or None).
Slot = tuple[str, Key, str | None]
Kwargs = dict[str, Any]


def injected_params(func: Callable[..., Any]) -> dict[str, tuple[Key, str | None]]:
    """``{parameter: (key, name)}`` for each ``Inject[...]`` parameter of ``func``.

    Raises ``NameError`` when an annotation names what is not defined yet, and
    ``TypeError`` when an injected parameter cannot be passed by keyword.
    """
    hints = typing.get_type_hints(func, include_extras=True)
    found: dict[str, tuple[Key, str | None]] = {}
    for parameter in inspect.signature(func).parameters.values():
        hint = hints.get(parameter.name)
        if hint is None:
            continue
        key, name, metadata = parse_named(hint)
        if any(_is_inject_class(extra) for extra in metadata):
            raise TypeError(
                f"{func.__qualname__}: parameter {parameter.name!r} is annotated "
                f"Annotated[{describe(key)}, Inject], which marks nothing: write "
                f"{parameter.name}: Inject[{describe(key)}]"
            )
        if not any(extra is INJECT for extra in metadata):
            continue
        if parameter.kind not in _BY_KEYWORD:
            raise TypeError(
                f"{func.__qualname__}: parameter {parameter.name!r} is injected, so it is "
                "passed by keyword; it cannot be positional-only or variadic"
            )
        found[parameter.name] = (key, name)
    return found


def _is_inject_class(extra: Any) -> bool:
    """Whether ``extra`` is ``di.Inject`` itself, written where ``Inject[T]`` was meant
    (that class lives above this layer, so it is known by name)."""
    return isinstance(extra, type) and (extra.__module__, extra.__name__) == (
        "di.inject",
        "Inject",
    )


class Injected:
    """A function decorated with ``@scope.inject``: what ``validate()`` checks."""

    __slots__ = ("function", "label", "slots")

    def __init__(self, func: Callable[..., Any]) -> None:
        self.label = label(func)
        self.function: Callable[[], Callable[..., Any] | None]
        try:
            self.function = (
                weakref.WeakMethod(func) if inspect.ismethod(func) else weakref.ref(func)
            )
        except TypeError:  # no weak references to it: kept alive
            self.function = lambda: func
        self.slots: tuple[Slot, ...] | None = None  # read once its annotations resolve

    def read(self) -> tuple[Slot, ...] | None:
        """Its injected parameters, reading its annotations if not done yet; None once
        the function is gone."""
        func = self.function()
        if func is None:
            return None
        if self.slots is None:
            found = injected_params(func)
            self.slots = tuple((name, key, named) for name, (key, named) in found.items())
        return self.slots


def decorate(scope: Scope, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func``, its ``Inject`` parameters filled at each call from a child scope of
    ``scope`` of its own (see the module's docstring)."""
    if not callable(func):
        raise TypeError(f"@inject: {func!r} is not a function")
    noted = Injected(func)
    with contextlib.suppress(NameError):  # an annotation defined later: read on first call
        noted.read()
    signature = inspect.signature(func)
    parameters = list(signature.parameters.values())
    with scope._root._mutex:
        if getattr(scope, "_injected", None) is None:
            scope._injected = []
        scope._injected = [*(i for i in scope._injected if i.function() is not None), noted]

    def slots() -> tuple[Slot, ...]:
        if noted.slots is not None:
            return noted.slots
        found = noted.read()
        assert found is not None  # the function is alive: it is being called
        return found

    def split(
        args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The call's arguments, those past the first injected parameter by keyword, so
        that a positional argument never lands on an injected parameter."""
        if not args:
            return args, kwargs
        injected = {name for name, _, _ in slots()}
        positional = [p for p in parameters if p.kind in _POSITIONAL]
        first = next((i for i, p in enumerate(positional) if p.name in injected), len(positional))
        if len(args) <= first or first == len(positional):
            return args, kwargs  # no injected parameter in their way: *args gets the rest
        rest = [p for p in positional[first:] if p.name not in injected]
        if len(args) - first > len(rest):
            hint = (
                "; declare the injected parameters after *args to pass it more"
                if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
                else ""
            )
            raise TypeError(
                f"{noted.label}() takes {first + len(rest)} positional arguments besides "
                f"the injected ones, but {len(args)} were given{hint}"
            )
        for parameter, value in zip(rest, args[first:], strict=False):
            if parameter.name in kwargs:
                raise TypeError(f"{noted.label}() got multiple values for {parameter.name!r}")
            kwargs[parameter.name] = value
        return args[:first], kwargs

    def fill_sync(call: Scope, kwargs: dict[str, Any]) -> None:
        for name, key, named in slots():
            if name not in kwargs:
                kwargs[name] = call if _is_scope(call, key, named) else call.invoke(key, named)

    async def fill_async(call: Scope, kwargs: dict[str, Any]) -> None:
        for name, key, named in slots():
            if name not in kwargs:
                if _is_scope(call, key, named):
                    kwargs[name] = call
                else:
                    kwargs[name] = await call.ainvoke(key, named)

    wrapper: Any
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            args, kwargs = split(args, kwargs)
            async with scope.scope() as call:
                await fill_async(call, kwargs)
                async with contextlib.aclosing(func(*args, **kwargs)) as items:
                    async for item in items:
                        yield item

        wrapper = stream
    elif inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def call_async(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = split(args, kwargs)
            async with scope.scope() as call:
                await fill_async(call, kwargs)
                return await func(*args, **kwargs)

        wrapper = call_async
    elif inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def sync_stream(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            args, kwargs = split(args, kwargs)
            with scope.scope() as call:
                fill_sync(call, kwargs)
                return (yield from func(*args, **kwargs))

        wrapper = sync_stream
    else:

        @functools.wraps(func)
        def call_sync(*args: Any, **kwargs: Any) -> Any:
            args, kwargs = split(args, kwargs)
            with scope.scope() as call:
                fill_sync(call, kwargs)
                return func(*args, **kwargs)

        wrapper = call_sync
    # What callers pass, for introspection: the function's parameters but the injected.
    if noted.slots is not None:
        injected = {name for name, _, _ in noted.slots}
        wrapper.__signature__ = signature.replace(
            parameters=[p for p in parameters if p.name not in injected]
        )
    return typing.cast("Callable[..., Any]", wrapper)


def _is_scope(call: Scope, key: Key, named: str | None) -> bool:
    """Whether the parameter asks for the call's scope (``Inject[Scope]``), as a
    factory's ``Scope`` parameter gets the invoking scope."""
    return named is None and isinstance(key, type) and issubclass(key, call._scope_types)


def problems(scope: Scope) -> list[str]:
    """What would fail in the functions decorated with ``@scope.inject``, each a line."""
    found: list[str] = []
    for noted in list(getattr(scope, "_injected", None) or ()):
        try:
            slots = noted.read()
        except (NameError, TypeError) as error:
            found.append(f"function {noted.label} (@inject): cannot read its parameters: {error}")
            continue
        for name, key, named in slots or ():
            if _is_scope(scope, key, named):
                continue
            target = key if named is None else named
            service = registry.lookup(scope, target)
            where = (
                f"function {noted.label} (@inject) needs {describe(target)} (parameter {name!r})"
            )
            if service is None:
                found.append(f"{where}, which no scope in reach of {scope.name!r} provides")
            elif service.lifetime is Lifetime.CONTEXT and not registry.context_scope(scope, target):
                found.append(
                    f"{where}, a context key no scope in reach of {scope.name!r} received; "
                    "@inject opens each call's scope without context"
                )
    return found


def needing(scope: Scope, key: Key) -> list[str]:
    """The functions decorated with ``@scope.inject`` that ask for ``key``."""
    found: list[str] = []
    for noted in list(getattr(scope, "_injected", None) or ()):
        try:
            slots = noted.read()
        except (NameError, TypeError):
            continue
        if any((k if n is None else n) == key for _, k, n in slots or ()):
            found.append(f"function {noted.label} (@inject)")
    return found
