"""How long `di probe` takes from start to exit, beside a bare Python start-up.

Docker runs the probe every few seconds in every container; the target is under
150 ms for an HTTP probe.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from typing import Any


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _best(command: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True)
        best = min(best, time.perf_counter() - started)
        assert done.returncode == 0, done
    return best * 1000


def measure(runs: int = 15) -> dict[str, float]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/livez"
    try:
        return {
            "python -c pass (the floor)": _best([sys.executable, "-c", "pass"], runs),
            "python -m di probe http://...": _best(
                [sys.executable, "-m", "di", "probe", url], runs
            ),
        }
    finally:
        server.shutdown()
