"""taskiq workers: a middleware for the container's life and a scope per task, ``@inject``.

>>> broker = ListQueueBroker(REDIS_URL)
>>> install(broker, injector, health_server=HealthServer(injector, http="0.0.0.0:8081"))
>>> @broker.task
... @inject
... async def place(item: str, orders: Inject[Orders]) -> None:
...     await orders.add(item)

:func:`install` adds :class:`ContainerMiddleware` to the broker. The path of a worker
process (``taskiq worker``), all on its event loop:

- the broker's startup (in a worker process only: a client that kicks tasks starts
  nothing): the tasks are checked (a ``@inject`` forgotten, a key nothing provides:
  the worker does not start, and says which task and what to do); then the health
  server, if given, runs the integrations' one start/stop sequence around its
  listeners in a task of its own, or else the injector's ``astart()`` runs;
- ``pre_execute``: each task gets a slot for its scope, opened on first use (an
  ``Inject`` parameter, :func:`current_scope`) with its ``TaskiqMessage`` in its
  context; ``on_error`` records the task's exception and ``post_execute`` closes the
  scope with it (or with :class:`TaskFailedError` for a result that is an error), so
  that generator factories roll back; sync tasks, which taskiq runs in threads, see
  the same slot;
- the broker's shutdown: NOT_SERVING and the health server's stop, or the
  injector's ``ashutdown()``.

``taskiq worker`` starts two processes by default, each with the middleware: a health
server binds its port in each, so run one worker process per container with one
(``--workers 1``), as Kubernetes scales them. ``pip install 'healthdi[taskiq]'``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from taskiq import AsyncBroker, TaskiqMessage, TaskiqMiddleware, TaskiqResult

from ..errors import DIError
from ..health_server import HealthServer
from ..inject import Inject
from ..scope import Scope
from . import _asgi
from ._inject import wrap
from ._lifecycle import LazyScope, check_health_server
from ._startup import check_handlers

__all__ = [
    "ContainerMiddleware",
    "Inject",
    "TaskFailedError",
    "current_scope",
    "inject",
    "install",
]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("di.integrations.taskiq")

_current: contextvars.ContextVar[LazyScope] = contextvars.ContextVar("di.integrations.taskiq")


class TaskFailedError(Exception):
    """Thrown into a task's generator factories when its result is an error that no
    exception of the task's own came with."""


class ContainerMiddleware(TaskiqMiddleware):
    """The container's life with a worker process's, and a scope per task: see the
    module. Made and added by :func:`install`."""

    def __init__(self, injector: Scope, health_server: HealthServer | None = None) -> None:
        super().__init__()
        self.injector = injector
        self.health_server = health_server
        self._host: asyncio.Task[None] | None = None
        self._leave: asyncio.Event | None = None
        self._started = False

    async def startup(self) -> None:
        """In a worker process: check the tasks, then start (see the module)."""
        if not self.broker.is_worker_process:
            return
        check_handlers(self.injector, _tasks(self.broker), "@inject")
        if self.health_server is None:
            await self.injector.astart()
        else:
            await self._serve(self.health_server)
        self._started = True

    async def _serve(self, server: HealthServer) -> None:
        """Run ``async with server`` in a task of its own until :meth:`shutdown`."""
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[None] = loop.create_future()
        leave = self._leave = asyncio.Event()

        async def hold() -> None:
            try:
                async with server:
                    entered.set_result(None)
                    await leave.wait()
            except BaseException as error:
                if entered.done():
                    raise  # the stop's failure: shutdown() raises it
                entered.set_exception(error)

        self._host = loop.create_task(hold())
        await entered

    async def shutdown(self) -> None:
        """In a worker process: NOT_SERVING and stop, or ``ashutdown()``."""
        if not self._started:
            return
        self._started = False
        host = self._host
        if host is None:
            await self.injector.ashutdown()
            return
        assert self._leave is not None
        self._leave.set()
        await host  # raises what the shutdown hooks raised

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        slot = LazyScope(self.injector, TaskiqMessage, message, owner=message, unit="task")
        slot.token = _current.set(slot)
        return message

    def on_error(
        self, message: TaskiqMessage, result: TaskiqResult[Any], exception: BaseException
    ) -> None:
        slot = _current.get(None)
        if slot is not None and slot.owner is message and slot.failure is None:
            slot.failure = exception

    async def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        slot = _current.get(None)
        if slot is None or slot.owner is not message:
            return
        if slot.token is not None:
            _current.reset(slot.token)
        if slot.failure is None and result.is_err:
            slot.failure = TaskFailedError(f"task {message.task_name} failed: {result.error!r}")
        await slot.aclose()


def install(
    broker: AsyncBroker, injector: Scope, *, health_server: HealthServer | None = None
) -> ContainerMiddleware:
    """Run ``injector`` with ``broker``'s worker processes: see the module.

    ``TaskiqMessage`` is declared with ``provide_context``: a scoped service can take
    the task's message (its id, labels, arguments). ``health_server`` (a
    :class:`~di.HealthServer` made for the same injector) serves health from the
    worker from its start to its shutdown. Returns the middleware, added to the
    broker; once per broker.
    """
    if not isinstance(broker, AsyncBroker):
        raise TypeError(f"install() needs a taskiq broker, got {broker!r}")
    if not isinstance(injector, Scope):
        raise TypeError(f"install() needs an Injector or Scope, got {injector!r}")
    check_health_server(injector, health_server)
    if any(isinstance(m, ContainerMiddleware) for m in broker.middlewares):
        raise RuntimeError("install() was already called on this broker")
    _asgi.declare_context(injector, (TaskiqMessage,), "taskiq")
    middleware = ContainerMiddleware(injector, health_server)
    broker.add_middlewares(middleware)
    return middleware


def current_scope() -> Scope:
    """The scope of the task running here, opened on first use.

    >>> orders = await current_scope().ainvoke(Orders)
    """
    slot = _current.get(None)
    if slot is None:
        raise DIError(
            "no task scope here: call di.integrations.taskiq.install(broker, injector) "
            "where the broker is made, and reach the scope while one of its tasks runs"
        )
    return slot.scope or slot.open()


def inject(task: F) -> F:
    """Fill the task function's ``Inject[T]`` parameters from the task's scope.

    Goes below ``@broker.task``, on ``async def`` and sync functions alike; taskiq
    sees (and passes, dependencies included) the other parameters.
    """
    if not callable(task) or isinstance(task, type) or hasattr(task, "kiq"):
        raise TypeError(f"@inject goes below @broker.task, on the function itself (got {task!r})")
    return wrap(task, _task_scope, required="@inject")  # type: ignore[return-value]


def _task_scope(kwargs: dict[str, Any]) -> Scope:
    return current_scope()


def _tasks(broker: AsyncBroker) -> Iterator[tuple[str, Callable[..., Any]]]:
    for name, task in sorted(broker.get_all_tasks().items()):
        function = getattr(task, "original_func", None)
        if callable(function):
            yield f"task {name}", function
