"""The di command's arguments: check an application's health, probe a server, serve health.

- ``di check MODULE:ATTR [--json] [--tag TAG]``: run the checks once (of the services
  with a tag, with ``--tag``), print them and their root causes, exit 0 if healthy or
  only degraded.
- ``di graph MODULE:ATTR [--validate]``: print the dependency graph as Mermaid.
- ``di probe URL [--service NAME] [--timeout S] [--tls] [--tls-ca-cert FILE]
  [--tls-client-cert FILE --tls-client-key FILE] [--tls-no-verify]
  [--tls-server-name NAME]``: for Docker HEALTHCHECK; exits 0 or 1. The TLS flags are
  grpc_health_probe's, and take its single-dash spelling too (``-tls-ca-cert``).
- ``di serve MODULE:ATTR [--http HOST:PORT] [--grpc HOST:PORT] [--interval S]
  [--drain S] [--grace S] [--limit-concurrency N] [--metrics] [--ui]
  [--unbuilt {warn,fail,ignore}] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]]
  [--failure-threshold N] [--success-threshold N] [--info KEY=VALUE]
  [--grpc-service NAME[=MEMBER,...]]``.
- ``di run MODULE:APP [--host H] [--port P] [--uds PATH] [--drain S] [--grace S]
  [--factory]``:
  serve an ASGI application under uvicorn, draining on SIGTERM (:mod:`.run`).

The path of a command: :func:`di._cli.main` hands here whatever it does not run itself
(every command but a ``probe`` whose arguments are plain, see
:func:`di._cli.probe_options`); :func:`run` parses the arguments with :func:`parser` (for
``serve``, SIGINT and SIGTERM are handled from before parsing, see
:class:`.serve.Signals`), then runs ``check`` and ``graph`` here, ``probe`` through
:func:`di._cli.run_probe`, ``serve`` in :mod:`.serve` once its options are checked, and
``run`` in :mod:`.run` once the application is loaded. A user error
(:class:`di._cli.UsageError`) is one line on stderr and exit 1.

``MODULE:ATTR`` names an Injector, or a callable (sync or async) that returns one; an
async callable builds its services on the loop that will serve them.

This module imports only the standard library at the top, ``import di`` loads nothing
until a name is used, and ``probe`` of an HTTP URL never imports grpc.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import UsageError, fail, run_probe

if TYPE_CHECKING:
    from ..health import HealthPolicy, HealthReport
    from ..scope import Scope
    from .probe import Tls


DOCS = "https://github.com/healthdi/healthdi/blob/main/docs/exposure.md"

# Help texts are plain text: the terminal shows them as written.
DESCRIPTION = """\
Check an application's health, probe a health endpoint, or serve an application's
health endpoints. Run "di COMMAND --help" for each command."""

CHECK = """\
Build the application's eager services, run every health check once, print one line
per check and a summary (or the report as JSON with --json), then shut the application
down. Exits 0 when every check passes or is only degraded, 1 otherwise, and 1 when no
check ran. Services with a health check that were not built (lazy, and neither eager
nor invoked by the factory) are not checked: they are named on stderr. A check that
failed because a service it depends on failed says "blocked by" that service, and the
root causes are named after the summary; --tag checks only the services with a tag."""

PROBE = """\
Ask a running server whether it is healthy, for Docker's HEALTHCHECK and for scripts.
An http:// or https:// URL passes on a 2xx or 3xx answer (as the kubelet counts them);
grpc://HOST:PORT calls the gRPC health service (grpc.health.v1.Health/Check) and
passes on SERVING. Prints one line; exits 0 when healthy and 1 otherwise, never 2
(Docker reserves it).

TLS: an https:// URL is verified against the system's trust store, or --tls-ca-cert;
gRPC over TLS needs --tls. The TLS flags are grpc_health_probe's, and its single-dash
spellings work too (-tls -tls-ca-cert ca.pem)."""

SERVE = f"""\
Serve the health endpoints of an application, beside it: a health sidecar. A
HealthMonitor runs the application's health checks every --interval seconds, and the
servers answer from what it last published: over HTTP, /health, /livez and /readyz;
over gRPC, the health service grpc.health.v1.Health. On SIGTERM every status but
liveness turns NOT_SERVING for --drain seconds, calls in flight get --grace seconds,
and the application is shut down.

di serve does not serve the application itself. To serve your application with its
health routes beside its own, mount di.asgi.health_app in your ASGI application, or add
di.grpc.add_health_servicer to your gRPC server: see {DOCS}. Integrations for FastAPI,
Starlette, Litestar, grpc.aio, Flask, Django and aiohttp (di.integrations) do both in one
call, with the container's lifespan and a scope per request; a worker or a script with
no port runs these servers inside itself with di.HealthServer."""

RUN = f"""\
Serve an ASGI application (FastAPI, Starlette, Litestar) under uvicorn, draining it
before it stops. On SIGTERM the monitor the application installed turns NOT_SERVING at
once (readiness fails; liveness stays up), the application keeps serving every route
for --drain seconds so that load balancers move away, then uvicorn stops accepting,
gives the requests in flight --grace seconds to finish (then cancels them: a stream
without end would keep the process for ever) and runs the application's shutdown.
SIGINT (Ctrl-C), or a second signal, skips the drain.

The monitor is the one the integration's install() (or DIPlugin) recorded on the
application, as app.state.healthdi_monitor. See {DOCS}."""

TARGET = "an Injector, or a function (sync or async) returning one: myapp.container:create_app"


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own; argparse would merge them."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            super(_Formatter, self)._fill_text(paragraph, width, indent)
            for paragraph in text.split("\n\n")
        )


class _Version(argparse.Action):
    """``--version``: read from the installed package's metadata only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from .. import __version__

        print(f"healthdi {__version__}")
        parser.exit()


def parser() -> argparse.ArgumentParser:
    """The ``di`` command's arguments, every command's."""
    parser = argparse.ArgumentParser(prog="di", description=DESCRIPTION, formatter_class=_Formatter)
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, formatter_class=_Formatter
        )

    check = command("check", "run the health checks once and print them", CHECK)
    check.add_argument("target", metavar="MODULE:ATTR", help=TARGET)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="only the services provided with this tag (repeat for any of several)",
    )

    graph = command(
        "graph",
        "print the dependency graph as a Mermaid flowchart",
        "Print every service the injector sees and what each needs, as a Mermaid "
        "flowchart (paste it into any Markdown that renders Mermaid). Nothing is built. "
        "With --validate, also check the graph and exit 1 listing every problem.",
    )
    graph.add_argument("target", metavar="MODULE:ATTR", help=TARGET)
    graph.add_argument(
        "--validate", action="store_true", help="check the graph too; exit 1 on a problem"
    )

    probe = command("probe", "probe a health endpoint for Docker (exit 0 or 1)", PROBE)
    probe.add_argument("url", metavar="URL", help="http://HOST:PORT/PATH or grpc://HOST:PORT")
    probe.add_argument(
        "--service",
        default="",
        metavar="NAME",
        help="the gRPC health service name to ask for, such as readiness (default: the "
        "whole application)",
    )
    probe.add_argument(
        "--timeout",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="for the whole probe (default: 1)",
    )
    tls = probe.add_argument_group("TLS (grpc_health_probe's flags)")
    tls.add_argument(
        "--tls", "-tls", action="store_true", help="gRPC over TLS (https:// always is)"
    )
    tls.add_argument(
        "--tls-ca-cert",
        "-tls-ca-cert",
        metavar="FILE",
        help="verify the server against these CA certificates (PEM) instead of the "
        "system's trust store",
    )
    tls.add_argument(
        "--tls-client-cert",
        "-tls-client-cert",
        metavar="FILE",
        help="this probe's certificate (PEM), for mutual TLS; with --tls-client-key",
    )
    tls.add_argument(
        "--tls-client-key", "-tls-client-key", metavar="FILE", help="its private key (PEM)"
    )
    tls.add_argument(
        "--tls-no-verify",
        "-tls-no-verify",
        action="store_true",
        help="do not verify the server's certificate (encryption without authentication)",
    )
    tls.add_argument(
        "--tls-server-name",
        "-tls-server-name",
        metavar="NAME",
        help="the name to verify the certificate for and to send as SNI (default: the URL's host)",
    )
    # Docker reserves exit code 2: a probe's usage error must still exit 1.
    probe.error = _probe_error  # type: ignore[method-assign]

    serve = command(
        "serve", "serve an application's health endpoints over HTTP and gRPC (a sidecar)", SERVE
    )
    serve.add_argument("target", metavar="MODULE:ATTR", help=TARGET)
    serve.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve HTTP here (default: 127.0.0.1:8080, unless only --grpc is given)",
    )
    serve.add_argument(
        "--grpc",
        metavar="HOST:PORT",
        help="serve gRPC here (default: 127.0.0.1:50051, unless only --http is given)",
    )
    serve.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="between two rounds of checks (default: 5)",
    )
    serve.add_argument(
        "--drain",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="to answer NOT_SERVING after SIGTERM before stopping (default: 5)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="that calls in flight get once the servers stop accepting (default: 5)",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=256,
        metavar="N",
        help="open HTTP connections at most; a new one closes the connection that has "
        "waited longest for a request (default: 256)",
    )
    serve.add_argument(
        "--show-details",
        action="store_true",
        help="put the checks' error texts in HTTP answers (they can carry secrets)",
    )
    serve.add_argument(
        "--metrics",
        action="store_true",
        help="serve Prometheus metrics at /metrics on the HTTP port",
    )
    serve.add_argument(
        "--ui",
        action="store_true",
        help="serve the status page at /health/ui on the HTTP port (a browser asking "
        "for /health is sent there)",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS and gRPC over TLS with this certificate (PEM, any intermediate "
        "certificates after it); with --tls-key",
    )
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    serve.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="mutual TLS: require a client certificate signed by these CA certificates "
        "(PEM) on both ports",
    )
    serve.add_argument(
        "--unbuilt",
        choices=("warn", "fail", "ignore"),
        default="warn",
        help="services with a health check that were not built (so never checked): "
        "warn logs them at the start and lists them in /health and /readyz?verbose; "
        "fail also holds readiness NOT_SERVING until they are built; ignore says "
        "nothing (default: warn)",
    )
    for which, turns in (("failure", "NOT_SERVING"), ("success", "SERVING again")):
        serve.add_argument(
            f"--{which}-threshold",
            type=int,
            default=1,
            metavar="N",
            help=f"consecutive {which}s before a service's status turns {turns}, for "
            "services provided without a health_policy (default: 1)",
        )
    serve.add_argument(
        "--info",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a top-level field of /health: version, releaseId, serviceId or description "
        "(repeat for each)",
    )
    serve.add_argument(
        "--grpc-service",
        action="append",
        default=[],
        metavar="NAME[=MEMBER,...]",
        help="a gRPC service name health answers for (shop.Orders): the whole "
        "application's status, or that of the members given (service keys, tag:NAME, "
        "*); repeat for each",
    )

    run = command("run", "serve an ASGI application under uvicorn, draining on SIGTERM", RUN)
    run.add_argument(
        "target",
        metavar="MODULE:APP",
        help="the ASGI application (or, with --factory, a function returning it): myapp.main:app",
    )
    run.add_argument("--host", default="127.0.0.1", help="listen here (default: 127.0.0.1)")
    run.add_argument(
        "--port", type=int, default=8000, help="listen on this port (default: 8000; 0 picks one)"
    )
    run.add_argument("--uds", metavar="PATH", help="listen on this Unix socket instead")
    run.add_argument(
        "--drain",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="to keep serving, NOT_SERVING, after SIGTERM before stopping (default: 5)",
    )
    run.add_argument(
        "--grace",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="that requests in flight get once uvicorn stops accepting; then they are "
        "cancelled and the application's shutdown runs (default: 5)",
    )
    run.add_argument(
        "--factory", action="store_true", help="MODULE:APP is a function returning the app"
    )

    return parser


def run(arguments: list[str]) -> NoReturn:
    """Run the command ``arguments`` name (those after ``di``)."""
    top = parser()
    if arguments[:1] == ["probe"]:  # unknown options are reported by the top parser
        top.error = _probe_error  # type: ignore[method-assign]
    elif arguments[:1] == ["serve"]:
        # Handled from here to exit: a signal never cuts short what follows.
        from .serve import Signals

        signals = Signals()
        signals.install()
    args = top.parse_args(arguments)
    try:
        if args.command == "probe":
            code = _run_probe(args)
        elif args.command == "check":
            code = _run_check(args.target, args.json, args.tag)
        elif args.command == "graph":
            code = _run_graph(args.target, args.validate)
        elif args.command == "run":
            code = _run_app(args)
        else:
            code = _run_serve(args, signals)
    except UsageError as error:
        fail(args.command, error)
    except KeyboardInterrupt:
        _exit(130, "")
    sys.exit(code)


def _run_probe(args: argparse.Namespace) -> int:
    return run_probe(args.url, args.service, args.timeout, probe_tls(args))


def probe_tls(args: argparse.Namespace) -> Tls:
    """The TLS options of ``di probe`` as argparse read them."""
    from .probe import Tls

    return Tls(
        enabled=args.tls,
        ca_cert=args.tls_ca_cert,
        client_cert=args.tls_client_cert,
        client_key=args.tls_client_key,
        no_verify=args.tls_no_verify,
        server_name=args.tls_server_name,
    )


def _probe_error(message: str) -> NoReturn:
    _exit(1, f"di probe: {message}")


def _exit(code: int, message: str) -> NoReturn:
    if message:
        print(message, file=sys.stderr)
    sys.exit(code)


# -- loading the application -------------------------------------------------------------


def _load(target: str) -> object:
    import importlib

    from ..health import error_text, explain_error

    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"expected MODULE:ATTR, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: local modules import
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import module {module_name!r}: {error_text(error)}") from None
    except Exception as error:
        raise UsageError(f"importing {module_name!r} failed: {explain_error(error)}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return found


async def _injector(target: str) -> Scope:
    import inspect

    from ..health import explain_error
    from ..scope import Scope

    found = _load(target)
    if inspect.isclass(found) and not issubclass(found, Scope):
        # A service class, most often: calling it would build it outside any container.
        raise UsageError(
            f"{target} is the class {found.__qualname__}, not an injector factory: name "
            "the Injector (MODULE:injector) or a function that builds and returns it "
            "(MODULE:create_app)"
        )
    if not isinstance(found, Scope) and callable(found):
        try:
            made = found()
            if inspect.isawaitable(made):
                made = await made
        except UsageError:
            raise
        except Exception as error:
            raise UsageError(f"{target}() failed: {explain_error(error)}") from None
        if not isinstance(made, Scope):
            raise UsageError(
                f"{target}() returned {type(made).__name__}, not an Injector: the factory "
                "must return the Injector it builds"
            )
        return made
    if not isinstance(found, Scope):
        raise UsageError(
            f"{target} is not an Injector, nor a function returning one "
            f"(got {type(found).__name__})"
        )
    return found


# -- graph --------------------------------------------------------------------------------


def _run_graph(target: str, validate: bool) -> int:
    import anyio

    from ..errors import GraphError

    async def graph() -> int:
        injector = await _injector(target)
        try:
            print(injector.graph())
            if validate:
                injector.validate()
        except GraphError as error:
            print(error, file=sys.stderr)
            return 1
        finally:
            await _shut_down(injector)
        return 0

    return anyio.run(graph)


# -- check --------------------------------------------------------------------------------


def _run_check(target: str, as_json: bool, tags: list[str] | None = None) -> int:
    import json

    import anyio

    async def check() -> int:
        from .._container.runner import cancel_requests, cancelled_from_outside, is_cancellation
        from .._container.views import unbuilt_checks
        from ..health import explain_error

        injector = await _injector(target)
        baseline = cancel_requests()
        try:
            try:
                await injector.astart()  # eager services: never built means never checked
            except BaseException as error:
                # Whatever an eager factory raised (SystemExit, CancelledError) is a
                # failed start, exit 1; Ctrl-C is not.
                if isinstance(error, KeyboardInterrupt) or (
                    is_cancellation(error) and cancelled_from_outside(baseline)
                ):
                    raise
                print(f"start failed: {explain_error(error)}", file=sys.stderr)
                return 1
            report = await injector.ahealth_report()
            unbuilt = [service.label for service in unbuilt_checks(injector)]
            if tags:
                report, unbuilt = _tagged(injector, report, unbuilt, tags)
        finally:
            await _shut_down(injector)
        if as_json:
            print(json.dumps({**report.to_dict(), "unbuilt": unbuilt}, indent=2))
        else:
            _print_table(report)
        if unbuilt:
            print(_unbuilt_note(unbuilt), file=sys.stderr)
        if not report.checks:
            print(f"di check: {_no_checks(unbuilt)}", file=sys.stderr)
            return 1
        return 0 if report.healthy else 1

    return anyio.run(check)


def _tagged(
    injector: Scope, report: HealthReport, unbuilt: list[str], tags: list[str]
) -> tuple[HealthReport, list[str]]:
    """``report`` and ``unbuilt`` narrowed to the services with one of ``tags``."""
    from .._container.views import tags as tags_of
    from ..health import HealthReport

    known = tags_of(injector)
    wanted = set(tags)
    missing = wanted - {tag for found in known.values() for tag in found}
    if missing:
        raise UsageError(
            f"--tag {', '.join(sorted(missing))}: no service visible from the injector has "
            "that tag (provide(..., tags=(...)))"
        )
    kept = tuple(c for c in report.checks if wanted & known.get(c.key, frozenset()))
    return HealthReport(kept), [label for label in unbuilt if wanted & known.get(label, set())]


# A service name longer than this goes on a line of its own, its cells on the next,
# under their columns: one long name (redis.asyncio.client.Redis) leaves the table
# readable instead of pushing every outcome and error off the screen.
NAME_WIDTH = 32


def _print_table(report: HealthReport) -> None:
    """One line per check, then the summary; every cell printable (no control character
    a check's error carries reaches the terminal)."""
    from ..health import error_text, printable

    rows = [("SERVICE", "OUTCOME", "DURATION", "ERROR")] + [
        (
            printable(c.key),
            c.outcome.value,
            f"{c.duration * 1000:.1f} ms",
            ("" if c.error is None else printable(error_text(c.error)))
            + (f" (blocked by {', '.join(map(printable, c.blocked_by))})" if c.blocked_by else ""),
        )
        for c in report.checks
    ]
    widths = [max(len(row[i]) for row in rows if i or len(row[i]) <= NAME_WIDTH) for i in range(3)]
    for name, *cells in rows:
        if len(name) > widths[0]:
            print(name)
            name = ""
        line = "  ".join(cell.ljust(w) for cell, w in zip((name, *cells), widths, strict=False))
        print(f"{line} {cells[-1]}".rstrip())
    print(_summary(report))
    if report.root_causes and len(report.root_causes) < len(
        [c for c in report.checks if not c.healthy]
    ):
        print(f"root cause: {', '.join(map(printable, report.root_causes))}")


def _unbuilt_note(unbuilt: list[str]) -> str:
    """The line naming the services with a check that nothing built."""
    names = ", ".join(repr(label) for label in unbuilt)
    one = len(unbuilt) == 1
    return (
        f"not checked: {names} {'has' if one else 'have'} a health check but "
        f"{'was' if one else 'were'} not built; provide {'it' if one else 'them'} with "
        "eager=True, or build it in the factory"
    )


def _no_checks(unbuilt: list[str]) -> str:
    """Why no check ran."""
    if unbuilt:
        return "no check ran: every service with a health check is lazy and was not built"
    return (
        "no check ran: no service visible from the injector has a health check "
        "(a health_check() method, or provide(..., health_check=...))"
    )


def _summary(report: HealthReport) -> str:
    """The last line of ``di check``: "healthy: 3 checks, 0 failed"."""
    from ..health import Outcome

    count = len(report.checks)
    if count == 0:
        return "unhealthy: no checks ran"
    verdict = {"pass": "healthy", "warn": "degraded", "fail": "unhealthy"}[report.status]
    failed = sum(
        check.outcome not in (Outcome.HEALTHY, Outcome.DEGRADED) for check in report.checks
    )
    degraded = sum(check.outcome is Outcome.DEGRADED for check in report.checks)
    line = f"{verdict}: {count} check{'s' if count != 1 else ''}, {failed} failed"
    return f"{line}, {degraded} degraded" if degraded else line


async def _shut_down(injector: Scope) -> bool:
    from ..errors import ShutdownError

    try:
        await injector.ashutdown()
    except ShutdownError as error:
        print(f"shutdown: {error}", file=sys.stderr)
        return False
    return True


# -- serve --------------------------------------------------------------------------------


def _address(text: str, option: str) -> tuple[str, int]:
    from .._serving.listeners import parse_address

    try:
        return parse_address(text, option)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _run_serve(args: argparse.Namespace, signals: Any) -> int:
    import math

    from .._serving.listeners import TlsFiles, server_context
    from .serve import Options, Run, configure_logging, missing_extra

    configure_logging()
    # grpcio logs every failed TLS handshake (a port scanner, a TCP check, a plaintext
    # client), unthrottled, unless told otherwise before its first server starts.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for option, value in (("--interval", args.interval), ("--drain", args.drain)):
        if not (value > 0 if option == "--interval" else value >= 0) or not math.isfinite(value):
            bound = "> 0" if option == "--interval" else ">= 0"
            raise UsageError(f"{option} must be a finite number of seconds {bound}, got {value:g}")
    if not (args.grace >= 0 and math.isfinite(args.grace)):
        raise UsageError(f"--grace must be a finite number of seconds >= 0, got {args.grace:g}")
    if args.limit_concurrency < 1:
        raise UsageError(f"--limit-concurrency must be >= 1, got {args.limit_concurrency}")
    tls = None
    if args.tls_cert or args.tls_key or args.tls_client_ca:
        if not (args.tls_cert and args.tls_key):
            raise UsageError(
                "--tls-cert and --tls-key go together: give both "
                "(and --tls-client-ca for mutual TLS)"
            )
        tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
        try:
            server_context(tls)  # the files load now, or the command says which does not
        except ValueError as error:
            raise UsageError(str(error)) from None
    both = args.http is None and args.grpc is None
    options = Options(
        http=_address(args.http or "127.0.0.1:8080", "--http") if args.http or both else None,
        grpc=_address(args.grpc or "127.0.0.1:50051", "--grpc") if args.grpc or both else None,
        interval=args.interval,
        drain=args.drain,
        grace=args.grace,
        show_details=args.show_details,
        limit_concurrency=args.limit_concurrency,
        metrics=args.metrics,
        ui=args.ui,
        tls=tls,
        unbuilt=args.unbuilt,
        policy=_policy(args),
        info=_pairs(args.info, "--info", "KEY=VALUE"),
        grpc_services={
            name: [m for m in members.split(",") if m] if members else ["*"]
            for name, members in _pairs(args.grpc_service, "--grpc-service", "NAME").items()
        },
    )
    if options.info:
        from ..monitor import INFO_FIELDS

        for key in options.info:
            if key not in INFO_FIELDS:
                raise UsageError(
                    f"--info {key}=...: not a field of /health; use {', '.join(INFO_FIELDS)}"
                )
    if args.metrics and options.http is None:
        raise UsageError("--metrics serves /metrics on the HTTP port: give --http too")
    if args.ui and options.http is None:
        raise UsageError("--ui serves /health/ui on the HTTP port: give --http too")
    missing = missing_extra(options)
    if missing is not None:
        raise UsageError(missing)

    run = Run(options, lambda: _injector(args.target), signals, _shut_down)
    try:
        code = run.run()
    except UsageError:
        raise  # the application could not be loaded: nothing to shut down
    except BaseException as error:  # the loop itself stopped: see Run.rescue
        code = run.rescue(error)
    if run.left_behind:
        # Code that ignores cancellation is still suspended in a task: the interpreter's
        # teardown would resume it to close it, and it may never end. Everything that
        # had to run has run: leave now.
        if run.failed is not None:
            print(f"di serve: {run.failed}", file=sys.stderr)
            code = 1
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if run.failed is not None:
        raise UsageError(run.failed)
    return code


# -- run ------------------------------------------------------------------------------------


def _run_app(args: argparse.Namespace) -> int:
    import importlib.util
    import math

    from ..health import explain_error

    for option, value in (("--drain", args.drain), ("--grace", args.grace)):
        if not (value >= 0 and math.isfinite(value)):
            raise UsageError(f"{option} must be a finite number of seconds >= 0, got {value:g}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be a port number (0 to 65535), got {args.port}")
    if args.uds is not None:
        _check_socket_path(args.uds)
    if importlib.util.find_spec("uvicorn") is None:
        raise UsageError(
            "di run needs the http extra (uvicorn is not installed): pip install 'healthdi[http]'"
        )
    from .run import Options, installed_monitor, serve
    from .serve import configure_logging

    configure_logging()
    app = _load(args.target)
    if args.factory:
        if not callable(app):
            raise UsageError(f"--factory: {args.target} is not callable")
        try:
            app = app()
        except Exception as error:
            raise UsageError(f"{args.target}() failed: {explain_error(error)}") from None
    if not callable(app):
        raise UsageError(f"{args.target} is not an ASGI application (got {type(app).__name__})")
    monitor = installed_monitor(app)
    if monitor is None and args.drain > 0:
        raise UsageError(
            f"{args.target} has no HealthMonitor to drain: install the integration "
            "(di.integrations.fastapi.install, starlette.install, litestar.DIPlugin), "
            "which records it as app.state.healthdi_monitor, or set it there; "
            "--drain 0 serves without draining"
        )
    options = Options(
        host=args.host, port=args.port, uds=args.uds, drain=args.drain, grace=args.grace
    )
    return serve(app, options, monitor)


def _policy(args: argparse.Namespace) -> HealthPolicy | None:
    """The policy --failure-threshold and --success-threshold make; None for neither."""
    from ..health import HealthPolicy

    if args.failure_threshold == 1 and args.success_threshold == 1:
        return None
    try:
        return HealthPolicy(
            failure_threshold=args.failure_threshold, success_threshold=args.success_threshold
        )
    except ValueError:
        raise UsageError(
            "--failure-threshold and --success-threshold must be whole numbers >= 1, got "
            f"{args.failure_threshold} and {args.success_threshold}"
        ) from None


def _pairs(given: list[str], option: str, form: str) -> dict[str, str]:
    """``KEY=VALUE`` options (``NAME`` alone is ``NAME=""``), each key once."""
    found: dict[str, str] = {}
    for item in given:
        key, equals, value = item.partition("=")
        if not key or (form == "KEY=VALUE" and not equals):
            raise UsageError(f"{option} takes {form}, got {item!r}")
        if key in found:
            raise UsageError(f"{option} {key}: given twice")
        found[key] = value
    return found


UNIX_PATH_MAX = 107  # bytes of a Unix socket's path, its terminating NUL aside (Linux)


def _check_socket_path(path: str) -> None:
    """Refuse a ``--uds`` path no socket can be bound at, before the app starts."""
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise UsageError(
            f"--uds {path}: a Unix socket's path is at most {UNIX_PATH_MAX} bytes, this "
            f"one is {size}: use a shorter path"
        )
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--uds {path}: its folder {folder} does not exist")
