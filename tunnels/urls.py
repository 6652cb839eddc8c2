"""URLconf of tunnel hosts: every path goes to the tunnel."""

from django.urls import re_path

from . import views

urlpatterns = [re_path(r"", views.forward, name="tunnel-forward")]
