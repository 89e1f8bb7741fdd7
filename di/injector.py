"""The root scope, which owns the settings shared by its whole tree."""

from __future__ import annotations

import itertools
import threading

from .scope import Scope

__all__ = ["Injector"]


class Injector(Scope):
    """The root scope of a container.

    >>> injector = Injector()
    >>> injector.provide(Database)
    >>> db = injector.invoke(Database)
    >>> with injector.scope("request") as request:
    ...     request.provide(RequestContext)
    """

    __slots__ = ("_counter", "_mutex")

    def __init__(self, *, name: str = "root") -> None:
        self._root = self
        self._mutex = threading.Lock()
        # One invocation counter per tree: an index orders builds across all scopes.
        self._counter = itertools.count(1)
        Scope.__init__(self, name, self)
        self._parent = None

    def __enter__(self) -> Injector:
        return self

    async def __aenter__(self) -> Injector:
        return self


Scope._scope_types = (Scope,)
