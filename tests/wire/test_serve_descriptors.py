"""`di serve` out of file descriptors: a burst of connections past ``ulimit -n``.

asyncio logs each failed ``accept()`` with its traceback, once per connection waiting
in the backlog (up to 1024 each time the port is readable): one burst would write
thousands of lines. `di serve` says it once in a while, with the way out.
"""

from __future__ import annotations

import os
import resource
import socket
from pathlib import Path

import httpx

from ..processes import Serving, wait_for


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_running_out_of_file_descriptors_is_said_once_with_the_way_out(tmp_path: Path) -> None:
    serving = Serving(
        "tests.serve_targets:healthy", "--limit-concurrency", "8", log=tmp_path / "serve.log"
    )
    burst: list[socket.socket] = []
    try:
        wait_for(lambda: answers(serving.url + "/livez"), "di serve to answer /livez")
        pid = serving.process.pid
        held = len(os.listdir(f"/proc/{pid}/fd"))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 16, held + 16))
        for _ in range(200):  # far more than the process may open, at once
            burst.append(socket.create_connection(("127.0.0.1", serving.http_port), timeout=5))
        wait_for(
            lambda: "out of file descriptors" in serving.output(), "di serve to say it ran out"
        )
        for connection in burst:
            connection.close()
        burst.clear()
        wait_for(lambda: answers(serving.url + "/livez"), "di serve to answer again")
        output = serving.output()
        assert "socket.accept() out of system resource" not in output
        said = [line for line in output.splitlines() if "out of file descriptors" in line]
        assert len(said) == 1, said
        assert "raise the limit (ulimit -n) or lower --limit-concurrency" in said[0]
    finally:
        for connection in burst:
            connection.close()
        serving.close()
