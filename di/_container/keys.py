"""How services are keyed, asked for and named in messages.

A key is a type (or another annotation object) or a service name. A parameter asks for
one by its annotation: ``Database`` for the type, ``Annotated[Database, Named("replica")]``
for the service named ``replica`` (checked to be a ``Database``). :func:`parse_named` is
the one reader of that form, for factories and for every integration's ``Inject[...]``.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from types import GenericAlias
from typing import Any

# A key is either a type (or other annotation object) or a service name.
Key = Any


@dataclass(frozen=True, slots=True)
class Named:
    """Marks a parameter as asking for a named service.

    >>> def new_reader(db: Annotated[Database, Named("replica")]) -> Reader: ...
    """

    name: str

    def __post_init__(self) -> None:
        check_name(self.name, "Named()")


def parse_named(hint: Any) -> tuple[Any, str | None, tuple[Any, ...]]:
    """``(type, name, other metadata)`` of an annotation: ``Annotated[T, Named("x")]``
    gives ``(T, "x", ...)``, a plain ``T`` gives ``(T, None, ())``.

    The last ``Named`` wins; the metadata that is not a ``Named`` is returned in order
    (an integration's ``Inject`` marker, a framework's ``Depends``).
    """
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, None, ()
    name: str | None = None
    others: list[Any] = []
    for extra in hint.__metadata__:
        if isinstance(extra, Named):
            name = extra.name
        else:
            others.append(extra)
    return hint.__origin__, name, tuple(others)


def listed(key: Key) -> Any:
    """``list[key]``: the key of the collection of services collected under ``key``."""
    return GenericAlias(list, (key,))


def describe(key: Key) -> str:
    """The text a key is reported by: ``module.QualName`` for a type, else the name."""
    if isinstance(key, str):
        return key
    qualname = getattr(key, "__qualname__", None)
    module = getattr(key, "__module__", None)
    if isinstance(key, type) and qualname and module:
        return qualname if module == "builtins" else f"{module}.{qualname}"
    return repr(key)


def check_name(name: object, where: str) -> str:
    """``name`` if it is a non-empty string; else an error naming ``where``."""
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a non-empty string, got {name!r}")
    if not name:
        raise ValueError(f"{where}: name must be a non-empty string, got ''")
    return name
