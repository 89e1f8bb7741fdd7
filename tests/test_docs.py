"""The documentation's runnable examples run, and say what the docs say they print."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_health_doc_quotes_the_example_verbatim() -> None:
    example = (ROOT / "examples" / "health_check.py").read_text()
    assert example in (ROOT / "docs" / "health.md").read_text()


def run_example(name: str) -> str:
    """Run an example script as a user would; its standard output."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_health_example_runs_and_reports_one_failure_and_one_timeout() -> None:
    output = run_example("health_check.py")
    lines = output.splitlines()
    assert lines[0].startswith("healthy: False")
    assert [line.split()[:2] for line in lines[1:]] == [
        ["__main__.Search", "timeout"],
        ["__main__.PaymentGateway", "unhealthy"],
        ["__main__.Database", "healthy"],
    ]


def test_demo_runs() -> None:
    output = run_example("demo.py")
    assert "built, in invocation order:" in output
    outcomes = {
        line.split()[0]: line.split()[1]
        for line in output.splitlines()
        if line.startswith("  __main__.") and len(line.split()) > 2
    }
    assert outcomes == {
        "__main__.Search": "timeout",
        "__main__.PaymentGateway": "unhealthy",
        "__main__.Orders": "healthy",
    }
