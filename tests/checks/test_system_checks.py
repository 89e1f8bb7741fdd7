"""disk and memory: healthy, degraded past the warning, failed past the limit.

The thresholds are set around what the machine has now (its free space, this process's
RSS), read the way a user would: statvfs, /proc. No server: these checks have none to
stop or hang; a sync check runs in a worker thread like any other.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from di import Degraded, checks
from di.health import Outcome

from .running import check_sync


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def test_disk_reports_the_free_space(tmp_path: Path) -> None:
    result = check_sync(checks.disk(tmp_path, min_free_bytes=1))
    assert result.outcome is Outcome.HEALTHY
    details = result.details
    assert details is not None
    assert 0 < details["free_bytes"] <= details["total_bytes"]
    assert details["free_ratio"] == pytest.approx(
        details["free_bytes"] / details["total_bytes"], abs=1e-3
    )
    # Within what other processes wrote meanwhile.
    assert abs(details["free_bytes"] - free_bytes(tmp_path)) < 1 << 30


def test_disk_is_degraded_below_the_warning_and_fails_below_the_minimum(tmp_path: Path) -> None:
    free = free_bytes(tmp_path)
    degraded = check_sync(checks.disk(tmp_path, min_free_bytes=free // 4, warn_free_bytes=free * 4))
    assert degraded.outcome is Outcome.DEGRADED
    assert isinstance(degraded.error, Degraded)
    assert f"at {tmp_path}: below" in str(degraded.error)
    # The warning defaults to twice the minimum.
    by_default = check_sync(checks.disk(tmp_path, min_free_bytes=(free * 2) // 3))
    assert by_default.outcome is Outcome.DEGRADED
    failed = check_sync(checks.disk(tmp_path, min_free_bytes=free * 4))
    assert failed.outcome is Outcome.UNHEALTHY
    assert isinstance(failed.error, checks.CheckFailed)
    assert "below min_free_bytes" in str(failed.error)
    assert failed.error.details is not None and failed.error.details["free_bytes"] > 0
    ratio = check_sync(checks.disk(tmp_path, min_free_ratio=1.0))
    assert ratio.outcome is Outcome.UNHEALTHY and "below min_free_ratio 1" in str(ratio.error)


def test_disk_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="give min_free_bytes, min_free_ratio, or both"):
        checks.disk(tmp_path)
    with pytest.raises(ValueError, match="min_free_ratio is a fraction from 0 to 1"):
        checks.disk(tmp_path, min_free_ratio=5)
    with pytest.raises(FileNotFoundError):
        checks.disk(tmp_path / "missing", min_free_bytes=1)


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"min_free_bytes": "1G"}, "disk(): min_free_bytes is a number of bytes >= 0, got '1G'"),
        ({"min_free_bytes": -5}, "disk(): min_free_bytes is a number of bytes >= 0, got -5"),
        ({"min_free_bytes": True}, "disk(): min_free_bytes is a number of bytes >= 0, got True"),
        (
            {"min_free_bytes": 1, "warn_free_bytes": float("inf")},
            "disk(): warn_free_bytes is a number of bytes >= 0, got inf",
        ),
        (
            {"min_free_bytes": 10, "warn_free_bytes": 5},
            "disk(): expected warn_free_bytes >= min_free_bytes, got 5 and 10",
        ),
        (
            {"min_free_ratio": 0.5, "warn_free_ratio": 0.1},
            "disk(): expected warn_free_ratio >= min_free_ratio, got 0.1 and 0.5",
        ),
        ({"min_free_ratio": "5%"}, "disk(): min_free_ratio is a fraction from 0 to 1, got '5%'"),
    ],
)
def test_disk_names_a_threshold_it_cannot_use(
    tmp_path: Path, options: dict[str, object], said: str
) -> None:
    with pytest.raises(ValueError) as refused:
        checks.disk(tmp_path, **options)  # type: ignore[arg-type]
    assert str(refused.value) == said


def rss() -> int:
    with open("/proc/self/statm", "rb") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc")
def test_memory_reports_the_resident_size_and_its_thresholds() -> None:
    now = rss()
    healthy = check_sync(checks.memory(max_rss_bytes=now * 10))
    assert healthy.outcome is Outcome.HEALTHY
    assert healthy.details is not None
    assert now // 2 < healthy.details["rss_bytes"] < now * 2
    degraded = check_sync(checks.memory(max_rss_bytes=now * 10, warn_rss_bytes=now // 2))
    assert degraded.outcome is Outcome.DEGRADED
    assert "resident memory" in str(degraded.error)
    # The warning defaults to 80 % of the limit.
    assert check_sync(checks.memory(max_rss_bytes=int(now * 1.1))).outcome is Outcome.DEGRADED
    failed = check_sync(checks.memory(max_rss_bytes=now // 2))
    assert failed.outcome is Outcome.UNHEALTHY
    assert isinstance(failed.error, checks.CheckFailed)
    assert "above max_rss_bytes" in str(failed.error)


def test_memory_refuses_thresholds_out_of_order() -> None:
    with pytest.raises(ValueError, match="max_rss_bytes must be > 0"):
        checks.memory(max_rss_bytes=0)
    with pytest.raises(ValueError, match="expected 0 < warn_rss_bytes <= max_rss_bytes"):
        checks.memory(max_rss_bytes=10, warn_rss_bytes=20)
    for wrong in ("1G", float("inf"), True):
        with pytest.raises(ValueError) as refused:
            checks.memory(max_rss_bytes=wrong)  # type: ignore[arg-type]
        assert str(refused.value) == (
            f"memory(): max_rss_bytes is a number of bytes > 0, got {wrong!r}"
        )
