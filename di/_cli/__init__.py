"""The ``di`` command, in five modules, one job each.

- :mod:`.main`: the arguments, ``di check`` and ``di graph``; hands ``probe``,
  ``serve`` and ``run`` to the modules below. Imports only the standard library at
  the top.
- :mod:`.probe`: ``di probe URL``, standard library only (grpc for grpc:// URLs).
- :mod:`.serve`: ``di serve``, a health sidecar: signals, the run from the
  application's factory to its shutdown, the monitor, the gRPC server.
- :mod:`.http_server`: the sidecar's HTTP listener and its bounds on connections.
- :mod:`.run`: ``di run``, an ASGI application under uvicorn, drained on SIGTERM.

``di = "di._cli:main"`` (pyproject.toml) and ``python -m di`` both call :func:`main`.
"""

from .main import main

__all__ = ["main"]
