"""The health engine: which checks run, in what order, how many at once, for how long.

:func:`report` and :func:`check_one` are its entry points (``Scope.ahealth_report`` and
the monitor's rounds call them); :class:`HealthSettings` is the per-tree state an
injector holds for it.
"""

from .engine import HealthSettings, check_one, report

__all__ = ["HealthSettings", "check_one", "report"]
