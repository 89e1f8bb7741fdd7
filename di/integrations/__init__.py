"""Framework integrations: one module per framework, each importing only its framework.

Each needs its framework's extra (``pip install 'healthdi[grpc]'``, ...) and does four
things in that framework's own idiom: start and stop the container with a running
:class:`~di.HealthMonitor`, open a scope per request with the request object in its
context, inject services into handlers, and serve the health endpoints.
"""
