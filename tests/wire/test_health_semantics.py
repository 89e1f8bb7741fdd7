"""Policies, root causes, tags, the startup probe, status codes, service information and
gRPC service names, over real HTTP (uvicorn) and real grpcio clients and servers."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from di import HealthPolicy, Injector

from ..processes import Serving, di, wait_for
from ..semantics_targets import Api, Db, Repo
from ..servers import Served, serve
from ..services import key
from ..timing import PATIENCE, at_most

DB, REPO, API = key(Db), key(Repo), key(Api)
Status = health_pb2.HealthCheckResponse


def chain(policy: HealthPolicy | None = None) -> tuple[Injector, list[bool]]:
    """Db <- Repo <- Api; the Db is down while ``down[0]``."""
    down = [False]

    def check(what: str) -> Any:
        def health_check(_: object) -> None:
            if down[0]:
                raise ConnectionError(f"{what} fails")

        return health_check

    injector = Injector()
    injector.provide(Db, health_check=check("db"), tags=("db",))
    injector.provide(Repo, health_check=check("repo"), health_policy=policy)
    injector.provide(Api, health_check=check("api"), health_policy=policy, tags=("edge",))
    injector.invoke(Api)
    return injector, down


@pytest.fixture
def served() -> Iterator[tuple[Served, list[bool]]]:
    injector, down = chain()
    with serve(
        injector,
        interval=3600,
        timeout=at_most(0),
        info={"version": "1.4.2", "serviceId": "orders"},
        status_codes={"fail": 500},
        grpc_services={"shop.Orders": ["*"], "shop.Storage": ["tag:db"]},
    ) as server:
        yield server, down


def get(server: Served, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=5)


def test_health_shows_blocked_by_info_and_the_status_code_asked_for(
    served: tuple[Served, list[bool]],
) -> None:
    server, down = served
    healthy = get(server, "/health")
    assert healthy.status_code == 200
    body = healthy.json()
    assert (body["status"], body["version"], body["serviceId"]) == ("pass", "1.4.2", "orders")
    down[0] = True
    server.check()
    failing = get(server, "/health")
    assert failing.status_code == 500  # status_codes={"fail": 500}
    checks = failing.json()["checks"]
    assert "blockedBy" not in checks[DB][0]
    assert checks[REPO][0]["blockedBy"] == [DB]
    assert checks[API][0]["blockedBy"] == [REPO]
    assert checks[DB][0]["consecutiveFailures"] == 1
    verbose = get(server, "/readyz?verbose")
    assert verbose.status_code == 503
    assert f"[-]{REPO} failed: blocked by {DB}" in verbose.text.splitlines()
    assert f"[-]{DB} failed: reason withheld" in verbose.text.splitlines()


def test_health_selects_by_tag_and_startupz_answers(served: tuple[Served, list[bool]]) -> None:
    server, down = served
    assert list(get(server, "/health?tag=db").json()["checks"]) == [DB]
    assert list(get(server, "/health?tag=edge").json()["checks"]) == [API]
    startupz = get(server, "/startupz")
    assert (startupz.status_code, startupz.text) == (200, "ok")
    down[0] = True
    server.check()
    tagged = get(server, "/health?tag=edge")
    assert (tagged.status_code, tagged.json()["status"]) == (500, "fail")
    assert get(server, "/startupz").status_code == 200  # started is started


def test_grpc_check_list_and_watch_answer_for_the_servers_service_names(
    served: tuple[Served, list[bool]],
) -> None:
    server, down = served
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def check(name: str) -> int:
            request = health_pb2.HealthCheckRequest(service=name)
            return int(stub.Check(request, timeout=5).status)

        assert check("shop.Orders") == Status.SERVING
        assert check("shop.Storage") == Status.SERVING
        assert check("startup") == Status.SERVING
        statuses = stub.List(health_pb2.HealthListRequest(), timeout=5).statuses
        assert {"shop.Orders", "shop.Storage", "startup"} <= set(statuses)
        seen: queue.Queue[int] = queue.Queue()
        stream = stub.Watch(health_pb2.HealthCheckRequest(service="shop.Storage"))

        def read() -> None:
            try:
                for response in stream:
                    seen.put(int(response.status))
            except grpc.RpcError:
                pass

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert seen.get(timeout=PATIENCE) == Status.SERVING
        down[0] = True
        server.check()
        assert seen.get(timeout=PATIENCE) == Status.NOT_SERVING
        assert check("shop.Orders") == Status.NOT_SERVING
        stream.cancel()
        reader.join(PATIENCE)


def test_skip_when_blocked_over_http_names_the_cause() -> None:
    injector, down = chain(HealthPolicy(skip_when_blocked=True))
    down[0] = True
    with serve(injector, interval=3600, timeout=at_most(0)) as server:
        server.check()
        checks = get(server, "/health").json()["checks"]
        assert checks[REPO][0]["blockedBy"] == [DB]
        assert checks[API][0]["blockedBy"] == [REPO]


# -- di serve and di check -----------------------------------------------------------------


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[Serving, Path]]:
    flag = tmp_path / "db-down"
    process = Serving(
        "tests.semantics_targets:app",
        "--interval",
        "0.1",
        "--failure-threshold",
        "3",
        "--info",
        "version=1.4.2",
        "--grpc-service",
        "shop.Orders",
        "--grpc-service",
        f"shop.Storage=tag:db,{REPO}",
        log=tmp_path / "serve.log",
        DI_TEST_DB_DOWN=str(flag),
    )
    try:
        yield process, flag
    finally:
        process.close()


def test_di_serve_takes_thresholds_info_and_grpc_service_names(
    serving: tuple[Serving, Path],
) -> None:
    process, flag = serving

    def health() -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(process.url + "/health", timeout=5).json()
        return answer

    wait_for(lambda: health()["status"] == "pass", "the first round to pass")
    assert health()["version"] == "1.4.2"
    with grpc.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def check(name: str) -> int:
            request = health_pb2.HealthCheckRequest(service=name)
            return int(stub.Check(request, timeout=5).status)

        assert check("shop.Orders") == check("shop.Storage") == Status.SERVING
        flag.touch()
        # Damped: the checks fail at once, the status turns only after three rounds.
        wait_for(lambda: health()["checks"][DB][0]["status"] != "pass", "a failed round")
        wait_for(lambda: check("shop.Storage") == Status.NOT_SERVING, "three failed rounds")
        entry = health()["checks"][DB][0]
        assert entry["consecutiveFailures"] >= 3
        assert health()["checks"][REPO][0]["blockedBy"] == [DB]


def test_di_serve_refuses_an_info_field_it_does_not_set() -> None:
    done = di("serve", "tests.semantics_targets:app", "--info", "owner=me", timeout=60)
    assert done.returncode == 1
    assert "--info owner=...: not a field of /health" in done.stderr


def test_di_check_selects_by_tag_and_names_the_root_cause(tmp_path: Path) -> None:
    flag = tmp_path / "db-down"
    tagged = di("check", "tests.semantics_targets:app", "--tag", "db", "--json")
    assert tagged.returncode == 0, tagged.stderr
    assert [c["key"] for c in json.loads(tagged.stdout)["checks"]] == [DB]
    flag.touch()
    failing = di("check", "tests.semantics_targets:app", DI_TEST_DB_DOWN=str(flag))
    assert failing.returncode == 1
    assert f"(blocked by {DB})" in failing.stdout
    assert f"root cause: {DB}" in failing.stdout
    unknown = di("check", "tests.semantics_targets:app", "--tag", "nosuch")
    assert unknown.returncode == 1 and "--tag nosuch: no service" in unknown.stderr


def test_health_tag_selection_refuses_an_unknown_tag_and_takes_several(
    served: tuple[Served, list[bool]],
) -> None:
    """A typo'd tag must not answer 200 "pass" over no checks (a probe that can never
    fail); several tags, repeated or comma-separated, select any of them, as /readyz and
    ``di check --tag`` do."""
    server, down = served
    unknown = get(server, "/health?tag=dbb")
    assert unknown.status_code == 404
    assert "'dbb'" in unknown.json()["message"]
    assert get(server, "/health?tag=db&tag=nope").status_code == 404
    for query in ("tag=db,edge", "tag=db&tag=edge"):
        assert sorted(get(server, f"/health?{query}").json()["checks"]) == sorted([DB, API])
    assert len(get(server, "/health?tag=").json()["checks"]) == 3  # no tag: every check
    down[0] = True
    server.check()
    assert get(server, "/health?tag=edge,db").status_code == 500


@pytest.mark.parametrize(
    "refused",
    [{"shop.Orders": ["*"], "readiness": ["*"]}, {"shop.Orders": ["*"], "shop.Db": ["tag:nope"]}],
)
def test_a_refused_services_list_adds_none_of_its_names(refused: dict[str, list[str]]) -> None:
    """add_health_servicer(services=...) refused for its second name must leave the
    monitor as it was: the corrected call then succeeds, instead of being refused for
    the first name, which the refused call had added."""
    from di import HealthMonitor
    from di.grpc import add_health_servicer

    injector, _ = chain()
    monitor = HealthMonitor(injector)
    # Registration only: a thread-pool server needs no event loop in this test.
    with ThreadPoolExecutor(1) as pool:
        server = grpc.server(pool)
        with pytest.raises(ValueError, match=r"readiness|nope"):
            add_health_servicer(server, monitor, services=refused)
        assert monitor.status("shop.Orders") is None
        add_health_servicer(server, monitor, services=["shop.Orders"])
        assert monitor.status("shop.Orders") is not None
        server.stop(None)
