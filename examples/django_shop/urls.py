"""urls.py: the views, and the health routes under /ops/."""

from django.urls import include, path

from di.integrations.django import health_urls
from examples.django_shop import views

urlpatterns = [
    path("orders/place", views.place),
    path("orders", views.OrderList.as_view()),
    path("orders/count", views.count),
    path("ops/", include(health_urls)),
]
