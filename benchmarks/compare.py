"""``make bench-compare``: the package at a git ref and the working tree, side by side.

The path of a run:

1. :func:`extract`: ``git archive REF di | tar -x`` into ``build/before``, the ref's
   ``di/`` package alone; the working tree's ``di/`` is the other side. Both are
   byte-compiled first, so that no row times a first import's compilation.
2. Every measurement runs in child processes started with ``PYTHONPATH=SIDE:ROOT`` and
   ``PYTHONSAFEPATH=1`` (:meth:`Side.env`): the side's ``di`` comes first, neither the
   current directory nor a script's own directory can shadow it, and ``benchmarks``
   (this tree's: the same code for both sides, public API only) imports from the root.
   :func:`check_import` makes sure of it for each side, and so does every child that
   reports the file it imported ``di`` from.
3. :func:`measure` starts the servers (R2's FastAPI app, ``di serve`` over HTTP and over
   gRPC, one of each per side, and a constant app) and one in-process worker per side
   (side.py), all up for the whole run, then runs rounds. In each round every row is
   measured on both sides, one right after the other, the order of the sides swapped
   every round, so that a slow moment of a shared machine hits both alike.
4. :func:`report`: each side's median over the rounds, the median of the per-round
   after/before ratios with their spread (lowest to highest), and a flag on any row
   more than 5% worse after than before.

Each row has two figures. Wall-clock time (and requests per second) is what users see,
but on a busy machine it measures the other processes too. CPU time counts only the
work of the process measured: the worker's own CPU time per call (all its threads); for
a server, its CPU time during a load turn over the requests it answered (from /proc);
for ``di probe``, the CPU time of the child process. The rows, those of the main
tables for healthdi alone:

- in-process (side.py): S1, S2, R1 (alone, and beside 5,000 live scopes), H1-H4 on
  asyncio, H1 and H2 on trio, H1 and H3 through the sync ``health_check()``;
- R2 (web.py): a FastAPI endpoint injecting a scoped service under uvicorn;
- serving (serving.py): ``/readyz`` under ``di serve --http``, with its share of a
  constant app under plain uvicorn loaded in the same round; gRPC Check under
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
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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
PROBE_RUNS = 4  # `di probe` runs per side and scheme in a round; the best one counts

# Rows: (title, unit, higher is better) under a key; side.py's rows keep its names.
IN_PROCESS = {
    "S1": ("S1: invoke a built singleton", "ns"),
    "S2": ("S2: invoke a transient Service(Repo(Db), Config)", "ns"),
    "R1": ("R1: one request scope, a scoped Handler", "us"),
    "R1, 5,000 live scopes": ("R1 beside 5,000 live scopes", "us"),
    "H1": ("H1: 10,000 no-op async checks", "us/check"),
    "H2": ("H2: 10,000 no-op sync checks", "us/check"),
    "H3": ("H3: 1,000 async checks x 10 ms", "ms"),
    "H4": ("H4: 1,000 sync checks x 10 ms", "ms"),
    "H1 on trio": ("H1 on trio", "us/check"),
    "H2 on trio": ("H2 on trio", "us/check"),
    "H1 via health_check()": ("H1 through the sync health_check()", "us/check"),
    "H3 via health_check()": ("H3 through the sync health_check()", "ms"),
}
REPEATS = {name: 5 if name[0] in "SR" else 3 for name in IN_PROCESS}  # per side, per round
CPU: dict[str, tuple[str, str, bool]] = {
    **{name: (title, unit, False) for name, (title, unit) in IN_PROCESS.items()},
    "R2": ("R2: FastAPI Inject[T] under uvicorn, server", "us/req", False),
    "readyz": ("serving: /readyz under di serve, server", "us/req", False),
    "grpc": ("serving: gRPC Check under di serve, server", "us/req", False),
    "probe http": ("serving: di probe http://", "ms", False),
    "probe grpc": ("serving: di probe grpc://", "ms", False),
}
WALL: dict[str, tuple[str, str, bool]] = {
    **{name: (title, unit, False) for name, (title, unit) in IN_PROCESS.items()},
    "R2": ("R2: FastAPI Inject[T] under uvicorn, 50 clients", "req/s", True),
    "readyz": ("serving: /readyz under di serve, 50 clients", "req/s", True),
    "readyz / constant": ("serving: /readyz / a constant app's req/s", "x", True),
    "grpc": ("serving: gRPC Check under di serve, 20 clients", "req/s", True),
    "probe http": ("serving: di probe http://, start to exit", "ms", False),
    "probe grpc": ("serving: di probe grpc://, start to exit", "ms", False),
}
CLOCKS = {"cpu": CPU, "wall": WALL}

Figures = dict[tuple[str, str], dict[str, float]]  # (clock, row) -> side name -> figure
Samples = dict[tuple[str, str], dict[str, list[float]]]  # the same, one figure per round


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

    def imported(self, file: str) -> None:
        """Stop if a child imported ``di`` from anywhere but this side's tree."""
        if Path(file).resolve() != (self.path / "di" / "__init__.py").resolve():
            raise SystemExit(f"bench-compare: the {self.name} side imported di from {file}")


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
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(side.path / "di")], check=True)
    done = subprocess.run(
        [sys.executable, "-c", "import di; print(di.__file__)"],
        cwd=ROOT,
        env=side.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    side.imported(done.stdout.strip())


class Worker:
    """One side's side.py, asked for a row's repeats one line at a time."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.side"],
            cwd=ROOT,
            env=side.env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"bench-compare: the {self.side.name} side's worker stopped")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ready(self) -> None:
        self.side.imported(self._answer()["di"])

    def ask(self, row: str, repeats: int) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{row} {repeats}\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


@contextmanager
def _workers(sides: list[Side]) -> Iterator[dict[str, Worker]]:
    workers = {side.name: Worker(side) for side in sides}  # both build their services at once
    try:
        for worker in workers.values():
            worker.ready()
        yield workers
    finally:
        for worker in workers.values():
            worker.close()


def _in_process(workers: dict[str, Worker]) -> Callable[[list[Side]], Figures]:
    def run(order: list[Side]) -> Figures:
        figures: Figures = {}
        for row, repeats in REPEATS.items():
            for side in order:
                best = workers[side.name].ask(row, repeats)
                for clock, value in best.items():
                    figures.setdefault((clock, row), {})[side.name] = value
        return figures

    return run


def _cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a live process so far, from /proc (Linux), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Servers:
    """The servers every round loads: (pid, port) per side, and the constant app."""

    r2: dict[str, tuple[int, int]]
    readyz: dict[str, tuple[int, int]]
    grpc: dict[str, tuple[int, int]]
    constant: tuple[int, int]

    @classmethod
    def start(cls, stack: ExitStack, sides: list[Side]) -> Servers:
        def started(command: Callable[[int], list[str]], side: Side | None) -> tuple[int, int]:
            port = _free_port()
            env = side.env() if side else None
            process = stack.enter_context(_process(command(port), port, env=env))
            return process.pid, port

        python = sys.executable

        def r2(port: int) -> list[str]:
            return [python, "-m", "benchmarks.web", "serve", "healthdi", str(port)]

        def constant(port: int) -> list[str]:
            return [python, "-m", "benchmarks.servers", "constant", str(port)]

        def readyz(port: int) -> list[str]:
            return _di_serve("--http", port)

        def grpc(port: int) -> list[str]:
            return _di_serve("--grpc", port)

        return cls(
            r2={side.name: started(r2, side) for side in sides},
            readyz={side.name: started(readyz, side) for side in sides},
            grpc={side.name: started(grpc, side) for side in sides},
            constant=started(constant, None),
        )


def _loaded(server: tuple[int, int], *args: str) -> dict[str, float]:
    """One load turn: the load generator's figures, and the server's CPU per request."""
    pid, port = server
    before = _cpu_seconds(pid)
    figures = _load(args[0], str(port), *args[1:])
    after = _cpu_seconds(pid)
    if before is not None and after is not None and figures["requests"]:
        figures["cpu_us"] = (after - before) * 1e6 / figures["requests"]
    return figures


def _serving(servers: Servers, seconds: float) -> Callable[[list[Side]], Figures]:
    span = f"{seconds:g}"

    def run(order: list[Side]) -> Figures:
        turns: dict[str, dict[str, dict[str, float]]] = {"R2": {}, "readyz": {}, "grpc": {}}
        for side in order:
            turns["R2"][side.name] = _loaded(servers.r2[side.name], "http", "/", "50", span)
        first, second = order
        # The constant app between the two sides: both shares have the same reference.
        turns["readyz"][first.name] = _loaded(
            servers.readyz[first.name], "http", "/readyz", "50", span
        )
        constant = _loaded(servers.constant, "http", "/", "50", span)["rps"]
        turns["readyz"][second.name] = _loaded(
            servers.readyz[second.name], "http", "/readyz", "50", span
        )
        for side in order:
            turns["grpc"][side.name] = _loaded(servers.grpc[side.name], "grpc", "20", span)
        figures: Figures = {}
        for row, by_side in turns.items():
            for name, turn in by_side.items():
                figures.setdefault(("wall", row), {})[name] = turn["rps"]
                if "cpu_us" in turn:
                    figures.setdefault(("cpu", row), {})[name] = turn["cpu_us"]
        figures["wall", "readyz / constant"] = {
            name: turn["rps"] / constant for name, turn in turns["readyz"].items()
        }
        return figures

    return run


def _probes(urls: dict[str, str]) -> Callable[[list[Side]], Figures]:
    def once(side: Side, url: str) -> tuple[float, float]:
        """Wall and CPU ms of one `di probe`, start to exit."""
        command = [sys.executable, "-m", "di", "probe", url]
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=side.env(), capture_output=True, text=True)
        wall = time.perf_counter() - started
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(
                f"bench-compare: di probe {url} on the {side.name} side: {done.stderr}"
            )
        spent = used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime
        return wall * 1000, spent * 1000

    def run(order: list[Side]) -> Figures:
        figures: Figures = {}
        for _ in range(PROBE_RUNS):
            for scheme, url in urls.items():
                for side in order:
                    for clock, ms in zip(("wall", "cpu"), once(side, url), strict=True):
                        best = figures.setdefault((clock, f"probe {scheme}"), {})
                        best[side.name] = min(best.get(side.name, float("inf")), ms)
        return figures

    return run


def measure(sides: list[Side], rounds: int, seconds: float) -> Samples:
    """Each row's figure per side, one per round: the rounds pair the two sides' figures."""
    samples: Samples = {
        (clock, row): {side.name: [] for side in sides}
        for clock, rows in CLOCKS.items()
        for row in rows
    }
    with ExitStack() as stack:
        print("starting both sides' servers and workers", file=sys.stderr, flush=True)
        servers = Servers.start(stack, sides)
        workers = stack.enter_context(_workers(sides))
        http_port, grpc_port = stack.enter_context(probe.local_servers())
        tasks = {
            "in-process": _in_process(workers),
            "servers": _serving(servers, seconds),
            "di probe": _probes(probe.probe_urls(http_port, grpc_port)),
        }
        for index in range(rounds):
            order = sides if index % 2 == 0 else sides[::-1]
            names = ", ".join(side.name for side in order)
            print(f"round {index + 1}/{rounds} ({names}):", end="", file=sys.stderr, flush=True)
            for title, task in tasks.items():
                started = time.perf_counter()
                for key, figures in task(order).items():
                    for name, value in figures.items():
                        samples[key][name].append(value)
                spent = time.perf_counter() - started
                print(f" {title} {spent:.0f} s", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
    return samples


def summarize(samples: Samples, clock: str) -> list[dict[str, Any]]:
    """One clock's rows: medians, the ratio of after to before, and the verdict."""
    lines = []
    for row, (title, unit, higher) in CLOCKS[clock].items():
        before, after = samples[clock, row]["before"], samples[clock, row]["after"]
        if not before or len(before) != len(after):
            continue  # no figure on this system (CPU time of a server needs /proc)
        ratios = [a / b for a, b in zip(after, before, strict=True)]
        ratio = statistics.median(ratios)
        cost = 1 / ratio if higher else ratio  # above 1 is worse, whatever the unit
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


def _table(title: str, lines: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'row':<50}{'unit':>9}{'before':>10}{'after':>10}{'after/before':>14}"
        f"{'spread':>12}  verdict"
    )
    out = [title, "", head, "-" * len(head)]
    for line in lines:
        spread = f"{line['low']:.2f}-{line['high']:.2f}"
        out.append(
            f"{line['row']:<50}{line['unit']:>9}{_figure(line['before']):>10}"
            f"{_figure(line['after']):>10}{line['ratio']:>13.2f}x{spread:>12}  {line['verdict']}"
        )
    worse = [line["row"] for line in lines if line["verdict"] == "WORSE"]
    out.append("")
    if worse:
        out.append(f"{len(worse)} of {len(lines)} rows worse by more than {TOLERANCE:.0%}:")
        out += [f"  {row}" for row in worse]
    else:
        out.append(f"every row within {TOLERANCE:.0%} of before, or better")
    return out


def report(sides: list[Side], tables: dict[str, list[dict[str, Any]]], rounds: int) -> str:
    before, after = sides
    out = [
        f"before: {before.label}, di from {before.path / 'di'}",
        f"after:  {after.label}, di from {after.path / 'di'}",
        f"Python {platform.python_version()}, {os.cpu_count()} cores; {rounds} rounds, the "
        "sides one after the other in each, their order swapped every round.",
        "Figures: each side's median over the rounds. after/before: the median of the "
        "rounds' ratios; spread: the lowest and highest.",
        f"verdict: WORSE when after is more than {TOLERANCE:.0%} worse than before "
        "(slower, costlier or fewer req/s), better when more than that better.",
        "",
    ]
    out += _table(
        "CPU time: the work of the process measured alone (steady on a busy machine)",
        tables["cpu"],
    )
    out += [""]
    out += _table(
        "Wall clock: what users see (on a busy machine, the other processes show too)",
        tables["wall"],
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
    tables = {clock: summarize(samples, clock) for clock in CLOCKS}
    print()
    print(report(sides, tables, rounds))
    minutes = (time.perf_counter() - started) / 60
    print(f"\n{minutes:.1f} min, load turns of {seconds:g} s; ", end="")
    print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    path = save(
        "compare",
        {
            "sides": {side.name: {"label": side.label, "path": str(side.path)} for side in sides},
            "rounds": rounds,
            "seconds": seconds,
            "samples": {f"{clock} {row}": figures for (clock, row), figures in samples.items()},
            "tables": tables,
        },
    )
    print(f"written to {path}")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rounds", type=int, default=6, help="rounds, each measuring every row on both sides"
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
