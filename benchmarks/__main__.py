"""``make bench``: every table, side by side with the peers, written to results/ too.

``python -m benchmarks --compare REF`` runs compare.py instead: the package at a git
ref beside the working tree (``make bench-compare``).
"""

from __future__ import annotations

import argparse
import platform
import sys
from typing import Any

from . import (
    compare,
    graphs,
    health,
    probe,
    request_scopes,
    resolve,
    serving,
    soak,
    unit_of_work,
    web,
    web_frameworks,
)
from ._timing import measure, save, table


def resolution() -> dict[str, dict[str, float | None]]:
    rows: dict[str, dict[str, float | None]] = {}
    timed = {}
    for name, setup in resolve.SETUPS.items():
        try:
            scenarios = setup()
        except Exception as error:  # a peer that is missing or changed its API
            print(f"  {name}: skipped ({type(error).__name__}: {error})", file=sys.stderr)
            continue
        rows[name] = dict.fromkeys(("S1", "S2"))
        for scenario, row in scenarios.items():
            if row is not None:
                timed[(name, scenario)] = row
    best = measure({f"{n}|{s}": row for (n, s), row in timed.items()})
    for key, ns in best.items():
        name, scenario = key.split("|")
        rows[name][scenario] = ns
    return rows


def main() -> None:
    print(f"Python {platform.python_version()} on {platform.machine()}; best of 7, ns per call")
    rows = resolution()
    print()
    print(
        table(
            "S1: invoke a built singleton | S2: transient Service(Repo(Database), Config)",
            ["S1", "S2"],
            rows,
            "ns",
            "healthdi",
        )
    )
    floor = rows["floor (dict lookup / hand-written)"]
    ours = rows["healthdi"]
    print()
    for scenario, target in (("S1", 3.0), ("S2", 1.5)):
        ratio = (ours[scenario] or 0) / (floor[scenario] or 1)
        peers = [
            name
            for name, cells in rows.items()
            if not name.startswith(("healthdi", "floor (dict lookup / hand-written)"))
            and cells[scenario] is not None
            and cells[scenario] <= (ours[scenario] or 0)
        ]
        verdict = "faster than every peer" if not peers else f"not faster than {', '.join(peers)}"
        print(f"{scenario}: healthdi / floor = {ratio:.2f}x (target {target}x); {verdict}")
    idle, built = rows["healthdi, a hook on 'shut_down'"], rows["healthdi, a hook on 'built'"]
    for scenario, fired in (("S1", "no event"), ("S2", "two events")):
        without = ours[scenario] or 1
        print(
            f"{scenario} with a hook registered / without = "
            f"{(idle[scenario] or 0) / without:.2f}x (goal <= 1.10x; the hook on 'shut_down', "
            f"an event {scenario} never fires); with a hook on 'built' = "
            f"{(built[scenario] or 0) / without:.2f}x ({fired} a call)"
        )
    path = save("resolve", {"python": platform.python_version(), "rows": rows})
    print(f"\nwritten to {path}")
    request_table()
    graph_table()
    health_tables()


def request_table() -> None:
    rows: dict[str, dict[str, float | None]] = {}
    timed = {}
    for name, setup in request_scopes.SETUPS.items():
        try:
            timed[name] = setup()
        except Exception as error:  # a peer that is missing or changed its API
            print(f"  {name}: skipped ({type(error).__name__}: {error})", file=sys.stderr)
    for name, ns in measure(timed).items():
        rows[name] = {"R1": ns / 1000}
    print()
    print(
        table(
            "R1: one request (scope with the Request in context, scoped Handler -> scoped"
            " RequestCtx -> Request + Database singleton, close)",
            ["R1"],
            rows,
            "us",
            "dishka" if "dishka" in rows else "healthdi",
        )
    )
    ours, live = rows["healthdi"]["R1"] or 0.0, rows["healthdi, 5,000 live scopes"]["R1"] or 0.0
    print()
    if "dishka" in rows:
        print(f"R1: healthdi / dishka = {ours / (rows['dishka']['R1'] or 1):.2f}x (goal <= 1.00x)")
    print(f"R1 with 5,000 live scopes / without = {live / ours:.2f}x (goal <= 1.30x)")
    path = save("requests", {"rows": rows})
    print(f"\nwritten to {path}")
    unit_of_work_table()


def unit_of_work_table() -> None:
    rows = unit_of_work.measure()
    print()
    print(
        table(
            "R1-gen: one request (scope with the Request in context, a scoped generator"
            " factory UnitOfWork(Request, Database singleton), close: it commits)",
            list(unit_of_work.SHAPES),
            rows,
            "us",
            "dishka",
        )
    )
    print()
    for shape in unit_of_work.SHAPES:
        ours, theirs = rows["healthdi"][shape], rows["dishka"][shape]
        if ours is not None and theirs:
            print(f"R1-gen {shape}: healthdi / dishka = {ours / theirs:.2f}x (goal <= 1.00x)")
    path = save("unit-of-work", {"rows": rows})
    print(f"\nwritten to {path}")


def graph_table() -> None:
    rows = graphs.measure()
    print()
    print(
        table(
            f"G: {graphs.SIZE:,} services, a chain | a random graph (<= 3 dependencies each);"
            " best of 5",
            ["chain", "random"],
            rows,
            "ms",
            "dishka make_container",
        )
    )
    ours, theirs = rows["healthdi validate()"], rows["dishka make_container"]
    print()
    for kind in ("chain", "random"):
        mine, peer = ours[kind], theirs[kind]
        if mine is not None and peer:
            print(f"G {kind}: validate() / make_container = {mine / peer:.2f}x (goal <= 0.50x)")
    deep = measure(graphs.deep_scopes())
    print()
    print("D: invoke a built root singleton (ns per call, best of 7)")
    for title, ns in deep.items():
        print(f"{title:<44}{ns:>10.1f}{ns / deep['root']:>8.2f}x")
    for title, goal in (("depth 1", 1.3), ("depth 50", 1.5)):
        print(f"D {title}: {deep[title] / deep['root']:.2f}x the root (goal <= {goal:.2f}x)")
    path = save("graphs", {"rows": rows, "deep scopes": deep})
    print(f"\nwritten to {path}")


def health_tables() -> None:
    results: dict[str, Any] = {backend: health.measure(backend) for backend in ("asyncio", "trio")}
    results["sync entry"] = entry = health.sync_entry()
    aio = results["asyncio"]
    overhead = {
        "healthdi": aio["overhead"]["healthdi"],
        "healthdi via health_check()": {"H1": entry["H1"], "H2": entry["H2"]},
        **{k: v for k, v in aio["overhead"].items() if k != "healthdi"},
        "healthdi on trio": results["trio"]["overhead"]["healthdi"],
    }
    print()
    print(
        table(
            "H1: 10,000 no-op async checks | H2: 10,000 no-op sync checks"
            " (parallelism 100, both timeouts set; asyncio unless named)",
            ["H1", "H2"],
            overhead,
            "us",
            "healthdi",
        )
    )
    wall = aio["wall"] | {
        "healthdi via health_check()": {"H3": entry["H3"], "H4": entry["H4"]},
        "healthdi on trio": results["trio"]["wall"]["healthdi"],
    }
    print()
    print(
        table(
            "H3: 1,000 async checks x 10 ms | H4: 1,000 sync checks x 10 ms (parallelism 100)",
            ["H3", "H4"],
            wall,
            "ms",
            "ideal: ceil(N/P) x 10 ms",
        )
    )
    ours, ideal, floor = (
        wall["healthdi"],
        wall["ideal: ceil(N/P) x 10 ms"],
        wall["floor: bare tasks / threads, no engine"],
    )
    print()
    print(
        table(
            "C10: one call of 10 no-op async checks (both timeouts set)",
            ["C10"],
            aio["call"],
            "us",
            "floor: asyncio.gather, no timeouts",
        )
    )
    gather = overhead["floor: asyncio.gather, no timeouts"]["H1"]
    print()
    for name, target in (("H1", 10.0), ("H2", 20.0)):
        print(f"{name}: {overhead['healthdi'][name]:.1f} us per check (target {target:g} us)")
    workers = overhead[health.WORKERS_FLOOR]["H1"]
    for row in ("healthdi", "healthdi via health_check()"):
        ratio = overhead[row]["H1"] / gather
        print(
            f"H1 {row}: {ratio:.2f}x asyncio.gather (goal <= 1.00x); "
            f"{overhead[row]['H1'] / workers:.2f}x 100 workers with a move_on_after per "
            "check (goal <= 2.00x via health_check())"
        )
    c10 = aio["call"]
    ratio = c10["healthdi"]["C10"] / c10["floor: asyncio.gather, no timeouts"]["C10"]
    print(f"C10: {ratio:.2f}x asyncio.gather (goal <= 2.00x)")
    for name, target in (("H3", 1.10), ("H4", 1.20)):
        print(
            f"{name}: {ours[name] / ideal[name]:.2f}x the ideal (target {target:.2f}x); "
            f"{ours[name] / floor[name]:.2f}x the bare floor, itself "
            f"{floor[name] / ideal[name]:.2f}x the ideal"
        )
    h3 = wall["healthdi via health_check()"]["H3"] / floor["H3"]
    print(f"H3 via health_check(): {h3:.2f}x the bare floor (goal <= 1.04x)")
    results["observability"] = seen = health.observability()
    if seen:
        print(
            f"H1 through a monitor round: {seen['off']:.1f} us per check with metrics and "
            f"tracing off, {seen['on']:.1f} us with both on: {seen['overhead']:.1f} us "
            "per check for a histogram observation, a counter and the tracing"
        )
        off = seen["off"]
        for row, goal in (("tracing", 2.0), ("metrics", 1.3)):
            print(f"Monitor round with {row} on / off = {seen[row] / off:.2f}x (goal <= {goal}x)")
        every = seen["tracing, a span per check"] / off
        print(f"Monitor round with a span per check (trace_checks='all') / off = {every:.2f}x")
    else:
        print("H1 with metrics and tracing: needs prometheus-client and opentelemetry-sdk")
    results["semantics"] = rich = health.semantics()
    print()
    for plain, used in (
        ("H1", "H1 policies+tags"),
        ("round", "round policies+tags"),
        ("failing", "failing root cause"),
    ):
        print(
            f"{used}: {rich[used]:.1f} us per check beside {plain} {rich[plain]:.1f} us "
            f"({rich[used] / rich[plain]:.2f}x)"
        )
    path = save("health", results)
    print(f"\nwritten to {path}")
    probe_table()


def probe_table() -> None:
    timings = probe.measure()
    named = probe.di_command()[1]
    print(f"\n`{named} probe` start to exit against local servers (ms, interleaved runs)\n")
    columns = ("wall", "wall median", "cpu", "cpu median")
    print(f"{'':<36}" + "".join(f"{column:>13}" for column in columns))
    for name, ms in timings.items():
        print(f"{name:<36}" + "".join(f"{ms[column]:>13.1f}" for column in columns))
    print()
    floor = "python -I -c pass"
    for scheme, minimal, goal in (
        ("http", floor, 1.3),
        ("http", "minimal http.client script", None),
        ("grpc", floor, 1.5),
        ("grpc", "minimal grpcio Check script", None),
    ):
        ours, base = timings[f"{named} probe {scheme}://..."], timings[minimal]
        ratios = ", ".join(f"{column} {ours[column] / base[column]:.2f}x" for column in columns)
        aim = f" (goal: at most {goal:.1f}x)" if goal else ""
        print(f"di probe {scheme} / {minimal}: {ratios}{aim}")
    save("probe", timings)
    serving_tables()


def serving_tables() -> None:
    results = serving.measure()
    http, grpc, watch = results["http"], results["grpc"], results["watch"]
    turns = f"{serving.SECONDS:g} s per turn, best of {serving.TURNS}"
    print(f"\nServing health, side by side ({turns})\n")
    print(f"{'row':<52}{'req/s':>10}{'p50 ms':>10}")
    for title, rows in (
        ("HTTP /readyz, 50 keep-alive clients", http),
        ("gRPC Check, 20 clients", grpc),
    ):
        for name, row in rows.items():  # type: ignore[attr-defined]
            print(f"{title + ': ' + name:<52}{row['rps']:>10.0f}{row['p50_ms']:>10.2f}")
    h = http["di serve /readyz"]["rps"] / http["uvicorn constant 200"]["rps"]  # type: ignore[index]
    g = grpc["di serve Check"]["rps"] / grpc["stock aio servicer"]["rps"]  # type: ignore[index]
    print(f"\nHTTP: {h:.2f}x the constant app (goal: at least 0.90x)")
    print(f"gRPC Check: {g:.2f}x the stock servicer (goal: at least 1.00x)")
    print("\nWatch: a status change reaching 500 streams (median of 7, best of turns, ms)")
    for name, ms in watch.items():  # type: ignore[attr-defined]
        print(f"{name:<52}{ms:>10.1f}")
    page: Any = results["page"]
    print("\nThe status page under di serve --ui (median of 20)")
    fetch, health = page["page fetch ms (median)"], page["/health fetch ms (median)"]
    print(f"{'page, script and style fetched, ms':<52}{fetch:>10.2f}")
    print(f"{'/health fetched, ms':<52}{health:>10.2f}  ({fetch / health:.1f}x)")
    loaded = page["browser load ms (median)"]
    if loaded is None:
        print("browser load: skipped (no /usr/bin/chromium or no playwright)")
    else:
        print(f"{'headless Chromium, navigation to load, ms':<52}{loaded:>10.1f}  (goal: < 200)")
    print(f"{'page weight, bytes':<52}{page['page weight bytes']:>10.0f}  (goal: < 102400)")
    path = save("serving", results)
    print(f"\nwritten to {path}")
    web_table()


def web_table() -> None:
    rows = {}
    for framework in web.FRAMEWORKS:
        rows[framework] = web.measure(framework)
        print()
        print(web.report(rows[framework], framework))
    path = save("web", {"rows": rows})
    print(f"\nwritten to {path}")
    frameworks = web_frameworks.measure()
    print()
    print(web_frameworks.report(frameworks))
    path = save("web_frameworks", frameworks)
    print(f"\nwritten to {path}")
    soak_table()


def soak_table() -> None:
    results = soak.measure()
    print()
    print(soak.report(results))
    path = save("soak", results)
    print(f"\nwritten to {path}")


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--compare",
        metavar="REF",
        help="instead of the tables: the package at REF beside the working tree",
    )
    compare.add_options(parser)
    args = parser.parse_args(argv)
    if args.compare:
        compare.compare(args.compare, args.rounds, args.seconds)
    else:
        main()


if __name__ == "__main__":
    cli()
