"""Reading the public request's body straight from ASGI receive()."""

import asyncio

import pytest
from django.core.exceptions import RequestAborted

from tunnels.body import RequestBody


def scripted(*messages):
    queue = list(messages)

    async def receive():
        return queue.pop(0)

    return receive


def body_message(data: bytes, more: bool) -> dict:
    return {"type": "http.request", "body": data, "more_body": more}


def test_reads_whole_sizes_across_messages_and_short_only_at_the_end():
    async def scenario():
        receive = scripted(body_message(b"cdef", True), body_message(b"gh", False))
        body = RequestBody(receive, body_message(b"ab", True))
        reads = [await body.read(3), await body.read(3), await body.read(3), await body.read(3)]
        return reads, body.done.is_set(), body.client_gone

    assert asyncio.run(scenario()) == ([b"abc", b"def", b"gh", b""], True, False)


def test_a_body_in_one_message_is_done_at_once():
    body = RequestBody(scripted(), body_message(b"all", False))
    assert body.done.is_set()
    assert asyncio.run(body.read(10)) == b"all"


def test_a_client_leaving_mid_body_aborts_the_read():
    async def scenario():
        body = RequestBody(scripted({"type": "http.disconnect"}), body_message(b"ab", True))
        with pytest.raises(RequestAborted):
            await body.read(10)
        return body.done.is_set(), body.client_gone

    assert asyncio.run(scenario()) == (True, True)
