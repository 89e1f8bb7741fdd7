"""Views a newcomer got wrong: a forgotten @inject, and a key nothing provides."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from di.integrations.django import Inject, inject

from ..units import Work


class Unprovided:
    """Provided by nothing."""


def forgot(request: HttpRequest, work: Inject[Work]) -> HttpResponse:
    return HttpResponse()


@inject
def unknown(request: HttpRequest, thing: Inject[Unprovided]) -> HttpResponse:
    return HttpResponse()


urlpatterns = [path("forgot", forgot), path("unknown", unknown)]
