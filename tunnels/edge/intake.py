"""What a public HTTP request meets before Django: decided on its head alone.

The server hands a request over as soon as its head is in (``tunnelsite.server``),
so these answers go out before a byte of the body is read: a host we do not serve
is refused at once, and the main host, which only serves the admin and small
forms, takes a body of at most ``LUMINET_MAX_BODY_BYTES``. Tunnel bodies are not
capped: they stream through the tunnel's window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from client import protocol
from client.protocol import ProtocolError

from .forwarding import received_headers

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def plain_response(
    send: Send,
    status: int,
    text: str,
    content_type: str = "text/plain",
    headers: list[tuple[str, str]] | None = None,
) -> None:
    """A short answer of our own, sent straight from ASGI (no Django)."""
    body = text.encode()
    lines = [
        (b"content-type", f"{content_type}; charset=utf-8".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    lines += [(name.encode(), value.encode()) for name, value in headers or []]
    await send({"type": "http.response.start", "status": status, "headers": lines})
    await send({"type": "http.response.body", "body": body})


async def refuse_unknown_host(send: Send) -> None:
    await plain_response(send, 400, "Unknown host.\n")


async def read_capped_body(scope: dict, receive: Receive, send: Send) -> Receive | None:
    """Read a main-host body of at most ``LUMINET_MAX_BODY_BYTES`` into memory.

    Returns a ``receive`` that replays it to Django, or None once the request has
    been answered (413 for a body over the limit, 400 for an unreadable length) or
    the caller left.
    """
    limit = settings.LUMINET_MAX_BODY_BYTES
    try:
        declared = protocol.declared_length(received_headers(scope))
    except ProtocolError:
        await plain_response(send, 400, "Invalid Content-Length.\n")
        return None
    too_large = f"Request body too large: at most {limit} bytes.\n"
    if declared is not None and declared > limit:
        await plain_response(send, 413, too_large)
        return None
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await plain_response(send, 413, too_large)
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    replayed = False

    async def replay() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return await receive()  # only http.disconnect is left to come
        replayed = True
        return {"type": "http.request", "body": b"".join(parts), "more_body": False}

    return replay
