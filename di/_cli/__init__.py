"""The ``di`` command: its entry point here, then one job per module.

- this package's :func:`main`: the entry point (``di = "di._cli:main"`` in
  pyproject.toml, and ``python -m di``); reads and runs ``di probe`` itself when its
  arguments are plain, and hands every other command to :mod:`.commands`.
- :mod:`.commands`: the arguments of every command (argparse), ``di check`` and
  ``di graph``; hands ``serve`` and ``run`` to the modules below.
- :mod:`.probe`: ``di probe URL``, standard library only; :mod:`.h2`: the one gRPC
  health call it makes over HTTP/2 (no grpcio).
- :mod:`.serve`: ``di serve``, a health sidecar: signals, the run from the
  application's factory to its shutdown, the monitor, the servers. Its HTTP listener,
  TLS and gRPC server are :mod:`di._serving`'s, which :class:`di.HealthServer` shares.
- :mod:`.run`: ``di run``, an ASGI application under uvicorn, drained on SIGTERM.

Docker runs ``di probe`` every few seconds in every container, so it must start like a
script: the entry point is here, in the package the command loads anyway, and imports
nothing at the top (``sys`` is always loaded). :func:`main` reads the probe's
arguments itself (:func:`probe_options`) when each is plain: an option spelled out in
full (``--timeout``, or grpc_health_probe's ``-tls-ca-cert``) with its value beside it
(``--timeout 2``, ``--timeout=2``), and one URL. Anything else (``--help``, an
abbreviated or unknown option, a value that starts with ``-``, a missing URL, a timeout
that is not a number) goes to the argparse parser of :mod:`.commands`, which reads it,
or says what is wrong, as for every command. Both paths end in :func:`run_probe`, then
:func:`.probe.probe`.

A user error (:class:`UsageError`) is one line on stderr and exit 1 (:func:`fail`),
for every command.
"""

import sys

TYPE_CHECKING = False  # not typing's, and no __future__ import: see di/__init__.py

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

    from .probe import Tls

MAX_PROBE_TIMEOUT = 86400  # seconds: a day, far beyond any probe

# The probe's options, every spelling argparse is given in :mod:`.commands`, and the
# field of :class:`.probe.Tls` (or of the probe) each sets.
_FLAGS = {
    "--tls": "enabled",
    "-tls": "enabled",
    "--tls-no-verify": "no_verify",
    "-tls-no-verify": "no_verify",
}
_VALUED = {
    "--service": "service",
    "--timeout": "timeout",
    "--tls-ca-cert": "ca_cert",
    "-tls-ca-cert": "ca_cert",
    "--tls-client-cert": "client_cert",
    "-tls-client-cert": "client_cert",
    "--tls-client-key": "client_key",
    "-tls-client-key": "client_key",
    "--tls-server-name": "server_name",
    "-tls-server-name": "server_name",
}


class UsageError(Exception):
    """A user error: one line on stderr, exit 1, no traceback."""


def main(argv: "Sequence[str] | None" = None) -> "NoReturn":
    """Entry point of the ``di`` command and ``python -m di``."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    options = probe_options(arguments[1:]) if arguments[:1] == ["probe"] else None
    if options is None:
        from .commands import run

        run(arguments)
    url, service, timeout, tls = options
    try:
        code = run_probe(url, service, timeout, tls)
    except UsageError as error:
        fail("probe", error)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


def probe_options(arguments: "Sequence[str]") -> "tuple[str, str, float, Tls] | None":
    """``di probe``'s URL, service, timeout and TLS options read from ``arguments``
    (those after ``probe``); None for any argument that is not plain, to leave them all
    to argparse.

    What is read here is read as argparse reads it: the last of an option given twice
    wins, and a value is whatever follows the option, never one that starts with ``-``
    (argparse would take ``-1`` as a value and ``-x`` as an option).
    """
    url: str | None = None
    flags: set[str] = set()
    values: dict[str, str] = {}
    at = 0
    while at < len(arguments):
        argument = arguments[at]
        at += 1
        if not argument.startswith("-"):
            if url is not None:
                return None
            url = argument
            continue
        name, equals, value = argument.partition("=")
        if name in _FLAGS and not equals:
            flags.add(_FLAGS[name])
        elif name in _VALUED:
            if not equals:
                if at == len(arguments) or arguments[at].startswith("-"):
                    return None
                value = arguments[at]
                at += 1
            values[_VALUED[name]] = value
            if name == "--timeout" and not _seconds(value):
                return None  # argparse refuses it, even if a later --timeout would do
        else:
            return None
    if url is None:
        return None
    timeout = float(values.get("timeout", "1"))
    from .probe import Tls

    tls = Tls(
        enabled="enabled" in flags,
        ca_cert=values.get("ca_cert"),
        client_cert=values.get("client_cert"),
        client_key=values.get("client_key"),
        no_verify="no_verify" in flags,
        server_name=values.get("server_name"),
    )
    return url, values.get("service", ""), timeout, tls


def _seconds(text: str) -> bool:
    """Whether argparse's ``type=float`` takes ``text``."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def run_probe(url: str, service: str, timeout: float, tls: "Tls") -> int:
    """Probe ``url`` once its options are checked: exit code 0 when healthy, 1 otherwise.

    Raises :class:`UsageError` for options that cannot be used together, or a TLS file
    that does not load.
    """
    from . import probe

    if not 0 < timeout <= MAX_PROBE_TIMEOUT:  # NaN too
        raise UsageError(
            "--timeout must be a finite number of seconds > 0 and at most "
            f"{MAX_PROBE_TIMEOUT}, got {timeout:g}"
        )
    problem = probe.tls_problem(url, tls)
    if problem is not None:
        raise UsageError(problem)
    if tls.ca_cert or tls.client_cert:
        try:
            probe.tls_context(tls, "h2")  # a file that does not load is a usage error
        except probe.TlsError as error:
            raise UsageError(str(error)) from None
    return probe.probe(url, service, timeout, tls)


def fail(command: str, error: UsageError) -> "NoReturn":
    """Say ``error`` in one line, whatever the application's errors say (control
    characters escaped), and exit 1."""
    from ..health import printable

    print(printable(f"di {command}: {error}"), file=sys.stderr)
    sys.exit(1)
