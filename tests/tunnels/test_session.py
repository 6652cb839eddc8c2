"""The tunnel session's rules, in milliseconds: a scripted client on one side, the real
view streams (``relay``) on the other, the in-memory layer in between."""

from __future__ import annotations

import asyncio

import pytest

from client import protocol
from client.protocol import INITIAL_REQUEST_CHUNKS, WINDOW_CHUNKS
from tunnels.messages import StreamResponse, TunnelReplaced, TunnelWsOpen, from_layer, to_layer
from tunnels.registry import Route
from tunnels.relay.errors import InvalidResponse, LocalServerError, TunnelBusy, TunnelClosed
from tunnels.relay.stream import RequestHead, Stream, find_route, open_stream

from .harness import GOOD_TOKEN, FakeTokens, backends, scripted_tunnel

pytestmark = pytest.mark.timeout(10)


def run(coroutine):
    return asyncio.run(coroutine)


async def no_body(size: int) -> tuple[bytes, bool]:
    return b"", True


GET = RequestHead("GET", "/x", [("host", "abc.example.com")], body=False)


async def open_get(tunnel, head: RequestHead = GET) -> tuple[Stream, protocol.Request]:
    """A view opens a stream; return it and the request the client receives."""
    route = await find_route(tunnel.session.subdomain, tunnel.backends.registry)
    stream = await open_stream(route, head, no_body, tunnel.backends)
    request = await tunnel.next_sent()
    assert isinstance(request, protocol.Request), request
    return stream, request


def test_the_first_message_must_be_auth():
    """Anything before auth closes the tunnel with 4400."""

    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.client_says(protocol.Window(stream=1, chunks=1))
            return await tunnel.close_code()

    assert run(scenario()) == protocol.CloseCode.PROTOCOL_ERROR


def test_an_invalid_token_is_refused_and_closed():
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.client_says(protocol.Auth(token="lmn_nope"))
            reply = await tunnel.next_sent()
            return reply, await tunnel.close_code()

    reply, code = run(scenario())
    assert reply == protocol.AuthError("invalid token", code="invalid-token")
    assert code == protocol.CloseCode.AUTH_FAILED


def test_auth_makes_the_subdomain_route_to_this_session():
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            ok = await tunnel.authenticate()
            found = await tunnel.backends.registry.lookup(ok.subdomain)
            return found == Route(ok.subdomain, tunnel.session.channel), ok.url

    routed, url = run(scenario())
    assert routed
    assert url.startswith("http")


def test_a_request_travels_and_its_answer_comes_back():
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            await tunnel.client_says(
                protocol.Response(stream=request.stream, status=201, headers=[("a", "1")])
            )
            head = await stream.response(timeout=2)
            await stream.close()
            return request, head

    request, head = run(scenario())
    assert (request.method, request.path, request.body) == ("GET", "/x", False)
    assert (head.status, head.headers, head.body) == (201, [("a", "1")], False)


def test_a_message_for_a_stream_of_the_other_kind_closes_the_tunnel():
    """A WebSocket answer to an HTTP stream is a protocol error (4400)."""

    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            await tunnel.client_says(protocol.WsAccept(stream=request.stream))
            code = await tunnel.close_code()
            await stream.close()
            return code

    assert run(scenario()) == protocol.CloseCode.PROTOCOL_ERROR


def test_an_http_answer_to_a_websocket_stream_closes_the_tunnel():
    """Moved down from the end-to-end suite: a response head on a WebSocket stream."""

    async def scenario():
        shared = backends()
        async with scripted_tunnel(shared) as tunnel:
            await tunnel.authenticate()
            reply = await shared.layer.new_channel()
            opening = TunnelWsOpen(reply, "/ws", [], [])
            await shared.layer.send(tunnel.session.channel, to_layer(opening))
            ws_open = await tunnel.next_sent()
            assert isinstance(ws_open, protocol.WsOpen)
            await tunnel.client_says(protocol.Response(stream=ws_open.stream, status=200))
            return await tunnel.close_code()

    assert run(scenario()) == protocol.CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize(
    "message",
    [
        protocol.Request(stream=1, method="GET", path="/"),
        protocol.Cancel(stream=1),
        protocol.AuthOk(subdomain="abc123", url="http://x"),
        protocol.Auth(token=GOOD_TOKEN),
    ],
    ids=["request", "cancel", "auth_ok", "second-auth"],
)
def test_messages_only_the_server_sends_close_the_tunnel(message):
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            await tunnel.client_says(message)
            return await tunnel.close_code()

    assert run(scenario()) == protocol.CloseCode.PROTOCOL_ERROR


def test_a_response_body_beyond_the_window_closes_the_tunnel():
    """The client may send WINDOW_CHUNKS chunks ahead of credit, not one more."""

    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            sid = request.stream
            await tunnel.client_says(protocol.Response(stream=sid, status=200, body=True))
            for _ in range(WINDOW_CHUNKS):
                await tunnel.client_says(protocol.Data(sid, b"x"))
            assert not tunnel.closed.done()
            await tunnel.client_says(protocol.Data(sid, b"x"))
            code = await tunnel.close_code()
            await stream.close()
            return code

    assert run(scenario()) == protocol.CloseCode.PROTOCOL_ERROR


def test_credit_from_the_view_lets_the_client_send_more():
    """Reading the body returns credit, and the client may go beyond the first window."""

    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            sid = request.stream
            await tunnel.client_says(protocol.Response(stream=sid, status=200, body=True))
            total = 3 * WINDOW_CHUNKS
            head = await stream.response(timeout=2)
            body = stream.body()
            received = 0
            for number in range(total):
                await tunnel.client_says(protocol.Data(sid, b"x", end=number == total - 1))
                received += len(await anext(body))
                while not tunnel.sent.empty():
                    credit = tunnel.sent.get_nowait()
                    assert isinstance(credit, protocol.Window)
            await stream.close()
            return head.status, received, tunnel.closed.done()

    assert run(scenario()) == (200, 3 * WINDOW_CHUNKS, False)


def test_a_held_head_travels_with_the_first_chunk():
    """``data_follows`` makes head and first chunk one channel-layer message."""

    async def scenario():
        layer_backends = backends()
        async with scripted_tunnel(layer_backends) as tunnel:
            await tunnel.authenticate()
            reply = await layer_backends.layer.new_channel()
            await layer_backends.layer.send(
                tunnel.session.channel,
                {"type": "tunnel.open", "reply": reply, "method": "GET", "path": "/",
                 "headers": [], "body": False},
            )  # fmt: skip
            request = await tunnel.next_sent()
            sid = request.stream
            await tunnel.client_says(
                protocol.Response(stream=sid, status=200, body=True, data_follows=True)
            )
            await tunnel.client_says(protocol.Data(sid, b"first", end=True))
            async with asyncio.timeout(2):
                return await layer_backends.layer.receive(reply)

    message = run(scenario())
    assert message["type"] == "stream.response"
    assert (message["data"], message["end"], message["chunks"]) == (b"first", True, 1)


def test_a_cancelled_stream_tells_the_client_and_ignores_late_chunks():
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            await stream.close()  # the public client went away before the answer
            cancel = await tunnel.next_sent()
            await tunnel.client_says(protocol.Response(stream=request.stream, status=200))
            await tunnel.client_says(protocol.Data(request.stream, b"late"))
            return cancel, tunnel.closed.done()

    cancel, closed = run(scenario())
    assert isinstance(cancel, protocol.Cancel)
    assert not closed


def test_a_local_failure_is_a_local_error_at_the_view():
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            await tunnel.client_says(protocol.StreamError(stream=request.stream, message="refused"))
            with pytest.raises(LocalServerError, match="refused"):
                await stream.response(timeout=2)
            await stream.close()

    run(scenario())


def test_a_tunnel_that_ends_before_answering_is_tunnel_closed_at_the_view():
    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            stream, _ = await open_get(tunnel)
            await tunnel.session.ended()
            with pytest.raises(TunnelClosed) as raised:
                await stream.response(timeout=2)
            await stream.close()
            return type(raised.value)

    assert run(scenario()) is TunnelClosed


def test_ending_releases_the_subdomain_as_a_hold():
    async def scenario():
        layer_backends = backends()
        async with scripted_tunnel(layer_backends) as tunnel:
            ok = await tunnel.authenticate()
            await tunnel.session.ended()
            registry = layer_backends.registry
            other = await registry.claim(ok.subdomain, 2, "someone-else")
            return await registry.lookup(ok.subdomain), other.granted

    assert run(scenario()) == (None, False)


def test_replacement_closes_the_older_connection():
    """A newer connection of the same token resuming the subdomain takes it; the old
    one closes 4410."""

    async def scenario():
        shared = backends()
        async with scripted_tunnel(shared) as old, scripted_tunnel(shared) as new:
            ok = await old.authenticate()
            resume = protocol.Auth(token=GOOD_TOKEN, subdomain=ok.subdomain, resume=True)
            await new.client_says(resume)
            assert (await new.next_sent()).subdomain == ok.subdomain
            return await old.close_code()

    assert run(scenario()) == protocol.CloseCode.REPLACED


def test_a_fresh_client_never_takes_a_live_name_even_of_its_token():
    """Without ``resume``, its token's live tunnel keeps the name: a preference gets
    another name, a requirement a refusal; the live tunnel stays open."""

    async def scenario():
        shared = backends()
        async with (
            scripted_tunnel(shared) as live,
            scripted_tunnel(shared) as preferring,
            scripted_tunnel(shared) as requiring,
        ):
            ok = await live.authenticate()
            await preferring.client_says(protocol.Auth(token=GOOD_TOKEN, subdomain=ok.subdomain))
            other = await preferring.next_sent()
            await requiring.client_says(
                protocol.Auth(token=GOOD_TOKEN, subdomain=ok.subdomain, required=True)
            )
            refusal = await requiring.next_sent()
            found = await shared.registry.lookup(ok.subdomain)
            return ok, other, refusal, found, live.closed.done()

    ok, other, refusal, found, live_closed = run(scenario())
    assert isinstance(other, protocol.AuthOk) and other.subdomain != ok.subdomain
    assert isinstance(refusal, protocol.AuthError) and refusal.code == "subdomain-taken"
    assert found is not None and not live_closed


def test_replaced_message_is_typed_on_the_layer():
    assert to_layer(TunnelReplaced()) == {"type": "tunnel.replaced", "moved": False}
    assert from_layer(to_layer(TunnelReplaced(moved=True))) == TunnelReplaced(moved=True)


def test_a_revoked_token_closes_the_tunnel_at_the_next_heartbeat():
    async def scenario():
        tokens = FakeTokens()
        async with scripted_tunnel(backends(), tokens, heartbeat=0.01) as tunnel:
            await tunnel.authenticate()
            tokens.revoked.add(1)
            watcher = asyncio.create_task(tunnel._guard(tunnel.session.keep_alive()))
            code = await tunnel.close_code()
            reply = await tunnel.next_sent()
            watcher.cancel()
            return code, reply

    code, reply = run(scenario())
    assert code == protocol.CloseCode.AUTH_FAILED
    assert reply == protocol.AuthError("token revoked", code="token-revoked")


def test_a_heartbeat_after_the_end_claims_nothing():
    """The keep-alive stops once the session ended; the subdomain stays held."""

    async def scenario():
        layer_backends = backends()
        async with scripted_tunnel(layer_backends, heartbeat=0.01) as tunnel:
            ok = await tunnel.authenticate()
            watcher = asyncio.create_task(tunnel.session.keep_alive())
            await tunnel.session.ended()
            async with asyncio.timeout(2):
                await watcher  # returns by itself
            return await layer_backends.registry.lookup(ok.subdomain)

    assert run(scenario()) is None


def test_window_credit_for_unsent_chunks_does_not_reach_the_view():
    """A client may widen a request's first window to the full window, no further:
    credit beyond it is clipped."""

    async def scenario():
        layer_backends = backends()
        async with scripted_tunnel(layer_backends) as tunnel:
            await tunnel.authenticate()
            stream, request = await open_get(tunnel)
            assert stream._request_window.available == INITIAL_REQUEST_CHUNKS
            await tunnel.client_says(protocol.Window(stream=request.stream, chunks=WINDOW_CHUNKS))
            await tunnel.client_says(protocol.Window(stream=request.stream, chunks=8))
            await tunnel.client_says(protocol.Response(stream=request.stream, status=204))
            head = await stream.response(timeout=2)
            await stream.close()
            return head.status, stream._request_window.available

    assert run(scenario()) == (204, WINDOW_CHUNKS)


def test_stream_response_keeps_the_head_fields():
    assert StreamResponse(200, [], True).data is None


@pytest.mark.parametrize("status", [103, 102, 600, 999])
def test_an_odd_status_fails_its_stream_and_not_the_tunnel(status):
    """Issue 8, defect 4: a 1xx or out-of-range status is a 502 invalid-response for that
    request; the other streams on the tunnel go on."""

    async def scenario():
        async with scripted_tunnel(backends()) as tunnel:
            await tunnel.authenticate()
            odd, odd_request = await open_get(tunnel)
            fine, fine_request = await open_get(tunnel)
            raw = protocol.encode(protocol.Response(stream=odd_request.stream, status=200))
            await tunnel.session.received(raw.replace('"status":200', f'"status":{status}'), None)
            cancel = await tunnel.next_sent()
            with pytest.raises(InvalidResponse):
                await odd.response(timeout=2)
            await tunnel.client_says(protocol.Response(stream=fine_request.stream, status=200))
            head = await fine.response(timeout=2)
            await odd.close()
            await fine.close()
            return cancel, head.status, tunnel.closed.done()

    cancel, status_code, closed = run(scenario())
    assert isinstance(cancel, protocol.Cancel)
    assert (status_code, closed) == (200, False)


def test_streams_past_the_tunnels_cap_are_refused_as_busy():
    """With two streams open, a third request is 503 tunnel-busy and never reaches the
    client; once one ends, the next is served."""

    async def scenario():
        async with scripted_tunnel(backends(), max_streams=2) as tunnel:
            await tunnel.authenticate()
            first, first_request = await open_get(tunnel)
            second, _ = await open_get(tunnel)
            route = await find_route(tunnel.session.subdomain, tunnel.backends.registry)
            third = await open_stream(route, GET, no_body, tunnel.backends)
            with pytest.raises(TunnelBusy):
                await third.response(timeout=2)
            await third.close()
            assert tunnel.sent.empty()  # nothing went to the client

            await tunnel.client_says(protocol.Response(stream=first_request.stream, status=204))
            await first.response(timeout=2)
            await first.close()
            fourth, request = await open_get(tunnel)
            await fourth.close()
            await second.close()
            return request

    assert isinstance(run(scenario()), protocol.Request)
