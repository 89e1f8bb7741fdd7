"""Integrations with web and RPC frameworks: one module per framework.

Each module imports only its framework (install it with the matching extra, such as
``pip install 'healthdi[fastapi]'``) and does four things the framework's own way:

1. **Lifespan:** the app's startup runs the injector's ``astart()`` and a
   :class:`~di.HealthMonitor`; its shutdown turns every status but liveness NOT_SERVING, then shuts
   the injector down. A failed start fails the app's startup with the error.
2. **A scope per request** (or WebSocket connection, or RPC), with the framework's
   request object in its context, closed after the response; an exception that
   escapes the request is thrown into generator factories, so they can roll back,
   and so is ``StreamAbortedError`` when a response is cut short.
3. **Injection into handlers,** in the framework's idiom, through ``Inject[T]``: the one
   object :data:`di.Inject` is, whichever module it is imported from. What the handlers
   inject is checked when the app starts (``GraphError`` naming each one).
4. **Health routes** (``/health``, ``/livez``, ``/readyz``, the JSON Check,
   ``/health/history``, and with ``ui=True`` the status page) served from the monitor.

Modules: :mod:`di.integrations.fastapi`, :mod:`di.integrations.starlette`,
:mod:`di.integrations.litestar`, :mod:`di.integrations.grpc` and
:mod:`di.integrations.flask`. They share their plumbing: ``_lifecycle`` is the one
start/stop sequence (1), ``_asgi`` the scope per ASGI connection (2), ``_inject`` the
handler wrapper, with the core's one ``Inject`` marker and parser (3); the health answers
(4) are :mod:`di.asgi`'s, rendered by ``di._answers`` (the page's and the history's by
``di._ui``) for Flask too.
"""
