"""The one message for a module imported without the extra that installs its dependency.

A module that needs an optional dependency imports it under :func:`needs_extra`:

>>> with needs_extra("di.integrations.fastapi", "fastapi"):
...     from fastapi import FastAPI

Without fastapi, ``import di.integrations.fastapi`` then raises a
``ModuleNotFoundError`` saying ``pip install 'healthdi[fastapi]'`` (as ``di serve`` says
for its extras), chained to the import that failed; with it, nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["missing_extra_message", "needs_extra"]


def missing_extra_message(module: str, extra: str, missing: str | None) -> str:
    """What ``module`` says when ``missing`` (a module the ``extra`` installs) is absent."""
    return (
        f"{module} needs the {extra} extra ({missing or 'one of its modules'} is not "
        f"installed): pip install 'healthdi[{extra}]'"
    )


@contextmanager
def needs_extra(module: str, extra: str) -> Iterator[None]:
    """Turn a ``ModuleNotFoundError`` raised inside into one naming ``extra``."""
    try:
        yield
    except ModuleNotFoundError as error:
        # The package a user installs, not the submodule that failed to import.
        missing = error.name.partition(".")[0] if error.name else None
        message = missing_extra_message(module, extra, missing)
        raise ModuleNotFoundError(message, name=missing) from error
