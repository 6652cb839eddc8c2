"""URLconf of tunnel hosts: every path goes to the tunnel."""

from django.urls import re_path

from .views import forward

urlpatterns = [re_path(r"", forward, name="tunnel-forward")]
