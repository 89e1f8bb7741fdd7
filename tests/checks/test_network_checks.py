"""tcp, http, dns and tls_certificate against real servers: answering, stopped, hung.

The HTTP(S) server is the standard library's in a process of its own, the name server
is dnsmasq; each is stopped (killed) and hung (SIGSTOP: the kernel accepts connections,
nobody answers) in turn. A hung server's check ends at the per-check timeout.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from di import Degraded, checks
from di.health import Outcome

from ..processes import closed_port
from ..timing import PATIENCE, Stopwatch, at_most
from .running import TIMEOUT, Certificates, acheck, injector_with
from .servers import Dnsmasq, HttpServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)


@pytest.fixture
def plain_server() -> Iterator[HttpServer]:
    server = HttpServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def tls_server(certificates: Certificates) -> Iterator[HttpServer]:
    server = HttpServer(*certificates.issue("server"))
    server.start()
    yield server
    server.close()


async def times_out(check: checks.AsyncCheck) -> None:
    """The check of a hung server ends as a timeout, at the per-check timeout."""
    with Stopwatch() as watch:
        result = await acheck(check)
    assert result.outcome is Outcome.TIMEOUT, result
    assert TIMEOUT <= watch.seconds < at_most(TIMEOUT)


async def fails(check: checks.AsyncCheck, kind: type[BaseException], text: str) -> None:
    result = await acheck(check)
    assert result.outcome is Outcome.UNHEALTHY, result
    assert isinstance(result.error, kind), repr(result.error)
    assert text in str(result.error)


# -- tcp ----------------------------------------------------------------------------------


async def test_tcp_passes_with_its_latency_then_fails_once_the_server_is_stopped(
    plain_server: HttpServer,
) -> None:
    check = checks.tcp("127.0.0.1", plain_server.port)
    result = await acheck(check)
    assert result.outcome is Outcome.HEALTHY
    assert result.details is not None and result.details["latency_ms"] >= 0
    plain_server.kill()
    await fails(check, OSError, str(plain_server.port))


async def test_tcp_times_out_when_the_server_accepts_no_more_connections() -> None:
    """A server too stuck to accept: its backlog is full, and the kernel drops the SYN.

    (A stopped process's port still accepts, its backlog taking the connection: a TCP
    check passes there; the protocol checks below tell it.)
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        held = []
        try:
            for _ in range(8):  # fill the accept queue; later connects stay unanswered
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(("127.0.0.1", port))
                held.append(client)
            await times_out(checks.tcp("127.0.0.1", port))
        finally:
            for client in held:
                client.close()


def test_tcp_refuses_a_port_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"tcp\(\): expected a port number from 1 to 65535"):
        checks.tcp("localhost", 70000)


# -- http ---------------------------------------------------------------------------------


async def test_http_passes_on_2xx_and_fails_on_another_status(plain_server: HttpServer) -> None:
    result = await acheck(checks.http(plain_server.url + "/"))
    assert result.outcome is Outcome.HEALTHY
    assert result.details is not None and result.details["status"] == 200
    failing = await acheck(checks.http(plain_server.url + "/unavailable"))
    assert failing.outcome is Outcome.UNHEALTHY
    assert isinstance(failing.error, checks.CheckFailed)
    assert str(failing.error) == f"HTTP 503 from {plain_server.url}/unavailable"
    assert failing.error.details is not None and failing.error.details["status"] == 503
    accepted = await acheck(checks.http(plain_server.url + "/unavailable", expect={503}))
    assert accepted.outcome is Outcome.HEALTHY


async def test_http_times_out_on_a_hung_server_and_fails_on_a_stopped_one(
    plain_server: HttpServer,
) -> None:
    check = checks.http(plain_server.url + "/")
    with plain_server.hung():
        await times_out(check)
    assert (await acheck(check)).outcome is Outcome.HEALTHY  # resumed
    plain_server.kill()
    await fails(check, ConnectionRefusedError, "")


async def test_https_verifies_the_server_against_the_ca_given(
    tls_server: HttpServer, certificates: Certificates
) -> None:
    trusted = await acheck(checks.http(tls_server.url + "/", ca_file=str(certificates.ca_file)))
    assert trusted.outcome is Outcome.HEALTHY
    # The system's trust store does not know the test CA.
    await fails(checks.http(tls_server.url + "/"), OSError, "certificate verify failed")
    with tls_server.hung():
        await times_out(checks.http(tls_server.url + "/", ca_file=str(certificates.ca_file)))


async def test_http_sends_the_urls_credentials_and_never_shows_the_password(
    plain_server: HttpServer,
) -> None:
    """``http://user:password@host/`` authenticates as curl and httpx do (Basic), and no
    error text, which the logs, /health and di check show, carries the password."""
    where = f"127.0.0.1:{plain_server.port}"
    allowed = await acheck(checks.http(f"http://admin:s3cret@{where}/private"))
    assert allowed.outcome is Outcome.HEALTHY, allowed
    refused = await acheck(checks.http(f"http://admin:wrong-s3cret@{where}/private"))
    assert refused.outcome is Outcome.UNHEALTHY
    assert str(refused.error) == f"HTTP 401 from http://admin:***@{where}/private"
    failing = await acheck(checks.http(f"http://admin:s3cret@{where}/unavailable"))
    assert str(failing.error) == f"HTTP 503 from http://admin:***@{where}/unavailable"
    plain_server.kill()
    stopped = await acheck(checks.http(f"http://admin:s3cret@{where}/private"))
    assert stopped.outcome is Outcome.UNHEALTHY
    for result in (refused, failing, stopped):
        assert "s3cret" not in str(result.error) and "s3cret" not in repr(result.error)


async def test_a_name_that_does_not_resolve_is_named() -> None:
    """A name lookup that fails says which name; the resolver's words alone do not."""
    for check in (
        checks.tcp("nothing.invalid", 80),
        checks.http("http://nothing.invalid/"),
        checks.tls_certificate("nothing.invalid", 443),
    ):
        # A machine without a name server fails the lookup only after its retries.
        (result,) = (await injector_with(check, PATIENCE).ahealth_report()).checks
        assert result.outcome is Outcome.UNHEALTHY, result
        assert isinstance(result.error, socket.gaierror), repr(result.error)
        assert "cannot resolve 'nothing.invalid': " in str(result.error), result.error


async def test_tls_to_a_plaintext_port_names_the_port_and_says_why(
    plain_server: HttpServer, certificates: Certificates
) -> None:
    where = f"127.0.0.1:{plain_server.port}"
    for check in (
        checks.http(f"https://{where}/", ca_file=str(certificates.ca_file)),
        checks.tls_certificate("127.0.0.1", plain_server.port, ca_file=str(certificates.ca_file)),
    ):
        result = await acheck(check)
        assert result.outcome is Outcome.UNHEALTHY, result
        assert isinstance(result.error, OSError), repr(result.error)
        assert str(result.error).startswith(f"TLS with {where} failed: "), result.error
        assert "(a plaintext port?)" in str(result.error)


async def test_https_that_does_not_verify_names_the_server(
    tls_server: HttpServer,
) -> None:
    result = await acheck(checks.http(tls_server.url + "/"))  # the test CA is not trusted
    assert result.outcome is Outcome.UNHEALTHY
    assert str(result.error).startswith(
        f"TLS with 127.0.0.1:{tls_server.port}: certificate verify failed: "
    ), result.error


def test_a_ca_file_that_does_not_load_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "none.pem"
    with pytest.raises(ValueError, match=rf"http\(\): cannot load ca_file {missing}: No such file"):
        checks.http("https://example.test/", ca_file=str(missing))
    with pytest.raises(
        ValueError, match=rf"tls_certificate\(\): cannot load ca_file {missing}: No such file"
    ):
        checks.tls_certificate("example.test", 443, ca_file=str(missing))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ValueError, match=rf"cannot load ca_file {garbage}: "):
        checks.http("https://example.test/", ca_file=str(garbage))


def test_http_names_an_expect_that_is_no_set_of_statuses() -> None:
    with pytest.raises(TypeError) as refused:
        checks.http("http://example.test/", expect=200)  # type: ignore[arg-type]
    assert str(refused.value) == (
        "http(): expect is the statuses that pass (range(200, 300), {200, 204}), got 200"
    )


def test_http_refuses_a_url_it_cannot_get() -> None:
    with pytest.raises(ValueError, match=r"http\(\): expected an http:// or https:// URL"):
        checks.http("ftp://example.test/")


# -- dns ----------------------------------------------------------------------------------


async def test_dns_through_the_system_resolver_reports_the_addresses() -> None:
    result = await acheck(checks.dns("localhost"))
    assert result.outcome is Outcome.HEALTHY
    assert result.details is not None and "127.0.0.1" in result.details["addresses"]


async def test_dns_asks_the_server_given_and_fails_on_an_unknown_name() -> None:
    server = Dnsmasq({"db.example.test": "10.1.2.3"})
    server.start()
    try:
        result = await acheck(checks.dns("db.example.test", server=server.server))
        assert result.outcome is Outcome.HEALTHY
        assert result.details is not None
        assert result.details["addresses"] == ["10.1.2.3"]
        assert result.details["server"] == server.server
        unknown = checks.dns("nothing.example.test", server=server.server)
        await fails(unknown, checks.CheckFailed, "for 'nothing.example.test'")
        with server.hung():
            await times_out(checks.dns("db.example.test", server=server.server))
        server.kill()
        # Nothing listens: the port-unreachable answer fails the query at once.
        await fails(checks.dns("db.example.test", server=server.server), OSError, "")
    finally:
        server.close()


def udp_server(answer: Callable[[bytes], bytes]) -> str:
    """A name server on a UDP port that answers each query with ``answer(query)``."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def run() -> None:
        with server:
            while True:
                query, client = server.recvfrom(4096)
                if query == b"stop":
                    return
                server.sendto(answer(query), client)

    threading.Thread(target=run, daemon=True).start()
    return f"127.0.0.1:{server.getsockname()[1]}"


def stop_udp_server(address: str) -> None:
    host, _, port = address.partition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"stop", (host, int(port)))


OK_ONE_ANSWER = b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"  # flags, 1 question, 1 answer


@pytest.mark.parametrize(
    "answer",
    [
        lambda query: query[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00",
        lambda query: query[:2] + OK_ONE_ANSWER + query[12:] + b"\xc0\x0c\x00\x01",
        lambda query: query[:2] + OK_ONE_ANSWER + query[12:] + b"\x05abc",
        lambda query: query[:2] + b"\x81\x80\xff\xff" + bytes(6),
    ],
    ids=["no question", "record cut short", "name cut short", "questions missing"],
)
async def test_dns_names_a_malformed_answer(answer: Callable[[bytes], bytes]) -> None:
    """A name server (or what answers on its port) that sends bytes that do not parse
    fails the check with the server and the name, not the parser's IndexError."""
    server = udp_server(answer)
    try:
        result = await acheck(checks.dns("db.example.test", server=server))
    finally:
        stop_udp_server(server)
    assert result.outcome is Outcome.UNHEALTHY, result
    assert isinstance(result.error, checks.CheckFailed), repr(result.error)
    assert str(result.error).startswith(
        f"{server} sent a malformed answer for 'db.example.test' ("
    ), result.error


@pytest.mark.parametrize("name", ["a..example.test", "x" * 64 + ".example.test", "."])
def test_dns_to_a_server_refuses_what_is_no_domain_name(name: str) -> None:
    with pytest.raises(ValueError) as refused:
        checks.dns(name, server="127.0.0.1")
    assert str(refused.value) == f"dns(): {name!r} is not a domain name"


def test_dns_refuses_a_server_it_cannot_parse() -> None:
    with pytest.raises(ValueError, match="expected server='HOST' or 'HOST:PORT'"):
        checks.dns("example.test", server="127.0.0.1:domain")


# -- tls_certificate -------------------------------------------------------------------------


def tls_check(
    server: HttpServer, certificates: Certificates, **options: object
) -> checks.AsyncCheck:
    return checks.tls_certificate(
        "127.0.0.1",
        server.port,
        ca_file=str(certificates.ca_file),
        **options,  # type: ignore[arg-type]
    )


async def test_tls_certificate_reports_its_days_left(
    tls_server: HttpServer, certificates: Certificates
) -> None:
    result = await acheck(tls_check(tls_server, certificates))
    assert result.outcome is Outcome.HEALTHY
    details = result.details
    assert details is not None
    assert details["days_left"] > 14  # trustme's leaves last years
    assert details["server_name"] == "127.0.0.1"
    assert details["issuer"] is None or isinstance(details["issuer"], str)
    with tls_server.hung():
        await times_out(tls_check(tls_server, certificates))
    tls_server.kill()
    await fails(tls_check(tls_server, certificates), ConnectionRefusedError, "")


@pytest.mark.parametrize(
    ("days", "outcome"), [(10, Outcome.DEGRADED), (2, Outcome.UNHEALTHY)], ids=["warn", "fail"]
)
async def test_tls_certificate_near_its_expiry_is_degraded_then_failed(
    certificates: Certificates, days: int, outcome: Outcome
) -> None:
    now = datetime.now(UTC)
    pair = certificates.issue(
        "soon", not_before=now - timedelta(days=1), not_after=now + timedelta(days=days)
    )
    server = HttpServer(*pair)
    server.start()
    try:
        result = await acheck(tls_check(server, certificates, warn_days=14, fail_days=3))
    finally:
        server.close()
    assert result.outcome is outcome
    assert isinstance(result.error, Degraded if outcome is Outcome.DEGRADED else checks.CheckFailed)
    assert f"expires in {days - 1}." in str(result.error) or f"expires in {days}" in str(
        result.error
    )
    details = result.error.details  # type: ignore[union-attr]
    assert details is not None and days - 1 < details["days_left"] <= days


@pytest.mark.parametrize("case", ["expired", "untrusted", "wrong name"])
async def test_tls_certificate_fails_when_invalid(certificates: Certificates, case: str) -> None:
    now = datetime.now(UTC)
    if case == "expired":
        pair = certificates.issue(
            "old", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        )
    elif case == "untrusted":
        import trustme

        pair = certificates.issue("other", ca=trustme.CA())
    else:
        pair = certificates.issue("named", "service.example.test")
    server = HttpServer(*pair)
    server.start()
    try:
        result = await acheck(tls_check(server, certificates))
    finally:
        server.close()
    assert result.outcome is Outcome.UNHEALTHY
    assert isinstance(result.error, checks.CheckFailed)
    reason = {
        "expired": "certificate has expired",
        "untrusted": "unable to get local issuer certificate",
        "wrong name": "address mismatch, certificate is not valid for '127.0.0.1'",
    }[case]
    assert str(result.error).startswith(
        f"the TLS certificate of 127.0.0.1:{server.port} is invalid"
    )
    assert reason in str(result.error)


async def test_tls_certificate_checks_the_server_name_given(
    certificates: Certificates,
) -> None:
    server = HttpServer(*certificates.issue("named", "service.example.test"))
    server.start()
    try:
        named = tls_check(server, certificates, server_name="service.example.test")
        result = await acheck(named)
    finally:
        server.close()
    assert result.outcome is Outcome.HEALTHY
    assert result.details is not None and result.details["server_name"] == "service.example.test"


def test_tls_certificate_refuses_thresholds_out_of_order() -> None:
    with pytest.raises(ValueError, match="expected 0 <= fail_days <= warn_days"):
        checks.tls_certificate("localhost", 443, warn_days=1, fail_days=3)


def test_a_closed_port_is_what_a_stopped_server_leaves() -> None:
    with closed_port() as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
