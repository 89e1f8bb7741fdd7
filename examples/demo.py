"""A tour of healthdi: provide services, invoke them, see the build order, check their
health, shut down.

Run with ``make demo``. The database is a real SQLite file in a temporary folder.
"""

from __future__ import annotations

import socket
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from di import Injector


@dataclass
class Settings:
    data_dir: Path


def open_database(settings: Settings) -> Iterator[sqlite3.Connection]:
    """A generator factory: the code after ``yield`` runs at shutdown."""
    path = settings.data_dir / "shop.sqlite3"
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, item TEXT)")
    print(f"  opened {path}")
    yield connection
    connection.close()
    print(f"  closed {path}")


class Orders:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def place(self, item: str) -> int:
        with self.db:
            cursor = self.db.execute("INSERT INTO orders (item) VALUES (?)", (item,))
        return int(cursor.lastrowid or 0)

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM orders").fetchone()[0])

    def health_check(self) -> None:
        """A real query on the SQLite file."""
        self.count()

    def shutdown(self) -> None:
        print(f"  Orders shutting down after {self.count()} orders")


class PaymentGateway:
    """Its check opens a TCP connection to a port where nothing listens: it fails."""

    address = ("127.0.0.1", 9)

    def health_check(self) -> None:
        socket.create_connection(self.address, timeout=0.5).close()


class Search:
    """Its check never answers in time: the per-check timeout cancels it."""

    async def health_check(self) -> None:
        await anyio.sleep(30)


class Checkout:
    """Built anew for every request (a transient)."""

    def __init__(self, orders: Orders, payments: PaymentGateway, search: Search) -> None:
        self.orders = orders

    def buy(self, item: str) -> int:
        return self.orders.place(item)


def main() -> None:
    injector = Injector(health_check_timeout=0.3, health_check_global_timeout=2.0)
    with tempfile.TemporaryDirectory() as folder, injector:
        injector.provide_value(Settings(data_dir=Path(folder)))
        injector.provide(open_database)
        injector.provide(Orders)
        injector.provide(PaymentGateway)
        injector.provide(Search)
        injector.provide_transient(Checkout)

        print("provided:", ", ".join(injector.list_provided()))
        print("invoking Checkout twice (a transient; its dependencies are built once):")
        with injector.scope("request") as request:
            first = request.invoke(Checkout).buy("teapot")
            second = request.invoke(Checkout).buy("kettle")
        print(f"  placed orders {first} and {second}")
        print("built, in invocation order:")
        for index, key in enumerate(injector.list_invoked(), start=1):
            print(f"  {index}. {key}")
        print("health, checked last built first (timeouts: 0.3 s per check, 2 s in all):")
        report = injector.health_report()
        for check in report.checks:
            detail = f"  {check.error}" if check.error else ""
            took = f"{check.duration * 1000:6.1f} ms"
            print(f"  {check.key:<26} {check.outcome.value:<9} {took}{detail}")
        print(f"  healthy overall: {report.healthy}")
        print("shutting down, in reverse order:")


if __name__ == "__main__":
    main()
