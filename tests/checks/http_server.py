"""An HTTP server for the checks' tests: ``python http_server.py [CERT KEY]``.

The standard library's threading server on a port the kernel picks, printed as
"listening on PORT"; with a certificate and its key, HTTPS. ``/`` answers 200,
``/unavailable`` 503,
``/private`` 200 to Basic credentials ``admin:s3cret`` and 401 to others.
"""

from __future__ import annotations

import base64
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRIVATE = "Basic " + base64.b64encode(b"admin:s3cret").decode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 503 if self.path == "/unavailable" else 200
        if self.path == "/private" and self.headers.get("Authorization") != PRIVATE:
            status = 401
        body = b"ok\n" if status == 200 else b"no\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if len(sys.argv) == 3:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
