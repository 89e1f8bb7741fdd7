"""Reading a factory once: what it provides, what it needs, and how it is called."""

from __future__ import annotations

import collections.abc as abc
import enum
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .keys import Key, describe, parse_named, unalias


class Kind(enum.Enum):
    """How a factory produces its instance."""

    PLAIN = "plain"
    ASYNC = "async"
    GENERATOR = "generator"
    ASYNC_GENERATOR = "async generator"


class ScopeParam:
    """The target of a parameter that receives the invoking scope (not a service)."""


_SYNC_GENERATORS = (abc.Iterator, abc.Generator)
_ASYNC_GENERATORS = (abc.AsyncIterator, abc.AsyncGenerator)


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a factory and the service that fills it."""

    name: str
    target: Key  # the key to invoke, or ScopeParam
    expected: Any  # the type the value must have, when the key is a name
    positional: bool
    default: Any  # inspect.Parameter.empty when there is none


def label(factory: Callable[..., Any]) -> str:
    """A factory's name as messages show it."""
    return getattr(factory, "__qualname__", None) or repr(factory)


def kind_of(factory: Callable[..., Any]) -> Kind:
    """Whether a factory returns, awaits, or yields its instance."""
    if isinstance(factory, type):
        return Kind.PLAIN
    for target in (factory, getattr(factory, "__call__", None)):  # noqa: B004
        if inspect.isasyncgenfunction(target):
            return Kind.ASYNC_GENERATOR
        if inspect.isgeneratorfunction(target):
            return Kind.GENERATOR
        if inspect.iscoroutinefunction(target):
            return Kind.ASYNC
    return Kind.PLAIN


def provided_type(factory: Callable[..., Any], kind: Kind) -> Any:
    """The key a factory provides: the class itself, or its return annotation.

    Generator factories annotated ``Iterator[T]`` (and the like) provide ``T``; a type
    alias provides what it stands for. Returns ``inspect.Parameter.empty`` when there
    is no return annotation.
    """
    if isinstance(factory, type):
        return factory
    returned = inspect.signature(factory).return_annotation
    if isinstance(returned, str):
        # Evaluate the return annotation alone: a parameter annotation naming a local
        # type must not stop the key from being known (the parameter can wait).
        try:
            returned = eval(returned, getattr(factory, "__globals__", {}))
        except Exception as error:
            raise TypeError(
                f"cannot read the return annotation {returned!r} of factory "
                f"{label(factory)}: {error}; make the type importable where the factory "
                "is defined, or pass name="
            ) from None
    returned = _strip_annotated(returned)
    if kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR):
        origins = _SYNC_GENERATORS if kind is Kind.GENERATOR else _ASYNC_GENERATORS
        origin = typing.get_origin(returned)
        if origin not in origins:
            wanted = "Iterator[T]" if kind is Kind.GENERATOR else "AsyncIterator[T]"
            raise TypeError(
                f"generator factory {label(factory)} must be annotated {wanted} "
                f"(the service is T), got "
                + (
                    "no return annotation"
                    if returned is inspect.Parameter.empty
                    else describe(returned)
                )
            )
        returned = unalias(typing.get_args(returned)[0])
    return returned


def read_params(factory: Callable[..., Any], scope_types: tuple[type, ...]) -> list[Param] | None:
    """The parameters a factory needs, or None when its annotations cannot be resolved yet.

    Raises ``TypeError`` for a parameter that can never be filled: no annotation and no
    default value.
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return []  # builtins without a signature take no injected arguments
    try:
        target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
        hints = typing.get_type_hints(target, include_extras=True)
        # An alias is evaluated when read: one naming what is not defined yet waits too.
        hints = {name: unalias(hint) for name, hint in hints.items()}
    except Exception:
        hints = None
    params: list[Param] = []
    positional = True
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        annotation = p.annotation
        if annotation is p.empty:
            if p.default is p.empty:
                raise TypeError(
                    f"factory {label(factory)}: parameter {p.name!r} has no type annotation "
                    "and no default; annotate it with the service it needs"
                )
            positional = False  # later arguments must go by keyword
            continue
        if hints is None:
            return None
        params.append(_param(p, hints.get(p.name, annotation), positional, scope_types))
        positional = positional and p.kind is not p.KEYWORD_ONLY
    return params


def _param(
    p: inspect.Parameter, annotation: Any, positional: bool, scope_types: tuple[type, ...]
) -> Param:
    annotation, named, _ = parse_named(annotation)
    annotation = _strip_optional(annotation)
    if named is None and isinstance(annotation, type) and issubclass(annotation, scope_types):
        target: Key = ScopeParam
    else:
        target = named if named is not None else annotation
    positional = positional and p.kind is not p.KEYWORD_ONLY
    return Param(p.name, target, annotation, positional, p.default)


def _strip_optional(annotation: Any) -> Any:
    """``T | None`` asks for ``T``; its default (usually None) fills it when T is absent."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            return unalias(members[0])
    return annotation


def _strip_annotated(annotation: Any) -> Any:
    annotation = unalias(annotation)
    if typing.get_origin(annotation) is typing.Annotated:
        return unalias(annotation.__origin__)
    return annotation
