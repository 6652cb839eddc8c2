"""ASGI entry point: tunnel hosts take a lean Django handler, everything else the full one."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
# Django must be set up before anything imports models.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from tunnels.handler import TunnelASGIHandler  # noqa: E402
from tunnels.hosts import MainHost, TunnelHost, classify, header  # noqa: E402
from tunnels.intake import read_capped_body, refuse_unknown_host  # noqa: E402
from tunnels.routing import websocket_application  # noqa: E402

tunnel_application = TunnelASGIHandler()


async def http_application(scope, receive, send):
    # Decided on the head alone, before any of the body is read (tunnels.intake).
    host = classify(header(scope, b"host") or "")
    if isinstance(host, TunnelHost):
        return await tunnel_application(scope, receive, send)
    if not isinstance(host, MainHost):
        return await refuse_unknown_host(send)
    body = await read_capped_body(scope, receive, send)
    if body is not None:
        await django_application(scope, body, send)


application = ProtocolTypeRouter({"http": http_application, "websocket": websocket_application})
