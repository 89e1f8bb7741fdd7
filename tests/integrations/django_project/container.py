"""The test project's injector: the shared Ledger, a unit of work per request."""

from django.http import HttpRequest

from di import Injector

from ..units import Ledger, unit_of_work

LEDGER = Ledger()


class RequestPath:
    """A scoped service that reads the request from the scope's context."""

    def __init__(self, request: HttpRequest) -> None:
        self.value = request.path


def create_injector() -> Injector:
    injector = Injector()
    injector.provide_value(LEDGER)
    injector.provide_scoped(unit_of_work)
    injector.provide_scoped(RequestPath)
    return injector
