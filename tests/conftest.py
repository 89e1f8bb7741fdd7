"""Fixtures every layer's tests share.

Every async test runs on asyncio and on trio: modules with async tests set
``pytestmark = pytest.mark.anyio``; pytest refuses to run an unmarked ``async def``
test, so none can be skipped silently.
"""

from __future__ import annotations

import pytest

from . import services


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def built() -> services.Journal:
    """Which shared services (``tests.services``) were built, in order, since the test
    started: ``built.lines == ["Config", "Database"]``, ``built.count("Database")``."""
    services.built.clear()
    return services.built
