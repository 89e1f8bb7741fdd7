"""What a check may return or raise that nobody planned for, as hypothesis strategies.

A :class:`Hostile` service's check does what a test tells it (:attr:`Hostile.behaviour`):
return details or raise an error drawn from :func:`behaviours`, sync or async. The
values are the ones that broke reporting once: a ``__str__`` or ``__repr__`` that
raises (anything but Ctrl-C), integers past Python's digit limit, NaN and infinities,
bytes, recursive and deeply nested structures, endless containers, megabytes of text,
control characters and line breaks in error texts and class names, odd ``__notes__``,
and objects whose ``__class__`` raises (a broken proxy: ``isinstance()`` on it raises).

:func:`assert_plain_lines` and :func:`strict_json` are what every output must be.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import itertools
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st

from di import Degraded

# The largest error text and detail text an output carries, with the mark of a cut.
TEXT_BOUND = 1000 + 40


class Failure(BaseException):
    """Not an Exception: what hostile code raises to get past ``except Exception``."""


# What a hostile __str__ raises: anything but KeyboardInterrupt, which must stop a run.
FAILURES = (
    ValueError("no text"),
    RuntimeError("no text"),
    RecursionError(),
    MemoryError(),
    SystemExit(3),
    GeneratorExit(),
    asyncio.CancelledError(),
    Failure(),
)


class Unprintable:
    """A value whose ``__str__`` and ``__repr__`` raise."""

    def __init__(self, failure: BaseException) -> None:
        self.failure = failure

    def __str__(self) -> str:
        raise self.failure

    def __repr__(self) -> str:
        raise self.failure

    def __hash__(self) -> int:
        return 7


class UnprintableStr(str):
    """A str whose ``__str__`` and ``__repr__`` raise."""

    __slots__ = ()

    def __str__(self) -> str:
        raise ValueError("no text")

    def __repr__(self) -> str:
        raise ValueError("no repr")


class UnprintableInt(int):
    def __str__(self) -> str:
        raise ValueError("no text")

    def __repr__(self) -> str:
        raise ValueError("no repr")


class BrokenMapping(Mapping[str, Any]):
    """A mapping whose iteration fails part-way, and whose len() fails."""

    def __getitem__(self, key: str) -> Any:
        return 1

    def __iter__(self) -> Iterator[str]:
        yield "first"
        raise RuntimeError("iteration failed")

    def __len__(self) -> int:
        raise TypeError("no len")


class EndlessMapping(Mapping[str, Any]):
    """A mapping with no end."""

    def __getitem__(self, key: str) -> Any:
        return key

    def __iter__(self) -> Iterator[str]:
        return (str(n) for n in itertools.count())

    def __len__(self) -> int:
        return 10**9


class EndlessList(list[Any]):
    """A list that iterates for ever."""

    def __iter__(self) -> Iterator[Any]:
        return itertools.count()


class Masked:
    """An object whose ``__class__`` raises, as a proxy to nothing does: ``isinstance()``
    on it raises too."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("a proxy to nothing")


class MaskedError(Exception):
    """An exception whose ``__class__`` raises."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        raise RuntimeError("a proxy to nothing")


def recursive_list() -> list[Any]:
    looped: list[Any] = [1]
    looped.append(looped)
    return looped


def recursive_dict() -> dict[str, Any]:
    looped: dict[str, Any] = {}
    looped["self"] = looped
    return looped


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


failures = st.sampled_from(FAILURES)
# Text of every kind, control characters, separators and bidirectional overrides included.
texts = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from("\n\r\t\x1b\x00\x7f\x85\u2028\u2029\u202e\u200b[]+-"),
    ),
    max_size=60,
)
huge_texts = st.sampled_from([100_000, 5_000_000]).map(lambda size: "x" * size)
# Drawn as their sizes: hypothesis shows a strategy's elements, and cannot show these.
huge_ints = st.one_of(
    st.sampled_from([63, 64, 600, 4299, 4300, 5000]).map(lambda power: 2**power),
    st.integers(min_value=4000, max_value=6000).map(lambda digits: -(10**digits)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    huge_texts,
    st.binary(max_size=20),
    st.sampled_from([3_000_000, 2000]).map(lambda size: bytearray(b"\xff" * size)),
    failures.map(Unprintable),
    st.builds(UnprintableStr, st.just("odd")),
    st.builds(UnprintableInt, st.integers()),
    st.sampled_from(["nan", "datetime", "complex", "object", "class", "function"]).map(
        lambda kind: {
            "nan": decimal.Decimal("NaN"),
            "datetime": datetime.datetime(2024, 1, 1),
            "complex": complex(1, 2),
            "object": object(),
            "class": Degraded,
            "function": len,
        }[kind]
    ),
    st.builds(Masked),
)
oddities = st.sampled_from(["recursive list", "recursive dict", "deep", "broken", "endless"]).map(
    lambda kind: {
        "recursive list": recursive_list,
        "recursive dict": recursive_dict,
        "deep": lambda: nested(2_000),
        "broken": BrokenMapping,
        "endless": EndlessMapping,
    }[kind]()
)
keys = st.one_of(
    texts,
    st.integers(),
    st.tuples(st.integers(), texts),
    failures.map(Unprintable),
    st.builds(UnprintableStr, st.just("key")),
    huge_texts,
)
values = st.recursive(
    st.one_of(scalars, oddities, st.builds(EndlessList)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.frozensets(st.integers(), max_size=4),
        st.dictionaries(keys, inner, max_size=4),
    ),
    max_leaves=12,
)
details = st.one_of(
    st.dictionaries(keys, values, max_size=6),
    oddities.filter(lambda value: isinstance(value, Mapping)),
    st.sampled_from(["not a mapping", 42, None]),
    st.builds(Masked),
)


def error_class(name: str, base: type[BaseException]) -> type[BaseException]:
    """An exception class of any name: line breaks and ANSI escapes included."""
    return type(name or "E", (base,), {})


class UnprintableError(Exception):
    def __init__(self, failure: BaseException) -> None:
        super().__init__()
        self.failure = failure

    def __str__(self) -> str:
        raise self.failure

    def __repr__(self) -> str:
        raise self.failure


class BareDegraded(Degraded):
    """A Degraded that never called Degraded.__init__."""

    def __init__(self) -> None:
        pass


class UnreadableDegraded(Degraded):
    """A Degraded whose details cannot be read: the property raises."""

    def __init__(self, failure: BaseException) -> None:
        Exception.__init__(self, "unreadable details")
        self.failure = failure

    @property
    def details(self) -> Any:  # type: ignore[override]
        raise self.failure


def with_notes(error: BaseException, notes: Any) -> BaseException:
    error.__notes__ = notes  # type: ignore[attr-defined]
    return error


errors = st.one_of(
    failures.map(UnprintableError),
    texts.map(lambda text: ConnectionError(text)),
    huge_texts.map(ValueError),
    st.integers(min_value=10_000, max_value=100_000).map(lambda levels: ValueError(nested(levels))),
    huge_ints.map(lambda number: ValueError(number)),
    st.tuples(
        texts.filter(lambda name: "\x00" not in name),
        st.sampled_from([Exception, RuntimeError, OSError]),
    ).map(lambda made: error_class(*made)("fake")),
    st.tuples(texts, st.one_of(texts, st.just(42), failures.map(Unprintable))).map(
        lambda made: with_notes(RuntimeError(made[0]), [made[1]])
    ),
    st.builds(lambda: with_notes(RuntimeError("notes not a list"), 42)),
    st.tuples(texts, details).map(lambda made: Degraded(made[0], details=made[1])),
    st.tuples(failures.map(Unprintable), details).map(
        lambda made: Degraded(made[0], details=made[1])  # type: ignore[arg-type]
    ),
    st.builds(BareDegraded),
    st.tuples(texts, details).map(
        lambda made: ExceptionGroup("group", [Degraded(made[0], details=made[1])])
    ),
    st.builds(lambda: ExceptionGroup("mixed", [Degraded("slow"), UnprintableError(ValueError())])),
    texts.map(SystemExit),
    failures.map(lambda failure: Failure(Unprintable(failure))),
    st.builds(lambda: MaskedError("masked")),
    failures.map(UnreadableDegraded),
    failures.map(lambda failure: ExceptionGroup("group", [UnreadableDegraded(failure)])),
)


class Behaviour:
    """What a hostile check does: return ``returns``, or raise ``raises`` if given."""

    __slots__ = ("raises", "returns")

    def __init__(self, returns: Any = None, raises: BaseException | None = None) -> None:
        self.returns = returns
        self.raises = raises

    def __repr__(self) -> str:  # hypothesis prints it; its parts may not print
        if self.raises is not None:
            return f"Behaviour(raises a {type(self.raises).__name__})"
        return f"Behaviour(returns a {type(self.returns).__name__})"


behaviours = st.builds(Behaviour, returns=details, raises=st.one_of(st.none(), errors))


class Now:
    """What the hostile checks do now: a test sets :attr:`behaviour`."""

    behaviour = Behaviour()


def _act() -> Any:
    behaviour = Now.behaviour
    if behaviour.raises is not None:
        raise behaviour.raises
    return behaviour.returns


class Hostile:
    """A sync check that does what :attr:`Now.behaviour` says."""

    def health_check(self) -> Any:
        return _act()


class AsyncHostile:
    """An async check that does what :attr:`Now.behaviour` says."""

    async def health_check(self) -> Any:
        return _act()


HOSTILE = (f"{__name__}.Hostile", f"{__name__}.AsyncHostile")


def strict_json(text: str | bytes) -> Any:
    """``json.loads`` refusing NaN and infinities, as strict JSON readers do."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def assert_plain_lines(text: str, allowed: str) -> list[str]:
    """Every line of ``text`` is printable and starts as ``allowed`` (a regex) says."""
    import re

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for line in lines:
        assert line.isprintable(), repr(line)
        assert re.match(allowed, line), repr(line)
    return lines


def finite(number: float) -> bool:
    return math.isfinite(number)
