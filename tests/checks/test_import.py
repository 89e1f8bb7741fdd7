"""``import di.checks`` imports no client library: each check imports its own when called."""

from __future__ import annotations

import subprocess
import sys

CLIENTS = (
    "sqlalchemy",
    "redis",
    "asyncpg",
    "psycopg",
    "psycopg_pool",
    "aio_pika",
    "aiormq",
    "celery",
    "kombu",
    "httpx",
    "trustme",
)


def test_importing_the_checks_imports_no_client_library() -> None:
    code = (
        "import sys, di.checks\n"
        f"print(sorted(m for m in {CLIENTS!r} if m in sys.modules))\n"
        "print(sorted(m for m in ('di.checks._clients', 'di.checks._network') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    clients, modules = done.stdout.splitlines()
    assert clients == "[]"
    assert (
        modules == "['di.checks._clients', 'di.checks._network']"
    )  # the checks themselves are there


def test_a_client_check_imports_its_client_when_called_and_names_what_it_expected() -> None:
    code = (
        "import sys, di.checks\n"
        "assert 'redis' not in sys.modules\n"
        "try:\n"
        "    di.checks.redis(object())\n"
        "except TypeError as error:\n"
        "    print(error)\n"
        "print('redis' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "redis(): expected a redis.Redis or redis.asyncio.Redis client, got builtins.object",
        "True",
    ]
