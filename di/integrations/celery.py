"""Celery workers: the container's life with each worker process, a scope per task,
``@inject`` tasks, and health through a :class:`~di.HealthServer`.

>>> app = Celery("shop", broker=BROKER_URL)
>>> install(app, injector, health_server=HealthServer(injector, http="0.0.0.0:8081"))
>>> @app.task
... @inject
... def place(item: str, orders: Inject[Orders]) -> None:
...     orders.add(item)

The path of a worker, through Celery's signals (for ``app``'s worker only):

- ``worker_init`` (the main process, before it takes a task): the tasks are checked
  (a ``@inject`` forgotten, a key nothing provides: the worker does not start, and
  says which task and what to do). Where tasks run in this process (the ``solo``
  and ``threads`` pools), the injector starts here: through the health server if
  one is given (it owns the start/stop sequence), else ``injector.start()``.
  Under ``prefork`` (Celery's default), the health server runs here, on the
  injector given, and each pool process starts its own.
- ``worker_process_init`` (each ``prefork`` pool process, after the fork): the
  process starts the injector it runs tasks with: the one given, or a
  ``clone()`` of it where the main process started that one (so that no process
  uses another's connections).
- ``task_prerun`` / ``task_postrun``: each task runs with a slot for its scope,
  opened on first use (an ``Inject`` parameter, :func:`current_scope`) with the
  task's request (``celery.app.task.Context``) in its context, and closed when the
  task has ended: its exception (``task_failure``), a retry (``task_retry``) or
  any state but SUCCESS is thrown into generator factories, so that they roll back.
- ``worker_process_shutdown`` / ``worker_shutdown``: each process shuts down what it
  started (the health server first turns NOT_SERVING and stops).

``pip install 'healthdi[celery]'``.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from celery import Celery, signals
from celery.app.task import Context as Context  # the key of the task request in scope context

from ..errors import DIError
from ..health_server import HealthServer
from ..inject import Inject
from ..scope import Scope
from . import _asgi
from ._inject import wrap
from ._lifecycle import LazyScope, check_health_server
from ._startup import check_handlers

__all__ = ["Inject", "TaskFailedError", "current_scope", "inject", "install"]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("di.integrations.celery")

_SUCCESS = "SUCCESS"
_current: contextvars.ContextVar[LazyScope] = contextvars.ContextVar("di.integrations.celery")


class TaskFailedError(Exception):
    """Thrown into a task's generator factories when it ended in a state other than
    SUCCESS without an exception to show for it (``Ignore``, ``Reject``)."""


class _Worker:
    """What :func:`install` keeps for one app, and what each process started."""

    def __init__(self, app: Celery, injector: Scope, health_server: HealthServer | None) -> None:
        self.app = app
        self.injector = injector
        self.health_server = health_server
        self.tasks_injector: Scope | None = None  # what this process runs tasks with
        self.started_here: Scope | None = None  # started in this process, with start()
        self.serving = False  # the health server runs in this process
        self.forking = False
        self.lock = threading.Lock()

    def injector_for_tasks(self) -> Scope:
        return self.tasks_injector or self.injector

    # -- the main process ------------------------------------------------------------------

    def worker_init(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app:
            return
        try:
            check_handlers(self.injector, _tasks(self.app), "@inject")
            self.forking = _forks(sender)
            if (
                self.forking
                and self.health_server is not None
                and not hasattr(self.injector, "clone")
            ):
                raise DIError(
                    "under the prefork pool, the health server runs in the main process "
                    "and each pool process starts a clone() of the injector: give "
                    "install() the Injector itself, not one of its scopes"
                )
            if self.health_server is not None:
                self.health_server.start()
                self.serving = True
            if not self.forking:
                if self.health_server is None:
                    self.injector.start()
                    self.started_here = self.injector
                self.tasks_injector = self.injector
        except Exception as error:
            logger.critical("the worker cannot start: %s", error)
            raise SystemExit(f"healthdi: the worker cannot start: {error}") from error

    def worker_shutdown(self, sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is not self.app:
            return
        self._stop_here()
        if self.serving and self.health_server is not None:
            self.serving = False
            self.health_server.stop()

    # -- each pool process -------------------------------------------------------------

    def worker_process_init(self, **_: Any) -> None:
        if not self.forking:
            return  # the solo pool sends it in the main process: started there
        # After the fork: the main process's health server thread is not here, and the
        # injector it started (its connections) is the main process's to use.
        self.serving = False
        self.lock = threading.Lock()
        injector: Scope = self.injector
        if self.health_server is not None:
            injector = injector.clone()  # type: ignore[attr-defined]  # an Injector: see worker_init
        try:
            injector.start()
        except Exception as error:
            logger.critical("the worker process cannot start: %s", error)
            raise SystemExit(f"healthdi: the worker process cannot start: {error}") from error
        self.tasks_injector = self.started_here = injector

    def worker_process_shutdown(self, **_: Any) -> None:
        if self.forking:
            self._stop_here()

    def _stop_here(self) -> None:
        with self.lock:
            started, self.started_here = self.started_here, None
        if started is not None:
            started.shutdown()

    # -- each task -----------------------------------------------------------------------

    def task_prerun(self, sender: Any = None, task: Any = None, **_: Any) -> None:
        task = task or sender
        if getattr(task, "app", None) is not self.app:
            return
        slot = LazyScope(self.injector_for_tasks(), Context, task.request, owner=task, unit="task")
        slot.token = _current.set(slot)

    def task_failure(self, sender: Any = None, exception: Any = None, **_: Any) -> None:
        slot = _current.get(None)
        if slot is not None and slot.owner is sender and isinstance(exception, BaseException):
            slot.failure = slot.failure or exception

    def task_retry(self, sender: Any = None, reason: Any = None, **_: Any) -> None:
        slot = _current.get(None)
        if slot is not None and slot.owner is sender:
            failure = reason if isinstance(reason, BaseException) else TaskFailedError(reason)
            slot.failure = slot.failure or failure

    def task_postrun(
        self, sender: Any = None, task: Any = None, state: Any = None, **_: Any
    ) -> None:
        task = task or sender
        slot = _current.get(None)
        if slot is None or slot.owner is not task:
            return
        if slot.token is not None:
            _current.reset(slot.token)
        if slot.failure is None and state is not None and state != _SUCCESS:
            slot.failure = TaskFailedError(f"task {task.name} ended {state}")
        slot.close()


_installed: dict[int, _Worker] = {}  # by id(app): the signals hold their receivers weakly


def install(app: Celery, injector: Scope, *, health_server: HealthServer | None = None) -> None:
    """Run ``injector`` with ``app``'s workers: a scope per task, ``@inject``, health.

    - **Start and stop** in each process that runs tasks (see the module): eager
      services are built before the first task; shutdown hooks run when the worker
      (or its pool process) exits.
    - **A scope per task**, with the task's request (``celery.app.task.Context``,
      declared with ``provide_context``) in its context, closed when the task ends; a
      failure (an exception, a retry, any state but SUCCESS) is thrown into generator
      factories.
    - **Health:** ``health_server`` (a :class:`~di.HealthServer` made for the same
      injector) serves ``/livez``, ``/readyz`` and gRPC health from the worker's main
      process from its start to its shutdown: give the injector a check of the broker
      (``di.checks.redis``) and readiness follows it.
    - **Startup checks:** a task with ``Inject[...]`` parameters and no ``@inject``, or
      one injecting what nothing provides, stops the worker at its start, named.

    Call it where the app is made; once per app.
    """
    if not isinstance(app, Celery):
        raise TypeError(f"install() needs a Celery app, got {app!r}")
    if not isinstance(injector, Scope):
        raise TypeError(f"install() needs an Injector or Scope, got {injector!r}")
    check_health_server(injector, health_server)
    if id(app) in _installed:
        raise RuntimeError("install() was already called on this Celery app")
    _asgi.declare_context(injector, (Context,), "celery")
    worker = _installed[id(app)] = _Worker(app, injector, health_server)
    for signal, receiver in (
        (signals.worker_init, worker.worker_init),
        (signals.worker_shutdown, worker.worker_shutdown),
        (signals.worker_process_init, worker.worker_process_init),
        (signals.worker_process_shutdown, worker.worker_process_shutdown),
        (signals.task_prerun, worker.task_prerun),
        (signals.task_failure, worker.task_failure),
        (signals.task_retry, worker.task_retry),
        (signals.task_postrun, worker.task_postrun),
    ):
        signal.connect(receiver, weak=False)


def current_scope() -> Scope:
    """The scope of the task running here, opened on first use.

    >>> orders = current_scope().invoke(Orders)
    """
    slot = _current.get(None)
    if slot is None:
        raise DIError(
            "no task scope here: call di.integrations.celery.install(app, injector) where "
            "the app is made, and reach the scope while one of its tasks runs"
        )
    return slot.scope or slot.open()


def inject(task: F) -> F:
    """Fill the task function's ``Inject[T]`` parameters from the task's scope.

    Goes below ``@app.task``; the task's own arguments (and ``self`` with
    ``bind=True``) pass as Celery passes them, and Celery's argument checks see the
    signature without the injected parameters.
    """
    if not callable(task) or not (inspect.isfunction(task) or inspect.ismethod(task)):
        raise TypeError(
            f"@inject goes below @app.task, on the function itself (got {task!r}): "
            "@app.task above @inject"
        )
    if inspect.iscoroutinefunction(task) or inspect.isasyncgenfunction(task):
        raise TypeError(f"@inject: {task.__qualname__} is async; Celery runs sync tasks")
    return wrap(task, _task_scope, required="@inject")  # type: ignore[return-value]


def _task_scope(kwargs: dict[str, Any]) -> Scope:
    return current_scope()


def _tasks(app: Celery) -> Iterator[tuple[str, Callable[..., Any]]]:
    """Each task of ``app`` (but Celery's own), as ``(where, function)``."""
    for name, task in sorted(app.tasks.items()):
        if name.startswith("celery."):
            continue
        run = getattr(task, "run", None)
        if callable(run):
            yield f"task {name}", run


def _forks(worker: Any) -> bool:
    """Whether ``worker`` runs its tasks in forked pool processes (``prefork``)."""
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool

    pool = worker.pool_cls
    if isinstance(pool, str):
        pool = concurrency.get_implementation(pool)
    return isinstance(pool, type) and issubclass(pool, TaskPool)
