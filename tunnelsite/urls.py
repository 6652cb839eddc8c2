"""URLconfs of the main host, and of the admin host when LUMINET_ADMIN_HOST is set
(``tunnelsite.adminhost`` picks one per request)."""

from django.conf import settings
from django.contrib import admin
from django.urls import path

from client.pyz import ARCHIVE_NAME
from tunnels import admin_live, views
from tunnelsite.api import api

admin.site.site_header = "Luminet administration"
admin.site.site_title = "Luminet admin"
# "View site" leads to the landing page, also from an admin host of its own.
admin.site.site_url = f"{settings.LUMINET_PUBLIC_URL}/"
# The index links the live tunnels page (tunnels.admin_live).
admin.site.index_template = "admin/luminet_index.html"

#: What the main host serves whether or not the admin has a host of its own.
site_patterns = [
    path("", views.landing, name="landing"),
    path(ARCHIVE_NAME, views.client_download, name="client-download"),
    path("health", views.health, name="health"),
]

#: The operator's side: only on LUMINET_ADMIN_HOST when it is set.
admin_patterns = [
    path("metrics", views.metrics, name="metrics"),
    path(
        "admin/live-tunnels/",
        admin.site.admin_view(admin_live.live_tunnels),
        name="live-tunnels",
    ),
    path(
        "admin/live-tunnels/<str:subdomain>/disconnect",
        admin.site.admin_view(admin_live.disconnect_tunnel),
        name="live-tunnel-disconnect",
    ),
    path("admin/", admin.site.urls),
    path("api/", api.urls),
]

urlpatterns = site_patterns + admin_patterns
