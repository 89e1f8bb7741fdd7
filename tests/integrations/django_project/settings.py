"""The test project's settings: what healthdi needs, and no more."""

import os

SECRET_KEY = "tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.integrations.django_project.urls"
INSTALLED_APPS = ["di.integrations.django"]
MIDDLEWARE = ["di.integrations.django.RequestScopeMiddleware"]
HEALTHDI = {
    "INJECTOR": "tests.integrations.django_project.container:create_injector",
    "INTERVAL": float(os.environ.get("HEALTH_INTERVAL", "5")),
    "UI": True,  # the status page at /ops/health/ui
}
