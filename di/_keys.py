"""How services are keyed and named in messages."""

from __future__ import annotations

from dataclasses import dataclass
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
        _check_name(self.name, "Named()")


def describe(key: Key) -> str:
    """The text a key is reported by: ``module.QualName`` for a type, else the name."""
    if isinstance(key, str):
        return key
    qualname = getattr(key, "__qualname__", None)
    module = getattr(key, "__module__", None)
    if isinstance(key, type) and qualname and module:
        return qualname if module == "builtins" else f"{module}.{qualname}"
    return repr(key)


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{where}: name must be a non-empty string, got {name!r}")
    if not name:
        raise ValueError(f"{where}: name must be a non-empty string, got ''")
    return name
