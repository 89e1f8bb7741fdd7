"""A module imported without its extra names the extra to install, as ``di serve`` does."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each module, the extra that installs what it needs, and the packages hidden to play
# an environment without that extra.
MODULES = [
    ("di.integrations.fastapi", "fastapi", ("fastapi", "starlette")),
    ("di.integrations.fastapi", "fastapi", ("fastapi",)),
    ("di.integrations.starlette", "starlette", ("starlette",)),
    ("di.integrations.litestar", "litestar", ("litestar",)),
    ("di.integrations.flask", "flask", ("flask",)),
    ("di.integrations.grpc", "grpc", ("grpc",)),
    ("di.grpc", "grpc", ("grpc_health",)),
    ("di.metrics", "metrics", ("prometheus_client",)),
]

# Hides packages the way an environment without them fails: ``import x`` raises
# ModuleNotFoundError naming x (None in sys.modules stops the import).
HIDDEN = """
import sys
for name in {hidden!r}:
    sys.modules[name] = None
import {module}
"""


@pytest.mark.parametrize(
    ("module", "extra", "hidden"), MODULES, ids=[f"{m}-{'+'.join(h)}" for m, _, h in MODULES]
)
def test_the_import_error_names_the_extra_and_the_command(
    module: str, extra: str, hidden: tuple[str, ...]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN.format(hidden=hidden, module=module)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"ModuleNotFoundError: {module} needs the {extra} extra "
        f"({hidden[0]} is not installed): pip install 'healthdi[{extra}]'"
    ), done.stderr


def test_with_its_extra_the_module_imports_as_before() -> None:
    import di.integrations.fastapi
    import di.metrics

    assert di.integrations.fastapi.install is not None
    assert di.metrics.register is not None


def test_the_metrics_extra_is_the_prometheus_one_by_the_name_users_type() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    assert extras["metrics"] == extras["prometheus"] == ["prometheus-client>=0.20"]
