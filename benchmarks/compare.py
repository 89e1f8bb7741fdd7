"""``make bench-compare``: the package at a git ref and the working tree, side by side.

The path of a run:

1. :func:`extract`: ``git archive REF di | tar -x`` into ``build/before``, the ref's
   ``di/`` package alone; the working tree's ``di/`` is the other side. Both are
   byte-compiled first, so that no row times a first import's compilation.
2. Every measurement runs in child processes started with ``PYTHONPATH=SIDE:ROOT`` and
   ``PYTHONSAFEPATH=1`` (:meth:`Side.env`): the side's ``di`` comes first, neither the
   current directory nor a script's own directory can shadow it, and ``benchmarks``
   (this tree's: the same code for both sides, public API only) imports from the root.
   :func:`check_import` makes sure of it once per side.
3. :func:`measure` runs rounds. In each, every row is measured on both sides, one right
   after the other, the order of the sides swapped every round, so that a slow moment of
   a shared machine hits both alike. The servers (R2's FastAPI app, ``di serve`` over
   HTTP and over gRPC, one of each per side, and the constant app) start once and stay
   up between rounds; each load turn runs against one of them while the others idle.
4. :func:`report`: each side's median over the rounds, the median of the per-round
   after/before ratios with their spread (lowest to highest), and a flag on any row
   more than 5% worse after than before.

The rows are those of the main tables, for healthdi alone:

- in-process (side.py): S1, S2, R1 (alone, and beside 5,000 live scopes), H1-H4 on
  asyncio, H1 and H2 on trio, H1 and H3 through the sync ``health_check()``;
- R2 (web.py): a FastAPI endpoint injecting a scoped service under uvicorn;
- serving (serving.py): ``/readyz`` under ``di serve --http``, also as a share of a
  constant app under plain uvicorn measured in the same round; gRPC Check under
  ``di serve --grpc``;
- ``di probe`` (probe.py): start to exit against local servers over HTTP and gRPC, the
  best of a few runs per round, the two sides' runs interleaved.

``python -m benchmarks.compare [REF] [--rounds N] [--seconds S]``, or
``python -m benchmarks --compare REF``; REF defaults to ``before-shape``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import probe
from ._timing import save
from .serving import _di_serve, _free_port, _load, _process

ROOT = Path(__file__).parent.parent
BEFORE = ROOT / "build" / "before"
DEFAULT_REF = "before-shape"
# Where a clone lacks the tag (a shallow or tagless fetch), the commit it names.
KNOWN_COMMITS = {"before-shape": "cd6c8a4"}
TOLERANCE = 0.05  # a row worse than this, after against before, is flagged
PROBE_RUNS = 5  # `di probe` runs per side and scheme in a round; the best one counts

# key: (title, unit, higher is better), in the table's order
ROWS: dict[str, tuple[str, str, bool]] = {
    "S1": ("S1: invoke a built singleton", "ns", False),
    "S2": ("S2: invoke a transient Service(Repo(Db), Config)", "ns", False),
    "R1": ("R1: one request scope, scoped Handler", "us", False),
    "R1, 5,000 live scopes": ("R1 beside 5,000 live scopes", "us", False),
    "R2": ("R2: FastAPI Inject[T], uvicorn, 50 clients", "req/s", True),
    "H1": ("H1: 10,000 no-op async checks", "us/check", False),
    "H2": ("H2: 10,000 no-op sync checks", "us/check", False),
    "H3": ("H3: 1,000 async checks x 10 ms", "ms", False),
    "H4": ("H4: 1,000 sync checks x 10 ms", "ms", False),
    "H1 on trio": ("H1 on trio", "us/check", False),
    "H2 on trio": ("H2 on trio", "us/check", False),
    "H1 via health_check()": ("H1 via the sync health_check()", "us/check", False),
    "H3 via health_check()": ("H3 via the sync health_check()", "ms", False),
    "readyz": ("serving: /readyz, di serve, 50 clients", "req/s", True),
    "readyz / constant": ("serving: /readyz / constant app, same round", "x", True),
    "grpc": ("serving: gRPC Check, di serve, 20 clients", "req/s", True),
    "probe http": ("serving: di probe http://, start to exit", "ms", False),
    "probe grpc": ("serving: di probe grpc://, start to exit", "ms", False),
}

Figures = dict[str, dict[str, float]]  # row -> side name -> figure


@dataclass(frozen=True)
class Side:
    """One tree under comparison: a directory holding a ``di/`` package."""

    name: str  # "before" or "after"
    label: str  # what the table says it is
    path: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(self.path), str(ROOT)])
        env["PYTHONSAFEPATH"] = "1"
        return env


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def resolve_ref(ref: str) -> str:
    """The full commit a ref names, or the commit a known tag stands for."""
    for candidate in (ref, KNOWN_COMMITS.get(ref)):
        if candidate and (commit := _git("rev-parse", "--verify", "-q", f"{candidate}^{{commit}}")):
            return commit
    raise SystemExit(
        f"bench-compare: {ref!r} names no commit in this clone; fetch it "
        "(git fetch --tags origin) or pass another ref: python -m benchmarks.compare REF"
    )


def extract(commit: str) -> Path:
    """The commit's ``di/`` package, alone, in build/before (replaced on each run)."""
    shutil.rmtree(BEFORE, ignore_errors=True)
    BEFORE.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit, "di"], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(BEFORE)], stdin=archive.stdout, check=True)
    assert archive.stdout is not None
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit(f"bench-compare: git archive {commit} di failed")
    return BEFORE


def check_import(side: Side) -> None:
    """Byte-compile the side's ``di`` and make sure its children import that one."""
    package = side.path / "di"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    done = subprocess.run(
        [sys.executable, "-c", "import di; print(di.__file__)"],
        cwd=ROOT,
        env=side.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found = Path(done.stdout.strip()).resolve()
    if found != (package / "__init__.py").resolve():
        raise SystemExit(f"bench-compare: the {side.name} side imports di from {found}")


def _in_process(order: list[Side]) -> Figures:
    """S1-R1 and H1-H4: one child per side (side.py)."""
    figures: Figures = {}
    for side in order:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.side"],
            cwd=ROOT,
            env=side.env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"benchmarks.side on the {side.name} side:\n{done.stderr}")
        payload = json.loads(done.stdout.splitlines()[-1])
        if Path(payload["di"]).resolve() != (side.path / "di" / "__init__.py").resolve():
            raise RuntimeError(f"the {side.name} side imported di from {payload['di']}")
        for row, value in payload["rows"].items():
            figures.setdefault(row, {})[side.name] = value
    return figures


@dataclass
class Servers:
    """Ports of the servers every round loads, per side (and the shared constant app)."""

    r2: dict[str, int]
    readyz: dict[str, int]
    grpc: dict[str, int]
    constant: int

    @classmethod
    def start(cls, stack: ExitStack, sides: list[Side]) -> Servers:
        def started(command: Callable[[int], list[str]], side: Side | None) -> int:
            port = _free_port()
            env = side.env() if side else None
            stack.enter_context(_process(command(port), port, env=env))
            return port

        python = sys.executable

        def r2(port: int) -> list[str]:
            return [python, "-m", "benchmarks.web", "serve", "healthdi", str(port)]

        def constant(port: int) -> list[str]:
            return [python, "-m", "benchmarks.servers", "constant", str(port)]

        return cls(
            r2={side.name: started(r2, side) for side in sides},
            readyz={side.name: started(lambda p: _di_serve("--http", p), side) for side in sides},
            grpc={side.name: started(lambda p: _di_serve("--grpc", p), side) for side in sides},
            constant=started(constant, None),
        )


def _serving(servers: Servers, seconds: float) -> Callable[[list[Side]], Figures]:
    span = f"{seconds:g}"

    def http(port: int, path: str) -> float:
        return _load("http", str(port), path, "50", span)["rps"]

    def run(order: list[Side]) -> Figures:
        first, second = order
        figures: Figures = {"R2": {}, "readyz": {}, "readyz / constant": {}, "grpc": {}}
        for side in order:
            figures["R2"][side.name] = http(servers.r2[side.name], "/")
        # The constant app between the two sides: both shares use the same reference.
        figures["readyz"][first.name] = http(servers.readyz[first.name], "/readyz")
        constant = http(servers.constant, "/")
        figures["readyz"][second.name] = http(servers.readyz[second.name], "/readyz")
        for side in order:
            figures["readyz / constant"][side.name] = figures["readyz"][side.name] / constant
            port = str(servers.grpc[side.name])
            figures["grpc"][side.name] = _load("grpc", port, "20", span)["rps"]
        return figures

    return run


def _probes(urls: dict[str, str]) -> Callable[[list[Side]], Figures]:
    def once(side: Side, url: str) -> float:
        command = [sys.executable, "-m", "di", "probe", url]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=side.env(), capture_output=True, text=True)
        elapsed = (time.perf_counter() - started) * 1000
        if done.returncode != 0:
            raise RuntimeError(f"di probe {url} on the {side.name} side: {done.stderr}")
        return elapsed

    def run(order: list[Side]) -> Figures:
        figures: Figures = {f"probe {scheme}": {} for scheme in urls}
        for _ in range(PROBE_RUNS):
            for scheme, url in urls.items():
                for side in order:
                    best = figures[f"probe {scheme}"].get(side.name, float("inf"))
                    figures[f"probe {scheme}"][side.name] = min(best, once(side, url))
        return figures

    return run


def measure(sides: list[Side], rounds: int, seconds: float) -> dict[str, dict[str, list[float]]]:
    """Each row's figure per side, one per round, rounds in the same order on both."""
    samples: dict[str, dict[str, list[float]]] = {
        row: {side.name: [] for side in sides} for row in ROWS
    }
    with ExitStack() as stack:
        print("starting the servers of both sides", file=sys.stderr, flush=True)
        servers = Servers.start(stack, sides)
        http_port, grpc_port = stack.enter_context(probe.local_servers())
        tasks = [
            _in_process,
            _serving(servers, seconds),
            _probes(probe.probe_urls(http_port, grpc_port)),
        ]
        for index in range(rounds):
            order = sides if index % 2 == 0 else sides[::-1]
            names = ", ".join(side.name for side in order)
            print(f"round {index + 1}/{rounds} ({names})", file=sys.stderr, flush=True)
            for task in tasks:
                for row, figures in task(order).items():
                    for name, value in figures.items():
                        samples[row][name].append(value)
    return samples


def _cost(ratio: float, higher_is_better: bool) -> float:
    """After over before as a cost: above 1 is worse, whatever the unit."""
    return 1 / ratio if higher_is_better else ratio


def summarize(samples: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    lines = []
    for row, (title, unit, higher) in ROWS.items():
        before, after = samples[row]["before"], samples[row]["after"]
        if not before or not after:
            continue
        ratios = [a / b for a, b in zip(after, before, strict=True)]
        ratio = statistics.median(ratios)
        cost = _cost(ratio, higher)
        verdict = "WORSE" if cost > 1 + TOLERANCE else "better" if cost < 1 - TOLERANCE else "ok"
        lines.append(
            {
                "row": title,
                "unit": unit,
                "higher_is_better": higher,
                "before": statistics.median(before),
                "after": statistics.median(after),
                "ratio": ratio,
                "low": min(ratios),
                "high": max(ratios),
                "verdict": verdict,
            }
        )
    return lines


def _figure(value: float) -> str:
    return f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def report(sides: list[Side], lines: list[dict[str, Any]], rounds: int, seconds: float) -> str:
    before, after = sides
    head = (
        f"{'row':<50}{'unit':>9}{'before':>10}{'after':>10}{'after/before':>14}"
        f"{'spread':>14}  verdict"
    )
    out = [
        f"before: {before.label}, di from {before.path / 'di'}",
        f"after:  {after.label}, di from {after.path / 'di'}",
        f"Python {platform.python_version()}, {os.cpu_count()} cores; {rounds} rounds, the "
        f"sides' order swapped each round; load turns of {seconds:g} s",
        "Figures: each side's median over the rounds. after/before: the median of the "
        "rounds' ratios; spread: their lowest and highest.",
        f"verdict: WORSE when after is more than {TOLERANCE:.0%} worse than before "
        "(slower, or fewer req/s), better when more than that better.",
        "",
        head,
        "-" * len(head),
    ]
    for line in lines:
        spread = f"{line['low']:.2f}-{line['high']:.2f}"
        out.append(
            f"{line['row']:<50}{line['unit']:>9}{_figure(line['before']):>10}"
            f"{_figure(line['after']):>10}{line['ratio']:>13.2f}x{spread:>14}  {line['verdict']}"
        )
    worse = [line["row"] for line in lines if line["verdict"] == "WORSE"]
    out.append("")
    out.append(
        f"{len(worse)} of {len(lines)} rows worse than {TOLERANCE:.0%}: " + "; ".join(worse)
        if worse
        else f"every row within {TOLERANCE:.0%} of before, or better"
    )
    return "\n".join(out)


def compare(ref: str, rounds: int, seconds: float) -> None:
    commit = resolve_ref(ref)
    sides = [
        Side("before", f"{ref} ({commit[:7]})", extract(commit)),
        Side("after", f"working tree ({_git('describe', '--always', '--dirty')})", ROOT),
    ]
    for side in sides:
        check_import(side)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    samples = measure(sides, rounds, seconds)
    lines = summarize(samples)
    print()
    print(report(sides, lines, rounds, seconds))
    minutes = (time.perf_counter() - started) / 60
    print(f"{minutes:.1f} min; load average {load:.1f} at the start, ", end="")
    print(f"{os.getloadavg()[0]:.1f} at the end")
    path = save(
        "compare",
        {
            "sides": {side.name: {"label": side.label, "path": str(side.path)} for side in sides},
            "rounds": rounds,
            "seconds": seconds,
            "samples": samples,
            "rows": lines,
        },
    )
    print(f"\nwritten to {path}")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds; each measures every row on both sides"
    )
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="length of one load turn against a server"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare",
        description="The package at REF (before) and the working tree (after), side by side.",
    )
    parser.add_argument("ref", nargs="?", default=DEFAULT_REF, help="default: %(default)s")
    add_options(parser)
    args = parser.parse_args(argv)
    compare(args.ref, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
