"""The lean Django handler for tunnel hosts.

Tunnel traffic needs none of the admin's sessions, authentication, messages,
CSRF or security headers, and Django's default middleware costs several thread
hops per request (each ``MiddlewareMixin`` hook runs through ``sync_to_async``).
Tunnel hosts therefore get their own ``ASGIHandler`` whose chain is only the
async host dispatch in front of the URL resolver; the requests are still Django
requests served by the async view ``tunnels.views.forward``. The main host keeps
the full ``settings.MIDDLEWARE`` stack.

``handle()`` is Django's, without the ``request_started``/``request_finished``
signals: their receivers (``close_old_connections``, ``reset_queries``) are sync,
so each costs a hop to a thread, and tunnel requests never touch the database.
"""

from __future__ import annotations

import asyncio
import contextlib

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.exception import convert_exception_to_response
from django.urls import set_script_prefix

from .hosts import HostDispatchMiddleware


class TunnelASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        view_caller = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(HostDispatchMiddleware(view_caller))

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
            await self.send_response(error_response, send)
            return

        async def process_request():
            response = await self.run_get_response(request)
            # A cancellation here means the public client went away while we sent.
            with contextlib.suppress(asyncio.CancelledError):
                await self.send_response(response, send)

        # As in Django: whichever ends first, the request or the public client.
        tasks = [
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(process_request()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                if task.done():
                    with contextlib.suppress(RequestAborted):
                        task.result()
                else:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            body_file.close()
