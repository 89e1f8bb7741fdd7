"""Every async test runs on asyncio and on trio.

Modules with async tests set ``pytestmark = pytest.mark.anyio``; pytest refuses to run
an unmarked ``async def`` test, so none can be skipped silently.
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
