"""ASGI entry point: one router in front (``tunnels.edge.router``); tunnel hosts take a
lean Django handler, the main host the full one. Before the router, a request that
came through a proxy we trust is rewritten to show the caller and scheme the proxy
saw (``tunnels.edge.proxies``)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tunnelsite.settings")
# Django must be set up before anything imports models.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402

from tunnels.edge.consumer import PublicSocketConsumer  # noqa: E402
from tunnels.edge.handler import TunnelASGIHandler  # noqa: E402
from tunnels.edge.proxies import BehindProxies  # noqa: E402
from tunnels.edge.router import EdgeRouter  # noqa: E402
from tunnels.tunnel.consumer import TunnelConsumer  # noqa: E402

router = EdgeRouter(
    main_http=django_application,
    tunnel_http=TunnelASGIHandler(),
    public_socket=PublicSocketConsumer.as_asgi(),
    tunnel_endpoint=TunnelConsumer.as_asgi(),
)
application = BehindProxies(
    ProtocolTypeRouter({"http": router.http, "websocket": router.websocket})
)
