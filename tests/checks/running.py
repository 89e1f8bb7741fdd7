"""Running a ready-made check the way an application does: through an Injector."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import trustme

from di import Injector
from di.health import HealthCheckResult, Outcome

from ..timing import Stopwatch, at_most

TIMEOUT = at_most(0.5)
"""The per-check timeout: a check of a local server that answers fits in it here."""


class Dependency:
    """What the check is provided with: the checks here use what they were made with."""


def injector_with(check: Callable[..., Any], timeout: float = TIMEOUT) -> Injector:
    injector = Injector(health_check_timeout=timeout)
    injector.provide_value(Dependency(), health_check=check)
    return injector


async def acheck(check: Callable[..., Any]) -> HealthCheckResult:
    """The one result of checking a service whose check is ``check``, from async code."""
    report = await injector_with(check).ahealth_report()
    (result,) = report.checks
    return result


def check_sync(check: Callable[..., Any], timeout: float = TIMEOUT) -> HealthCheckResult:
    """The one result of checking a service whose check is ``check``, from sync code."""
    (result,) = injector_with(check, timeout).health_report().checks
    return result


class Certificates:
    """A trustme CA and files of its certificates, written under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ca = trustme.CA()
        self.ca_file = self.write_ca(self.ca, "ca.pem")

    def write_ca(self, ca: trustme.CA, name: str) -> Path:
        path = self.folder / name
        ca.cert_pem.write_to_path(str(path))
        return path

    def issue(
        self, name: str, *identities: str, ca: trustme.CA | None = None, **dates: Any
    ) -> tuple[Path, Path]:
        """A certificate for ``identities`` (``localhost`` and ``127.0.0.1`` by default)
        and its key, as two files; ``not_before``/``not_after`` as trustme takes them."""
        leaf = (ca or self.ca).issue_cert(*(identities or ("localhost", "127.0.0.1")), **dates)
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        with cert.open("wb") as file:
            for blob in leaf.cert_chain_pems:
                file.write(blob.bytes())
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class Stoppable(Protocol):
    def hung(self) -> AbstractContextManager[None]: ...

    def kill(self) -> None: ...


def _hung_result(result: HealthCheckResult, seconds: float) -> None:
    assert result.outcome is Outcome.TIMEOUT, result
    assert TIMEOUT <= seconds < at_most(TIMEOUT)


async def alive_hung_stopped(server: Stoppable, check: Callable[..., Any]) -> HealthCheckResult:
    """The check passes against ``server``, times out while it is hung, and fails once it
    is stopped; the healthy result, for its details."""
    healthy = await acheck(check)
    assert healthy.outcome is Outcome.HEALTHY, healthy
    with server.hung():
        with Stopwatch() as watch:
            hung = await acheck(check)
        _hung_result(hung, watch.seconds)
    server.kill()
    stopped = await acheck(check)
    assert stopped.outcome is Outcome.UNHEALTHY, stopped
    return healthy


def alive_hung_stopped_sync(server: Stoppable, check: Callable[..., Any]) -> HealthCheckResult:
    """:func:`alive_hung_stopped` from sync code, for a sync check."""
    healthy = check_sync(check)
    assert healthy.outcome is Outcome.HEALTHY, healthy
    with server.hung():
        with Stopwatch() as watch:
            hung = check_sync(check)
        _hung_result(hung, watch.seconds)
    server.kill()
    stopped = check_sync(check)
    assert stopped.outcome is Outcome.UNHEALTHY, stopped
    return healthy
