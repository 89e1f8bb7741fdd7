"""`make demo`: serve the shop, a FastAPI app with its health routes, on embedded defaults.

Starts a local redis-server on a free loopback port when one is installed (unless
SHOP_REDIS_URL points elsewhere), else runs on SQLite alone and says so; then serves
the shop's FastAPI app (examples.shop.api) with uvicorn until Ctrl-C, on
127.0.0.1:--port (8080) and its gRPC health service on 127.0.0.1:--grpc-port (50051):
``make demo PORT=8081 GRPC_PORT=50052``. A port already taken is said before anything
starts. The container starts and stops with the app (di.integrations.fastapi).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import cast

HOST = "127.0.0.1"
PORT, GRPC_PORT = 8080, 50051  # make demo PORT=... GRPC_PORT=...


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_command(binary: str, port: int) -> list[str]:
    """A throwaway redis-server on a loopback port: nothing saved to disk."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def redis_steps(redis: subprocess.Popen[bytes]) -> str:
    """How to stop the demo's redis-server and start it again, as commands to paste."""
    command = cast("list[str]", redis.args)  # the list given to Popen
    return f"""
To watch readiness fail, stop redis-server:
  kill {redis.pid}
To watch it recover, start it again on the same port, in a terminal of its own
(Ctrl-C there stops it again):
  {shlex.join(command)}
"""


def _start_redis() -> tuple[subprocess.Popen[bytes] | None, str | None]:
    if os.environ.get("SHOP_REDIS_URL"):
        return None, os.environ["SHOP_REDIS_URL"]
    binary = shutil.which("redis-server")
    if binary is None:
        print("redis-server is not installed: the shop runs on SQLite alone")
        print("  (apt-get install redis-server, or set SHOP_REDIS_URL, to add the cache)")
        return None, None
    port = _free_port()
    process = subprocess.Popen(redis_command(binary, port), stdout=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    print(f"started redis-server on 127.0.0.1:{port} (pid {process.pid})")
    return process, f"redis://127.0.0.1:{port}"


def instructions(
    redis: subprocess.Popen[bytes] | None, port: int = PORT, grpc_port: int = GRPC_PORT
) -> str:
    """What to try while the shop is served."""
    http = f"{HOST}:{port}"
    return f"""
The shop: http://{http} (its health over gRPC: {HOST}:{grpc_port}). Try, from another terminal:
  curl -X POST http://{http}/orders/tea
  curl http://{http}/orders/count
  curl -i http://{http}/health
  curl http://{http}/readyz?verbose
  curl -X POST -d '{{"service": ""}}' http://{http}/grpc.health.v1.Health/Check
  .venv/bin/di probe http://{http}/livez
  .venv/bin/di probe grpc://{HOST}:{grpc_port}
{redis_steps(redis) if redis else ""}
Ctrl-C stops the server (it goes NOT_SERVING, then shuts the container down).
"""


def taken(port: int) -> bool:
    """Whether something on this machine already listens on ``HOST:port``."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the example shop until Ctrl-C.")
    parser.add_argument("--port", type=int, default=PORT, help="HTTP (default: %(default)s)")
    parser.add_argument(
        "--grpc-port", type=int, default=GRPC_PORT, help="gRPC health (default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = options(argv)
    for port, variable in ((args.port, "PORT"), (args.grpc_port, "GRPC_PORT")):
        if taken(port):
            sys.exit(
                f"{HOST}:{port} is taken (another server listens there): choose another "
                f"port, such as make demo {variable}={port + 1}"
            )
    redis, url = _start_redis()
    env = {
        **os.environ,
        "SHOP_DATA_DIR": tempfile.mkdtemp(prefix="shop-"),
        "SHOP_HEALTH_INTERVAL": "2",
        "SHOP_GRPC": f"{HOST}:{args.grpc_port}",
    }
    if url:
        env["SHOP_REDIS_URL"] = url
    print(instructions(redis, args.port, args.grpc_port))
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "examples.shop.api:create_api",
        "--host", HOST, "--port", str(args.port), "--loop", "asyncio",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env)
    signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGTERM))
    try:
        code = server.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl-C; let it finish
        code = server.wait()
    finally:
        if redis is not None:
            redis.terminate()
            redis.wait(5)
    sys.exit(0 if code == -signal.SIGTERM else code)  # uvicorn re-raises the signal it caught


if __name__ == "__main__":
    main()
