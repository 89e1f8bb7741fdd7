"""What a check's end says: its verdict, its details as JSON can carry them, its error.

A check fails by raising (anything, ``BaseException`` included) or by returning False
(or a coroutine or generator it never ran); a mapping it returns is its details. A
:class:`~di.Degraded` raised, alone or from a task group, makes it degraded. Details
are made JSON-ready once, when the result is recorded (:func:`json_ready`), so that no
answer, log or report built from them can fail: what cannot be rendered becomes a
stand-in within that check's result, and what is too large is cut at the limits below.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as encode_ascii
from typing import Any

from ..errors import HealthCheckError
from ..health import Degraded, cut, error_text, type_name


class _Unrelated:
    """A class nothing a check returns or raises is an instance of: ``isinstance()``
    against it reads the object's ``__class__``, as every other check of its kind does."""


def inspectable(label: str, error: Any, value: Any) -> tuple[Any, Any]:
    """What a check raised and returned, as the engine can look at them: one whose
    ``__class__`` raises (a proxy to nothing), so that ``isinstance()`` on it raises,
    becomes a failure naming it, before anything asks what it is."""
    if error is not None:
        try:
            isinstance(error, _Unrelated)
        except KeyboardInterrupt:
            raise
        except BaseException as failure:
            error = HealthCheckError(label, _uninspectable("raised", error, failure))
    elif value is not None and value is not True and value is not False:
        try:
            isinstance(value, _Unrelated)
        except KeyboardInterrupt:
            raise
        except BaseException as failure:
            return HealthCheckError(label, _uninspectable("returned", value, failure)), None
    return error, value


def _uninspectable(did: str, thing: object, failure: BaseException) -> str:
    return (
        f"it {did} a {type_name(thing)} that cannot be inspected: reading its __class__ "
        f"raised {type_name(failure)}"
    )


def verdict(label: str, value: Any) -> HealthCheckError | None:
    """What a check's return value says: False, a generator never run, or a function
    never called (``health_check=checks.redis`` for ``checks.redis(client)``) is a
    failure."""
    if value is False:
        return HealthCheckError(label, "it returned False")
    if inspect.isroutine(value) or isinstance(value, functools.partial):
        # Functions and methods only: any other callable (a mocked client's answer) is
        # no check left uncalled.
        name = getattr(value, "__qualname__", None) or type(value).__name__
        return HealthCheckError(
            label,
            f"it returned the function {name} without calling it; a check that makes "
            "checks (health_check=checks.redis) must be called to make one "
            "(health_check=checks.redis(client))",
        )
    if inspect.iscoroutine(value) or inspect.isgenerator(value) or inspect.isasyncgen(value):
        close_awaitable(value)
        kind = type(value).__name__
        return HealthCheckError(
            label, f"it returned a {kind} that was never run; a check must raise to fail"
        )
    return None


def degraded(error: Exception) -> Degraded | None:
    """The Degraded a check raised, also from a task group where only Degraded was raised."""
    if isinstance(error, Degraded):
        return error
    if isinstance(error, BaseExceptionGroup):
        try:
            matched, rest = error.split(Degraded)
        except Exception:  # a group subclass whose derive() fails: not degraded
            return None
        if matched is not None and rest is None:
            leaves: list[BaseException] = list(matched.exceptions)
            while leaves and isinstance(leaves[0], BaseExceptionGroup):
                leaves = list(leaves[0].exceptions)
            first = leaves[0] if leaves else None
            return first if isinstance(first, Degraded) else Degraded(error_text(error))
    return None


def degraded_details(degraded: Degraded) -> Any:
    """The details a :class:`~di.Degraded` carries, or a stand-in when reading them
    raises (a subclass's property)."""
    try:
        return degraded.details
    except KeyboardInterrupt:
        raise
    except BaseException as failure:
        return {"details": stand_in(degraded, "reading its details", failure)}


# What a check's details may hold, at most: beyond these they are cut, with a mark.
DETAILS_LIMIT = 16 * 1024
"""Characters of JSON (ASCII, as ``json.dumps`` writes it) of one check's details."""
DETAIL_TEXT_LIMIT = 1000
"""Characters of one detail's text: a string, or what ``str()`` made of a value."""
DETAIL_KEY_LIMIT = 200
"""Characters of one key."""
DETAIL_ENTRIES = 100
"""Entries of one mapping, items of one list (or tuple, or set)."""
DETAIL_DEPTH = 4
"""Mappings and lists nested within the details; deeper ones are named, not shown."""
INT_LIMIT = 2**63
"""Integers as large (beyond 64 bits, as JSON readers, Prometheus and OpenTelemetry
take them) are shown as their decimal text, or named when that is too long."""

_LEFT_OUT = "(left out)"  # the key of a mapping's mark for entries left out
# Characters kept for the marks of the levels cut short (each at most 150), and their
# brackets: one per level, DETAIL_DEPTH + 1 levels at most.
_MARKS = (DETAIL_DEPTH + 1) * 160


def json_ready(details: Any) -> dict[str, Any] | None:
    """A check's details as JSON can carry them: string keys, plain values, finite numbers.

    Anything else is shown by its text; what cannot be rendered (``str()`` raises, an
    integer past Python's digit limit, a mapping whose ``items()`` fails) becomes a
    stand-in naming its type and what failed; what is too large is cut (see the limits
    above). Never raises: no answer, log or report built from them can fail.
    """
    try:
        if not isinstance(details, Mapping):  # inside: a __class__ that raises
            return None
        return _Plain().mapping(details, 0)
    except KeyboardInterrupt:
        raise
    except BaseException as failure:  # whatever the details' own code raised
        return {"details": stand_in(details, "reading them", failure)}


def stand_in(value: object, doing: str, failure: BaseException) -> str:
    """What shows in place of a value that could not be rendered."""
    return f"<{type_name(value)}: {doing} raised {type_name(failure)}>"


class _Plain:
    """One check's details made plain, within :data:`DETAILS_LIMIT` characters in all."""

    __slots__ = ("budget",)

    def __init__(self) -> None:
        self.budget = DETAILS_LIMIT - _MARKS

    def value(self, value: Any, depth: int) -> Any:
        """``value`` as JSON carries it, or a stand-in; never raises (but Ctrl-C)."""
        try:
            return self._value(value, depth)
        except KeyboardInterrupt:
            raise
        except BaseException as failure:
            return self.text(stand_in(value, "rendering it", failure), DETAIL_TEXT_LIMIT)

    def _value(self, value: Any, depth: int) -> Any:
        if value is None or value is True or value is False:
            self.budget -= 5
            return value
        if isinstance(value, str):
            return self.text(str.__str__(value), DETAIL_TEXT_LIMIT)
        if isinstance(value, int):
            return self.integer(int.__int__(value))
        if isinstance(value, float):
            number = float.__float__(value)
            if not math.isfinite(number):
                return self.text(repr(number), DETAIL_TEXT_LIMIT)  # nan, inf, -inf
            self.budget -= 24
            return number
        if isinstance(value, bytes | bytearray | memoryview):
            return self.text(_bytes_text(value), DETAIL_TEXT_LIMIT)
        if isinstance(value, Mapping):
            if depth >= DETAIL_DEPTH:
                return self.text(_container_text(value, "entries"), DETAIL_TEXT_LIMIT)
            return self.mapping(value, depth + 1)
        if isinstance(value, list | tuple | set | frozenset):
            if depth >= DETAIL_DEPTH:
                return self.text(_container_text(value, "items"), DETAIL_TEXT_LIMIT)
            return self.sequence(value, depth + 1)
        text = str(value)
        return self.text(text if type(text) is str else str.__str__(text), DETAIL_TEXT_LIMIT)

    def integer(self, number: int) -> int | str:
        if -INT_LIMIT < number < INT_LIMIT:
            self.budget -= 20
            return number
        digits = int(number.bit_length() * 0.30103) + 1  # log10(2), rounded up
        if digits > DETAIL_TEXT_LIMIT:
            return self.text(f"<int of about {digits} digits>", DETAIL_TEXT_LIMIT)
        try:
            return self.text(str(number), DETAIL_TEXT_LIMIT)
        except ValueError:  # past sys.get_int_max_str_digits()
            return self.text(f"<int of about {digits} digits>", DETAIL_TEXT_LIMIT)

    def text(self, text: str, limit: int) -> str:
        text = cut(text, limit)
        self.budget -= len(encode_ascii(text))
        return text

    def key(self, key: Any) -> str:
        try:
            if isinstance(key, str):
                text = str.__str__(key)
            else:
                text = str(key)
                text = text if type(text) is str else str.__str__(text)
        except KeyboardInterrupt:
            raise
        except BaseException as failure:
            text = stand_in(key, "str() of a key", failure)
        return self.text(text, DETAIL_KEY_LIMIT)

    def mapping(self, mapping: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        self.budget -= 2  # {}
        for taken, (key, value) in enumerate(mapping.items()):
            if taken >= DETAIL_ENTRIES or self.budget <= 0:
                plain.setdefault(_LEFT_OUT, self.mark(mapping, taken, "entries", self.budget <= 0))
                break
            spent = self.budget
            name = self.key(key)
            item = self.value(value, depth)
            self.budget -= 4  # ": " and ", "
            if self.budget < 0 and not isinstance(item, dict | list):
                self.budget = spent  # the entry would pass the limit: left out
                plain.setdefault(_LEFT_OUT, self.mark(mapping, taken, "entries", True))
                break
            plain[name] = item
        return plain

    def sequence(self, sequence: Any, depth: int) -> list[Any]:
        plain: list[Any] = []
        self.budget -= 2  # []
        for taken, value in enumerate(sequence):
            if taken >= DETAIL_ENTRIES or self.budget <= 0:
                plain.append(self.mark(sequence, taken, "items", self.budget <= 0))
                break
            spent = self.budget
            item = self.value(value, depth)
            self.budget -= 2  # ", "
            if self.budget < 0 and not isinstance(item, dict | list):
                self.budget = spent
                plain.append(self.mark(sequence, taken, "items", True))
                break
            plain.append(item)
        return plain

    def mark(self, container: Any, taken: int, noun: str, full: bool) -> str:
        """The mark of a container cut short after ``taken`` of its entries (``full``:
        for want of characters); it is paid from the characters kept for marks."""
        text = _left_out(container, taken, noun, "characters" if full else "entries")
        self.budget -= len(text) + len(_LEFT_OUT) + 8
        return text


def _left_out(container: Any, taken: int, noun: str, why: str) -> str:
    """The mark of a container cut short after ``taken`` of its entries."""
    try:
        more = f"{len(container) - taken} more {noun}"
    except Exception:  # no len(), or a failing one
        more = f"more {noun}"
    if why == "entries":
        return f"{more} left out: at most {DETAIL_ENTRIES} are shown"
    return f"{more} left out: details are cut at {DETAILS_LIMIT} characters"


def _container_text(container: Any, noun: str) -> str:
    """How a container nested too deep is named: ``<dict of 3 entries>``."""
    try:
        size = len(container)
        sized = f" of {size} {noun if size != 1 else _ONE[noun]}"
    except Exception:
        sized = ""
    return f"<{type_name(container)}{sized}, nested too deep>"


_ONE = {"entries": "entry", "items": "item"}


def _bytes_text(value: bytes | bytearray | memoryview) -> str:
    """Bytes as Python writes them (``b'...'``), the first :data:`DETAIL_TEXT_LIMIT` only."""
    data = bytes(value[:DETAIL_TEXT_LIMIT])
    extra = len(value) - len(data)
    return repr(data) + (f"... ({extra} more bytes)" if extra > 0 else "")


def as_exception(label: str, error: BaseException) -> Exception:
    """What a check raised, as the Exception a report holds."""
    if isinstance(error, Exception):
        return error
    wrapped = HealthCheckError(label, f"it raised {type(error).__name__}")
    wrapped.__cause__ = error
    return wrapped


def close_awaitable(awaitable: object) -> None:
    """Close a coroutine (or generator) that will never be run, so Python does not warn."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()
