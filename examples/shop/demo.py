"""`make demo`: serve the shop, a FastAPI app with its health routes, on embedded defaults.

Starts a local redis-server on a free loopback port when one is installed (unless
SHOP_REDIS_URL points elsewhere), else runs on SQLite alone and says so; then serves
the shop's FastAPI app (examples.shop.api) with uvicorn until Ctrl-C. The container
starts and stops with the app (di.integrations.fastapi).
"""

from __future__ import annotations

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

HOST, PORT = "127.0.0.1", 8080
HTTP = f"{HOST}:{PORT}"


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


def instructions(redis: subprocess.Popen[bytes] | None) -> str:
    """What to try while the shop is served."""
    return f"""
Try, from another terminal:
  curl -X POST http://{HTTP}/orders/tea
  curl http://{HTTP}/orders/count
  curl -i http://{HTTP}/health
  curl http://{HTTP}/readyz?verbose
  curl -X POST -d '{{"service": ""}}' http://{HTTP}/grpc.health.v1.Health/Check
  .venv/bin/di probe http://{HTTP}/livez
{redis_steps(redis) if redis else ""}
Ctrl-C stops the server (it goes NOT_SERVING, then shuts the container down).
"""


def main() -> None:
    redis, url = _start_redis()
    env = {
        **os.environ,
        "SHOP_DATA_DIR": tempfile.mkdtemp(prefix="shop-"),
        "SHOP_HEALTH_INTERVAL": "2",
    }
    if url:
        env["SHOP_REDIS_URL"] = url
    print(instructions(redis))
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "examples.shop.api:create_api",
        "--host", HOST, "--port", str(PORT),
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
