"""The lean Django handler for tunnel hosts.

Tunnel traffic needs none of the admin's sessions, authentication, messages,
CSRF or security headers, and Django's default middleware costs several thread
hops per request (each ``MiddlewareMixin`` hook runs through ``sync_to_async``).
Tunnel hosts therefore get their own ``ASGIHandler`` whose chain is only the
async host dispatch in front of the URL resolver; the requests are still Django
requests served by the async view ``tunnels.views.forward``. The main host keeps
the full ``settings.MIDDLEWARE`` stack.

``get_response_async()`` is Django's without logging every 4xx/5xx the local
server answers. ``handle()`` is Django's, without the ``request_started`` and
``request_finished`` signals: their receivers (``close_old_connections``,
``reset_queries``) are sync, so each costs a hop to a thread, and tunnel
requests never touch the database.
Nor does it copy the body into a temporary file first: the view reads it from
``request.body_reader`` (see ``tunnels.edge.body``) as it sends it on.

Requests here are :class:`~tunnels.edge.request.TunnelRequest`, and go straight to
the catch-all view, without URL resolving.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix, set_urlconf

from .body import RequestBody
from .request import TunnelRequest
from .views import forward


class TunnelASGIHandler(ASGIHandler):
    request_class = TunnelRequest

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware: list = []
        self._template_response_middleware: list = []
        self._exception_middleware: list = []
        # No URL resolving: every path of a tunnel host (``OPTIONS *`` too, which no
        # URL pattern matches) goes to the catch-all view.
        view: Any = forward  # takes the TunnelRequest that request_class makes
        self._middleware_chain = convert_exception_to_response(view)

    async def get_response_async(self, request):
        # Django's, without log_response(): a 404 or 500 here is the local server's
        # answer (or one of our error pages, an expected outcome), not this server's
        # failure, and Django logged each one through a thread hop.
        set_urlconf(settings.ROOT_URLCONF)
        chain: Any = self._middleware_chain
        response = await chain(request)
        response._resource_closers.append(request.close)
        return response

    async def handle(self, scope, receive, send):
        first = await receive()
        if first["type"] != "http.request":
            return  # the public client left before anything happened
        body = RequestBody(receive, first)
        set_script_prefix(get_script_prefix(scope))
        # Django's own body file stays empty: nothing on this path reads it.
        request, error_response = self.create_request(scope, io.BytesIO())
        if request is None:
            assert error_response is not None
            await self.send_response(error_response, send)
            return
        assert isinstance(request, TunnelRequest)
        request.body_reader = body

        async def process_request():
            response = await self.run_get_response(request)
            # A cancellation here means the public client went away while we sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)

        # As in Django: whichever ends first, the request or the public client.
        tasks = [
            asyncio.create_task(self._listen_for_disconnect(body, receive)),
            asyncio.create_task(process_request()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                with contextlib.suppress(RequestAborted):
                    task.result()
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _listen_for_disconnect(self, body: RequestBody, receive) -> None:
        # receive() belongs to the body until all of it is read.
        await body.done.wait()
        if body.client_gone:
            raise RequestAborted
        await self.listen_for_disconnect(receive)
