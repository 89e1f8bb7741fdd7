"""Services whose health the tests switch on and off. Module level, so keys are stable."""

from __future__ import annotations

import threading


class Switch:
    """Healthy until told otherwise; counts its checks."""

    def __init__(self) -> None:
        self.healthy = True
        self.checks = 0
        self.lock = threading.Lock()

    def fail(self) -> None:
        self.healthy = False

    def recover(self) -> None:
        self.healthy = True

    def _check(self) -> None:
        with self.lock:
            self.checks += 1
        if not self.healthy:
            raise ConnectionError(f"{type(self).__name__} is down (secret-host:5432)")


class Database(Switch):
    def health_check(self) -> None:
        self._check()


class Cache(Switch):
    async def health_check(self) -> None:
        self._check()


class Queue(Switch):
    async def health_check(self) -> None:
        self._check()
