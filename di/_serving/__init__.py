"""The health listeners ``di serve`` and :class:`di.HealthServer` share.

- :mod:`.http_server`: HTTP/1.1 on httptools serving an ASGI app (``di.asgi.health_app``)
  with its bounds on connections;
- :mod:`.listeners`: the addresses (``"HOST:PORT"``), the server side TLS of both
  ports, and the gRPC health server on grpcio's asyncio server.

Both run on asyncio only: grpcio's server does.
"""
