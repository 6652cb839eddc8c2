"""URLconf of LUMINET_ADMIN_HOST: the admin, the admin API, the metrics and health."""

from django.urls import path
from django.views.generic import RedirectView

from tunnels import views
from tunnelsite.urls import admin_patterns

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/")),
    path("health", views.health),
    *admin_patterns,
]
