"""settings.py: what healthdi needs of a Django project's settings."""

SECRET_KEY = "change-me"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "examples.django_shop.urls"
INSTALLED_APPS = ["di.integrations.django"]
MIDDLEWARE = ["di.integrations.django.RequestScopeMiddleware"]
HEALTHDI = {"INJECTOR": "examples.django_shop.container:create_injector"}
TIME_ZONE = "UTC"
