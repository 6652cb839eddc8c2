"""The view's end of a stream: each way it can fail gets its own exception, and each
exception its own documented answer."""

from __future__ import annotations

import asyncio

import pytest

from client import protocol
from tunnels.edge.forwarding import ERRORS, InvalidRequest, error_response
from tunnels.registry import RegistryError, Route
from tunnels.relay.backends import Backends
from tunnels.relay.errors import (
    BodyLost,
    InvalidResponse,
    LocalServerError,
    TunnelBusy,
    TunnelClosed,
    TunnelNotFound,
    TunnelTimeout,
    Unavailable,
)
from tunnels.relay.payloads import PayloadLost
from tunnels.relay.stream import RequestHead, Stream, find_route, open_stream

from .harness import WAIT, backends, scripted_tunnel

pytestmark = pytest.mark.timeout(10)

POST = RequestHead("POST", "/up", [("content-length", "10")], body=True)


def run(coroutine):
    return asyncio.run(coroutine)


async def endless_body(size: int) -> tuple[bytes, bool]:
    return b"x" * min(size, 1024), False


async def no_body(size: int) -> tuple[bytes, bool]:
    return b"", True


def test_a_dead_tunnel_process_is_found_by_the_liveness_check():
    """The tunnel's registry entry vanishing (its process died) fails the stream as
    tunnel-closed, without waiting for the request timeout."""

    async def scenario():
        shared = backends()
        await shared.registry.claim("abc123", 1, "dead-channel")
        reply = await shared.layer.new_channel()
        route = Route("abc123", "dead-channel")
        stream = Stream(route, reply, shared, liveness_interval=0.01)
        await stream.start(RequestHead("GET", "/", [], False), no_body)
        await shared.registry.release("abc123", "dead-channel", 1, grace=60)
        try:
            with pytest.raises(TunnelClosed):
                await stream.response(timeout=WAIT)
        finally:
            await stream.close()

    run(scenario())


def test_a_full_tunnel_during_an_upload_is_tunnel_busy():
    """The tunnel's channel at capacity makes the upload fail as tunnel-busy (503)."""

    async def scenario():
        tiny = backends(capacity=1)
        await tiny.registry.claim("abc123", 1, "stuck-channel")
        stream = await open_stream(Route("abc123", "stuck-channel"), POST, endless_body, tiny)
        try:
            with pytest.raises(TunnelBusy) as raised:
                await stream.response(timeout=WAIT)
        finally:
            await stream.close()
        return raised.value

    exc = run(scenario())
    assert error_response(exc, "abc123")["Luminet-Error"] == "tunnel-busy"


def test_no_answer_in_time_is_a_timeout():
    async def scenario():
        shared = backends()
        await shared.registry.claim("abc123", 1, "silent-channel")
        route = Route("abc123", "silent-channel")
        stream = await open_stream(route, RequestHead("GET", "/", [], False), no_body, shared)
        try:
            with pytest.raises(TunnelTimeout):
                await stream.response(timeout=0.05)
        finally:
            await stream.close()

    run(scenario())


def test_a_missing_tunnel_is_not_found():
    async def scenario():
        with pytest.raises(TunnelNotFound):
            await find_route("nosuch", backends().registry)

    run(scenario())


class LosingPayloads:
    """Payloads whose every fetch finds the key gone, as after an expiry."""

    async def store(self, message: dict) -> dict:
        return message

    async def fetch(self, message: dict) -> dict:
        if message.get("type") == "stream.response":
            raise PayloadLost("expired")
        return message

    async def close(self) -> None:
        pass


def test_a_lost_response_body_is_body_lost():
    async def scenario():
        plain = backends()
        losing = Backends(plain.layer, plain.registry, LosingPayloads())  # type: ignore[arg-type]
        async with scripted_tunnel(plain) as tunnel:
            await tunnel.authenticate()
            route = await find_route(tunnel.session.subdomain, plain.registry)
            stream = await open_stream(route, RequestHead("GET", "/", [], False), no_body, losing)
            request = await tunnel.next_sent()
            await tunnel.client_says(protocol.Response(stream=request.stream, status=200))
            try:
                with pytest.raises(BodyLost):
                    await stream.response(timeout=WAIT)
            finally:
                await stream.close()

    run(scenario())


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (TunnelNotFound("abc123"), 502, "tunnel-not-found"),
        (TunnelBusy("full"), 503, "tunnel-busy"),
        (Unavailable("Redis down"), 503, "unavailable"),
        (TunnelTimeout("30 s"), 504, "local-timeout"),
        (LocalServerError("refused"), 502, "local-error"),
        (TunnelClosed("gone"), 502, "tunnel-closed"),
        (BodyLost("expired"), 502, "body-lost"),
        (InvalidRequest("bad target"), 400, "bad-request"),
        (InvalidResponse("two lengths"), 502, "invalid-response"),
    ],
)
def test_each_failure_has_its_own_documented_answer(exc, status, code):
    response = error_response(exc, "abc123")
    assert (response.status_code, response["Luminet-Error"]) == (status, code)
    # A 503 says when to come back; no other answer does.
    assert response.get("Retry-After") == ("5" if status == 503 else None)


def test_every_error_code_is_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for _, code, _ in ERRORS.values():
        assert f"`Luminet-Error: {code}`" in readme, code


class DownRegistry:
    """A registry whose Redis is unreachable."""

    async def lookup(self, subdomain: str):
        raise RegistryError("registry unavailable: ConnectionError")


def test_an_unreachable_registry_is_unavailable_not_not_found():
    async def scenario():
        with pytest.raises(Unavailable):
            await find_route("abc123", DownRegistry())  # type: ignore[arg-type]

    run(scenario())
