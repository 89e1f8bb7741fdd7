"""How services are keyed, asked for and named in messages.

A key is a type (or another annotation object) or a service name. A parameter asks for
one by its annotation: ``Database`` for the type, ``Annotated[Database, Named("replica")]``
for the service named ``replica`` (checked to be a ``Database``). :func:`parse_named` is
the one reader of that form, for factories and for every integration's ``Inject[...]``.
A type alias (``type Primary = Database``) stands for what it names: :func:`unalias`.
"""

from __future__ import annotations

import sys
import typing
from dataclasses import dataclass
from types import GenericAlias
from typing import Any

import typing_extensions

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


# Python 3.12's ``type Alias = T`` makes an alias object where ``Alias: TypeAlias = T``
# is ``T`` itself; typing_extensions' ``TypeAliasType`` makes one on every version.
_ALIASES: tuple[type, ...] = (typing_extensions.TypeAliasType,)
if sys.version_info >= (3, 12):
    _ALIASES += (typing.TypeAliasType,)


def unalias(hint: Any) -> Any:
    """What a type alias stands for, as type checkers read it; any other hint as it is.

    ``type Primary = Annotated[Database, Named("primary")]`` gives the ``Annotated``
    form; a quoted value is a forward reference, read in the alias's module. A generic
    alias (``type Pool[T] = ...``) is a key of its own.
    """
    while isinstance(hint, _ALIASES):
        alias: Any = hint
        if alias.__type_params__:
            break
        try:
            hint = alias.__value__  # evaluated on first read
            if isinstance(hint, str):
                module = sys.modules.get(alias.__module__)
                hint = eval(hint, vars(module) if module is not None else {})
        except NameError as error:
            raise NameError(
                f"type alias {alias.__name__}: {error}; define what it names before a "
                "service that uses it is provided or invoked"
            ) from None
    return hint


def parse_named(hint: Any) -> tuple[Any, str | None, tuple[Any, ...]]:
    """``(type, name, other metadata)`` of an annotation: ``Annotated[T, Named("x")]``
    gives ``(T, "x", ...)``, a plain ``T`` gives ``(T, None, ())``.

    The last ``Named`` wins; the metadata that is not a ``Named`` is returned in order
    (an integration's ``Inject`` marker, a framework's ``Depends``). Type aliases are
    read through, outside and inside the ``Annotated``.
    """
    hint = unalias(hint)
    if typing.get_origin(hint) is not typing.Annotated:
        return hint, None, ()
    # An alias inside may name an Annotated form too: its metadata comes first, as
    # Python flattens nested Annotated forms.
    key, name, inner = parse_named(hint.__origin__)
    others = list(inner)
    for extra in hint.__metadata__:
        if isinstance(extra, Named):
            name = extra.name
        else:
            others.append(extra)
    return key, name, tuple(others)


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
