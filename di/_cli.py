"""The ``di`` command: check an application's health, probe a server, serve health.

- ``di check MODULE:ATTR [--json]``: run the checks once, print them, exit 0 if healthy.
- ``di probe URL [--service NAME] [--timeout S]``: for Docker HEALTHCHECK; exits 0 or 1.
- ``di serve MODULE:ATTR [--http HOST:PORT] [--grpc HOST:PORT] [--interval S]``.

``MODULE:ATTR`` names an Injector, or a callable (sync or async) that returns one; an
async callable builds its services on the loop that will serve them.

Probing must start fast (it runs every few seconds in every container): this module
imports only the standard library at the top, and ``probe`` of an HTTP URL never
imports grpc.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
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
    probe.add_argument("--timeout", type=float, default=1.0, help="seconds (default: 1)")
    # Docker reserves exit code 2: a probe's usage error must still exit 1.
    probe.error = lambda message: _exit(1, f"di probe: {message}")  # type: ignore[method-assign]

    serve = commands.add_parser("serve", help="serve health over HTTP and gRPC")
    serve.add_argument("target", metavar="MODULE:ATTR", help="an Injector or a factory of one")
    serve.add_argument("--http", metavar="HOST:PORT", help="default 127.0.0.1:8080")
    serve.add_argument("--grpc", metavar="HOST:PORT", help="default 127.0.0.1:50051")
    serve.add_argument("--interval", type=float, default=5.0, help="seconds between checks")
    serve.add_argument("--show-details", action="store_true", help="error texts over HTTP")

    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["probe"]:  # unknown options are reported by the top parser
        parser.error = probe.error  # type: ignore[method-assign]
    args = parser.parse_args(arguments)
    try:
        if args.command == "probe":
            code = _probe(args.url, args.service, args.timeout)
        elif args.command == "check":
            code = _run_check(args.target, args.json)
        else:
            code = _run_serve(args)
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
    """Exit code 0 when the endpoint answers healthy, 1 for anything else."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            healthy, detail = _probe_http(parts, timeout)
        elif parts.scheme == "grpc":
            healthy, detail = _probe_grpc(parts.netloc, service, timeout)
        else:
            healthy, detail = False, f"unsupported URL {url!r}: use http://, https:// or grpc://"
    except Exception as error:  # any failure to get an answer is unhealthy
        healthy, detail = False, f"{type(error).__name__}: {error}"
    print(f"{'healthy' if healthy else 'unhealthy'}: {detail}")
    return 0 if healthy else 1


def _probe_http(parts: Any, timeout: float) -> tuple[bool, str]:
    import http.client

    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    if not parts.hostname:
        return False, f"no host in {parts.geturl()!r}"
    connection = kind(parts.hostname, parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"User-Agent": "di-probe"})
        status = connection.getresponse().status
    finally:
        connection.close()
    return 200 <= status < 300, f"HTTP {status} from {parts.geturl()}"


def _probe_grpc(address: str, service: str, timeout: float) -> tuple[bool, str]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False, f"cannot connect to {address} within {timeout:g} s"
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            response = stub.Check(request, timeout=timeout)  # type: ignore[attr-defined]
        except grpc.RpcError as error:
            return False, f"{error.code().name} from {address} for {service!r}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return status == "SERVING", f"{status} from {address} for {service!r}"


# -- loading the application -------------------------------------------------------------


def _load(target: str) -> object:
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
    import anyio

    async def check() -> int:
        injector = await _injector(target)
        try:
            report = await injector.ahealth_report()
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
            print(f"{'healthy' if report.healthy else 'unhealthy'}: {len(report.checks)} checks")
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


def _run_serve(args: argparse.Namespace) -> int:
    import anyio

    from ._serve import configure_logging, serve

    configure_logging()
    if args.interval <= 0:
        raise _Fail(f"--interval must be > 0, got {args.interval:g}")
    both = args.http is None and args.grpc is None
    http = _address(args.http or "127.0.0.1:8080", "--http") if args.http or both else None
    grpc = _address(args.grpc or "127.0.0.1:50051", "--grpc") if args.grpc or both else None

    async def run() -> int:
        injector = await _injector(args.target)
        try:
            await serve(injector, http, grpc, args.interval, args.show_details)
        except OSError as error:
            await _shut_down(injector)
            raise _Fail(str(error)) from None
        return 0 if await _shut_down(injector) else 1

    # grpcio's server runs on asyncio only.
    return anyio.run(run, backend="asyncio")
