"""The Django app ``"di.integrations.django"``: the container's life with the process's.

:class:`HealthdiConfig` is what ``INSTALLED_APPS = [..., "di.integrations.django"]``
loads. Its :meth:`~HealthdiConfig.ready` reads the ``HEALTHDI`` setting, loads the
injector (``"INJECTOR": "project.container:create_injector"``: an injector, or a
function that makes one) and starts it: the integrations' one start/stop sequence
(:class:`~di.integrations._lifecycle.Running`) on an event loop in a thread of its own
(:class:`~di.integrations._lifecycle.AppLifetime`, as Flask runs it), stopped at
process exit (``atexit``). After a ``fork()`` (a gunicorn worker of a ``--preload``
app) the child runs a monitor and thread of its own.
Under an ASGI server that runs the lifespan (:func:`di.integrations.django.
get_asgi_application`), the start waits for the lifespan instead, and runs on the
server's loop.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
from collections.abc import Mapping
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from ...errors import DIError
from ...monitor import HealthMonitor
from ...scope import Scope
from .. import _asgi
from .._lifecycle import AppLifetime

logger = logging.getLogger("di.integrations")

MIDDLEWARE = "di.integrations.django.RequestScopeMiddleware"
# The keys of the HEALTHDI setting, and what each defaults to.
OPTIONS: Mapping[str, Any] = {
    "INJECTOR": None,
    "INTERVAL": 5.0,
    "SHOW_DETAILS": False,
    "UNBUILT": "warn",
    "UI": False,
}


class Settings:
    """The ``HEALTHDI`` setting, read and checked once."""

    __slots__ = ("injector", "interval", "show_details", "ui", "unbuilt")

    def __init__(self, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise ImproperlyConfigured(
                "settings.HEALTHDI must be a dict such as "
                '{"INJECTOR": "project.container:create_injector"}, got ' + repr(raw)
            )
        unknown = sorted(set(raw) - set(OPTIONS))
        if unknown:
            raise ImproperlyConfigured(
                f"settings.HEALTHDI has unknown keys {unknown}: it takes {sorted(OPTIONS)}"
            )
        values = {**OPTIONS, **raw}
        if values["INJECTOR"] is None:
            raise ImproperlyConfigured(
                "settings.HEALTHDI needs 'INJECTOR': the import path of your injector or "
                'of the function that makes it, such as {"INJECTOR": '
                '"project.container:create_injector"}'
            )
        interval = values["INTERVAL"]
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise ImproperlyConfigured(
                f"settings.HEALTHDI['INTERVAL'] must be a number of seconds > 0, got {interval!r}"
            )
        if values["UNBUILT"] not in ("warn", "fail", "ignore"):
            raise ImproperlyConfigured(
                "settings.HEALTHDI['UNBUILT'] takes 'warn', 'fail' or 'ignore', got "
                f"{values['UNBUILT']!r}"
            )
        self.injector = load_injector(values["INJECTOR"])
        self.interval = float(interval)
        self.show_details = bool(values["SHOW_DETAILS"])
        self.unbuilt = values["UNBUILT"]
        self.ui = bool(values["UI"])  # the status page at /health/ui

    def monitor(self) -> HealthMonitor:
        return HealthMonitor(
            self.injector,
            interval=self.interval,
            show_details=self.show_details,
            unbuilt=self.unbuilt,
        )


def load_injector(target: Any) -> Scope:
    """The injector ``target`` names: ``"module:attribute"`` (dots below the attribute
    too), an injector, or a function that returns one."""
    found = target
    if isinstance(target, str):
        module_name, colon, attribute = target.partition(":")
        if not colon or not module_name or not attribute:
            raise ImproperlyConfigured(
                f"settings.HEALTHDI['INJECTOR'] must be 'module:attribute', such as "
                f"'project.container:create_injector', got {target!r}"
            )
        try:
            found = importlib.import_module(module_name)
        except ImportError as error:
            raise ImproperlyConfigured(
                f"settings.HEALTHDI['INJECTOR'] = {target!r}: cannot import {module_name!r}: "
                f"{error}"
            ) from error
        for part in attribute.split("."):
            try:
                found = getattr(found, part)
            except AttributeError:
                raise ImproperlyConfigured(
                    f"settings.HEALTHDI['INJECTOR'] = {target!r}: {module_name!r} has no "
                    f"{attribute!r}"
                ) from None
    if not isinstance(found, Scope) and callable(found):
        found = found()
    if not isinstance(found, Scope):
        raise ImproperlyConfigured(
            f"settings.HEALTHDI['INJECTOR'] = {target!r} is not an Injector, nor a function "
            f"returning one (got {found!r})"
        )
    return found


class _Process(AppLifetime):
    """The injector and monitor of this process, run on a thread's loop
    (:meth:`~di.integrations._lifecycle.AppLifetime.start`), or by an ASGI lifespan on
    the server's loop (``lifespan``: :meth:`~di.integrations._lifecycle.AppLifetime.astart`)."""

    def __init__(self, options: Settings) -> None:
        super().__init__(options.injector, options.monitor())
        self.options = options
        self.lifespan = False  # started by an ASGI lifespan, on the server's loop

    def check(self) -> None:
        """Raise unless the injector serves now: before a request's scope opens."""
        if not self.started:
            raise DIError(
                "the injector of settings.HEALTHDI was never started: under an ASGI "
                "server, serve di.integrations.django.get_asgi_application() with its "
                "lifespan on"
                if self.lifespan
                else "the injector of settings.HEALTHDI was never started"
            )
        if self.done:
            raise DIError("the injector of settings.HEALTHDI was shut down")


class HealthdiConfig(AppConfig):  # type: ignore[misc]  # Django has no types
    """``"di.integrations.django"`` in ``INSTALLED_APPS``: see the module."""

    name = "di.integrations.django"
    label = "healthdi"
    verbose_name = "healthdi"
    default = True

    process: _Process | None = None
    # Set by get_asgi_application() before django.setup(): the lifespan starts it.
    wait_for_lifespan = False

    def ready(self) -> None:
        """Load the injector of ``settings.HEALTHDI`` and start it (see the module)."""
        options = Settings(getattr(settings, "HEALTHDI", None))
        _asgi.declare_context(options.injector, (HttpRequest,), "django")
        if MIDDLEWARE not in getattr(settings, "MIDDLEWARE", ()):
            logger.warning(
                "%r is not in settings.MIDDLEWARE: requests get no scope, and @inject "
                "views fail; add it (first, or after the middleware your scoped services "
                "need)",
                MIDDLEWARE,
            )
        process = _Process(options)
        type(self).process = process
        if type(self).wait_for_lifespan:
            process.lifespan = True
            return
        process.start()
        atexit.register(process.close)
