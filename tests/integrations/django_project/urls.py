"""The test project's views: function, class-based and async views, each injecting."""

import asyncio
import io
from collections.abc import AsyncIterator, Iterator

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import include, path
from django.views import View

from di.integrations.django import Inject, health_urls, inject, scope_of

from ..units import Work
from .container import RequestPath


@inject
def place(request: HttpRequest, work: Inject[Work]) -> HttpResponse:
    if request.GET.get("fail"):
        raise ValueError("no item")
    if request.GET.get("missing"):
        raise Http404("no such order")  # an answer: the unit of work commits
    return HttpResponse("placed")


@inject
async def aplace(request: HttpRequest, work: Inject[Work]) -> HttpResponse:
    if request.GET.get("fail"):
        raise ValueError("no item")
    return HttpResponse("placed")


class Where(View):
    @inject
    def get(self, request: HttpRequest, where: Inject[RequestPath]) -> JsonResponse:
        same = scope_of(request).invoke(RequestPath) is where
        return JsonResponse({"path": where.value, "same": same})


@inject
def stream(request: HttpRequest, work: Inject[Work]) -> StreamingHttpResponse:
    def body() -> Iterator[bytes]:
        yield b"one,"
        if request.GET.get("fail"):
            raise ValueError("failed part-way")
        yield b"two"

    return StreamingHttpResponse(body())


@inject
async def astream(request: HttpRequest, work: Inject[Work]) -> StreamingHttpResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"one,"
        yield b"two"

    return StreamingHttpResponse(body())


def lazy_stream(request: HttpRequest) -> StreamingHttpResponse:
    """A body that reaches the request's scope only while it is sent."""

    def body() -> Iterator[bytes]:
        yield b"one,"
        scope_of(request).invoke(Work)
        if request.GET.get("fail"):
            raise ValueError("failed part-way")
        yield b"two"

    return StreamingHttpResponse(body())


@inject
def stream_thread(request: HttpRequest, work: Inject[Work]) -> StreamingHttpResponse:
    """A sync view's body says whether it runs on an event loop's thread."""

    def body() -> Iterator[bytes]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            yield b"no loop"
        else:
            yield b"on the loop"

    return StreamingHttpResponse(body())


def download(request: HttpRequest) -> FileResponse:
    return FileResponse(io.BytesIO(b"the file"), filename="file.txt")


urlpatterns = [
    path("place", place),
    path("aplace", aplace),
    path("where", Where.as_view()),
    path("stream", stream),
    path("astream", astream),
    path("lazystream", lazy_stream),
    path("download", download),
    path("streamthread", stream_thread),
    path("ops/", include(health_urls)),
]
