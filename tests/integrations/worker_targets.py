"""Workers that a newcomer got wrong, for the tests that start them.

Each has a task with ``Inject[...]`` parameters and no ``@inject``: the worker must
refuse to start and say which task, and what to do.
"""

import os

from di import Injector

from .units import Ledger, Work, unit_of_work

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "memory://")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

injector = Injector()
injector.provide(Ledger)
injector.provide_scoped(unit_of_work)


def _celery_app() -> object:
    from celery import Celery

    from di.integrations.celery import Inject, install

    app = Celery("targets", broker=BROKER_URL)
    install(app, injector)

    @app.task
    def forgot_inject(work: Inject[Work]) -> None:  # no @inject: the worker refuses
        pass

    return app


def _taskiq_broker() -> object:
    from taskiq_redis import ListQueueBroker

    from di.integrations.taskiq import Inject, install

    broker = ListQueueBroker(REDIS_URL, socket_timeout=None)
    install(broker, injector)

    @broker.task
    async def forgot_inject(work: Inject[Work]) -> None:  # no @inject: refused
        pass

    return broker


def __getattr__(name: str) -> object:
    """Each target is made when asked for, so that either needs only its own extra."""
    if name == "celery_app":
        return _celery_app()
    if name == "taskiq_broker":
        return _taskiq_broker()
    raise AttributeError(name)
