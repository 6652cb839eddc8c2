"""A tiny ASGI application that exercises what the server does with bodies and failures.

Routes (the query string carries the parameters):

    /ok                            200 "ok"
    /stream?size=N                 N bytes of ``streaming.pattern``, Content-Length set,
                                   sent as fast as ``send()`` allows, 64 KiB a message
    /drip?chunks=N&interval=S      N chunks of 1 KiB, one every S seconds, no length
    /upload                        consumes the body one ``receive()`` at a time and
                                   answers JSON: total, sha256, chunks, largest
    /fail?sent=N[&length=L]        starts a response (Content-Length L if given,
                                   otherwise chunked), sends N bytes, then raises
    /connections                   JSON: how many connections the server tracks
    /hold                          never reads the body; answers 200 after /release
    /release                       lets every /hold answer
    /budget                        JSON: bytes the memory budget holds, in all and per host
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

from tests.e2e.streaming import pattern


class AppFailure(Exception):
    """Raised on purpose by /fail."""


class App:
    """The test application; the runner sets ``server`` so /connections can look inside."""

    def __init__(self) -> None:
        self.server: Any = None
        self.released = asyncio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        match scope["path"]:
            case "/ok":
                await _answer(send, 200, b"ok")
            case "/stream":
                await _stream(send, int(query["size"]))
            case "/drip":
                await _drip(send, int(query["chunks"]), float(query["interval"]))
            case "/upload":
                await _upload(receive, send)
            case "/fail":
                await _fail(send, int(query["sent"]), query.get("length"))
            case "/hold":
                await _hold(self.released, send)
            case "/release":
                self.released.set()
                await _answer(send, 200, b"{}", b"application/json")
            case "/budget":
                budget = scope["luminet.budget"]
                held = {"total": budget.total, "hosts": dict(budget._held)}
                await _answer(send, 200, json.dumps(held).encode(), b"application/json")
            case "/connections":
                body = json.dumps({"connections": len(self.server.connections)}).encode()
                await _answer(send, 200, body, b"application/json")
            case _:
                await _answer(send, 404, b"no such route")


async def _answer(send: Any, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Any, size: int) -> None:
    headers = [(b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for chunk in pattern(size):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _drip(send: Any, chunks: int, interval: float) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for _ in range(chunks):
        await send({"type": "http.response.body", "body": b"." * 1024, "more_body": True})
        await asyncio.sleep(interval)  # pacing the stream, not synchronisation
    await send({"type": "http.response.body", "body": b""})


async def _upload(receive: Any, send: Any) -> None:
    digest = hashlib.sha256()
    total = chunks = largest = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        digest.update(body)
        total += len(body)
        chunks += 1
        largest = max(largest, len(body))
        if not message.get("more_body", False):
            break
    result = {"total": total, "sha256": digest.hexdigest(), "chunks": chunks, "largest": largest}
    await _answer(send, 200, json.dumps(result).encode(), b"application/json")


async def _hold(released: asyncio.Event, send: Any) -> None:
    """Leave the body unread until /release (as a view that times out would)."""
    await released.wait()
    await _answer(send, 200, b"released")


async def _fail(send: Any, sent: int, length: str | None) -> None:
    headers = [(b"content-length", length.encode())] if length is not None else []
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if sent:
        await send({"type": "http.response.body", "body": b"x" * sent, "more_body": True})
    raise AppFailure("the application failed mid-response, on purpose")
