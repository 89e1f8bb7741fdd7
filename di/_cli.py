"""The ``di`` command: check an application's health, probe a server, serve health.

- ``di check MODULE:ATTR [--json]``: run the checks once, print them, exit 0 if healthy
  or only degraded.
- ``di probe URL [--service NAME] [--timeout S]``: for Docker HEALTHCHECK; exits 0 or 1.
- ``di serve MODULE:ATTR [--http HOST:PORT] [--grpc HOST:PORT] [--interval S]
  [--drain S] [--grace S] [--limit-concurrency N] [--metrics]``.

``MODULE:ATTR`` names an Injector, or a callable (sync or async) that returns one; an
async callable builds its services on the loop that will serve them.

Probing must start fast (it runs every few seconds in every container): this module
imports only the standard library at the top, ``import di`` loads nothing until a name
is used, and ``probe`` of an HTTP URL never imports grpc.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from .scope import Scope


class _Fail(Exception):
    """A user error: one line on stderr, exit 1, no traceback."""


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of the ``di`` command and ``python -m di``."""
    parser = argparse.ArgumentParser(prog="di", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="run the health checks once and print them")
    check.add_argument("target", metavar="MODULE:ATTR", help="an Injector or a factory of one")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    probe = commands.add_parser("probe", help="probe a health endpoint (exit 0 or 1)")
    probe.add_argument("url", help="http://host:port/path or grpc://host:port")
    probe.add_argument("--service", default="", help="gRPC service name (default: overall)")
    probe.add_argument(
        "--timeout", type=float, default=1.0, help="seconds for the whole probe (default: 1)"
    )
    # Docker reserves exit code 2: a probe's usage error must still exit 1.
    probe.error = lambda message: _exit(1, f"di probe: {message}")  # type: ignore[method-assign]

    serve = commands.add_parser("serve", help="serve health over HTTP and gRPC")
    serve.add_argument("target", metavar="MODULE:ATTR", help="an Injector or a factory of one")
    serve.add_argument("--http", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    serve.add_argument("--grpc", metavar="HOST:PORT", help="default 127.0.0.1:50051")
    serve.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    serve.add_argument(
        "--drain",
        type=float,
        default=5.0,
        help="seconds to answer NOT_SERVING after SIGTERM before stopping (default: 5)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=5.0,
        help="seconds calls in flight get once the servers stop accepting (default: 5)",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=256,
        metavar="N",
        help="open HTTP connections at most; more are closed at once (default: 256)",
    )
    serve.add_argument("--show-details", action="store_true", help="error texts over HTTP")
    serve.add_argument(
        "--metrics", action="store_true", help="Prometheus metrics at /metrics on the HTTP port"
    )

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["probe"]:  # unknown options are reported by the top parser
        parser.error = probe.error  # type: ignore[method-assign]
    elif arguments[:1] == ["serve"]:
        # Handled from here to exit: a signal never cuts short what follows.
        from ._serve import Signals

        signals = Signals()
        signals.install()
    args = parser.parse_args(arguments)
    try:
        if args.command == "probe":
            if not (args.timeout > 0 and args.timeout != float("inf")):
                raise _Fail(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
            code = _probe(args.url, args.service, args.timeout)
        elif args.command == "check":
            code = _run_check(args.target, args.json)
        else:
            code = _run_serve(args, signals)
    except _Fail as error:
        _exit(1, f"di {args.command}: {error}")
    except KeyboardInterrupt:
        _exit(130, "")
    sys.exit(code)


def _exit(code: int, message: str) -> NoReturn:
    if message:
        print(message, file=sys.stderr)
    sys.exit(code)


# -- probe ------------------------------------------------------------------------------


def _probe(url: str, service: str, timeout: float) -> int:
    """Exit code 0 when the endpoint answers healthy, 1 for anything else.

    ``timeout`` bounds the whole probe: name lookup, connect, request and every read.
    """
    import signal
    import time
    from urllib.parse import urlsplit

    deadline = time.monotonic() + timeout

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {timeout:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            healthy, detail = _probe_http(parts, deadline)
        elif parts.scheme == "grpc":
            healthy, detail = _probe_grpc(parts.netloc, service, deadline)
        else:
            healthy, detail = False, f"unsupported URL {url!r}: use http://, https:// or grpc://"
    except Exception as error:  # any failure to get an answer is unhealthy
        healthy, detail = False, f"{type(error).__name__}: {error}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    print(f"{'healthy' if healthy else 'unhealthy'}: {detail}")
    return 0 if healthy else 1


def _left(deadline: float) -> float:
    import time

    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the probe's --timeout ran out")
    return left


def _probe_http(parts: Any, deadline: float) -> tuple[bool, str]:
    """GET the URL and read its status line; 2xx and 3xx pass, as kubelet counts them."""
    import socket

    if not parts.hostname:
        return False, f"no host in {parts.geturl()!r}"
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    connection = socket.create_connection((parts.hostname, port), timeout=_left(deadline))
    try:
        if secure:
            import ssl

            context = ssl.create_default_context()
            connection = context.wrap_socket(connection, server_hostname=parts.hostname)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = parts.netloc.rpartition("@")[2]
        connection.settimeout(_left(deadline))
        connection.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: di-probe\r\n"
            "Connection: close\r\n\r\n".encode("latin-1")
        )
        head = b""
        while b"\r\n" not in head and len(head) < 8192:
            connection.settimeout(_left(deadline))  # every read within the deadline
            chunk = connection.recv(1024)
            if not chunk:
                break
            head += chunk
    finally:
        connection.close()
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        return False, f"not an HTTP answer from {parts.geturl()}: {line[:80]!r}"
    status = int(code)
    return 200 <= status < 400, f"HTTP {status} from {parts.geturl()}"


def _probe_grpc(address: str, service: str, deadline: float) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            response = stub.Check(request, timeout=_left(deadline))  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            return False, f"{error.code().name} from {address} for {service!r}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return status == "SERVING", f"{status} from {address} for {service!r}"


# -- loading the application -------------------------------------------------------------


def _load(target: str) -> object:
    import importlib

    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise _Fail(f"expected MODULE:ATTR, got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: local modules import
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as error:
        raise _Fail(f"cannot import module {module_name!r}: {error}") from None
    except Exception as error:
        raise _Fail(f"importing {module_name!r} failed: {type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _Fail(f"module {module_name!r} has no attribute {attribute!r}") from None
    return found


async def _injector(target: str) -> Scope:
    import inspect

    from .scope import Scope

    found = _load(target)
    if not isinstance(found, Scope) and callable(found):
        try:
            found = found()
            if inspect.isawaitable(found):
                found = await found
        except _Fail:
            raise
        except Exception as error:
            raise _Fail(f"{target}() failed: {type(error).__name__}: {error}") from None
    if not isinstance(found, Scope):
        raise _Fail(
            f"{target} is not an Injector, nor a callable returning one "
            f"(got {type(found).__name__})"
        )
    return found


# -- check --------------------------------------------------------------------------------


def _run_check(target: str, as_json: bool) -> int:
    import json

    import anyio

    async def check() -> int:
        injector = await _injector(target)
        try:
            await injector.astart()  # eager services: never built means never checked
            report = await injector.ahealth_report()
        except Exception as error:
            notes = "; ".join(getattr(error, "__notes__", ()))
            print(f"start failed: {type(error).__name__}: {error} ({notes})", file=sys.stderr)
            return 1
        finally:
            await _shut_down(injector)
        if as_json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            rows = [("SERVICE", "OUTCOME", "DURATION", "ERROR")] + [
                (c.key, c.outcome.value, f"{c.duration * 1000:.1f} ms", str(c.error or ""))
                for c in report.checks
            ]
            widths = [max(len(row[i]) for row in rows) for i in range(3)]
            for row in rows:
                print(
                    "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]
                )
            word = {"pass": "healthy", "warn": "degraded", "fail": "unhealthy"}[report.status]
            print(f"{word}: {len(report.checks)} checks")
        return 0 if report.healthy else 1

    return anyio.run(check)


async def _shut_down(injector: Scope) -> bool:
    from .errors import ShutdownError

    try:
        await injector.ashutdown()
    except ShutdownError as error:
        print(f"shutdown: {error}", file=sys.stderr)
        return False
    return True


# -- serve --------------------------------------------------------------------------------


def _address(text: str, option: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _Fail(f"bad {option} address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def _run_serve(args: argparse.Namespace, signals: Any) -> int:
    import math

    from ._serve import Options, Run, configure_logging, missing_extra

    configure_logging()
    for option, value in (("--interval", args.interval), ("--drain", args.drain)):
        if not (value > 0 if option == "--interval" else value >= 0) or not math.isfinite(value):
            bound = "> 0" if option == "--interval" else ">= 0"
            raise _Fail(f"{option} must be a finite number of seconds {bound}, got {value:g}")
    if not (args.grace >= 0 and math.isfinite(args.grace)):
        raise _Fail(f"--grace must be a finite number of seconds >= 0, got {args.grace:g}")
    if args.limit_concurrency < 1:
        raise _Fail(f"--limit-concurrency must be >= 1, got {args.limit_concurrency}")
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
    )
    if args.metrics and options.http is None:
        raise _Fail("--metrics serves /metrics on the HTTP port: give --http too")
    missing = missing_extra(options)
    if missing is not None:
        raise _Fail(missing)

    import anyio

    run = Run(options, lambda: _injector(args.target), signals, _shut_down)
    # grpcio's server runs on asyncio only.
    try:
        code = anyio.run(run.main, backend="asyncio")
    except BaseException as error:  # the loop itself stopped: see Run.rescue
        code = run.rescue(error)
    if run.failed is not None:
        raise _Fail(run.failed)
    return code
