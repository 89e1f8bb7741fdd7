"""asgi.py: for uvicorn (``uvicorn examples.django_shop.asgi:application``)."""

import os

from di.integrations.django import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_shop.settings")
application = get_asgi_application()
