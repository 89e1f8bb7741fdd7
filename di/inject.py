"""``Inject[T]``: the one marker of a parameter the container fills, everywhere.

``def main(db: Inject[Database])`` asks for the service ``Database``;
``Inject[Annotated[Database, Named("replica")]]`` for the service named ``replica``.
For type checkers ``Inject[T]`` is ``T``. At run time it is ``Annotated[T, ...,
INJECT]`` (the marker of :mod:`di._container.injection`), read by
``@injector.inject`` (any function: scripts, jobs, CLI commands) and by every
integration's injection (Flask's and gRPC's ``@inject``, FastAPI's routes). The
integrations export this same object as their ``Inject``.

A framework that reads its own metadata from annotations joins in: when FastAPI is
loaded, ``Inject[T]`` also carries the ``Depends(...)`` that FastAPI solves wherever it
resolves dependencies (sync endpoints, other dependencies, routers of any route
class), from the request's scope. That metadata is made by the integration module
(:func:`di.integrations.fastapi.inject_metadata`), imported for it only once the
framework itself is; the core never imports a framework.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, TypeVar

from ._container.injection import INJECT

__all__ = ["INJECT", "Inject"]

T = TypeVar("T")

# The frameworks Inject[T] joins, and the integration module that makes their metadata.
_JOINED = {"fastapi": "di.integrations.fastapi"}
# Inject[item], by item: the frameworks loaded when it was made, and the annotation.
_made: dict[Any, tuple[tuple[str, ...], Any]] = {}


def _annotation(item: Any) -> Any:
    """``Annotated[item, <frameworks' metadata>, INJECT]``, made once per item and set
    of frameworks loaded."""
    loaded = tuple(name for name in _JOINED if name in sys.modules)
    try:
        made = _made.get(item)
    except TypeError:  # unhashable: made anew
        made = None
    if made is not None and made[0] == loaded:
        annotation = made[1]
    else:
        extras: list[Any] = []
        for name in loaded:
            integration = importlib.import_module(_JOINED[name])
            extras += integration.inject_metadata(item)
        annotation = Annotated[item, *extras, INJECT]
        with contextlib.suppress(TypeError):
            _made[item] = (loaded, annotation)
    return annotation


if TYPE_CHECKING:
    # For type checkers, Inject[T] is T.
    Inject: TypeAlias = Annotated[T, "di.Inject"]
else:

    class Inject:
        """``Inject[T]``: a parameter the container fills with the service ``T``.

        ``Inject[Annotated[T, Named("x")]]`` asks for the service named ``x``. Read by
        :meth:`di.Scope.inject` and by the integrations; see :mod:`di.inject`.
        """

        __slots__ = ()

        def __class_getitem__(cls, item: Any) -> Any:
            return _annotation(item)
