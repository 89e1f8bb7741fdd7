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
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ..checks.running import Certificates
from ..processes import Serving, di, port_said, wait_for
from ..timing import PATIENCE, at_most

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


def test_connections_in_their_handshake_count_towards_the_connection_limit(
    pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """At --limit-concurrency, a client stuck in its TLS handshake makes room as a silent
    plaintext one does: the server holds no more connections than the limit (and as many
    file descriptors), and a probe is answered whatever such clients do."""
    import socket

    serving = _serve(tmp_path_factory, pki.cert, pki.key, "--limit-concurrency", "10")
    server = next(serving)
    try:
        port = int(server.https.rpartition(":")[2])
        stuck = []
        for _ in range(30):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never ends
            stuck.append(client)

        def closed(client: socket.socket) -> bool:
            client.setblocking(False)
            try:
                return client.recv(1) == b""
            except BlockingIOError:
                return False
            except ConnectionError:
                return True

        # At once, not after the handshake's 5 s: 20 of the 30 made room for the rest.
        wait_for(
            lambda: sum(map(closed, stuck)) >= 20, "room made at the limit", timeout=at_most(1)
        )
        passes(server.https + "/readyz", "--tls-ca-cert", pki.ca)
        for client in stuck:
            client.close()
    finally:
        serving.close()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serving]:
    serving = Serving(
        "tests.serve_targets:healthy",
        "--interval",
        str(at_most(0)),
        log=tmp_path_factory.mktemp("serve") / "serve.log",
    )
    try:
        serving.wait_output("readiness': NOT_SERVING -> SERVING")
        yield serving
    finally:
        serving.close()


def test_plaintext_to_a_tls_port_says_to_use_tls(tls: TlsServing) -> None:
    """The probe that speaks plaintext to a TLS port is told so, for HTTP and gRPC."""
    http = "http" + tls.https.removeprefix("https") + "/readyz"
    fails(http, said="closed the connection without an answer (a TLS port? Probe it with https://")
    done = probe_tls(tls.grpc)  # without --tls
    assert done.returncode == 1, done
    assert "closed the connection without an answer (a TLS port? add --tls)" in done.stdout, done


def test_tls_to_a_plaintext_port_says_to_use_plaintext(plain: Serving, pki: Pki) -> None:
    https = f"https://127.0.0.1:{plain.http_port}/readyz"
    fails(
        https,
        "--tls-ca-cert",
        pki.ca,
        said=f"the server at 127.0.0.1:{plain.http_port} did not answer TLS "
        f"(a plaintext port? Probe it with http://127.0.0.1:{plain.http_port}/readyz)",
    )
    fails(
        f"grpc://127.0.0.1:{plain.grpc_port}",
        "--tls-ca-cert",
        pki.ca,
        said=f"the server at 127.0.0.1:{plain.grpc_port} did not answer TLS "
        "(a plaintext port? drop --tls)",
    )


def encrypted_key(key: str, folder: Path) -> str:
    """``key`` as a PEM file encrypted with a passphrase."""
    from cryptography.hazmat.primitives import serialization

    loaded = serialization.load_pem_private_key(Path(key).read_bytes(), None)
    path = folder / "encrypted.key"
    path.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return str(path)


def di_with_open_stdin(*args: str) -> tuple[int, str]:
    """The di command with a stdin that stays open, away from any terminal: OpenSSL's
    passphrase prompt would wait on it for ever."""
    from ..processes import ROOT

    process = subprocess.Popen(
        [sys.executable, "-m", "di", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        returncode = process.wait(PATIENCE)
        assert process.stderr is not None
        return returncode, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_an_encrypted_key_is_refused_at_once_without_a_prompt(pki: Pki, tmp_path: Path) -> None:
    """A key with a passphrase is named, with the way out; OpenSSL never prompts for one."""
    key = encrypted_key(pki.key, tmp_path)
    returncode, stderr = di_with_open_stdin(
        "serve", "tests.serve_targets:healthy", "--tls-cert", pki.cert, "--tls-key", key
    )
    assert returncode == 1
    assert "pass phrase" not in stderr
    assert stderr == (
        f"di serve: cannot load --tls-cert {pki.cert} with --tls-key {key}: the key is "
        f"encrypted; give it without a passphrase (openssl pkey -in {key} -out tls.key)\n"
    )
    client_cert = pki.client[1]
    returncode, stderr = di_with_open_stdin(
        "probe",
        "https://127.0.0.1:9/",
        "--tls-client-cert",
        client_cert,
        "--tls-client-key",
        key,
    )
    assert returncode == 1
    assert "pass phrase" not in stderr
    assert stderr == (
        f"di probe: cannot load --tls-client-cert {client_cert} with --tls-client-key {key}: "
        f"the key is encrypted; give it without a passphrase "
        f"(openssl pkey -in {key} -out tls.key)\n"
    )


def test_a_request_sent_with_the_last_handshake_bytes_is_answered(
    tls: TlsServing, pki: Pki
) -> None:
    """A client's Finished and its request in one write (TLS 1.3 lets it send both at
    once): the request arrives with the end of the handshake, and is answered."""
    import socket

    port = int(tls.https.rpartition(":")[2])
    context = ssl.create_default_context(cafile=pki.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port), timeout=at_most(1)) as connection:
        while True:
            try:
                tls_client.do_handshake()
                break
            except ssl.SSLWantReadError:
                if pending := outgoing.read():
                    connection.sendall(pending)
                incoming.write(connection.recv(65536))
        tls_client.write(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        connection.sendall(outgoing.read())  # the Finished and the request, together
        answer = b""
        while b"\r\n" not in answer:
            try:
                answer += tls_client.read(65536)
            except ssl.SSLWantReadError:
                data = connection.recv(65536)
                assert data, f"closed without an answer: {answer!r}"
                incoming.write(data)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_clients_stalled_in_their_grpc_handshake_hold_no_probe_up(
    tls: TlsServing, pki: Pki
) -> None:
    """Connections that stop mid-handshake on the gRPC port: a probe is answered beside
    them."""
    import socket

    port = int(tls.grpc.rpartition(":")[2])
    stalled = []
    try:
        for _ in range(20):
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never ends
            stalled.append(client)
        passes(tls.grpc, "--tls-ca-cert", pki.ca)
        passes(tls.https + "/readyz", "--tls-ca-cert", pki.ca)
    finally:
        for client in stalled:
            client.close()


def test_failed_grpc_handshakes_write_no_log_line_each(tls: TlsServing, pki: Pki) -> None:
    """A port scanner, a load balancer's TCP check or a plaintext client on the gRPC TLS
    port: grpcio would log every failed handshake, unthrottled, on di serve's stderr."""
    import socket

    port = int(tls.grpc.rpartition(":")[2])
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=at_most(5)) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(100) == b""  # the server closed it once the handshake failed
    passes(tls.grpc, "--tls-ca-cert", pki.ca)
    assert "Handshake failed" not in tls.serving.output()


def test_server_credentials_name_the_file_that_does_not_load(pki: Pki, tmp_path: Path) -> None:
    """grpcio takes any bytes and fails later with 'Failed to bind to address': the
    credentials are read and checked when made, naming the file and why."""
    from di.grpc import server_credentials

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    encrypted = encrypted_key(pki.key, tmp_path)
    client_key = pki.client[3]
    cases = [
        ((str(garbage), pki.key), f"cannot load {garbage} with {pki.key}: "),
        ((pki.cert, client_key), f"cannot load {pki.cert} with {client_key}: "),
        (
            (pki.cert, encrypted),
            f"cannot load {pki.cert} with {encrypted}: the key is encrypted; give it "
            f"without a passphrase (openssl pkey -in {encrypted} -out tls.key)",
        ),
        ((pki.cert, pki.key, str(garbage)), f"cannot load the client CA file {garbage}: "),
    ]
    for files, said in cases:
        with pytest.raises(ValueError) as refused:
            server_credentials(*files)
        assert str(refused.value).startswith(f"server_credentials(): {said}"), refused.value
    # What loads is taken: grpcio serves with it (test_mutual_tls_grpc_with_grpcio_credentials).
    assert isinstance(server_credentials(pki.cert, pki.key, pki.ca), grpc.ServerCredentials)


@pytest.mark.parametrize("kind", ["https", "grpc"])
def test_mutual_tls_refuses_an_expired_client_certificate(
    mutual: TlsServing, pki: Pki, kind: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    files = Certificates(tmp_path)
    files.ca = pki.files.ca  # the server's client CA signs it: only its dates are wrong
    cert, key = files.issue(
        "expired-client",
        "probe@example.test",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    url = mutual.https + "/readyz" if kind == "https" else mutual.grpc
    flags = ["--tls-ca-cert", pki.ca, "--tls-client-cert", str(cert), "--tls-client-key", str(key)]
    done = probe_tls(url, *tls_flags(url, *flags))
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith("unhealthy: "), done.stdout
    assert (
        "closed the TLS connection without an answer (did it refuse this probe's "
        f"certificate? --tls-client-cert {cert} must be valid now and signed by a CA the "
        "server trusts)"
    ) in done.stdout, done.stdout
    passes(url, "--tls-ca-cert", pki.ca, *pki.client)  # the server still answers the others
