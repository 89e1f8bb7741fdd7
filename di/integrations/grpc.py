"""grpc.aio servers: a scope per RPC, ``@inject`` for servicer methods, health, lifecycle.

Needs the ``grpc`` extra (``pip install 'healthdi[grpc]'``). grpcio fixes a server's
interceptors when the server is made, so :class:`ScopeInterceptor` goes to
``grpc.aio.server(interceptors=[...])``; :func:`install` adds the rest: the health
servicer, and the :class:`Lifecycle` that starts and stops the container, its monitor
and the server together.

>>> server = grpc.aio.server(interceptors=[ScopeInterceptor(injector)])
>>> add_OrdersServicer_to_server(Orders(), server)
>>> lifecycle = install(server, injector)
>>> server.add_insecure_port("[::]:50051")
>>> async with lifecycle:  # astart(), the monitor, server.start(); on exit, the stop
...     await server.wait_for_termination()

Each RPC runs in a scope of its own, opened with the RPC's ``grpc.aio.ServicerContext``
in its context and closed when the RPC ends, streaming RPCs included. An exception that
ends the RPC (``context.abort()`` included) is thrown into the scope's generator
factories, so that a transaction rolls back, and so is :class:`RpcCancelledError` when
the client cancels or the deadline passes; the exception's text goes to the log, and
the client reads :data:`WITHHELD`. The health service's own RPCs open no scope: a
probe never touches the container.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

from .._container import views
from .._container.runner import in_thread, to_completion
from .._extras import needs_extra
from ..errors import DIError
from ..inject import Inject
from ..monitor import HealthMonitor, Unbuilt
from ..scope import Scope
from ._inject import Site, check_injected, injects, wrap
from ._lifecycle import Running, monitor_for, registry_for

with needs_extra("di.integrations.grpc", "grpc"):
    import grpc
    import grpc.aio
    from grpc._cython.cygrpc import (  # type: ignore[import-not-found]
        _SyncServicerContext,  # the sync methods' context, as grpc.aio makes it
    )

    from ..grpc import HealthServicer, Services, add_health_servicer

__all__ = [
    "WITHHELD",
    "Inject",
    "Lifecycle",
    "RpcCancelledError",
    "ScopeInterceptor",
    "ServicerContext",
    "current_scope",
    "inject",
    "install",
]

R = TypeVar("R")
logger = logging.getLogger("di.integrations.grpc")

# The context key each RPC's scope receives: the ServicerContext class itself.
ServicerContext = grpc.aio.ServicerContext
"""The context key under which each RPC's scope holds the RPC's ``ServicerContext``."""
_HEALTH = "/grpc.health.v1.Health/"
# What a client reads when an RPC fails with an exception: its text may hold secrets.
WITHHELD = "unexpected error (details withheld: see the server's log)"
"""What a client reads when an RPC fails with an exception; the text goes to the log."""
_UNSET: Any = object()  # stop()'s grace and drain: those given to install()


class RpcCancelledError(Exception):
    """Thrown into an RPC's generator factories when the RPC was cancelled.

    By its client, or past its deadline: the factory's ``except Exception`` rolls back.
    """


# ``Inject`` is :data:`di.Inject`: a parameter :func:`inject` fills from the RPC's
# scope, ``db: Inject[Database]``; ``Inject[Annotated[Database, Named("replica")]]``
# asks for the service named ``replica``, checked to be a ``Database``.

_scope: contextvars.ContextVar[Scope] = contextvars.ContextVar("di.integrations.grpc.scope")


def current_scope() -> Scope:
    """The scope of the RPC being handled (in a handler, or code it calls)."""
    try:
        return _scope.get()
    except LookupError:
        raise DIError(
            "no RPC scope here: make the server with "
            "grpc.aio.server(interceptors=[ScopeInterceptor(injector)]), and reach the "
            "scope only while an RPC is handled"
        ) from None


def declare_context(injector: Scope) -> None:
    """Declare ``grpc.aio.ServicerContext`` a context key of ``injector``, once."""
    views.declare_context(injector, ServicerContext, "grpc")


# -- a scope per RPC ----------------------------------------------------------------------


class ScopeInterceptor(grpc.aio.ServerInterceptor):
    """Runs every RPC (but health's) in a scope of ``injector``, its context in context.

    Making it declares ``grpc.aio.ServicerContext`` as a context key of ``injector``
    (``provide_context``), unless it is declared already, so that scoped services
    can take the RPC's context (its metadata, its peer, its deadline) as a parameter.

    Sync servicer methods run in ``executor`` (None: the event loop's default one, as
    grpc.aio's own default), driven from the RPC's task so that a cancelled RPC rolls
    back: give it the pool you would give ``grpc.aio.server(migration_thread_pool=...)``.
    """

    def __init__(self, injector: Scope, *, executor: Executor | None = None) -> None:
        if not isinstance(injector, Scope):
            raise TypeError(f"ScopeInterceptor() needs an Injector or Scope, got {injector!r}")
        declare_context(injector)
        self.injector = injector
        self.executor = executor
        # Each method's handler as the server gave it, and its scoped stand-in: made
        # once, not on every call (the server hands out the same handler each time).
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_HEALTH):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is not None and wrapped[0] is handler:
            return wrapped[1]
        scoped = _in_scope(handler, self.injector, method, self.executor)
        self._wrapped[method] = (handler, scoped)
        return scoped


def _in_scope(
    handler: grpc.RpcMethodHandler[Any, Any],
    injector: Scope,
    method: str,
    executor: Executor | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, its behavior run inside a new scope of ``injector``."""
    behavior: Any
    if handler.request_streaming and handler.response_streaming:
        make, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    elif handler.request_streaming:
        make, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    elif handler.response_streaming:
        make, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    else:
        make, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    if behavior is None:
        return handler
    return make(
        _scoped_behavior(behavior, injector, handler.response_streaming, method, executor),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _in_rpc_scope(
    injector: Scope,
    context: Any,
    method: str,
    run: Callable[[], Awaitable[R]],
    *,
    seen: Any = None,
    sync: bool = False,
    executor: Executor | None = None,
) -> R:
    """``await run()`` in a new scope; the scope sees how the RPC ended, the client not.

    Closing the scope runs to its end even if the RPC is cancelled meanwhile.

    A cancelled RPC (by its client, or past its deadline) reaches generator factories
    as :class:`RpcCancelledError`, so that it rolls back rather than commits. ``seen``
    is the context the scope provides (``context`` unless given); ``sync`` closes the
    scope in a worker thread, as its generator factories are plain ones.
    """
    scope = injector.scope(context={ServicerContext: context if seen is None else seen})
    try:
        token = _scope.set(scope)
        try:
            result = await run()
        except asyncio.CancelledError:
            _scope.reset(token)
            failure = RpcCancelledError(f"RPC {method} was cancelled")
            try:
                await _close(scope, failure, sync, executor)
            except Exception:
                logger.exception("closing the scope of cancelled RPC %s failed", method)
            raise
        except BaseException as error:
            _scope.reset(token)
            await _close(scope, error, sync, executor)
            raise
        _scope.reset(token)
        if sync:
            await _close(scope, None, sync, executor)
        else:
            await scope.__aexit__(None, None, None)
        return result
    except grpc.aio.AbortError:
        raise
    except Exception:
        logger.exception("RPC %s failed", method)
        await context.abort(grpc.StatusCode.UNKNOWN, WITHHELD)
        raise  # not reached: abort() raises


async def _close(
    scope: Scope, error: BaseException | None, sync: bool, executor: Executor | None
) -> None:
    """Close an RPC's scope with how it ended: in a worker thread for a sync method."""
    kind = None if error is None else type(error)
    if sync:
        await _in_thread(executor, scope.__exit__, kind, error, None)
    else:
        await scope.__aexit__(kind, error, None)


async def _in_thread(executor: Executor | None, function: Callable[..., R], *args: Any) -> R:
    """``function(*args)`` in a worker thread of ``executor``, in this context (the RPC's
    scope); None is the event loop's default executor, as grpc.aio's own default.

    Cancelled, it still waits for the call to return (a thread cannot be stopped), so
    that nothing runs in the RPC's scope once it closes; then the cancellation follows.
    """
    return await to_completion(lambda: in_thread(None, function, *args, executor=executor))


_END: Any = object()  # what _step returns once a response stream is exhausted


def _step(responses: Iterator[Any]) -> Any:
    return next(responses, _END)


def _sync_context(context: Any) -> Any:
    """The context grpc.aio itself hands sync methods: blocking ``abort()`` and the rest."""
    return _SyncServicerContext(context)


def _scoped_behavior(
    behavior: Any, injector: Scope, streaming: bool, method: str, executor: Executor | None
) -> Any:
    """Wrap a behavior of any kind grpc.aio accepts in a scope opened per call.

    An exception that ends the RPC reaches the scope first (its generator factories see
    it), then the server's log; the client gets UNKNOWN without its text, which grpcio
    would otherwise send.
    """
    if inspect.isasyncgenfunction(behavior):
        # Written with context.write from a coroutine, not re-yielded: grpc.aio then
        # cancels this coroutine when the RPC ends early, and the scope closes in the
        # RPC's own task instead of whenever the generator is collected.
        async def stream(request: Any, context: Any) -> None:
            async def respond() -> None:
                async with contextlib.aclosing(behavior(request, context)) as responses:
                    async for response in responses:
                        await context.write(response)

            await _in_rpc_scope(injector, context, method, respond)

        return stream
    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: Any) -> Any:
            return await _in_rpc_scope(
                injector, context, method, partial(behavior, request, context)
            )

        return call
    # A sync behavior runs in a worker thread, each response of a stream too, driven
    # from a coroutine of the RPC's own: when the client cancels or the deadline passes,
    # grpc.aio cancels that coroutine, which waits for the thread's step to return and
    # closes the scope with RpcCancelledError. The method still gets the sync context
    # grpc.aio gives sync methods, and so does its scope.
    if streaming:

        async def sync_stream(request: Any, context: Any) -> None:
            sync_context = _sync_context(context)

            async def respond() -> None:
                responses = iter(await _in_thread(executor, behavior, request, sync_context))
                try:
                    while (response := await _in_thread(executor, _step, responses)) is not _END:
                        await context.write(response)
                finally:
                    close = getattr(responses, "close", None)
                    if close is not None:
                        await to_completion(lambda: _in_thread(executor, close))

            await _in_rpc_scope(
                injector, context, method, respond, seen=sync_context, sync=True, executor=executor
            )

        return sync_stream

    async def sync_call(request: Any, context: Any) -> Any:
        sync_context = _sync_context(context)
        return await _in_rpc_scope(
            injector,
            context,
            method,
            lambda: _in_thread(executor, behavior, request, sync_context),
            seen=sync_context,
            sync=True,
            executor=executor,
        )

    return sync_call


# -- injection into servicer methods ------------------------------------------------------


def inject(method: Callable[..., R]) -> Callable[..., R]:
    """Fill a servicer method's ``Inject[T]`` parameters from the RPC's scope.

    For ``async def`` methods (unary or streaming), async generators (response
    streaming) and sync methods alike; the RPC's own arguments (``request`` or
    ``request_iterator``, ``context``) pass through untouched.

    >>> class Orders(orders_pb2_grpc.OrdersServicer):
    ...     @inject
    ...     async def Place(self, request, context, uow: Inject[UnitOfWork]) -> Reply:
    ...         ...
    """
    return typing.cast("Callable[..., R]", wrap(method, _rpc_scope))


def _rpc_scope(kwargs: dict[str, Any]) -> Scope:
    return current_scope()


# How deep in what a server holds its handlers' behaviors lie (server, its core, a list
# of generic handlers, one, its attributes, a mapping of methods, a handler, a method).
_HOLDS = 10


def _served(server: grpc.aio.Server) -> Iterator[Site]:
    """Each ``@inject`` method ``server`` serves: ``(where, plan)``.

    grpc.aio lists a server's handlers nowhere public, so they are found among the
    objects the server holds (``gc.get_referents``), descending only into grpc's own
    objects and plain containers: the generic handlers (``add_*_to_server``,
    ``method_handlers_generic_handler``), the registered method handlers, and their
    behaviors. A handler grpc does not hold that way (a generic handler of your own
    class) is not found, and is not checked.
    """
    seen: set[int] = set()
    pending: list[tuple[object, int]] = [(server, 0)]
    while pending:
        item, depth = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        read = injects(item) if callable(item) else None
        if read is not None:
            yield f"servicer method {getattr(item, '__qualname__', item)}", read
            continue
        if depth < _HOLDS and (
            isinstance(item, dict | list | tuple)
            or type(item).__module__.partition(".")[0] == "grpc"
        ):
            pending.extend((held, depth + 1) for held in gc.get_referents(item))


# -- health, start and stop ---------------------------------------------------------------


def install(
    server: grpc.aio.Server,
    injector: Scope,
    *,
    monitor: HealthMonitor | None = None,
    grace: float | None = 5.0,
    drain: float = 0.0,
    metrics: Any = False,
    unbuilt: Unbuilt | None = None,
    services: Services | None = None,
) -> Lifecycle:
    """Add the health servicer to ``server``; the :class:`Lifecycle` that runs them all.

    ``monitor=None`` makes ``HealthMonitor(injector, unbuilt=unbuilt)`` (``unbuilt``:
    ``"warn"`` by default, ``"fail"`` or ``"ignore"``, see :class:`~di.HealthMonitor`).
    ``grace`` and ``drain`` are
    what ``async with lifecycle`` stops with (see :meth:`Lifecycle.stop`). Make the
    server with ``interceptors=[ScopeInterceptor(injector)]`` for a scope per RPC.
    ``metrics=True`` registers the monitor's Prometheus collector (:mod:`di.metrics`)
    on the default registry, or on the ``CollectorRegistry`` given: serve it over
    HTTP as you serve the process's other metrics (``prometheus_client``'s
    ``start_http_server``, say). ``services`` names the server's own gRPC services so
    that health answers for them (see :func:`di.grpc.add_health_servicer`).
    """
    monitor = monitor_for(injector, monitor, unbuilt)
    declare_context(injector)
    registry_for(monitor, metrics)
    health = add_health_servicer(server, monitor, services=services)
    return Lifecycle(server, injector, monitor, health, grace=grace, drain=drain)


class Lifecycle:
    """Starts and stops the container, its health monitor and the gRPC server, in order.

    Made by :func:`install`. ``async with lifecycle:`` calls :meth:`start` and, however
    the block ends, :meth:`stop`. In between, the integrations' one start/stop sequence
    (:class:`~di.integrations._lifecycle.Running`) holds the container and the monitor,
    in a task of its own, so that :meth:`stop` may be called from any task.
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        injector: Scope,
        monitor: HealthMonitor,
        health: HealthServicer,
        *,
        grace: float | None = 5.0,
        drain: float = 0.0,
    ) -> None:
        self.server = server
        self.injector = injector
        self.monitor = monitor
        self.health = health
        self.grace = grace
        self.drain = drain
        self._running = Running(injector, monitor, stopping=self._stop_server)
        self._stop_grace = grace
        self._host: asyncio.Task[None] | None = None
        self._leave: asyncio.Event | None = None
        self._starting: asyncio.Future[None] | None = None
        self._stopping: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Build the eager services (``astart()``), run the monitor, start the server.

        The server accepts RPCs only once the container has started; health reads
        NOT_SERVING until the monitor's first round. An ``@inject`` method the server
        serves that asks for what the container cannot build fails the start first
        (``GraphError``, nothing built). A failed start stops the server, runs the
        shutdown hooks of what it built, and raises the start's error. Once per
        lifecycle.
        """
        if self._starting is not None or self._stopping is not None:
            raise RuntimeError("Lifecycle.start(): this lifecycle was started (or stopped) once")
        loop = asyncio.get_running_loop()
        self._starting = loop.create_future()
        try:
            await self._start(loop)
        finally:
            self._starting.set_result(None)

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        check_injected(self.injector, _served(self.server))
        entered: asyncio.Future[None] = loop.create_future()
        self._leave = asyncio.Event()
        host = self._host = loop.create_task(self._hold(entered, self._leave))
        try:
            await asyncio.shield(entered)
        except BaseException:
            if not entered.done():  # this call was cancelled: so is the start
                host.cancel()
            elif not entered.cancelled() and entered.exception() is None:
                self._leave.set()  # started, but this call was cancelled: stop again
            await to_completion(lambda: asyncio.wait([host]))
            await to_completion(lambda: self.server.stop(None))
            raise
        await self.server.start()

    async def _hold(self, entered: asyncio.Future[None], leave: asyncio.Event) -> None:
        """The task holding the start/stop sequence, from the start until asked to leave."""
        try:
            async with self._running:
                entered.set_result(None)
                await leave.wait()
        except BaseException as error:
            if entered.done():
                raise  # the stop's failure: stop() raises it
            if isinstance(error, asyncio.CancelledError):
                entered.cancel()
            else:
                entered.set_exception(error)  # the start's failure: start() raises it

    async def _stop_server(self) -> None:
        # Health Watch streams end first, so that they don't hold the grace period.
        self.monitor.close_watches()
        await self.server.stop(self._stop_grace)

    async def stop(self, grace: float | None = _UNSET, *, drain: float = _UNSET) -> None:
        """NOT_SERVING, then stop the server, then ``ashutdown()`` the container.

        Every health status but liveness turns NOT_SERVING for good; for ``drain`` seconds the
        server still takes RPCs, so that clients watching health move away; then it
        stops accepting, and RPCs in flight get ``grace`` seconds (None: cancelled at
        once) to finish. The monitor's round in progress finishes, and the container's
        shutdown hooks run, whatever happened before; their failure is raised.
        ``grace`` and ``drain`` default to those given to :func:`install`. A second
        call waits for the first. Before :meth:`start` it does nothing (and a later
        ``stop()`` still stops what ``start()`` starts); during it, it waits for the
        start to end first.
        """
        if self._stopping is not None:
            await asyncio.shield(self._stopping)
            return
        starting = self._starting
        if starting is None:
            return  # nothing started yet: nothing to stop
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            if not starting.done():
                await asyncio.shield(starting)  # the eager build finishes (or fails) first
            host = self._host
            if host is None:
                return
            if not host.done():  # else the start failed, and shut down what it built
                self._stop_grace = self.grace if grace is _UNSET else grace
                self._running.drain = self.drain if drain is _UNSET else drain
                assert self._leave is not None
                self._leave.set()
                await to_completion(lambda: asyncio.wait([host]))
            host.result()  # what the shutdown hooks (or the monitor) raised
        finally:
            self._stopping.set_result(None)

    async def __aenter__(self) -> Lifecycle:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
