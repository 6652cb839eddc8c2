"""A signed tunnel's request held at the edge until its webhook signature checks out.

The router calls :func:`hold_signed_body` for a tunnel host whose policy has
webhook rules, before anything reaches the tunnel: the body is read from ASGI
``receive()`` and hashed part by part (``tunnels.edge.webhooks``), up to the
rules' cap, in memory (never spooled to disk). A request that fails is answered
here, 403 ``webhook-signature`` or 413 ``webhook-too-large``, and the local
server never sees it; one that passes is replayed to the rest of the stack, the
``http.request`` messages as they came, not copied. A tunnel without webhook
rules never comes here.
"""

from __future__ import annotations

import html
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from django.conf import settings

from tunnels.hosts import header

from .budget import Account, budget_key, scope_budget
from .forwarding import error_headers, received_headers
from .intake import Receive, Send, plain_response
from .webhooks import SIGNATURE_CODE, Refusal, WebhookSpec, open_check

#: Why a WebSocket upgrade to a tunnel with webhook rules is refused: no provider
#: delivers a webhook over a WebSocket, and an upgrade carries no body to sign.
WEBSOCKET_REFUSAL = Refusal(403, SIGNATURE_CODE, "a webhook is never a WebSocket")


def refusal_page(refusal: Refusal) -> str:
    """Our short page for a refusal, naming what failed."""
    title = f"{refusal.status} {refusal.code}"
    text = f"Webhook refused: {refusal.reason}."
    return f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(text)}</h1>\n"


async def refuse(send: Send, refusal: Refusal) -> None:
    await plain_response(
        send,
        refusal.status,
        refusal_page(refusal),
        "text/html",
        [("Luminet-Error", refusal.code)],
    )


class HeldBody:
    """A body that passed, held until the rest of the stack has read it."""

    def __init__(self, held: deque[dict[str, Any]], receive: Receive, account: Account) -> None:
        self._held = held
        self._receive = receive
        self._account = account

    async def receive(self) -> dict[str, Any]:
        """The held ``http.request`` messages in order, then whatever comes (a disconnect)."""
        if not self._held:
            return await self._receive()
        message = self._held.popleft()
        self._account.release(len(message.get("body", b"")))
        return message

    def close(self) -> None:
        """Drop what the stack did not read (it answered without the whole body)."""
        self._held.clear()
        self._account.close()


async def hold_signed_body(
    specs: Sequence[WebhookSpec], scope: dict[str, Any], receive: Receive, send: Send
) -> HeldBody | Refusal | None:
    """Read and check the body against ``specs``, holding it.

    The held body if it passed (the caller must :meth:`~HeldBody.close` the rest);
    the refusal once the request has been answered 403 or 413; None once it has
    been answered 503 (over the memory budget) or the caller left.
    """
    check = open_check(
        specs,
        received_headers(scope),
        clock=time.time,
        generic_max_bytes=settings.LUMINET_WEBHOOK_MAX_BYTES,
    )
    if isinstance(check, Refusal):
        await refuse(send, check)
        return check
    account = scope_budget(scope).account(budget_key(header(scope, b"host") or ""))
    held: deque[dict[str, Any]] = deque()
    passed: HeldBody | None = None
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body = message.get("body", b"")
            refused = check.update(body)
            if refused is not None:
                await refuse(send, refused)
                return refused
            held.append(message)
            # What is held counts against the memory budget like any body waiting,
            # and the pipes' backpressure sees it; past the budget, this request
            # is turned away rather than the process grown (providers retry a 503).
            if not account.charge(len(body)):
                await busy(send)
                return None
            if not message.get("more_body", False):
                break
        refused = check.finish()
        if refused is not None:
            await refuse(send, refused)
            return refused
        passed = HeldBody(held, receive, account)
        return passed
    finally:
        if passed is None:  # refused, or the caller left: nothing goes on
            account.close()


async def busy(send: Send) -> None:
    page = "<!doctype html><title>503 tunnel-busy</title><h1>Server busy: try again later.</h1>\n"
    headers = error_headers(503, "tunnel-busy")
    await plain_response(send, 503, page, "text/html", headers)


async def forward_signed(
    app: Callable[[dict[str, Any], Receive, Send], Awaitable[None]],
    specs: Sequence[WebhookSpec],
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
) -> Refusal | None:
    """Pass the request on to ``app`` (the tunnel's view) once it is verified; the
    refusal if a rule refused it (it has been answered)."""
    held = await hold_signed_body(specs, scope, receive, send)
    if not isinstance(held, HeldBody):
        return held
    try:
        await app(scope, held.receive, send)
    finally:
        held.close()
    return None
