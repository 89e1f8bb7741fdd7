"""The package's shape rules (scripts/check_shape.py, run by `make lint`) see through
the ways a breach could hide."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path
from types import ModuleType

from ..processes import ROOT


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_shape", ROOT / "scripts/check_shape.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def breaches(tmp_path: Path, **files: str) -> list[str]:
    for name, text in files.items():
        path = tmp_path / f"{name.replace('__', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    found: list[str] = _checker().check(tmp_path)
    return found


def test_the_package_keeps_its_shape() -> None:
    assert _checker().check(ROOT / "di") == []


def test_a_private_base_is_found_under_any_name(tmp_path: Path) -> None:
    found = breaches(
        tmp_path,
        aliased="""
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Quiet
            class A(Quiet): ...
        """,
        through_the_package="""
            import uvicorn
            class B(uvicorn.protocols.http.h11_impl.H11Protocol): ...
        """,
        held_by_a_name="""
            from uvicorn.protocols.http import httptools_impl
            Base = httptools_impl.HttpToolsProtocol
            Again = Base
            class C(Again): ...
        """,
        held_in_a_tuple="""
            from grpc.aio import _server
            BASES = (_server.Server,)
            class D(*BASES): ...
            E = type("E", BASES, {})
            F = type("F", (_server.Server,), {})
        """,
    )
    assert len(found) == 6, found
    for where in ("aliased.py:3", "through_the_package.py:3", "held_by_a_name.py:5"):
        assert any(where in breach for breach in found), (where, found)
    assert sum("held_in_a_tuple.py" in breach for breach in found) == 3, found


def test_public_bases_pass(tmp_path: Path) -> None:
    assert (
        breaches(
            tmp_path,
            public="""
                from starlette.middleware.base import BaseHTTPMiddleware
                import grpc
                BASES = (grpc.aio.ServerInterceptor,)
                class A(BaseHTTPMiddleware): ...
                class B(*BASES): ...
                class C(Exception): ...
            """,
        )
        == []
    )


def test_a_reach_into_a_private_says_why_outside_the_container(tmp_path: Path) -> None:
    reach = """
        def peek(scope):
            return scope._instances  # noqa: SLF001{}
    """
    found = breaches(
        tmp_path,
        silent=reach.format(""),
        explained=reach.format(" - the scope's own cache, read once"),
        _container__inside=reach.format(""),
    )
    assert found == [
        f"{tmp_path / 'silent.py'}:3: a noqa: SLF001 without its reason (# noqa: SLF001 - why)"
    ]
