"""Health checks in one file: run with `python examples/health_check.py`."""

import socket
import sqlite3
import time

import anyio

from di import Injector


class Database:
    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:", check_same_thread=False)

    def health_check(self) -> None:  # sync: runs in a worker thread
        self.connection.execute("SELECT 1")


class PaymentGateway:
    address = ("127.0.0.1", 9)  # nothing listens there: the check fails

    def health_check(self) -> None:
        socket.create_connection(self.address, timeout=0.5).close()


class Search:
    async def health_check(self) -> None:  # async: cancelled when its time is up
        await anyio.sleep(10)


class Shop:
    def __init__(self, db: Database, payments: PaymentGateway, search: Search) -> None:
        self.db = db


injector = Injector(
    health_check_parallelism=10,
    health_check_timeout=0.2,  # per check, from when it starts
    health_check_global_timeout=1.0,  # for the whole call
)
for service in (Database, PaymentGateway, Search, Shop):
    injector.provide(service)
injector.invoke(Shop)  # builds Database, PaymentGateway, Search, then Shop

started = time.monotonic()
report = injector.health_report()
print(f"healthy: {report.healthy} (in {time.monotonic() - started:.2f} s)")
for check in report.checks:  # last built first
    print(f"  {check.key:<28} {check.outcome.value:<9} {check.error or ''}")
