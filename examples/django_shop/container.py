"""container.py: the services, and the function that makes the injector."""

from collections.abc import Iterator

from django.http import HttpRequest

from di import Injector


class Orders:
    """The store: built at startup, checked every few seconds, closed at exit."""

    def __init__(self) -> None:
        self.placed: list[str] = []

    def health_check(self) -> None:
        pass

    def shutdown(self) -> None:
        print("orders closed", flush=True)


class UnitOfWork:
    """What one request writes: committed after the view, unless it failed."""

    def __init__(self, orders: Orders, request: HttpRequest) -> None:
        self.orders = orders
        self.item = request.GET.get("item", "")
        self.pending: list[str] = []


def unit_of_work(orders: Orders, request: HttpRequest) -> Iterator[UnitOfWork]:
    work = UnitOfWork(orders, request)
    yield work  # an exception of the view is raised here: nothing is committed
    orders.placed.extend(work.pending)


def create_injector() -> Injector:
    injector = Injector()
    injector.provide(Orders, eager=True)
    injector.provide_scoped(unit_of_work)
    return injector
