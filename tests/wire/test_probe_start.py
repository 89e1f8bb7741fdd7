"""``di probe`` reads its own arguments and URLs, to start without argparse and
urllib.parse: what it reads, it reads as they do.

Its arguments: whenever :func:`di._cli.probe_options` reads an argument list, the
command's argparse parser reads the same values from it; what it leaves to argparse
(help, errors, abbreviations) is checked by the command's tests. Its URLs: every part
the probe uses is the part :func:`urllib.parse.urlsplit` finds, errors included.
"""

from __future__ import annotations

import contextlib
import io
import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from di._cli import probe_options
from di._cli.commands import parser, probe_tls
from di._cli.probe import Tls, _Url

# -- arguments ---------------------------------------------------------------------------


def _fields(url: str, service: str, timeout: float, tls: Tls) -> tuple[object, ...]:
    # repr: nan is a timeout both read (and refuse later), and nan != nan
    return (url, service, repr(timeout), *(getattr(tls, name) for name in Tls.__slots__))


def _argparse_reads(arguments: list[str]) -> tuple[object, ...] | None:
    """What argparse reads from ``di probe ARGUMENTS``; None when it refuses them."""
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = parser().parse_args(["probe", *arguments])
    except SystemExit:
        return None
    return _fields(args.url, args.service, args.timeout, probe_tls(args))


@pytest.mark.parametrize(
    "arguments",
    [
        ["grpc://127.0.0.1:50051"],
        ["http://127.0.0.1:8080/readyz", "--timeout", "2.5"],
        ["--timeout=0.5", "grpc://h:1", "--service", "readiness"],
        ["grpc://h:1", "-tls", "-tls-ca-cert", "ca.pem", "-tls-server-name=example.com"],
        ["grpc://h:1", "--tls", "--tls-client-cert", "c.pem", "--tls-client-key", "k.pem"],
        ["https://h/", "--tls-no-verify", "--timeout", "1", "--timeout", "3"],
        ["grpc://h:1", "--service", ""],
        ["grpc://h:1", "--service=-x"],
        ["grpc://h:1", "--timeout", "nan"],
        [""],
    ],
)
def test_plain_arguments_are_read_here_as_argparse_reads_them(arguments: list[str]) -> None:
    read = probe_options(arguments)
    assert read is not None
    assert _fields(*read) == _argparse_reads(arguments)


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["--help"],
        ["grpc://h:1", "-h"],
        ["grpc://h:1", "--time", "2"],
        ["grpc://h:1", "--timeout", "-1"],
        ["grpc://h:1", "--timeout", "soon"],
        ["grpc://h:1", "--service"],
        ["grpc://h:1", "--tls=yes"],
        ["grpc://h:1", "grpc://h:2"],
        ["grpc://h:1", "--timeout=", "--timeout=3"],
        ["--", "grpc://h:1"],
        ["-", "--tls"],
    ],
)
def test_anything_else_is_left_to_argparse(arguments: list[str]) -> None:
    assert probe_options(arguments) is None


TOKENS = [
    "grpc://h:1",
    "http://x/",
    "",
    "-",
    "--",
    "-1",
    "2",
    "nan",
    "x y",
    "--service",
    "--service=a",
    "--serv",
    "--timeout",
    "--timeout=3",
    "--timeout=",
    "--tls",
    "-tls",
    "--tls=1",
    "--tls-ca-cert",
    "-tls-ca-cert=ca.pem",
    "--tls-client-cert",
    "-tls-client-key",
    "--tls-no-verify",
    "-tls-no-verify",
    "--tls-server-name",
    "-h",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=6))
def test_whatever_is_read_here_argparse_reads_the_same(arguments: list[str]) -> None:
    read = probe_options(arguments)
    if read is not None:
        assert _fields(*read) == _argparse_reads(arguments), arguments


# -- URLs --------------------------------------------------------------------------------


def _parts(split: object) -> tuple[object, ...]:
    """Every part of a split URL the probe reads; a ValueError's words for a bad one."""
    names = ("scheme", "netloc", "path", "query", "fragment", "hostname", "username", "password")
    parts: list[object] = [getattr(split, name) for name in names]
    parts.append(split.geturl())  # type: ignore[attr-defined]
    try:
        parts.append(split.port)  # type: ignore[attr-defined]
    except ValueError as error:
        parts.append(str(error))
    return tuple(parts)


def _both(url: str) -> tuple[object, object]:
    """urlsplit's parts of ``url`` and the probe's, or the ValueError each raised."""
    found: list[object] = []
    for split in (urllib.parse.urlsplit, _Url.split):
        try:
            found.append(_parts(split(url)))
        except ValueError as error:
            found.append(f"ValueError: {error}")
    return found[0], found[1]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:p%40ss@Host.Example:8080/ready?verbose=1#top",
        "grpc://[::1]:50051",
        "http://[fe80::1%eTH0]:1/",
        "grpc://h",
        "HTTP://X",
        "http:no-slashes",
        "127.0.0.1:8080",
        " \t http://h:1/\n",
        "http://h:99999/",
        "http://h:x/",
        "http://[::1/",
        "ftp://x",
    ],
)
def test_a_url_is_split_as_urlsplit_splits_it(url: str) -> None:
    urllib_reads, probe_reads = _both(url)
    assert probe_reads == urllib_reads


URL_PIECES = [*"ab:/@?#[]%.-+19 \t\n", "http", "grpc://", "https://", "::", "é", "\x00", "H"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(URL_PIECES), max_size=14).map("".join))
def test_any_url_is_split_as_urlsplit_splits_it(url: str) -> None:
    urllib_reads, probe_reads = _both(url)
    if "[" in url and "]" in url and isinstance(urllib_reads, str):
        # urlsplit also checks that a bracketed host is an IP address; the probe leaves
        # that to the connection (getaddrinfo refuses the name).
        return
    assert probe_reads == urllib_reads, url
