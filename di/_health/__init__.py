"""The health engine: which checks run, in what order, how many at once, for how long.

:func:`report` and :func:`check_one` are its entry points (``Scope.ahealth_report`` and
the monitor's rounds call them); :class:`HealthSettings` is the per-tree state an
injector holds for it. Modules, by job: ``engine`` (a call: what is checked, its queue
and results), ``workers`` (tasks, threads and the watchdog), ``stepping`` (driving an
async check by hand), ``verdicts`` (what a check's end says), ``settings`` (what calls
share).
"""

from .engine import check_one, report
from .settings import HealthSettings

__all__ = ["HealthSettings", "check_one", "report"]
