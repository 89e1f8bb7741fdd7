"""What the WSGI integrations share (Flask, and Django under WSGI): a streamed body that
ends its request's scope.

A streamed response's scope outlives the view: :class:`Streamed` wraps the body the
server iterates, and calls ``end`` once, when the body has ended: with ``None`` after
its last chunk (or when the server closes a body it never read, a HEAD request), with
the body's exception if it fails part-way, and with
:class:`~di.integrations._asgi.StreamAbortedError` if the server closes it part-way
(the client went away), so that generator factories roll back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ._asgi import CUT_SHORT, StreamAbortedError

__all__ = ["Streamed"]


class Streamed:
    """A streamed body that calls ``end`` once it has ended: see the module."""

    __slots__ = ("body", "end", "iterator", "open")

    def __init__(self, body: Any, end: Callable[[BaseException | None], object]) -> None:
        self.body = body
        self.end = end
        self.iterator: Iterator[Any] | None = None
        self.open = True

    def __iter__(self) -> Streamed:
        return self

    def __next__(self) -> Any:
        try:
            if self.iterator is None:
                self.iterator = iter(self.body)
            return next(self.iterator)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as error:
            self._end(error)
            raise

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            cut = self.iterator is not None
            self._end(StreamAbortedError(CUT_SHORT) if cut else None)

    def _end(self, error: BaseException | None) -> None:
        if self.open:
            self.open = False
            self.end(error)
