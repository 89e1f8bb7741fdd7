"""The last rounds of every name a monitor answers for, newest last.

The path of one entry: :meth:`di.HealthMonitor.check` publishes a round's snapshot,
then hands it to :meth:`History.record`, which appends one :class:`HistoryEntry` per
name (``""``, the groups, each checked service; not ``"startup"``) to that name's
bounded deque, dropping the oldest past ``size``. Reads (``monitor.history(name)``,
``/health/history``, the status page's strips) copy a deque under the same lock, so a
round recorded in another thread never tears a read.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..health import Status, error_text
from .snapshot import STARTUP

if TYPE_CHECKING:
    from .snapshot import HealthSnapshot


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One round of one name, as the monitor published it."""

    outcome: Status
    """``"pass"``, ``"warn"`` or ``"fail"``: what ``/health`` read for the name then."""
    duration: float
    """Seconds the name's slowest check took (0.0 for a name that checks nothing)."""
    time: float
    """When the round was published (``time.time()``)."""
    reason: str | None
    """Why it did not pass (the first failing check's error, why the monitor held it
    NOT_SERVING, or ``"set by hand"``); None when it passed. It may carry secrets:
    answers show it only with ``show_details``."""


def history_size(size: object) -> int:
    """``HealthMonitor(history=...)`` checked: rounds kept per name, 0 for none."""
    if size is None:
        return 0
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(
            "HealthMonitor(history=...) takes the number of rounds kept per name, such as "
            f"history=100, or 0 (or None) to keep none; got {size!r}"
        )
    return size


class History:
    """A bounded deque of :class:`HistoryEntry` per name."""

    __slots__ = ("_entries", "_lock", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[str, deque[HistoryEntry]] = {}
        self._lock = threading.Lock()

    def record(self, snapshot: HealthSnapshot) -> None:
        """Append one entry per name of ``snapshot`` (a round's)."""
        if not self.size:
            return
        now = time.time()
        held = "; ".join(why for _, why in snapshot.reasons) or None
        entries: list[tuple[str, HistoryEntry]] = []
        for name, outcome in snapshot.health.items():
            if name == STARTUP:
                continue
            results = snapshot.results.get(name, ())
            duration = max((result.duration for result in results), default=0.0)
            reason = None
            if outcome != "pass":
                failing = next((result for result in results if not result.healthy), None)
                if failing is not None:
                    error = failing.error
                    reason = (
                        f"{failing.key}: {type(error).__name__}: {error_text(error)}"
                        if error is not None
                        else f"{failing.key}: {failing.outcome.value}"
                    )
                elif held is not None:
                    reason = held
                else:
                    reason = "set by hand" if snapshot.manual else "no check passed"
            entries.append((name, HistoryEntry(outcome, duration, now, reason)))
        with self._lock:
            for name, entry in entries:
                found = self._entries.get(name)
                if found is None:
                    found = self._entries[name] = deque(maxlen=self.size)
                found.append(entry)

    def of(self, name: str) -> list[HistoryEntry]:
        """The entries of ``name``, oldest first (empty for an unknown name)."""
        with self._lock:
            return list(self._entries.get(name, ()))

    def every(self) -> dict[str, list[HistoryEntry]]:
        """Every name's entries, oldest first."""
        with self._lock:
            return {name: list(entries) for name, entries in self._entries.items()}

    def after_fork(self) -> None:
        """In a forked child: a thread of the parent may have held the lock."""
        self._lock = threading.Lock()
