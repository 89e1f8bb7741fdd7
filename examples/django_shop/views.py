"""views.py: a function view, a class-based view and an async view, injected."""

from django.http import HttpRequest, JsonResponse
from django.views import View

from di.integrations.django import Inject, inject
from examples.django_shop.container import Orders, UnitOfWork


@inject
def place(request: HttpRequest, work: Inject[UnitOfWork]) -> JsonResponse:
    if not work.item:
        raise ValueError("no item")  # a 500, and the unit of work rolls back
    work.pending.append(work.item)
    return JsonResponse({"placed": work.item})


class OrderList(View):
    @inject
    def get(self, request: HttpRequest, orders: Inject[Orders]) -> JsonResponse:
        return JsonResponse({"orders": orders.placed})


@inject
async def count(request: HttpRequest, orders: Inject[Orders]) -> JsonResponse:
    return JsonResponse({"count": len(orders.placed)})
