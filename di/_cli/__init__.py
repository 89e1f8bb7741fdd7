"""The ``di`` command, in four modules, one job each.

- :mod:`.main`: the arguments, ``di check`` and ``di graph``; hands ``probe``,
  ``serve`` and ``run`` to the modules below. Imports only the standard library at
  the top.
- :mod:`.probe`: ``di probe URL``, standard library only (grpc for grpc:// URLs).
- :mod:`.serve`: ``di serve``, a health sidecar: signals, the run from the
  application's factory to its shutdown, the monitor, the servers. Its HTTP listener,
  TLS and gRPC server are :mod:`di._serving`'s, which :class:`di.HealthServer` shares.
- :mod:`.run`: ``di run``, an ASGI application under uvicorn, drained on SIGTERM.

``di = "di._cli:main"`` (pyproject.toml) and ``python -m di`` both call :func:`main`.
"""

from .main import main

__all__ = ["main"]
