"""A Celery application for the tests' worker: its broker from CELERY_BROKER_URL."""

from __future__ import annotations

import os

from celery import Celery


def make_app(broker: str) -> Celery:
    """An application on ``broker`` that publishes no events and stores no results."""
    app = Celery("healthdi-tests", broker=broker)
    app.conf.update(
        broker_connection_retry_on_startup=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
