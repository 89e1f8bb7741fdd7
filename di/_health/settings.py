"""What every health-check call on one injector's tree shares: settings and live state.

An :class:`~di.Injector` makes one :class:`HealthSettings` and keeps it for the engine.
Besides the settings it holds what overlapping calls must agree on: the pool of check
slots (:class:`Slots`), the identical calls in flight (``calls``), the sync checks
running now in worker threads (:class:`Attempts`: a check still running from an earlier
call is shared, never started twice) and the loop time spent inside checks' code per
event-loop thread (:class:`LoopTime`). Nothing here is process-wide: two injectors
never see each other's state. After ``fork()`` the child starts that state afresh
(:meth:`HealthSettings._after_fork`): the parent's threads, and their runs, are not there.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio

from .._container.runner import Threads, after_fork_in_child, loop_notifier
from ..errors import HealthCheckError

if TYPE_CHECKING:
    from .._container.service import Service
    from ..health import HealthCheckResult, HealthReport

logger = logging.getLogger("di.health")

# Which limit a timeout hit: the check's own, the injector's global one, a monitor round's.
PER_CHECK: Final = "per-check"
GLOBAL: Final = "global"
ROUND: Final = "round"
# One line per service per interval about its abandoned threads.
ABANDON_LOG_INTERVAL = 60.0


class HealthSettings:
    """An injector's health-check settings, and the state every call on its tree shares."""

    __slots__ = (
        "__weakref__",
        "attempts",
        "calls",
        "global_timeout",
        "lock",
        "loop_time",
        "on_check",
        "parallelism",
        "slots",
        "threads",
        "timeout",
    )

    def __init__(
        self,
        *,
        parallelism: int,
        timeout: float | None,
        global_timeout: float | None,
        on_check: Callable[[str, HealthCheckResult], object] | None,
        threads: Threads,
    ) -> None:
        self.parallelism = parallelism
        self.timeout = timeout
        self.global_timeout = global_timeout
        self.on_check = on_check
        self.threads = threads  # worker threads for sync checks (and shutdown hooks)
        self.slots = Slots(parallelism)  # the pool of checks running at once
        self.lock = threading.Lock()  # guards `calls`
        self.calls: dict[Any, SharedCall] = {}  # identical calls in flight
        self.attempts = Attempts()
        self.loop_time = LoopTime()
        after_fork_in_child(self._after_fork)

    def _after_fork(self) -> None:
        """In a forked child: forget the calls and check runs of the parent's threads.

        Those threads do not exist here: a call in flight would never end for the calls
        joining it, a sync check running at the fork would read as still running (and
        then TIMEOUT, for good), a slot held by one would never be freed, and a lock
        held by one would never be released.
        """
        self.slots = Slots(self.parallelism)
        self.lock = threading.Lock()
        self.calls = {}
        self.attempts = Attempts()
        self.loop_time = LoopTime()


class SharedCall:
    """A call in progress that identical calls join instead of starting their own."""

    __slots__ = ("outcome", "waiters")

    def __init__(self) -> None:
        self.outcome: HealthReport | BaseException | None = None
        self.waiters: list[Callable[[], None]] = []


# -- loop time ------------------------------------------------------------------------------


class Stall:
    """Seconds one event loop's thread spent running checks' code."""

    __slots__ = ("total",)

    def __init__(self) -> None:
        self.total = 0.0


class LoopTime:
    """A :class:`Stall` per event-loop thread, so that an async check is not charged for
    the loop time its neighbours took (see :mod:`di._health.stepping`)."""

    __slots__ = ("_local",)

    def __init__(self) -> None:
        self._local = threading.local()

    def here(self) -> Stall:
        """This thread's stall."""
        stall: Stall | None = getattr(self._local, "stall", None)
        if stall is None:
            stall = self._local.stall = Stall()
        return stall


# -- sync checks running in threads ------------------------------------------------------------


class Unfinished(HealthCheckError):
    """A shared run whose call ended before it did: there is no outcome to share."""


class Attempt:
    """One run of a sync check in a thread, whose outcome overlapping calls share."""

    __slots__ = (
        "abandoned",
        "deadline",
        "ended",
        "error",
        "started",
        "started_at",
        "value",
        "waiters",
    )

    def __init__(self, started: float, started_at: float, deadline: float) -> None:
        self.started = started
        self.started_at = started_at
        self.deadline = deadline  # time.monotonic() after which it is stuck
        self.ended = 0.0  # time.monotonic() when the check returned; 0 while running
        self.error: Exception | None = None
        self.value: Any = None  # what the check returned (its details, if a mapping)
        self.waiters: list[Callable[[], None]] = []
        self.abandoned = False


class Attempts:
    """The sync checks running now, by service, and the threads left behind in them."""

    __slots__ = ("_log", "lock", "running", "stuck")

    def __init__(self) -> None:
        self.running: dict[Service, Attempt] = {}
        self.lock = threading.Lock()  # for waiting on one of them
        self.stuck = 0  # abandoned check threads that have not returned yet
        # Per service: (when its last line was logged, lines held back since).
        self._log: dict[Service, tuple[float, int]] = {}

    def end(
        self, service: Service, attempt: Attempt, error: Exception | None, value: Any = None
    ) -> None:
        """Record how a run ended, free the service, wake the calls sharing it."""
        with self.lock:
            attempt.error = error
            attempt.value = value
            attempt.ended = time.monotonic()
            if self.running.get(service) is attempt:
                del self.running[service]
            waiters, attempt.waiters = attempt.waiters, []
            if attempt.abandoned:
                self.stuck -= 1
        for wake in waiters:
            wake()

    def abandon(self, service: Service, attempt: Attempt | None, limit: str) -> None:
        """Log, once per run and at most once a minute per service, that a sync check's
        thread is left behind."""
        with self.lock:
            if attempt is None or attempt.abandoned or attempt.ended:
                return
            attempt.abandoned = True
            self.stuck += 1
            stuck = self.stuck
            now = time.monotonic()
            last, held = self._log.get(service, (-math.inf, 0))
            if now - last < ABANDON_LOG_INTERVAL:  # a check that overruns every round
                self._log[service] = (last, held + 1)
                return
            if len(self._log) > 1024:
                self._log.clear()  # services come and go: a bounded memory of them
            self._log[service] = (now, 0)
        logger.warning(
            "health check of %r overran %s; its thread is abandoned and the check is not "
            "started again until it returns (%d %s stuck in health checks)%s",
            service.label,
            limit,
            stuck,
            "thread" if stuck == 1 else "threads",
            f"; {held} more abandoned since the last such line" if held else "",
        )


# -- slots ----------------------------------------------------------------------------------------


class Slots:
    """The injector's pool of check slots, shared by every call on its tree.

    Thread-safe (sync callers each run their own event loop) and fair: a freed slot goes
    to the longest waiter. Size 0 means unlimited.
    """

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._unlimited = size == 0
        self._free = size
        self._waiters: deque[tuple[Callable[[], None], anyio.Event]] = deque()

    async def acquire(self) -> None:
        if self._unlimited:
            return
        with self._lock:
            if self._free > 0:
                self._free -= 1
                return
            granted = anyio.Event()
            notify = loop_notifier()
            waiter = (lambda: notify(granted.set), granted)
            self._waiters.append(waiter)
        try:
            await granted.wait()
        except BaseException:
            with self._lock:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            self.release()  # granted while being cancelled: pass it on
            raise

    def release(self) -> None:
        if self._unlimited:
            return
        with self._lock:
            if self._waiters:
                wake, _ = self._waiters.popleft()
            else:
                self._free += 1
                return
        wake()


def check_seconds(
    argument: str, value: object, alternative: str = "or None", *, zero: bool = False
) -> None:
    """Refuse a duration that is not a finite number of seconds > 0 (>= 0 with
    ``zero``); None passes."""
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not (value >= 0 if zero else value > 0)
    ):
        raise ValueError(
            f"{argument} must be a finite number of seconds {'>=' if zero else '>'} 0 "
            f"{alternative}, got {value!r}"
        )
