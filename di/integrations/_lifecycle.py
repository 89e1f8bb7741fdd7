"""The one start/stop sequence, as every integration imports it.

:class:`Running` (and :func:`monitor_for`, :func:`registry_for`) live in
:mod:`di._serving.lifecycle`, below the integrations, so that :class:`di.HealthServer`
runs the same sequence: see that module.
"""

from __future__ import annotations

from .._serving.lifecycle import Running, logger, monitor_for, registry_for

__all__ = ["Running", "logger", "monitor_for", "registry_for"]
