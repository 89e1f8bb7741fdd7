"""The ``di`` command, one job per module.

- :mod:`.main`: the entry point; reads and runs ``di probe`` itself when its arguments
  are plain, importing nothing else at the top; hands every other command to
  :mod:`.commands`.
- :mod:`.commands`: the arguments of every command (argparse), ``di check`` and
  ``di graph``; hands ``serve`` and ``run`` to the modules below.
- :mod:`.probe`: ``di probe URL``, standard library only; :mod:`.h2`: the one gRPC
  health call it makes over HTTP/2 (no grpcio).
- :mod:`.serve`: ``di serve``, a health sidecar: signals, the run from the
  application's factory to its shutdown, the monitor, the servers. Its HTTP listener,
  TLS and gRPC server are :mod:`di._serving`'s, which :class:`di.HealthServer` shares.
- :mod:`.run`: ``di run``, an ASGI application under uvicorn, drained on SIGTERM.

``di = "di._cli:main"`` (pyproject.toml) and ``python -m di`` both call :func:`main`.
"""

from .main import main

__all__ = ["main"]
