"""URLconf of the main host."""

from django.contrib import admin
from django.urls import path

from client.pyz import ARCHIVE_NAME
from tunnels import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path(ARCHIVE_NAME, views.client_download, name="client-download"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
]
