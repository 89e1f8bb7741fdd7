"""The whole test suite on every CPython from 3.11 up that this machine has.

``make test`` runs lint, docs and packaging once, then this script
(``make test-pythons``), which:

1. works out the versions to look for: those the classifiers of ``pyproject.toml``
   list (the versions the package claims), and any later 3.x found as well; or, from
   ``TEST_PYTHONS`` (``"3.11 3.13"``), exactly those;
2. finds an interpreter for each, looking in this order: ``python3.X`` in each folder
   of ``PATH`` (then ``/usr/local/bin``, ``/usr/bin``), the ``py`` launcher
   (``py -3.X``), pyenv's versions folder (``$PYENV_ROOT/versions/3.X.*``), uv's
   (``$UV_PYTHON_INSTALL_DIR`` or ``~/.local/share/uv/python``) and asdf's. A candidate
   counts only if it runs and says it is CPython 3.X with the GIL: a pyenv shim for a
   version not selected, which exits 127, is passed over;
3. runs the suite on each version found, one after another, in its own venv made as
   ``.venv`` is (``make VENV=.venv-3.12 PYTHON=... .venv-3.12/.test``): the version
   of ``.venv`` itself runs there. The arguments of this script go to pytest;
4. says which versions ran and how each ended, names each claimed version it could
   not find and where it looked, and ends on one line of totals. It exits 1 if a
   version failed (or none was found), and goes on past versions it cannot find.

``python scripts/pythons.py --list`` only looks, and prints what it found.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NEWEST_MINOR = 20  # later 3.x looked for beyond the claimed ones: 3.(claimed + 1) to 3.20
# What a candidate says of itself: implementation, version, executable, free-threaded.
IDENTIFY = (
    "import platform, sys, sysconfig; print(platform.python_implementation(), "
    "'%d.%d.%d' % sys.version_info[:3], bool(sysconfig.get_config_var('Py_GIL_DISABLED')), "
    "sys.executable)"
)
TALLIES = ("passed", "failed", "errors", "skipped")


@dataclass
class Found:
    """A version looked for: its interpreter, or every place it was looked for."""

    version: str  # "3.12"
    executable: str | None = None
    full_version: str = ""  # "3.12.1"
    looked: list[str] = field(default_factory=list)
    claimed: bool = True  # listed by the classifiers (or asked for by TEST_PYTHONS)


@dataclass
class Run:
    found: Found
    venv: str
    code: int = 0
    seconds: float = 0.0
    tallies: dict[str, int] = field(default_factory=dict)
    failure: str = ""  # why the suite did not run
    failed: list[str] = field(default_factory=list)  # pytest's FAILED/ERROR summary lines


def claimed_versions() -> list[str]:
    """The ``3.X`` versions the classifiers of pyproject.toml list, oldest first."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "Programming Language :: Python :: "
    versions = [
        c.removeprefix(prefix)
        for c in project.get("classifiers", [])
        if re.fullmatch(re.escape(prefix) + r"3\.\d+", c)
    ]
    return sorted(versions, key=minor)


def minor(version: str) -> int:
    return int(version.split(".")[1])


def identify(command: list[str], version: str) -> tuple[str | None, str, str]:
    """``(executable, full version, "")`` if ``command`` is CPython ``version`` with the
    GIL; else ``(None, "", why not)``."""
    try:
        done = subprocess.run(
            [*command, "-c", IDENTIFY], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, "", f"did not run ({error})"
    if done.returncode != 0:
        return None, "", f"did not run (exit {done.returncode})"
    implementation, full, free_threaded, executable = done.stdout.split(maxsplit=3)
    if implementation != "CPython" or not full.startswith(version + "."):
        return None, "", f"is {implementation} {full}"
    if free_threaded == "True":
        return None, "", f"is the free-threaded build of {full}"
    return executable.strip(), full, ""


def candidates(version: str) -> list[tuple[str, list[str]]]:
    """Where ``version`` may be: ``(the place, the command to run there)`` each, in the
    order they are tried; a place with nothing there has an empty command."""
    name = f"python{version}"
    found: list[tuple[str, list[str]]] = []
    folders = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/local/bin", "/usr/bin"]
    on_path = [
        path
        for path in (os.path.join(f, name) for f in dict.fromkeys(folders) if f)
        if os.access(path, os.X_OK) and not os.path.isdir(path)
    ]
    found += [(path, [path]) for path in on_path]
    if not on_path:
        found.append((f"{name} on PATH, /usr/local/bin, /usr/bin", []))
    launcher = shutil.which("py")
    if launcher is not None:
        found.append((f"{launcher} -{version}", [launcher, f"-{version}"]))
    else:
        found.append(("the py launcher (py -X.Y)", []))
    home = Path.home()
    installs = [
        (Path(os.environ.get("PYENV_ROOT") or home / ".pyenv") / "versions", f"{version}.*"),
        (
            Path(os.environ.get("UV_PYTHON_INSTALL_DIR") or home / ".local/share/uv/python"),
            f"cpython-{version}.*",
        ),
        (home / ".asdf/installs/python", f"{version}.*"),
    ]
    for folder, pattern in installs:
        # The latest patch release first; "3.13.0t" and the like are other builds.
        matches = [
            m
            for m in glob.glob(str(folder / pattern / "bin" / name))
            if re.search(rf"{re.escape(version)}\.\d+(-[^/]*)?/bin/", m)
        ]
        matches.sort(key=lambda m: [int(n) for n in re.findall(r"\d+", Path(m).parents[1].name)])
        found += [(m, [m]) for m in reversed(matches)]
        if not matches:
            found.append((str(folder / pattern), []))
    return found


def find(version: str) -> Found:
    """The first candidate that is CPython ``version``; every place looked otherwise."""
    result = Found(version)
    for place, command in candidates(version):
        if not command:
            result.looked.append(f"{place}: nothing there")
            continue
        executable, full, why_not = identify(command, version)
        if executable is not None:
            result.executable, result.full_version = executable, full
            return result
        result.looked.append(f"{place}: {why_not}")
    return result


def venv_config(venv: Path) -> dict[str, str]:
    """A venv's ``pyvenv.cfg`` (``version``, ``executable``...); empty if there is none."""
    try:
        text = (venv / "pyvenv.cfg").read_text()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep}


def same_file(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


def wanted() -> tuple[list[str], list[str]]:
    """The versions to look for, and those of them whose absence is reported."""
    asked = os.environ.get("TEST_PYTHONS", "").replace(",", " ").split()
    for version in asked:
        if not re.fullmatch(r"3\.\d+", version):
            sys.exit(f"TEST_PYTHONS: {version!r} is not a version like 3.12")
    if asked:
        return asked, asked
    claimed = claimed_versions()
    if not claimed:
        sys.exit("pyproject.toml lists no 'Programming Language :: Python :: 3.X' classifier")
    later = [f"3.{m}" for m in range(minor(claimed[-1]) + 1, NEWEST_MINOR + 1)]
    return claimed + later, claimed


def look() -> tuple[list[Found], list[Found]]:
    """The versions found, and the claimed ones not found.

    The version ``.venv`` was made with (by make, with its ``PYTHON``) is that venv's.
    """
    versions, claimed = wanted()
    main = venv_config(ROOT / ".venv")
    found, missing = [], []
    for version in versions:
        if main.get("version", "").startswith(version + "."):
            result = Found(version, main["executable"], main["version"])
        else:
            result = find(version)
        result.claimed = version in claimed
        if result.executable is not None:
            found.append(result)
        elif result.claimed:
            missing.append(result)
    return found, missing


def venv_for(found: Found) -> str:
    main = venv_config(ROOT / ".venv")
    return ".venv" if main.get("version") == found.full_version else f".venv-{found.version}"


def prepare(run: Run) -> bool:
    """Make (or bring up to date) the run's venv as ``.venv`` is made; whether it is ready."""
    if run.venv == ".venv":
        return True  # made by make before this script ran
    venv = ROOT / run.venv
    made_with = venv_config(venv).get("executable")
    assert run.found.executable is not None
    if made_with is not None and not same_file(made_with, run.found.executable):
        print(f"{run.venv} was made with {made_with}: made anew", flush=True)
        shutil.rmtree(venv)
    make = os.environ.get("MAKE", "make")
    command = [
        make,
        "--no-print-directory",
        f"VENV={run.venv}",
        f"PYTHON={run.found.executable}",
        f"{run.venv}/.test",
    ]
    if subprocess.run([*command, "--question"], cwd=ROOT).returncode == 0:
        return True  # up to date
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        run.code = done.returncode
        run.failure = f"{' '.join(command)} exited {done.returncode}"
        return False
    return True


def run_suite(run: Run, pytest_args: list[str]) -> None:
    """Pytest in the run's venv, its output passed through; its closing tallies kept."""
    command = [str(ROOT / run.venv / "bin" / "python"), "-m", "pytest", *pytest_args]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith(("FAILED ", "ERROR ")):
                run.failed.append(line.split(" - ", 1)[0].strip())
            if re.search(r"\b\d+ (passed|failed|errors?|skipped|deselected)\b.* in [\d.]+s", line):
                run.tallies = tally(line)
    run.code = process.returncode


def tally(line: str) -> dict[str, int]:
    """``{"passed": 823, "skipped": 2, ...}`` from pytest's closing line."""
    counts = {kind: 0 for kind in TALLIES}
    for number, kind in re.findall(r"(\d+) (passed|failed|errors?|skipped)\b", line):
        counts["errors" if kind.startswith("error") else kind] += int(number)
    return counts


def describe(run: Run) -> str:
    outcome = "passed" if run.code == 0 else f"FAILED (exit {run.code})"
    counts = ", ".join(f"{run.tallies[k]} {k}" for k in TALLIES if run.tallies.get(k))
    detail = run.failure or counts or "no test ran"
    unclaimed = "" if run.found.claimed else ", a version the classifiers do not list"
    return (
        f"  {run.found.full_version} {outcome}: {detail}; {run.seconds:.0f} s in {run.venv} "
        f"({run.found.executable}{unclaimed})"
    )


def report_missing(missing: list[Found]) -> None:
    for result in missing:
        print(f"  {result.version}: not found; looked at:")
        for place in result.looked:
            print(f"    {place}")


def main(arguments: list[str]) -> int:
    found, missing = look()
    names = ", ".join(f.full_version for f in found) or "none"
    print(f"Python versions found: {names}", flush=True)
    if missing:
        print(f"not found: {', '.join(m.version for m in missing)} (going on without them)")
        report_missing(missing)
    if arguments[:1] == ["--list"]:
        for result in found:
            print(f"  {result.full_version}: {result.executable}")
            for place in result.looked:
                print(f"    passed over {place}")
        return 0
    if not found:
        print("no Python to run the suite on")
        return 1
    runs = [Run(result, venv_for(result)) for result in found]
    started = time.monotonic()
    for run in runs:
        print(f"\n==== Python {run.found.full_version}, in {run.venv} ====", flush=True)
        began = time.monotonic()
        if prepare(run):
            run_suite(run, arguments)
        run.seconds = time.monotonic() - began
    total = time.monotonic() - started
    versions = f"{len(runs)} Python version{'s' if len(runs) > 1 else ''}"
    print(f"\n==== the suite on {versions}, in {total:.0f} s ====")
    for run in runs:
        print(describe(run))
        for line in run.failed:  # repeated here: a long log may keep only its end
            print(f"    {line}")
    if missing:
        print(f"  not found: {', '.join(m.version for m in missing)}")
    sums = {k: sum(run.tallies.get(k, 0) for run in runs) for k in TALLIES}
    failed = sums["failed"] + sums["errors"]
    print(f"total: {sums['passed']} passed, {failed} failed, {sums['skipped']} skipped")
    return 0 if all(run.code == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
