"""Reading the public request's body straight from ASGI receive()."""

import asyncio

import pytest
from django.core.exceptions import RequestAborted

from tunnels.edge.body import RequestBody


def scripted(*messages):
    queue = list(messages)

    async def receive():
        return queue.pop(0)

    return receive


def body_message(data: bytes, more: bool) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


def test_reads_what_has_arrived_and_says_where_the_body_ends():
    """A read returns as soon as bytes are in, at most ``size``; the last one says end."""

    async def scenario():
        receive = scripted(body_message(b"cdef", True), body_message(b"gh", False))
        body = RequestBody(receive, body_message(b"ab", True))
        reads = [await body.read(3) for _ in range(4)]
        return reads, body.done.is_set(), body.client_gone

    assert asyncio.run(scenario()) == (
        [(b"ab", False), (b"cde", False), (b"f", False), (b"gh", True)],
        True,
        False,
    )


def test_empty_messages_are_waited_through():
    """An empty message with more to come is not mistaken for the end."""

    async def scenario():
        receive = scripted(body_message(b"", True), body_message(b"x", False))
        body = RequestBody(receive, body_message(b"", True))
        return await body.read(10)

    assert asyncio.run(scenario()) == (b"x", True)


def test_a_body_in_one_message_is_done_at_once():
    body = RequestBody(scripted(), body_message(b"all", False))
    assert body.done.is_set()
    assert asyncio.run(body.read(10)) == (b"all", True)


def test_a_client_leaving_mid_body_aborts_the_read():
    async def scenario():
        body = RequestBody(scripted({"type": "http.disconnect"}), body_message(b"ab", True))
        assert await body.read(10) == (b"ab", False)
        with pytest.raises(RequestAborted):
            await body.read(10)
        return body.done.is_set(), body.client_gone

    assert asyncio.run(scenario()) == (True, True)
