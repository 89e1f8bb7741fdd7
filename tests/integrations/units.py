"""A unit of work per request or task, counted: what every integration's scope must do.

:func:`unit_of_work` (sync) and :func:`async_unit_of_work` are generator factories of a
scoped :class:`Work`: opened when a request or task first asks for one, committed when
it succeeds, rolled back when an error is thrown in. The :class:`Ledger` (a singleton)
counts each, from any thread: after N units of work, ``opened == committed +
rolled_back`` is what "every scope was closed, each the right way" means.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator


class Ledger:
    """How many units of work were opened, committed and rolled back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened = 0
        self.committed = 0
        self.rolled_back = 0

    def count(self, what: str) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)

    @property
    def closed(self) -> int:
        return self.committed + self.rolled_back

    def __repr__(self) -> str:
        return (
            f"Ledger(opened={self.opened}, committed={self.committed}, "
            f"rolled_back={self.rolled_back})"
        )


class Work:
    """One request's or task's unit of work."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger


def unit_of_work(ledger: Ledger) -> Iterator[Work]:
    ledger.count("opened")
    try:
        yield Work(ledger)
    except BaseException:
        ledger.count("rolled_back")
        raise
    ledger.count("committed")


async def async_unit_of_work(ledger: Ledger) -> AsyncIterator[Work]:
    ledger.count("opened")
    try:
        yield Work(ledger)
    except BaseException:
        ledger.count("rolled_back")
        raise
    ledger.count("committed")
