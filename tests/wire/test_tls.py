"""TLS on the health ports: `di serve --tls-*` and `di probe` with grpc_health_probe's flags.

`di serve` runs as a child process with certificates made by trustme; `di probe` is run
as Docker and Kubernetes run it, and must exit 0 over TLS and mutual TLS with the right
CA, and 1 with a wrong CA, an expired certificate, a wrong server name or no client
certificate, over HTTP and gRPC alike. Readiness passes once the first round of checks
has run: the probes wait for it.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..checks.running import Certificates
from ..processes import Serving, di, port_said, wait_for
from ..timing import at_most

HTTPS_SAYS = r"HTTP health on https://127\.0\.0\.1:(\d+)"
GRPC_TLS_SAYS = r"gRPC health on 127\.0\.0\.1:(\d+) \(grpc\.health\.v1\.Health\) over"


class Pki:
    """One CA, a server certificate for localhost and 127.0.0.1, a client certificate,
    and what goes wrong: another CA, a client of that CA, an expired server certificate."""

    def __init__(self, folder: Path) -> None:
        self.files = Certificates(folder)
        self.ca = str(self.files.ca_file)
        self.cert, self.key = map(str, self.files.issue("server"))
        client = self.files.issue("client", "probe@example.test")
        self.client = ["--tls-client-cert", str(client[0]), "--tls-client-key", str(client[1])]
        self.other_ca = trustme.CA()
        self.wrong_ca = str(self.files.write_ca(self.other_ca, "other-ca.pem"))
        stranger = self.files.issue("stranger", "probe@example.test", ca=self.other_ca)
        self.stranger = [
            "--tls-client-cert",
            str(stranger[0]),
            "--tls-client-key",
            str(stranger[1]),
        ]
        now = datetime.now(UTC)
        expired = self.files.issue(
            "expired", not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
        )
        self.expired_cert, self.expired_key = map(str, expired)


class TlsServing:
    """`di serve` over TLS, its HTTPS and gRPC URLs once it says its ports."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.https = f"https://127.0.0.1:{port_said(serving.output, HTTPS_SAYS, serving.process)}"
        self.grpc = f"grpc://127.0.0.1:{port_said(serving.output, GRPC_TLS_SAYS, serving.process)}"

    def urls(self) -> list[str]:
        return [self.https + "/readyz", self.grpc]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


def _serve(
    tmp_path_factory: pytest.TempPathFactory, cert: str, key: str, *more: str
) -> Iterator[TlsServing]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    serving = Serving(
        "tests.serve_targets:healthy",
        "--interval",
        str(at_most(0)),
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        *more,
        log=log,
    )
    try:
        server = TlsServing(serving)
        serving.wait_output("readiness': NOT_SERVING -> SERVING")
        yield server
    finally:
        serving.close()


@pytest.fixture(scope="module")
def tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServing]:
    yield from _serve(tmp_path_factory, pki.cert, pki.key)


@pytest.fixture(scope="module")
def mutual(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServing]:
    yield from _serve(tmp_path_factory, pki.cert, pki.key, "--tls-client-ca", pki.ca)


@pytest.fixture(scope="module")
def expired(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServing]:
    yield from _serve(tmp_path_factory, pki.expired_cert, pki.expired_key)


def tls_flags(url: str, *flags: str) -> list[str]:
    """``--tls`` for gRPC (grpc_health_probe's rule), nothing more for https://."""
    return ["--tls", *flags] if url.startswith("grpc://") else list(flags)


def probe_tls(url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """`di probe` with the time a probe over TLS needs here: a handshake more than
    :func:`tests.processes.probe` allows for."""
    return di("probe", url, "--timeout", str(at_most(2)), *flags)


def passes(url: str, *flags: str) -> None:
    done = probe_tls(url, *tls_flags(url, *flags))
    assert (done.returncode, done.stderr) == (0, ""), done.stdout
    assert done.stdout.startswith("healthy: "), done.stdout


def fails(url: str, *flags: str, said: str) -> None:
    done = probe_tls(url, *tls_flags(url, *flags))
    assert done.returncode == 1, done
    assert done.stdout.startswith("unhealthy: "), done.stdout
    assert said in done.stdout, done.stdout


def test_serve_says_it_serves_tls_on_both_ports(tls: TlsServing) -> None:
    output = tls.serving.output()
    assert "HTTP health on https://127.0.0.1:" in output
    assert "(grpc.health.v1.Health) over TLS" in output


@pytest.mark.parametrize("kind", ["https", "grpc"])
def test_probe_passes_over_tls_with_the_right_ca(tls: TlsServing, pki: Pki, kind: str) -> None:
    url = tls.https + "/readyz" if kind == "https" else tls.grpc
    passes(url, "--tls-ca-cert", pki.ca)
    # grpc_health_probe's own spelling: one dash, and = for a value.
    done = probe_tls(url, *(["-tls"] if kind == "grpc" else []), f"-tls-ca-cert={pki.ca}")
    assert done.returncode == 0, done.stdout
    # Encryption without authentication, as asked.
    passes(url, "--tls-no-verify")


@pytest.mark.parametrize("kind", ["https", "grpc"])
def test_probe_fails_with_a_wrong_ca_or_server_name(tls: TlsServing, pki: Pki, kind: str) -> None:
    url = tls.https + "/readyz" if kind == "https" else tls.grpc
    fails(
        url,
        "--tls-ca-cert",
        pki.wrong_ca,
        said="certificate did not verify: unable to get local issuer certificate",
    )
    # The system's trust store does not know the test CA either.
    fails(url, said="certificate did not verify")
    fails(
        url,
        "--tls-ca-cert",
        pki.ca,
        "--tls-server-name",
        "other.example.test",
        said="Hostname mismatch, certificate is not valid for 'other.example.test'",
    )
    passes(url, "--tls-ca-cert", pki.ca, "--tls-server-name", "localhost")


@pytest.mark.parametrize("kind", ["https", "grpc"])
def test_probe_fails_on_an_expired_certificate(expired: TlsServing, pki: Pki, kind: str) -> None:
    url = expired.https + "/readyz" if kind == "https" else expired.grpc
    fails(url, "--tls-ca-cert", pki.ca, said="certificate did not verify: certificate has expired")


@pytest.mark.parametrize("kind", ["https", "grpc"])
def test_mutual_tls_takes_only_a_client_certificate_of_its_ca(
    mutual: TlsServing, pki: Pki, kind: str
) -> None:
    url = mutual.https + "/readyz" if kind == "https" else mutual.grpc
    passes(url, "--tls-ca-cert", pki.ca, *pki.client)
    fails(
        url,
        "--tls-ca-cert",
        pki.ca,
        said="closed the TLS connection without an answer (does it require a client certificate?",
    )
    done = probe_tls(url, *tls_flags(url, "--tls-ca-cert", pki.ca, *pki.stranger))
    assert done.returncode == 1, done.stdout
    fails(url, "--tls-ca-cert", pki.wrong_ca, *pki.client, said="certificate did not verify")


def test_mutual_tls_grpc_with_grpcio_credentials(mutual: TlsServing, pki: Pki) -> None:
    """What a gRPC client (Envoy, a mesh) does: grpcio's own TLS, with a client certificate."""
    client_cert, client_key = pki.client[1], pki.client[3]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(pki.ca).read_bytes(),
        private_key=Path(client_key).read_bytes(),
        certificate_chain=Path(client_cert).read_bytes(),
    )
    with grpc.secure_channel(mutual.grpc.removeprefix("grpc://"), credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=at_most(1))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_https_gives_the_same_answers_over_one_kept_alive_connection(
    tls: TlsServing, pki: Pki
) -> None:
    """The answers are the same over TLS, keep-alive included."""
    import http.client

    context = ssl.create_default_context(cafile=pki.ca)
    port = int(tls.https.rpartition(":")[2])
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=at_most(1))
    try:
        for path in ("/livez", "/readyz", "/health"):
            connection.request("GET", path)
            answer = connection.getresponse()
            body = answer.read()
            assert answer.status == 200, (path, body)
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["http://127.0.0.1:9/", "--tls"], "http:// is plaintext: use https:// for TLS"),
        (
            ["grpc://127.0.0.1:9", "--tls-ca-cert", "ca.pem"],
            "--tls-ca-cert needs --tls (gRPC over TLS)",
        ),
        (
            ["grpc://127.0.0.1:9", "-tls", "-tls-no-verify", "-tls-ca-cert", "ca.pem"],
            "--tls-ca-cert is not used with --tls-no-verify",
        ),
        (
            ["https://127.0.0.1:9/", "--tls-client-cert", "c.pem"],
            "--tls-client-cert and --tls-client-key go together",
        ),
        (
            ["https://127.0.0.1:9/", "--tls-ca-cert", "/nonexistent/ca.pem"],
            "cannot load --tls-ca-cert /nonexistent/ca.pem: No such file or directory",
        ),
    ],
)
def test_probe_tls_usage_errors_exit_1_in_one_line(args: list[str], said: str) -> None:
    done = di("probe", *args)
    assert done.returncode == 1
    assert done.stderr.startswith("di probe: ") and said in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_serve_names_the_tls_file_that_does_not_load(pki: Pki, tmp_path: Path) -> None:
    done = di("serve", "tests.serve_targets:healthy", "--tls-cert", pki.cert, "--tls-key", pki.cert)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"di serve: cannot load --tls-cert {pki.cert} with --tls-key {pki.cert}: "
    )
    alone = di("serve", "tests.serve_targets:healthy", "--tls-client-ca", pki.ca)
    assert alone.returncode == 1
    assert "--tls-cert and --tls-key go together" in alone.stderr
    missing = di(
        "serve",
        "tests.serve_targets:healthy",
        "--tls-cert",
        pki.cert,
        "--tls-key",
        pki.key,
        "--tls-client-ca",
        str(tmp_path / "none.pem"),
    )
    assert missing.returncode == 1
    assert "cannot load --tls-client-ca" in missing.stderr


def test_https_handshake_that_never_ends_does_not_hold_a_connection(tls: TlsServing) -> None:
    """A client that connects and never starts its handshake is closed by the server."""
    import socket

    port = int(tls.https.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=at_most(5) + 5) as silent:
        wait_for(lambda: silent.recv(1) == b"", "the server to close a silent TLS connection")
