"""What a user of the published package sees: license, version, URLs, README, changelog.

`make test` also builds the sdist and the wheel, checks both with twine, and installs
the wheel alone into a fresh environment (see the Makefile).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import di

from ..processes import ROOT

REPOSITORY = "https://github.com/healthdi/healthdi"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def unwrapped(text: str) -> str:
    return " ".join(text.split())


def test_license_is_mit_for_the_healthdi_authors() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the healthdi authors\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]  # into the wheel's dist-info


def test_version_comes_from_the_installed_distribution() -> None:
    assert di.__version__ == version("healthdi") == PROJECT["version"]
    assert "__version__" in dir(di)


def test_import_di_reads_no_metadata_until_the_version_is_asked_for() -> None:
    code = (
        "import sys\n"
        "import di\n"
        "print('importlib.metadata' in sys.modules, sorted(m for m in sys.modules if "
        "m.startswith('di.')))\n"
        "di.__version__\n"
        "print('importlib.metadata' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert done.stdout.splitlines() == ["False []", "True"], done.stderr


def test_every_public_name_loads_on_first_use_and_import_di_loads_nothing() -> None:
    """``import di`` loads no module of di, nor typing; each name of ``__all__`` is then
    there for ``di.X``, ``dir(di)`` and ``from di import *``."""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import di\n"
        "print(sorted(set(sys.modules) - before))\n"
        "names = {}\n"
        "exec('from di import *', names)\n"
        "print(sorted(set(di.__all__) - set(names)), sorted(set(di.__all__) - set(dir(di))))\n"
        "print(all(getattr(di, name) is names[name] for name in di.__all__))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert done.stdout.splitlines() == ["['di']", "[] []", "True"], done


def test_project_urls_point_into_the_repository() -> None:
    urls = PROJECT["urls"]
    assert urls["Repository"] == REPOSITORY
    assert urls["Documentation"] == f"{REPOSITORY}/blob/main/docs/index.md"
    assert urls["Changelog"] == f"{REPOSITORY}/blob/main/CHANGELOG.md"
    for url in urls.values():
        assert_points_to_a_file_here(url)


def assert_points_to_a_file_here(url: str) -> None:
    """A link into the repository names a file or folder that exists on main."""
    assert url.startswith("https://"), url
    found = re.fullmatch(re.escape(REPOSITORY) + r"(?:/(?:blob|tree)/main/(.+))?", url)
    if url.startswith(REPOSITORY + "/") and found is None:
        assert url == f"{REPOSITORY}/issues", url
    elif found is not None and found.group(1):
        assert (ROOT / found.group(1)).exists(), url


def test_readme_links_work_on_the_package_index() -> None:
    """The package index shows the README without the repository: no relative links."""
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r'href="([^"]+)"', readme)
    assert len(links) >= 6
    for link in links:
        assert_points_to_a_file_here(link)


def test_readme_says_di_serve_is_a_health_sidecar_and_points_to_the_integrations() -> None:
    text = unwrapped((ROOT / "README.md").read_text())
    assert (
        "`di serve` serves the health endpoints of an application, and only those: "
        "it is a health sidecar." in text
    )
    assert "it does not serve the application itself." in text
    assert "mount `di.asgi.health_app` in your ASGI application" in text
    assert "add `di.grpc.add_health_servicer` to your gRPC server" in text
    # The package exists: the README points to it rather than saying it is coming.
    assert importlib.util.find_spec("di.integrations") is not None
    assert (
        "Integrations for FastAPI, Starlette, Litestar, grpc.aio, Flask, Django and aiohttp "
        "(`di.integrations`) do both in one call" in text
    )
    assert "are coming" not in text


def test_each_framework_integration_has_its_extra_and_the_tests_install_it() -> None:
    extras = PROJECT["optional-dependencies"]
    for framework in (
        "fastapi",
        "starlette",
        "litestar",
        "flask",
        "django",
        "aiohttp",
        "celery",
        "taskiq",
    ):
        assert importlib.util.find_spec(f"di.integrations.{framework}") is not None
        (requirement,) = extras[framework]
        assert requirement.startswith(framework), (framework, requirement)
        assert requirement in extras["test"], framework


def test_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert "[Keep a Changelog](https://keepachangelog.com/en/1.1.0/)" in text
    sections = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert sections[0] == "[Unreleased]"
    assert f"[Unreleased]: {REPOSITORY}/" in text
    unreleased = unwrapped(text.split("## [Unreleased]", 1)[1])
    for topic in ("Container.", "Health engine.", "Exposure.", "Reliability and trust."):
        assert f"**{topic}**" in unreleased, topic


def test_the_readme_installs_from_a_fresh_clone(tmp_path: Path) -> None:
    """The README's "Installing", followed in a fresh clone: each ``pip install`` works.

    The package is not on an index yet, so the README installs from the clone (and from
    the wheel ``make dist`` builds, which ``make check-dist`` installs alone).
    """
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Installing") : readme.index("## Start here")]
    assert "not on a package index yet" in section
    (block,) = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands[0] == f"git clone {REPOSITORY}.git && cd healthdi"
    wheel = f"healthdi-{PROJECT['version']}-py3-none-any.whl"
    assert commands[-2:] == ["make dist", f"pip install 'dist/{wheel}[fastapi]'"]
    clone = tmp_path / "healthdi"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    for command in commands[1:-2]:
        words = shlex.split(command)
        assert words[:2] == ["pip", "install"], command
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", python, "install", "-q", *words[2:]],
            cwd=clone,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
    # Imported outside the clone: the installed package, with the extras asked for.
    done = subprocess.run(
        [python, "-c", "import di, di.grpc, di._serving.http_server; print(di.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "site-packages" in done.stdout
