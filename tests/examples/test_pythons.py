"""`make test` runs the suite on every Python the package claims that the machine has.

scripts/pythons.py finds the interpreters, names those it cannot find, and goes on with
the others; the classifiers, the README and the type checks agree on the versions.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ..processes import ROOT

SCRIPT = ROOT / "scripts" / "pythons.py"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CURRENT = ".".join(map(str, sys.version_info[:2]))
CURRENT_FULL = ".".join(map(str, sys.version_info[:3]))
# The venv the script runs this version in, where make test made it.
VENV = ".venv" if Path(sys.prefix) == ROOT / ".venv" else f".venv-{CURRENT}"


def classified() -> list[str]:
    prefix = "Programming Language :: Python :: "
    found = [c.removeprefix(prefix) for c in PROJECT["project"]["classifiers"]]
    return [v for v in found if re.fullmatch(r"3\.\d+", v)]


def pythons(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The script, as `make test` runs it, with ``env`` over this process's environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**environment, **env},
    )


def test_a_missing_version_is_named_with_where_it_was_looked_for() -> None:
    done = pythons("--list", env={"TEST_PYTHONS": f"3.99 {CURRENT}"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Python versions found: {CURRENT_FULL}"
    assert lines[1] == "not found: 3.99 (going on without them)"
    assert lines[2] == "  3.99: not found; looked at:"
    places = "\n".join(lines[3:])
    for place in ("python3.99 on PATH", "py launcher", "/versions/3.99.*", "cpython-3.99.*"):
        assert place in places, place


def test_an_interpreter_that_does_not_run_or_is_another_version_is_passed_over(
    tmp_path: Path,
) -> None:
    """As a pyenv shim of a version not selected is: it exits 127."""
    shim = tmp_path / "python3.98"
    shim.write_text("#!/bin/sh\nexit 127\n")
    other = tmp_path / "python3.97"
    other.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for script in (shim, other):
        script.chmod(0o755)
    env = {
        "TEST_PYTHONS": "3.98,3.97",
        "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),  # no pyenv, uv or asdf installs there
        "PYENV_ROOT": str(tmp_path / "pyenv"),
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "uv"),
    }
    done = pythons("--list", env=env)
    assert done.returncode == 0, done.stderr
    assert "Python versions found: none" in done.stdout
    assert "not found: 3.98, 3.97 (going on without them)" in done.stdout
    assert f"{shim}: did not run (exit 127)" in done.stdout
    assert f"{other}: is CPython {CURRENT_FULL}" in done.stdout
    assert f"{tmp_path}/pyenv/versions/3.98.*: nothing there" in done.stdout


def test_a_bad_version_to_look_for_is_refused() -> None:
    done = pythons("--list", env={"TEST_PYTHONS": "3.12 twelve"})
    assert done.returncode == 1
    assert "TEST_PYTHONS: 'twelve' is not a version like 3.12" in done.stderr


def test_by_default_it_looks_for_the_claimed_versions_and_finds_this_one() -> None:
    done = pythons("--list", env={"TEST_PYTHONS": ""})
    assert done.returncode == 0, done.stderr
    found = done.stdout.splitlines()[0].removeprefix("Python versions found: ").split(", ")
    assert CURRENT_FULL in found
    for version in classified():
        assert any(f.startswith(version + ".") for f in found) or (
            f"  {version}: not found; looked at:" in done.stdout
        ), version


@pytest.mark.skipif(
    not (ROOT / VENV / "pyvenv.cfg").exists(), reason=f"runs where make test made {VENV}"
)
def test_the_suite_goes_on_without_a_missing_version_and_totals_the_others() -> None:
    one_test = "tests/examples/test_packaging.py::test_license_is_mit_for_the_healthdi_authors"
    done = pythons(
        "-q", "-p", "no:cacheprovider", one_test, env={"TEST_PYTHONS": f"3.99 {CURRENT}"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not found: 3.99 (going on without them)" in done.stdout
    assert f"==== Python {CURRENT_FULL}, in {VENV} ====" in done.stdout
    summary = done.stdout[done.stdout.index("==== the suite on 1 Python version,") :]
    assert f"  {CURRENT_FULL} passed: 1 passed; " in summary
    assert f" s in {VENV} (" in summary
    assert "  not found: 3.99" in summary
    # The closing line, in the form CI reads: "word: N passed, N failed, N skipped".
    assert done.stdout.splitlines()[-1] == "total: 1 passed, 0 failed, 0 skipped"


@pytest.mark.skipif(
    not (ROOT / VENV / "pyvenv.cfg").exists(), reason=f"runs where make test made {VENV}"
)
def test_a_version_whose_suite_fails_fails_the_run() -> None:
    done = pythons(
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "no_test_is_called_this",
        "tests/examples",
        env={"TEST_PYTHONS": CURRENT},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"  {CURRENT_FULL} FAILED (exit 5): no test ran; " in done.stdout
    assert done.stdout.splitlines()[-1].startswith("total: 0 passed, 0 failed")


@pytest.mark.skipif(
    not (ROOT / VENV / "pyvenv.cfg").exists(), reason=f"runs where make test made {VENV}"
)
def test_the_closing_summary_names_each_failed_test(tmp_path: Path) -> None:
    """A long log may keep only its start and end: the end says which tests failed."""
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_one_that_fails():\n    assert 1 == 2\n")
    done = pythons(
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tmp_path),
        str(failing),
        env={"TEST_PYTHONS": CURRENT},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    summary = done.stdout[done.stdout.index("==== the suite on 1 Python version,") :]
    named = [line for line in summary.splitlines() if line.startswith("    FAILED ")]
    assert len(named) == 1, summary
    assert named[0].endswith("test_fails.py::test_one_that_fails"), summary


def test_the_classifiers_readme_and_type_checks_name_the_same_versions() -> None:
    versions = classified()
    assert versions == sorted(versions, key=lambda v: int(v.split(".")[1]))
    oldest, newest = versions[0], versions[-1]
    assert PROJECT["project"]["requires-python"] == f">={oldest}"
    assert (
        "Programming Language :: Python :: Implementation :: CPython"
        in (PROJECT["project"]["classifiers"])
    )
    # The README says which versions are supported, in the classifiers' words.
    readme = " ".join((ROOT / "README.md").read_text().split())
    *rest, last = versions
    assert f"Supported: CPython {', '.join(rest)} and {last}" in readme
    # mypy checks the types for the oldest (pyproject's setting) and the newest.
    assert PROJECT["tool"]["mypy"]["python_version"] == oldest
    assert f"mypy --strict --python-version {newest} di tests/typing" in (
        (ROOT / "Makefile").read_text()
    )
