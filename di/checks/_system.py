"""Checks of the machine the process runs on: free disk space, the process's memory.

Both are sync checks (a file system call, a read of ``/proc``): they run in a worker
thread, so a stuck network file system never blocks the event loop. Each has a warning
threshold and a limit: past the warning it raises :class:`~di.Degraded` (the service
still serves), past the limit :class:`CheckFailed`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from typing import Any

from ..health import Degraded
from ._common import Check, CheckFailed

__all__ = ["disk", "memory"]

WARN_FREE_FACTOR = 2.0  # disk(): warn below twice the minimum free space, by default
WARN_RSS_FACTOR = 0.8  # memory(): warn above 80 % of the limit, by default


def disk(
    path: str | os.PathLike[str],
    *,
    min_free_bytes: int | None = None,
    min_free_ratio: float | None = None,
    warn_free_bytes: int | None = None,
    warn_free_ratio: float | None = None,
) -> Check:
    """A check of the free space of the file system holding ``path``.

    It fails below ``min_free_bytes`` or ``min_free_ratio`` (free over total, 0 to 1)
    and is degraded below ``warn_free_bytes`` or ``warn_free_ratio``, which default to
    twice their minimum. Free space is what an unprivileged process can use (the root
    reserve excluded). Details: ``free_bytes``, ``total_bytes``, ``free_ratio``.
    """
    if min_free_bytes is None and min_free_ratio is None:
        raise ValueError("disk(): give min_free_bytes, min_free_ratio, or both")
    for option, value in (("min_free_ratio", min_free_ratio), ("warn_free_ratio", warn_free_ratio)):
        if value is not None and not (_number(value) and 0 <= value <= 1):
            raise ValueError(f"disk(): {option} is a fraction from 0 to 1, got {value!r}")
    for option, value in (("min_free_bytes", min_free_bytes), ("warn_free_bytes", warn_free_bytes)):
        if value is not None and not (_number(value) and 0 <= value < math.inf):
            raise ValueError(f"disk(): {option} is a number of bytes >= 0, got {value!r}")
    for kind, warn, limit in (
        ("bytes", warn_free_bytes, min_free_bytes),
        ("ratio", warn_free_ratio, min_free_ratio),
    ):
        if warn is not None and limit is not None and warn < limit:
            raise ValueError(
                f"disk(): expected warn_free_{kind} >= min_free_{kind}, got {warn!r} and {limit!r}"
            )
    if warn_free_bytes is None and min_free_bytes is not None:
        warn_free_bytes = int(min_free_bytes * WARN_FREE_FACTOR)
    if warn_free_ratio is None and min_free_ratio is not None:
        warn_free_ratio = min(1.0, min_free_ratio * WARN_FREE_FACTOR)
    where = os.fspath(path)
    os.statvfs(where)  # a path that does not exist is an error now, not at every check

    def check(instance: object = None, /) -> dict[str, Any]:
        stats = os.statvfs(where)
        free = stats.f_bavail * stats.f_frsize
        total = stats.f_blocks * stats.f_frsize
        ratio = round(free / total, 4) if total else 0.0
        details = {"free_bytes": free, "total_bytes": total, "free_ratio": ratio}
        shown = f"{_size(free)} free of {_size(total)} ({ratio:.1%}) at {where}"
        if min_free_bytes is not None and free < min_free_bytes:
            raise CheckFailed(
                f"{shown}: below min_free_bytes {_size(min_free_bytes)}", details=details
            )
        if min_free_ratio is not None and ratio < min_free_ratio:
            raise CheckFailed(f"{shown}: below min_free_ratio {min_free_ratio:g}", details=details)
        if warn_free_bytes is not None and free < warn_free_bytes:
            raise Degraded(f"{shown}: below {_size(warn_free_bytes)}", details=details)
        if warn_free_ratio is not None and ratio < warn_free_ratio:
            raise Degraded(f"{shown}: below {warn_free_ratio:.1%}", details=details)
        return details

    return check


def memory(*, max_rss_bytes: int, warn_rss_bytes: int | None = None) -> Check:
    """A check of this process's resident memory (RSS).

    It fails above ``max_rss_bytes`` and is degraded above ``warn_rss_bytes`` (default:
    80 % of the limit): a pod can leave rotation before the kernel's OOM killer ends it.
    On Linux the RSS now is read from ``/proc/self/statm``; elsewhere the peak RSS
    (``getrusage``). Details: ``rss_bytes`` and ``max_rss_bytes``.
    """
    if not _number(max_rss_bytes) or not 0 < max_rss_bytes < math.inf:
        if _number(max_rss_bytes) and max_rss_bytes <= 0:
            raise ValueError(f"memory(): max_rss_bytes must be > 0, got {max_rss_bytes!r}")
        raise ValueError(f"memory(): max_rss_bytes is a number of bytes > 0, got {max_rss_bytes!r}")
    warn = int(max_rss_bytes * WARN_RSS_FACTOR) if warn_rss_bytes is None else warn_rss_bytes
    if not 0 < warn <= max_rss_bytes:
        raise ValueError(
            f"memory(): expected 0 < warn_rss_bytes <= max_rss_bytes, got {warn!r} "
            f"and {max_rss_bytes!r}"
        )
    read = _resident_bytes()

    def check(instance: object = None, /) -> dict[str, Any]:
        rss = read()
        details = {"rss_bytes": rss, "max_rss_bytes": max_rss_bytes}
        if rss > max_rss_bytes:
            raise CheckFailed(
                f"resident memory {_size(rss)} above max_rss_bytes {_size(max_rss_bytes)}",
                details=details,
            )
        if rss > warn:
            raise Degraded(f"resident memory {_size(rss)} above {_size(warn)}", details=details)
        return details

    return check


def _number(value: object) -> bool:
    """Whether ``value`` is a real number (a bool is not: ``True`` is no threshold)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _resident_bytes() -> Callable[[], int]:
    """How this platform reads the process's RSS: a function of no argument."""
    if os.path.exists("/proc/self/statm"):
        page = os.sysconf("SC_PAGE_SIZE")

        def statm() -> int:
            with open("/proc/self/statm", "rb") as file:
                return int(file.read().split()[1]) * page

        return statm
    try:
        import resource
    except ImportError:
        raise NotImplementedError(
            "memory(): this platform has neither /proc nor the resource module"
        ) from None
    unit = 1 if sys.platform == "darwin" else 1024  # macOS counts bytes, others KiB

    def peak() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit

    return peak


def _size(count: float) -> str:
    """A byte count as people read it: 512 B, 1.5 MiB, 12.0 GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
