"""The local address: which Host the local server sees, and which loopback answers."""

from __future__ import annotations

import socket

import pytest

from client.local import LocalAddress, host_header_problem

HEADERS = [("Host", "abc.tunnel.example.com"), ("Accept", "*/*")]


@pytest.mark.parametrize(
    ("mode", "host"),
    [
        ("preserve", "abc.tunnel.example.com"),
        ("rewrite", "localhost:3000"),
        ("app.test:8080", "app.test:8080"),
    ],
)
def test_the_host_header_by_mode(mode: str, host: str) -> None:
    shown = LocalAddress("localhost", 3000, mode).headers(HEADERS)
    assert shown == [("Host", host), ("Accept", "*/*")]


def test_rewrite_brackets_an_ipv6_address_and_adds_a_missing_host() -> None:
    assert LocalAddress("::1", 8000, "rewrite").headers([("Accept", "*/*")]) == [
        ("Host", "[::1]:8000"),
        ("Accept", "*/*"),
    ]


@pytest.mark.parametrize("value", ["a b", "x\r\nEvil: 1", "", "host:999999", "http://x"])
def test_a_host_header_value_must_be_a_host(value: str) -> None:
    assert host_header_problem(value) is not None


def test_localhost_is_tried_on_both_loopbacks_and_the_one_that_answered_goes_first() -> None:
    with socket.socket(socket.AF_INET6) as listener:
        try:
            listener.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        listener.listen()
        address = LocalAddress("localhost", listener.getsockname()[1])
        with address.connect(timeout=5) as first:
            assert first.family == socket.AF_INET6
        assert address._order[0] == "::1"


def test_another_host_is_used_exactly_as_given() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with LocalAddress("127.0.0.1", port).connect(timeout=5) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
        with pytest.raises(OSError):
            LocalAddress("127.0.0.2", port).connect(timeout=5)  # nothing listens there
